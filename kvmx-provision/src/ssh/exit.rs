//! Telling a remote command's own exit status 255 from a failure of ssh.
//!
//! OpenSSH exits 255 both when it cannot connect or loses the connection
//! and when the remote command itself exits 255. kvmx runs each command in
//! a subshell; when that subshell ends with 255, the guest's shell touches
//! a flag file named by a random token before passing the status on. After
//! a 255, a second short command looks for the flag (and removes it): there
//! means the command's own status; absent, or no answer, means the
//! connection failed. Commands that end otherwise write nothing in the
//! guest, and the check costs a round trip only after a 255.

use std::process::ExitStatus;
use std::time::Duration;

use super::{SSH_FAILED, SshTarget};
use crate::Error;
use crate::guest::process::{Discard, Ended, Limits, drive};
use crate::guest::words::quote;

/// How long the flag check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long killing a stopped command in the guest may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A command line wrapped to report a status of 255 in the guest.
#[derive(Debug, Clone)]
pub struct Wrapped {
    /// What ssh runs (its remote command).
    pub line: String,
    /// The flag file the guest touches on a status of 255.
    flag: String,
    /// Where the guest's shell records its process group while the command
    /// runs, when the command may have to be killed.
    group_file: Option<String>,
}

impl SshTarget {
    /// `command_line` with `ssh.env` and `env` exported before it, run in
    /// a subshell whose status 255 is recorded in a flag file.
    pub fn wrap(&self, command_line: &str, env: &[(String, String)]) -> Wrapped {
        self.wrap_with(command_line, env, false)
    }

    /// [`SshTarget::wrap`] for a command that may be stopped: the guest's
    /// shell also records its process group (sshd makes it a group leader)
    /// while the command runs, for [`SshTarget::kill_remote`].
    pub fn wrap_killable(&self, command_line: &str, env: &[(String, String)]) -> Wrapped {
        self.wrap_with(command_line, env, true)
    }

    fn wrap_with(&self, command_line: &str, env: &[(String, String)], killable: bool) -> Wrapped {
        let mut token = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut token);
        let token = hex::encode(token);
        let flag = format!("/tmp/.kvmx-exit-255.{token}");
        let group_file = killable.then(|| format!("/tmp/.kvmx-group.{token}"));
        let exports: String = self
            .env
            .iter()
            .chain(env)
            .map(|(name, value)| format!("export {name}={}; ", quote(value)))
            .collect();
        let (record, forget) = match &group_file {
            Some(file) => (format!("echo $$ > {file}; "), format!("rm -f {file}; ")),
            None => (String::new(), String::new()),
        };
        // `:;` keeps the subshell valid for an empty line or a comment; the
        // newline ends a trailing comment or here-document.
        let line = format!(
            "{exports}{record}( :; {command_line}\n); kvmx_status=$?; {forget}\
             [ \"$kvmx_status\" != {SSH_FAILED} ] || : > {flag}; exit \"$kvmx_status\""
        );
        Wrapped {
            line,
            flag,
            group_file,
        }
    }

    /// Kills what a stopped command left running in the guest (its process
    /// group, recorded by [`SshTarget::wrap_killable`]). Best effort and
    /// bounded: a guest that does not answer keeps what it runs.
    pub fn kill_remote(&self, wrapped: &Wrapped) {
        let Some(file) = &wrapped.group_file else {
            return;
        };
        let mut kill = self.command();
        kill.arg("--").arg(format!(
            "group=$(cat {file} 2>/dev/null) && rm -f {file} && kill -KILL -- \"-$group\""
        ));
        let limits = Limits {
            timeout: Some(KILL_TIMEOUT),
            cancel: None,
        };
        let _ = drive(kill, None, &mut Discard, &limits);
    }

    /// The status of a wrapped command that ssh reported: a 255 the guest
    /// confirms is the command's own; another 255 is a transport error,
    /// explained from `stderr` (what ssh said last) when it can be.
    pub fn settle(
        &self,
        status: ExitStatus,
        stderr: &str,
        wrapped: &Wrapped,
    ) -> Result<ExitStatus, Error> {
        if status.code() != Some(SSH_FAILED) {
            return Ok(status);
        }
        if self.flag_was_set(wrapped)? {
            return Ok(status);
        }
        self.explain(status, stderr)?;
        let said = stderr.lines().rev().find(|l| !l.trim().is_empty());
        Err(Error::Transport {
            problem: format!(
                "the SSH connection to the guest on 127.0.0.1:{} failed or dropped before the command ended{}",
                self.port,
                said.map(|s| format!(" (ssh said: {})", s.trim()))
                    .unwrap_or_default()
            ),
            hint: "the guest may have stopped, crashed or hung: see `kvmx status` and `kvmx console`; the command may have run in part".into(),
        })
    }

    /// Whether the guest recorded a status of 255 (removing the record);
    /// `false` when it cannot be asked.
    fn flag_was_set(&self, wrapped: &Wrapped) -> Result<bool, Error> {
        let mut check = self.command();
        check
            .arg("--")
            .arg(format!("test -e {0} && rm -f {0}", wrapped.flag));
        let limits = Limits {
            timeout: Some(CHECK_TIMEOUT),
            cancel: None,
        };
        Ok(matches!(
            drive(check, None, &mut Discard, &limits)?,
            Ended::Exited(status) if status.success()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            user: "user".into(),
            port: 2222,
            keys: Vec::new(),
            known_hosts: "/nonexistent/known_hosts".into(),
            env: vec![("GREETING".into(), "hi there".into())],
            control: None,
        }
    }

    /// Runs a wrapped line with the local `sh`, as the guest's shell would.
    fn run(line: &str, env: &[(String, String)]) -> (Option<i32>, String, bool) {
        let wrapped = target().wrap(line, env);
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&wrapped.line)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let flagged = std::fs::remove_file(&wrapped.flag).is_ok();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            flagged,
        )
    }

    #[test]
    fn a_status_of_255_is_flagged_and_passed_on() {
        assert_eq!(run("exit 255", &[]), (Some(255), String::new(), true));
        assert_eq!(
            run("sh -c 'exit 255'", &[]),
            (Some(255), String::new(), true)
        );
    }

    #[test]
    fn other_statuses_pass_unflagged() {
        assert_eq!(run("exit 4", &[]), (Some(4), String::new(), false));
        assert_eq!(run("true", &[]), (Some(0), String::new(), false));
        // A command killed by a signal: the shell's 128 + 9, not ssh's 255.
        assert_eq!(run("sh -c 'kill -9 $$'", &[]).0, Some(137));
    }

    #[test]
    fn lines_of_any_shape_still_run() {
        assert_eq!(run("", &[]).0, Some(0));
        assert_eq!(run("echo a # a comment", &[]).1, "a\n");
        assert_eq!(run("cat <<EOF\nhere\nEOF", &[]).1, "here\n");
        assert_eq!(run("echo a; exit 3", &[]), (Some(3), "a\n".into(), false));
    }

    #[test]
    fn a_killable_command_records_its_group_only_while_it_runs() {
        let wrapped = target().wrap_killable("test -s {file} || exit 9; exit 3", &[]);
        let file = wrapped.group_file.clone().unwrap();
        let line = wrapped.line.replace("{file}", &file);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(!std::path::Path::new(&file).exists());
    }

    #[test]
    fn the_environment_is_exported_first() {
        let env = [("EXTRA".to_owned(), "$x 'y'".to_owned())];
        assert_eq!(
            run("printf '%s|%s\\n' \"$GREETING\" \"$EXTRA\"", &env).1,
            "hi there|$x 'y'\n"
        );
    }
}
