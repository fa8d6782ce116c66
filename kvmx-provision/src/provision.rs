//! Provisioning and the start/power-off hooks: rsync pairs, commands, 9p
//! mounts, run in the guest over SSH.

use std::process::ExitStatus;
use std::time::{SystemTime, UNIX_EPOCH};

use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::config::{P9Cache, Share, ShareKind, SyncFolder};
use serde::{Deserialize, Serialize};

use crate::guest::{Guest, OutputSink, quote};
use crate::ssh::SshTarget;
use crate::{Error, ShareProblem, Vm};

/// When and with which config the VM was last provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRecord {
    /// Seconds since the epoch.
    pub at: u64,
    /// A digest of the `[provision]` table that was used.
    pub config: String,
}

/// A step of provisioning or of a hook that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step} failed with exit status {code}")]
pub struct StepFailed {
    /// What ran.
    pub step: String,
    /// Its exit status (-1 when killed by a signal).
    pub code: i32,
}

pub(crate) fn check(step: String, status: ExitStatus) -> Result<(), Error> {
    if status.success() {
        return Ok(());
    }
    Err(Error::Step(StepFailed {
        step,
        code: status.code().unwrap_or(-1),
    }))
}

impl Vm {
    /// The last provisioning, if any.
    pub fn last_provisioned(&self) -> Option<ProvisionRecord> {
        let text = std::fs::read_to_string(self.files.provision_record()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Runs the rsync pairs, then the provision command; stops at the first
    /// failure. Records the run when it succeeds.
    pub fn provision(&self, sink: &mut dyn OutputSink) -> Result<(), Error> {
        let guest = self.guest()?;
        let provision = &self.config.provision;
        for pair in &provision.rsync {
            guest.run(
                &format!("sudo mkdir -p {}", quote(pair.guest.as_path().as_str())),
                sink,
            )?;
            let status = guest.rsync_to(
                pair.host.as_str(),
                pair.guest.as_path().as_str(),
                &provision.rsync_options,
                sink,
            )?;
            check(format!("rsync of {} to {}", pair.host, pair.guest), status)?;
        }
        if let Some(command) = &provision.command {
            check(
                format!("the provision command `{command}`"),
                guest.run(command, sink)?,
            )?;
        }
        let record = ProvisionRecord {
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            config: digest(&serde_json::to_string(provision).unwrap_or_default()),
        };
        let path = self.files.provision_record();
        let text = serde_json::to_vec_pretty(&record).expect("records serialize");
        atomic_file::write(&path, &text, Overwrite::Yes)?;
        Ok(())
    }

    /// Whether `up` should provision: always when asked to, else when the
    /// image was never provisioned.
    pub fn wants_provision(&self) -> bool {
        let provision = &self.config.provision;
        let has_work = provision.command.is_some() || !provision.rsync.is_empty();
        has_work && (provision.always || self.last_provisioned().is_none())
    }

    /// The start hooks, once the guest answers SSH: mount the 9p shares,
    /// copy the startup folders, run the startup command.
    pub fn startup_hooks(&self, sink: &mut dyn OutputSink) -> Result<(), Error> {
        self.mount_private_disk(sink)?;
        let guest = self.guest()?;
        for share in &self.config.shares {
            // The NFS server's secret goes on stdin, not on a command line.
            let nfs = match share.kind() {
                ShareKind::Nfs => Some(
                    crate::nfs::server(&self.files.paths.runtime, share.id.as_str()).ok_or_else(
                        || Error::Share {
                            share: share.id.to_string(),
                            problem: ShareProblem::NfsServerGone,
                        },
                    )?,
                ),
                _ => None,
            };
            let (fstype, mut options) = match (share.kind(), &nfs) {
                (ShareKind::Virtiofs, _) => ("virtiofs", String::new()),
                (ShareKind::NineP, _) => ("9p", nine_p_options(share)),
                (ShareKind::Smb, _) => ("cifs", "guest,vers=3.0,uid=$(id -u),gid=$(id -g)".into()),
                (ShareKind::Nfs, Some(server)) => ("nfs", server.mount_options()),
                _ => continue,
            };
            if share.read_only {
                options.push_str(if options.is_empty() { "ro" } else { ",ro" });
            }
            let options = if options.is_empty() {
                String::new()
            } else {
                format!(" -o {options}")
            };
            make_mount_point(guest.target(), share)?;
            let mount_point = quote(share.guest.as_path().as_str());
            // QEMU's SMB server is at 10.0.2.4 and names its share "qemu".
            let source = match share.kind() {
                ShareKind::Smb => "//10.0.2.4/qemu".to_owned(),
                ShareKind::Nfs => "\"$(head -n1)\"".to_owned(),
                _ => share.id.to_string(),
            };
            let mut mount = format!(
                "mountpoint -q {mount_point} || sudo mount -t {fstype}{options} {source} {mount_point}"
            );
            if share.kind() == ShareKind::Virtiofs {
                mount = format!(
                    "{{ {mount}; }} && {}",
                    crate::virtiofs::read_ahead_command(&mount_point)
                );
            }
            let input = nfs.map(|server| format!("{}\n", server.source()));
            check(
                format!("mounting share {} at {}", share.id, share.guest),
                guest.run_with_input(&mount, input.as_deref(), sink)?,
            )?;
        }
        self.mount_ssh_shares()?;
        sync(&guest, &self.config.hooks.startup_rsync, true, sink)?;
        if let Some(command) = &self.config.hooks.startup_command {
            check(
                format!("the startup command `{command}`"),
                guest.run(command, sink)?,
            )?;
        }
        Ok(())
    }

    /// The power-off hooks: the pre-poweroff command, then the folders
    /// copied back to the host.
    pub fn poweroff_hooks(&self, sink: &mut dyn OutputSink) -> Result<(), Error> {
        let guest = self.guest()?;
        if let Some(command) = &self.config.hooks.pre_poweroff_command {
            check(
                format!("the pre-poweroff command `{command}`"),
                guest.run(command, sink)?,
            )?;
        }
        sync(&guest, &self.config.hooks.poweroff_rsync, false, sink)
    }

    /// Whether any power-off hook is configured.
    pub fn has_poweroff_hooks(&self) -> bool {
        let hooks = &self.config.hooks;
        hooks.pre_poweroff_command.is_some() || !hooks.poweroff_rsync.is_empty()
    }
}

/// Makes the folder `share.guest` in the guest, unless it is there;
/// refuses a path that is something else than a folder.
pub(crate) fn make_mount_point(target: &SshTarget, share: &Share) -> Result<(), Error> {
    const NOT_A_FOLDER: i32 = 3;
    let guest = quote(share.guest.as_path().as_str());
    let status = target.run(
        &format!(
            "if test -e {guest} && ! test -d {guest}; then exit {NOT_A_FOLDER}; fi; sudo mkdir -p {guest}"
        ),
        &mut crate::guest::Discard,
    )?;
    match status.code() {
        Some(0) => Ok(()),
        Some(NOT_A_FOLDER) => Err(Error::Share {
            share: share.id.to_string(),
            problem: ShareProblem::MountPointIsFile {
                guest: share.guest.to_string(),
            },
        }),
        _ => Err(Error::Share {
            share: share.id.to_string(),
            problem: ShareProblem::MountPoint {
                guest: share.guest.to_string(),
            },
        }),
    }
}

/// 9p's largest message when the share sets none: 128 KiB, the kernel's
/// default and Lima's. 512 KiB reads a large file faster but walks many
/// small files about twice as slowly under TCG (`bench/shares.sh`).
pub const NINE_P_MSIZE: u32 = 128 * 1024;

/// 9p's cache mode when the share sets none: `mmap` (Lima's choice for
/// writable mounts) caches nothing but mapped pages, so the guest sees a
/// change the host makes at once, as with `none`, and programs that map
/// files writable (databases, compilers) work, which `none` refuses.
pub const NINE_P_CACHE: P9Cache = P9Cache::Mmap;

/// The mount options of a 9p share.
fn nine_p_options(share: &Share) -> String {
    let msize = share.msize.unwrap_or(NINE_P_MSIZE);
    let cache = kvmx_core::config::spelling(&share.cache.unwrap_or(NINE_P_CACHE));
    format!("trans=virtio,version=9p2000.L,msize={msize},cache={cache}")
}

fn sync(
    guest: &Guest,
    folders: &[SyncFolder],
    to_guest: bool,
    sink: &mut dyn OutputSink,
) -> Result<(), Error> {
    for folder in folders {
        let guest_side = format!(":{}", folder.guest);
        let (from, to) = if to_guest {
            guest.run(
                &format!("sudo mkdir -p {}", quote(folder.guest.as_path().as_str())),
                sink,
            )?;
            (folder.host.to_string(), guest_side)
        } else {
            std::fs::create_dir_all(&folder.host).map_err(Error::io("create", &folder.host))?;
            (guest_side, folder.host.to_string())
        };
        // The contents, not the folder itself.
        let from = if from.ends_with('/') {
            from
        } else {
            format!("{from}/")
        };
        let status = guest.target().rsync(&from, &to, &[], sink)?;
        check(format!("rsync of {} ({from} to {to})", folder.id), status)?;
    }
    Ok(())
}

/// A short, stable digest (FNV-1a) of `text`, to tell configs apart.
pub(crate) fn digest(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}
