//! virtiofs: one `virtiofsd` daemon per shared folder, listening on a
//! vhost-user socket in the VM's runtime folder. QEMU connects to it at
//! start, or later through QMP for a live mount; the daemon exits when QEMU
//! lets go of it.
//!
//! The Rust virtiofsd (crates.io) is used: QEMU 7.2's bundled C daemon
//! needs root. As a plain user it runs without a namespace sandbox.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::Error;

/// Names the virtiofsd binary to use instead of searching for one.
pub const VIRTIOFSD_VARIABLE: &str = "KVMX_VIRTIOFSD";

/// How long virtiofsd gets to create its socket.
const SOCKET_DEADLINE: Duration = Duration::from_secs(10);

/// The virtiofsd binary: `KVMX_VIRTIOFSD`, else `virtiofsd` on PATH or in
/// cargo's bin folder.
pub fn find_virtiofsd() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(VIRTIOFSD_VARIABLE).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("virtiofsd"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/virtiofsd"));
    }
    candidates.into_iter().find(|path| path.is_file())
}

/// Starts a detached virtiofsd sharing `folder` on `socket`, and waits for
/// the socket. Its output goes to `log`.
pub fn start(
    socket: &Utf8Path,
    folder: &Utf8Path,
    read_only: bool,
    log: &Utf8Path,
) -> Result<u32, Error> {
    use std::os::unix::process::CommandExt;
    if !folder.is_dir() {
        return Err(Error::Usage(format!(
            "the shared folder {folder} does not exist; create it or fix the share's host path"
        )));
    }
    let binary = find_virtiofsd().ok_or_else(|| {
        Error::Usage(
            "virtiofsd is not installed: install it with `cargo install virtiofsd` (it needs libseccomp-dev and libcap-ng-dev), or set KVMX_VIRTIOFSD"
                .into(),
        )
    })?;
    let _ = std::fs::remove_file(socket);
    let log_file = std::fs::File::create(log).map_err(Error::io("create", log))?;
    let root = nix::unistd::geteuid().is_root();
    let mut command = Command::new(&binary);
    command
        .arg(format!("--socket-path={socket}"))
        .arg(format!("--shared-dir={folder}"))
        .arg("--cache=auto")
        .arg(if root {
            "--sandbox=namespace"
        } else {
            "--sandbox=none"
        });
    if read_only {
        command.arg("--readonly");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: binary.display().to_string(),
            source,
        })?;
    let deadline = Instant::now() + SOCKET_DEADLINE;
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(Error::Usage(format!(
                "virtiofsd for {folder} exited ({status}): {}",
                said.trim()
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(Error::Usage(format!(
                "virtiofsd for {folder} made no socket in time"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.id())
}
