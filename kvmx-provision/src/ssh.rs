//! Reaching the guest with the system `ssh`: the VM's own key, and its
//! recorded host key checked strictly from the first connection.

mod exit;
mod master;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use camino::Utf8PathBuf;

pub use exit::Wrapped;
pub use master::{end_master, master_socket};

use crate::Error;
use crate::guest::words::quote;

/// The exit status of `ssh` when ssh itself (not the remote command) fails.
pub(crate) const SSH_FAILED: i32 = 255;

/// Seconds between keep-alives on an idle connection, and how many may go
/// unanswered before ssh gives up: a hung guest ends a connection (and the
/// master) within about 30 s instead of hanging kvmx.
const ALIVE_INTERVAL: u32 = 10;
const ALIVE_COUNT: u32 = 3;

/// How to reach a guest's sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// User to log in as.
    pub user: String,
    /// Host port forwarded to the guest's port 22.
    pub port: u16,
    /// Private keys to try: the VM's own, then its base box's (an image
    /// made from a base trusts the base's key).
    pub keys: Vec<Utf8PathBuf>,
    /// known_hosts with the guest's host key.
    pub known_hosts: Utf8PathBuf,
    /// Environment for commands in the guest.
    pub env: Vec<(String, String)>,
    /// The socket of the master connection through which every ssh to
    /// this guest shares one login, when one runs (see
    /// [`SshTarget::ensure_master`]); without a master, each ssh logs in by
    /// itself.
    pub control: Option<Utf8PathBuf>,
}

impl SshTarget {
    /// The options every ssh-based tool (ssh, scp, rsync) needs: no user
    /// config, strict host key checking against the VM's known_hosts, the
    /// VM's keys only, keep-alives, and the master connection when one runs.
    pub fn options(&self) -> Vec<String> {
        let mut options = self.base_options();
        if let Some(socket) = &self.control {
            // Rides the master when it runs, logs in alone when not; never
            // becomes a master itself (see `master`).
            for option in [
                "ControlMaster=no".to_owned(),
                format!("ControlPath={socket}"),
            ] {
                options.push("-o".into());
                options.push(option);
            }
        }
        options.extend(self.identity_options());
        options
    }

    /// The options of every ssh, master or not. (ssh takes the first value
    /// it is given for an option, so the control options are left to the
    /// caller.)
    fn base_options(&self) -> Vec<String> {
        let mut options = vec!["-F".to_owned(), "/dev/null".to_owned()];
        for option in [
            "StrictHostKeyChecking=yes".to_owned(),
            format!("UserKnownHostsFile={}", self.known_hosts),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            format!("HostKeyAlias={}", self.host_key_alias()),
            "IdentitiesOnly=yes".to_owned(),
            "BatchMode=yes".to_owned(),
            "LogLevel=ERROR".to_owned(),
            "ConnectTimeout=10".to_owned(),
            format!("ServerAliveInterval={ALIVE_INTERVAL}"),
            format!("ServerAliveCountMax={ALIVE_COUNT}"),
        ] {
            options.push("-o".into());
            options.push(option);
        }
        options
    }

    /// `-i KEY` for each of the VM's keys.
    fn identity_options(&self) -> Vec<String> {
        self.keys
            .iter()
            .flat_map(|key| ["-i".to_owned(), key.to_string()])
            .collect()
    }

    /// `user@127.0.0.1`.
    pub fn destination(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// An `ssh` command with every option set; the caller adds the remote
    /// command (or nothing, for a login).
    pub fn command(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.options());
        command
            .arg("-p")
            .arg(self.port.to_string())
            .arg(self.destination());
        command
    }

    /// `command_line` with `ssh.env` exported before it. (OpenSSH's
    /// `SetEnv` would need `AcceptEnv` in the guest's sshd.)
    pub fn with_env(&self, command_line: &str) -> String {
        let exports: String = self
            .env
            .iter()
            .map(|(name, value)| format!("export {name}={}; ", quote(value)))
            .collect();
        format!("{exports}{command_line}")
    }

    /// The remote shell for `rsync -e`, quoted for rsync's word splitting.
    pub fn rsync_shell(&self) -> String {
        let mut words = vec!["ssh".to_owned()];
        words.extend(self.options());
        words.push("-p".into());
        words.push(self.port.to_string());
        words
            .iter()
            .map(|w| shlex::try_quote(w).map_or_else(|_| w.clone(), |q| q.into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An `scp` command (SFTP protocol) with every option set.
    pub fn scp(&self) -> Command {
        let mut command = Command::new("scp");
        command
            .args(self.options())
            .arg("-P")
            .arg(self.port.to_string());
        command
    }

    /// Whether the guest's sshd greets a connection within `patience`: a
    /// cheap test, without a login, of whether sshd listens yet. (QEMU's
    /// user network accepts the connection itself and closes it, or holds
    /// it, while the guest's port is closed; only sshd sends `SSH-`.)
    pub fn greets(&self, patience: Duration) -> bool {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, patience) else {
            return false;
        };
        let mut banner = [0u8; 4];
        stream.set_read_timeout(Some(patience)).is_ok()
            && stream.read_exact(&mut banner).is_ok()
            && &banner == b"SSH-"
    }

    /// Whether the guest answers: logs in and runs `true`.
    pub fn answers(&self) -> bool {
        self.command()
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts a login and returns at once. With a control socket the login
    /// becomes the master connection, left in the background for later
    /// commands to ride on (the child exits once logged in); without one it
    /// runs `true`. Either way the child's status says whether the guest
    /// let it in.
    pub fn spawn_login(&self) -> Result<Child, Error> {
        let mut command = if self.control.is_some() {
            self.master_command()
        } else {
            let mut command = self.command();
            command.arg("true");
            command
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "ssh".into(),
                source,
            })
    }

    /// The same target reached by a login of its own, not through a shared
    /// connection.
    pub fn unshared(&self) -> SshTarget {
        SshTarget {
            control: None,
            ..self.clone()
        }
    }

    /// An OpenSSH config block so other tools can reach the guest as
    /// `host`.
    pub fn config_block(&self, host: &str) -> String {
        let identities: String = self
            .keys
            .iter()
            .map(|key| format!("  IdentityFile {key}\n"))
            .collect();
        format!(
            "Host {host}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n{identities}  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  HostKeyAlias {}\n  StrictHostKeyChecking yes\n",
            self.port,
            self.user,
            self.known_hosts,
            self.host_key_alias()
        )
    }

    /// Turns a failure of ssh itself (status 255, recognised from the last
    /// lines it printed on stderr) into a transport error that says what to
    /// do; passes any other status on. (A remote command's own 255 is told
    /// apart by [`crate::guest::Guest`]'s commands, see `ssh::exit`.)
    pub fn explain(&self, status: ExitStatus, stderr: &str) -> Result<ExitStatus, Error> {
        if status.code() != Some(SSH_FAILED) {
            return Ok(status);
        }
        let said = |words: &[&str]| words.iter().any(|w| stderr.contains(w));
        let port = self.port;
        let (problem, hint) = if said(&[
            "Host key verification failed",
            "IDENTIFICATION HAS CHANGED",
        ]) {
            (
                format!(
                    "the guest on port {port} offered an SSH host key that differs from the one kvmx recorded in {}",
                    self.known_hosts
                ),
                format!(
                    "the guest's host keys were changed behind kvmx's back, or something else answers for it. If you changed them yourself, replace the key in {} with the output of `ssh-keyscan -p {port} 127.0.0.1` (keeping the name {}), or rebuild the VM with `kvmx recycle`; otherwise do not trust this guest",
                    self.known_hosts,
                    self.host_key_alias()
                ),
            )
        } else if said(&["Permission denied"]) {
            (
                format!("the guest refused the VM's SSH key for user {}", self.user),
                "check ssh.user, and that the user's ~/.ssh/authorized_keys in the guest still holds the VM's key".into(),
            )
        } else if said(&[
            "Connection refused",
            "Connection reset",
            "Connection closed",
            "Connection timed out",
            "kex_exchange_identification",
            "timed out",
        ]) {
            (
                format!("the guest does not answer SSH (127.0.0.1:{port} is forwarded to its port 22)"),
                "sshd may be stopped, or the guest still booting or hung: look at `kvmx console`, or restart it with `kvmx restart`".into(),
            )
        } else {
            return Ok(status);
        };
        Err(Error::Transport { problem, hint })
    }

    /// The name the host key is recorded under: the first field of the
    /// known_hosts line that `kvmx-create` wrote.
    fn host_key_alias(&self) -> String {
        std::fs::read_to_string(&self.known_hosts)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| !line.trim().is_empty() && !line.starts_with('#'))
                    .and_then(|line| line.split_whitespace().next())
                    .map(|host| host.split(',').next().unwrap_or(host).to_owned())
            })
            .unwrap_or_else(|| "127.0.0.1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsync_can_split_its_remote_shell() {
        let target = SshTarget {
            user: "user".into(),
            port: 2222,
            keys: vec!["/kvmx/data/vm/ssh/id_ed25519".into()],
            known_hosts: "/kvmx/data/vm/ssh/known_hosts".into(),
            env: Vec::new(),
            control: Some("/kvmx/run/vm/ssh.sock".into()),
        };
        // rsync splits `-e` itself and knows only whole quoted words: a
        // shell's `'a''^b'` reaches ssh with its quotes.
        for word in target.rsync_shell().split(' ') {
            let inner = word
                .strip_prefix('\'')
                .and_then(|w| w.strip_suffix('\''))
                .unwrap_or(word);
            assert!(!inner.contains('\''), "{word}");
        }
    }
}
