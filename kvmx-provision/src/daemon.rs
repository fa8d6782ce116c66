//! Helper daemons that serve a share beside QEMU (virtiofsd, kvmx-nfsd):
//! finding their binary, and starting one detached, in its own process
//! group with its output in a log, until it is ready to serve.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::{DaemonEnd, Error};

/// How long a daemon gets to be ready.
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// The binary `name`: the one the environment variable `variable` names,
/// else the one beside the running program (installed together), on PATH,
/// or in cargo's bin folder.
pub fn find(name: &str, variable: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect()
        })
        .unwrap_or_default();
    let cargo =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin").join(name));
    beside
        .into_iter()
        .chain(on_path)
        .chain(cargo)
        .find(|path| path.is_file())
}

/// Spawns `command` detached with its stderr in `log`, and waits until
/// `ready` says it serves. `what` names it in errors. Returns its pid.
pub fn start(
    mut command: Command,
    what: &str,
    log: &Utf8Path,
    ready: impl Fn() -> bool,
) -> Result<u32, Error> {
    let log_file = std::fs::File::create(log).map_err(Error::io("create", log))?;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    let deadline = Instant::now() + READY_DEADLINE;
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(what, DaemonEnd::Exited(status.to_string()), log));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(failed(what, DaemonEnd::NotReady(READY_DEADLINE), log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.id())
}

/// How many lines of a failed daemon's log its error carries.
const LOG_LINES: usize = 15;

fn failed(what: &str, ended: DaemonEnd, log: &Utf8Path) -> Error {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Error::DaemonFailed {
        name: what.to_owned(),
        ended,
        log: log.to_owned(),
        log_tail: crate::state::last_lines(&text, LOG_LINES).join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_that_exits_is_an_error_with_the_end_of_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = Utf8Path::from_path(dir.path()).unwrap().join("d.log");
        let mut command = Command::new("sh");
        command.args(["-c", "seq 1 40 >&2; echo 'cannot bind' >&2; exit 3"]);
        let error = start(command, "testd for /srv", &log, || false).unwrap_err();
        let Error::DaemonFailed {
            name,
            ended,
            log: named,
            log_tail,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!(name, "testd for /srv");
        assert_eq!(ended, &DaemonEnd::Exited("exit status: 3".into()));
        assert_eq!(named, &log);
        assert_eq!(log_tail.lines().count(), LOG_LINES);
        assert!(log_tail.ends_with("40\ncannot bind"), "{log_tail}");
        assert_eq!(error.kind(), kvmx_core::ErrorKind::Failure);
        assert!(error.hint().unwrap().contains("d.log"));
    }
}
