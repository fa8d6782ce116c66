//! Shares over SSH, needing no device in the VM:
//!
//! * `sshfs`: a guest folder mounted on the host with the host's sshfs;
//! * `reverse-sshfs`: a host folder mounted in the guest. The guest's sshfs
//!   runs in passive mode over the VM's SSH connection, talking SFTP to the
//!   host's `sftp-server` through two pipes; nothing listens on the host.
//!
//! Both end with the SSH connection, so they end with the VM.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvmx_core::config::{Share, ShareKind};

use crate::guest::{Discard, quote};
use crate::{Error, Provider, ShareProblem, Vm};

/// How long sshfs may take to mount a guest folder on the host.
const MOUNT_DEADLINE: Duration = Duration::from_secs(60);

/// OpenSSH's SFTP server on Debian.
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

impl Vm {
    fn shares_of(&self, kind: ShareKind) -> impl Iterator<Item = &Share> {
        self.config.shares.iter().filter(move |s| s.kind() == kind)
    }

    /// Mounts the `sshfs` and `reverse-sshfs` shares of a running VM.
    pub fn mount_ssh_shares(&self) -> Result<(), Error> {
        for share in self.shares_of(ShareKind::Sshfs) {
            self.mount_on_host(share)?;
        }
        for share in self.shares_of(ShareKind::ReverseSshfs) {
            self.mount_in_guest(share)?;
        }
        Ok(())
    }

    /// Unmounts the `sshfs` shares from the host (the guest side goes with
    /// the VM).
    pub fn unmount_ssh_shares(&self) {
        for share in self.shares_of(ShareKind::Sshfs) {
            for program in [
                &["fusermount3", "-u"][..],
                &["fusermount", "-u"],
                &["umount"],
            ] {
                let done = Command::new(program[0])
                    .args(&program[1..])
                    .arg(&share.host)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if done {
                    break;
                }
            }
        }
    }

    fn mount_on_host(&self, share: &Share) -> Result<(), Error> {
        let target = self.ssh_target()?;
        let shell: Vec<String> = std::iter::once("ssh".to_owned())
            .chain(target.options())
            .chain(["-p".to_owned(), target.port.to_string()])
            .collect();
        let mut options = format!("ssh_command={},reconnect", shell.join(" "));
        if share.read_only {
            options.push_str(",ro");
        }
        // sshfs returns once mounted, within a deadline. Its ssh child
        // keeps the stderr it inherits, so that goes to a log in the
        // runtime folder (never the terminal), whose end the error carries.
        let log = self.files.sshfs_log(share.id.as_str());
        let said = std::fs::File::create(&log).map_err(Error::io("create", &log))?;
        let mut sshfs = Command::new("sshfs");
        sshfs
            .arg("-o")
            .arg(options)
            .arg(format!("{}:{}", target.destination(), share.guest))
            .arg(&share.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(said);
        let ended = crate::host::run_within(&mut sshfs, MOUNT_DEADLINE).map_err(|source| {
            match source.kind() {
                std::io::ErrorKind::NotFound => Error::MissingTool {
                    program: "sshfs".into(),
                    needed_by: format!("the sshfs share {}", share.id),
                    provider: Provider::Debian("sshfs"),
                },
                _ => Error::Spawn {
                    program: "sshfs".into(),
                    source,
                },
            }
        })?;
        if ended.is_some_and(|status| status.success()) {
            return Ok(());
        }
        let how = match ended {
            Some(status) => status.to_string(),
            None => format!("no answer within {} s", MOUNT_DEADLINE.as_secs()),
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail = crate::state::last_lines(&text, 3).join(" / ");
        Err(Error::Share {
            share: share.id.to_string(),
            problem: ShareProblem::HostMount {
                guest: share.guest.to_string(),
                host: share.host.clone(),
                said: format!("{how}; {tail}"),
            },
        })
    }

    fn mount_in_guest(&self, share: &Share) -> Result<(), Error> {
        let target = self.ssh_target()?;
        let guest = quote(share.guest.as_path().as_str());
        let ro = if share.read_only { ",ro" } else { "" };
        if !std::path::Path::new(SFTP_SERVER).exists() {
            return Err(Error::MissingTool {
                program: SFTP_SERVER.into(),
                needed_by: format!("the reverse-sshfs share {}", share.id),
                provider: Provider::Debian("openssh-sftp-server"),
            });
        }
        crate::provision::make_mount_point(&target, share)?;
        let mut sftp = Command::new(SFTP_SERVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: SFTP_SERVER.into(),
                source,
            })?;
        let to_sftp = sftp.stdin.take().expect("stdin is piped");
        let from_sftp = sftp.stdout.take().expect("stdout is piped");
        let mut ssh = target.command();
        ssh.arg("-o")
            .arg("BatchMode=yes")
            .arg("--")
            .arg(format!(
                "sudo sshfs -f -o passive,allow_other{ro} {} {guest}",
                quote(&format!(":{}", share.host))
            ))
            .stdin(from_sftp)
            .stdout(to_sftp)
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: "ssh".into(),
                source,
            })?;
        // The mount is up when the guest sees it.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mounted = target.run(&format!("mountpoint -q {guest}"), &mut Discard)?;
            if mounted.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = sftp.kill();
                return Err(Error::Share {
                    share: share.id.to_string(),
                    problem: ShareProblem::ReverseMount {
                        host: share.host.clone(),
                        guest: share.guest.to_string(),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
