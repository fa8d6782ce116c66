//! One OpenSSH connection per VM that every ssh, scp and rsync to its
//! guest rides on (`ControlMaster`): one login instead of one per command.
//!
//! kvmx starts the master itself, detached in a process group of its own
//! (so killing a command's group never takes it along), with
//! `ControlPersist=yes` so it outlives the command that needed it, and
//! keep-alives so that a hung guest ends it instead of hanging every
//! command. Its socket is in the VM's runtime folder; [`end_master`] ends
//! it when the VM stops.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use crate::Error;
use crate::ssh::SshTarget;

/// The longest a master may take to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The socket of the master of the VM whose runtime folder is `runtime`.
pub fn master_socket(runtime: &Utf8Path) -> Utf8PathBuf {
    crate::files::ssh_master_socket(runtime)
}

/// Ends the VM's master connection, if one runs; called when the VM stops
/// or is killed. Never fails: a master whose guest is gone ends by itself
/// once its keep-alives go unanswered.
pub fn end_master(runtime: &Utf8Path) {
    let socket = master_socket(runtime);
    if !socket.exists() {
        return;
    }
    let _ = control(&socket, "exit")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&socket);
}

/// `ssh -O <operation>` on the master behind `socket`.
fn control(socket: &Utf8Path, operation: &str) -> Command {
    let mut command = Command::new("ssh");
    command
        .args(["-F", "/dev/null", "-o"])
        .arg(format!("ControlPath={socket}"))
        .args(["-O", operation, "kvmx-guest"]);
    command
}

impl SshTarget {
    /// Whether a master answers on this target's control socket.
    pub fn master_alive(&self) -> bool {
        self.control.as_deref().is_some_and(|socket| {
            socket.exists()
                && control(socket, "check")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
        })
    }

    /// Makes sure the master connection runs, starting it (and waiting
    /// until it has logged in) when it does not. Without a control socket
    /// there is nothing to do.
    pub fn ensure_master(&self) -> Result<(), Error> {
        let Some(socket) = &self.control else {
            return Ok(());
        };
        // OpenSSH binds the socket under a name 17 bytes longer before it
        // renames it; past a unix socket's 107 bytes there is no master,
        // and each command logs in alone.
        if socket.as_str().len() + 17 > 107 {
            return Ok(());
        }
        if self.master_alive() {
            return Ok(());
        }
        let runtime = socket.parent().unwrap_or(Utf8Path::new("."));
        let lock_path = crate::files::ssh_master_lock(runtime);
        let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
        lock.lock().map_err(Error::io("lock", &lock_path))?;
        if self.master_alive() {
            return Ok(());
        }
        // A socket left by a master that died is in the way.
        let _ = std::fs::remove_file(socket);
        let log_path = crate::files::ssh_master_log(runtime);
        let log = File::create(&log_path).map_err(Error::io("create", &log_path))?;
        let mut login = self
            .master_command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "ssh".into(),
                source,
            })?;
        // With -f the first process exits once logged in, leaving the
        // master in the background.
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        let status = loop {
            let exited = login.try_wait().map_err(|source| Error::Spawn {
                program: "ssh".into(),
                source,
            })?;
            if let Some(status) = exited {
                break status;
            }
            if Instant::now() > deadline {
                let _ = login.kill();
                let _ = login.wait();
                return Err(Error::Transport {
                    problem: format!(
                        "the guest on port {} did not let SSH log in within {} s",
                        self.port,
                        LOGIN_TIMEOUT.as_secs()
                    ),
                    hint: "the guest may be hung or overloaded: see `kvmx console`, or restart it with `kvmx restart`".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.success() {
            return Ok(());
        }
        let said = std::fs::read_to_string(&log_path).unwrap_or_default();
        self.explain(status, &said)?;
        Err(Error::Transport {
            problem: format!(
                "ssh could not log in to the guest on port {} ({status}): {}",
                self.port,
                said.trim()
            ),
            hint: format!("see {log_path}; `kvmx status` and `kvmx console` show how the guest is"),
        })
    }

    /// The `ssh` command that logs in and becomes the master: detached
    /// (`-f`) once logged in, in a process group of its own, kept until
    /// [`end_master`] or until its guest stops answering.
    pub(crate) fn master_command(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.base_options());
        if let Some(socket) = &self.control {
            for option in [
                "ControlMaster=yes".to_owned(),
                format!("ControlPath={socket}"),
                "ControlPersist=yes".to_owned(),
            ] {
                command.arg("-o").arg(option);
            }
        }
        // Only the master exchanges keys; the hybrid post-quantum exchange
        // is slow in an emulated guest and protects nothing on loopback.
        // (Not in the shared options: its `^` breaks rsync's `-e`.)
        command
            .args(["-o", "KexAlgorithms=^curve25519-sha256", "-N", "-f"])
            .args(self.identity_options())
            .arg("-p")
            .arg(self.port.to_string())
            .arg(self.destination())
            .process_group(0);
        command
    }
}
