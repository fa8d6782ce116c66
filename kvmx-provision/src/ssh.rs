//! Reaching the guest with the system `ssh`: the VM's own key, and its
//! recorded host key checked strictly from the first connection.

use std::process::{Command, Stdio};

use camino::Utf8PathBuf;

/// How to reach a guest's sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// User to log in as.
    pub user: String,
    /// Host port forwarded to the guest's port 22.
    pub port: u16,
    /// The VM's private key.
    pub key: Utf8PathBuf,
    /// known_hosts with the guest's host key.
    pub known_hosts: Utf8PathBuf,
    /// Environment for commands in the guest.
    pub env: Vec<(String, String)>,
}

impl SshTarget {
    /// An `ssh` command with every option set; the caller adds the remote
    /// command (or nothing, for a login).
    pub fn command(&self) -> Command {
        let mut command = Command::new("ssh");
        command.args(["-F", "/dev/null"]);
        for option in [
            "StrictHostKeyChecking=yes".to_owned(),
            format!("UserKnownHostsFile={}", self.known_hosts),
            "GlobalKnownHostsFile=/dev/null".to_owned(),
            format!("HostKeyAlias={}", self.host_key_alias()),
            "IdentitiesOnly=yes".to_owned(),
            "LogLevel=ERROR".to_owned(),
            "ConnectTimeout=10".to_owned(),
        ] {
            command.arg("-o").arg(option);
        }
        for (name, value) in &self.env {
            command.arg("-o").arg(format!("SetEnv={name}={value}"));
        }
        command
            .arg("-i")
            .arg(&self.key)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user));
        command
    }

    /// Whether the guest answers: logs in and runs `true`.
    pub fn answers(&self) -> bool {
        self.command()
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
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
