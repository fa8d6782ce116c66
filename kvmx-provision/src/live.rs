//! Live mounts: a host folder made to appear in a running guest, with no
//! reboot. QEMU cannot add a 9p device at run time, so this goes through
//! virtiofs: a new virtiofsd, then QMP `chardev-add` and `device_add
//! vhost-user-fs-pci` (guest memory is shared from boot for this), then a
//! mount in the guest. The mounts of a run are listed in its runtime
//! folder, so they end with it.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::atomic_file::{self, Overwrite};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::guest::{Discard, quote};
use crate::qmp::commands::{ChardevAdd, ChardevRemove, DeviceAdd, DeviceDel};
use crate::{Error, ShareProblem, Vm};

/// How long the guest gets to release a live mount's device.
const UNPLUG_DEADLINE: Duration = Duration::from_secs(30);

/// A folder shared with the guest, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The share id (the virtiofs or 9p tag).
    pub id: String,
    /// Folder on the host.
    pub host: Utf8PathBuf,
    /// Folder in the guest.
    pub guest: String,
    /// How it is shared: `9p`, `virtiofs`, ...
    pub kind: String,
    /// `at start` (in the config) or `live` (`kvmx mount`).
    pub when: String,
    /// Read-only.
    pub read_only: bool,
}

impl Vm {
    fn live_file(&self) -> Utf8PathBuf {
        self.files.live_mounts()
    }

    /// The folders added with [`Vm::mount`] during this run.
    pub fn live_mounts(&self) -> Vec<Mount> {
        std::fs::read_to_string(self.live_file())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    fn save_live_mounts(&self, mounts: &[Mount]) -> Result<(), Error> {
        let text = serde_json::to_vec_pretty(mounts).expect("mounts serialize");
        Ok(atomic_file::write(
            &self.live_file(),
            &text,
            Overwrite::Yes,
        )?)
    }

    /// Every share: the configured ones, then the live ones.
    pub fn mounts(&self) -> Vec<Mount> {
        let mut mounts: Vec<Mount> = self
            .config
            .shares
            .iter()
            .map(|share| Mount {
                id: share.id.to_string(),
                host: share.host.clone(),
                guest: share.guest.to_string(),
                kind: kvmx_core::config::spelling(&share.kind()),
                when: "at start".into(),
                read_only: share.read_only,
            })
            .collect();
        mounts.extend(self.live_mounts());
        mounts
    }

    /// Makes host folder `host` appear at `guest` in the running guest.
    pub fn mount(&self, host: &Utf8Path, guest: &str) -> Result<Mount, Error> {
        self.require_running_state()?;
        if !guest.starts_with('/') {
            return Err(Error::Usage(format!(
                "the guest folder {guest} must be an absolute path"
            )));
        }
        if !host.is_dir() {
            return Err(Error::Usage(format!(
                "the host folder {host} does not exist"
            )));
        }
        let mut mounts = self.live_mounts();
        if self.mounts().iter().any(|m| m.guest == guest) {
            return Err(Error::Usage(format!(
                "something is already mounted at {guest}"
            )));
        }
        let id = (0..)
            .map(|n| format!("live{n}"))
            .find(|id| !mounts.iter().any(|m| &m.id == id))
            .expect("a free id");
        let socket = self.files.virtiofs_socket(&id);
        crate::files::check_socket_path(socket.clone())?;
        let log = self.files.virtiofsd_log(&id);
        crate::virtiofs::start(&socket, host, false, &log)?;
        let mut qmp = self.qmp()?;
        qmp.execute(&ChardevAdd::unix_client(
            format!("vfs-{id}"),
            socket.as_str(),
        ))?;
        qmp.execute(&DeviceAdd(json!({
            "driver": "vhost-user-fs-pci",
            "id": format!("dev-{id}"),
            "chardev": format!("vfs-{id}"),
            "tag": id,
            "queue-size": crate::virtiofs::QUEUE_SIZE
        })))?;
        let target = self.ssh_target()?;
        let quoted = quote(guest);
        // The guest sees the new PCI device a moment after QEMU adds it.
        let mount = format!(
            "sudo mkdir -p {quoted} && {{ for i in $(seq 50); do sudo mount -t virtiofs {id} {quoted} 2>/dev/null && break; sleep 0.2; done; mountpoint -q {quoted} || sudo mount -t virtiofs {id} {quoted}; }} && {}",
            crate::virtiofs::read_ahead_command(&quoted)
        );
        let status = target.run(&mount, &mut Discard)?;
        if !status.success() {
            let _ = self.unplug(&id);
            return Err(Error::Share {
                share: id,
                problem: ShareProblem::LiveMount {
                    guest: guest.to_owned(),
                },
            });
        }
        let added = Mount {
            id,
            host: host.to_owned(),
            guest: guest.to_owned(),
            kind: "virtiofs".into(),
            when: "live".into(),
            read_only: false,
        };
        mounts.push(added.clone());
        self.save_live_mounts(&mounts)?;
        Ok(added)
    }

    /// Unmounts a live mount at `guest` and removes its device.
    pub fn umount(&self, guest: &str) -> Result<Mount, Error> {
        self.require_running_state()?;
        let mut mounts = self.live_mounts();
        let Some(index) = mounts.iter().position(|m| m.guest == guest) else {
            let configured = self
                .config
                .shares
                .iter()
                .any(|s| s.guest.as_path() == guest);
            return Err(Error::Usage(if configured {
                format!("{guest} is a configured share; remove it from kvmx.toml instead")
            } else {
                format!("nothing was mounted at {guest} with `kvmx mount`")
            }));
        };
        let status = self
            .ssh_target()?
            .run(&format!("sudo umount {}", quote(guest)), &mut Discard)?;
        if !status.success() {
            return Err(Error::Share {
                share: mounts[index].id.clone(),
                problem: ShareProblem::LiveUnmount {
                    guest: guest.to_owned(),
                },
            });
        }
        let removed = mounts.remove(index);
        self.unplug(&removed.id)?;
        self.save_live_mounts(&mounts)?;
        Ok(removed)
    }

    /// Removes the device and chardev of live mount `id`.
    fn unplug(&self, id: &str) -> Result<(), Error> {
        let mut qmp = self.qmp()?;
        let device = format!("dev-{id}");
        // The chardev is busy until the guest has released the device,
        // which DEVICE_DELETED tells.
        if qmp.execute(&DeviceDel { id: device.clone() }).is_ok() {
            qmp.wait_event("DEVICE_DELETED", UNPLUG_DEADLINE, |event| {
                event.data["device"] == device.as_str()
            })?;
        }
        qmp.execute(&ChardevRemove {
            id: format!("vfs-{id}"),
        })?;
        Ok(())
    }

    fn require_running_state(&self) -> Result<(), Error> {
        if self.status()?.state != crate::State::Running {
            return Err(Error::NotRunning {
                vm: self.name.to_string(),
            });
        }
        Ok(())
    }
}
