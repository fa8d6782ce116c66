//! Every file kvmx keeps for a VM, named in one place. The runtime folder
//! (mode 0700, gone at reboot) holds sockets, locks, the run's state, the
//! daemons' records and logs; the data folder holds what outlives a run
//! (console log, provisioning record, disposable record, overlays, warm
//! states). Functions keyed by the runtime folder serve code that has only
//! that folder (the QEMU command line, daemons).

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::ShareKind;
use kvmx_core::config::values::VmName;
use kvmx_core::layout::{Layout, SOCKET_PATH_MAX, VmPaths};

use crate::Error;

/// Where one VM's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFiles {
    /// The VM's data and runtime folders.
    pub paths: VmPaths,
}

/// The vhost-user socket of virtiofs share (or live mount) `id`.
pub fn virtiofs_socket(runtime: &Utf8Path, id: &str) -> Utf8PathBuf {
    runtime.join(format!("vfs-{id}.sock"))
}

/// The log of the virtiofsd of share (or live mount) `id`.
pub fn virtiofsd_log(runtime: &Utf8Path, id: &str) -> Utf8PathBuf {
    runtime.join(format!("virtiofsd-{id}.log"))
}

/// The record (port, secret, pid) of the NFS server of share `id`.
pub fn nfs_record(runtime: &Utf8Path, id: &str) -> Utf8PathBuf {
    runtime.join(format!("nfs-{id}.json"))
}

/// The log of the NFS server of share `id`.
pub fn nfs_log(runtime: &Utf8Path, id: &str) -> Utf8PathBuf {
    runtime.join(format!("nfs-{id}.log"))
}

/// The socket of the VM's SSH master connection.
pub fn ssh_master_socket(runtime: &Utf8Path) -> Utf8PathBuf {
    runtime.join("ssh.sock")
}

/// Taken while the SSH master is checked and started.
pub fn ssh_master_lock(runtime: &Utf8Path) -> Utf8PathBuf {
    runtime.join("ssh-master.lock")
}

/// What the SSH master said.
pub fn ssh_master_log(runtime: &Utf8Path) -> Utf8PathBuf {
    runtime.join("ssh-master.log")
}

/// The base of the clock port's FIFOs (`.in`, `.out`).
pub fn clock_pipe(runtime: &Utf8Path) -> Utf8PathBuf {
    runtime.join("clock")
}

/// The host end of the agent's virtio-serial port (see `agent.rs`).
pub fn agent_socket(runtime: &Utf8Path) -> Utf8PathBuf {
    runtime.join("agent.sock")
}

/// The warm states of a template whose data folder is `template_data`.
pub fn warm_states(template_data: &Utf8Path) -> Utf8PathBuf {
    template_data.join("warm")
}

impl VmFiles {
    /// The files of `name` under `layout`.
    pub fn new(layout: &Layout, name: &VmName) -> VmFiles {
        VmFiles {
            paths: layout.vm(name),
        }
    }

    fn runtime(&self, name: &str) -> Utf8PathBuf {
        self.paths.runtime.join(name)
    }

    fn data(&self, name: &str) -> Utf8PathBuf {
        self.paths.data.join(name)
    }

    /// QMP control socket.
    pub fn qmp_socket(&self) -> Utf8PathBuf {
        self.runtime("qmp.sock")
    }
    /// Serial console socket (for `kvmx console`).
    pub fn serial_socket(&self) -> Utf8PathBuf {
        self.runtime("serial.sock")
    }
    /// SPICE socket.
    pub fn spice_socket(&self) -> Utf8PathBuf {
        self.runtime("spice.sock")
    }
    /// VNC socket.
    pub fn vnc_socket(&self) -> Utf8PathBuf {
        self.runtime("vnc.sock")
    }
    /// The socket of the SSH master connection.
    pub fn ssh_master_socket(&self) -> Utf8PathBuf {
        ssh_master_socket(&self.paths.runtime)
    }
    /// The vhost-user socket of virtiofs share (or live mount) `id`.
    pub fn virtiofs_socket(&self, id: &str) -> Utf8PathBuf {
        virtiofs_socket(&self.paths.runtime, id)
    }
    /// The log of the virtiofsd of share (or live mount) `id`.
    pub fn virtiofsd_log(&self, id: &str) -> Utf8PathBuf {
        virtiofsd_log(&self.paths.runtime, id)
    }
    /// What sshfs (and its ssh) said while mounting share `id` on the host.
    pub fn sshfs_log(&self, id: &str) -> Utf8PathBuf {
        self.runtime(&format!("sshfs-{id}.log"))
    }
    /// What `up` decided for this run (pid, ports, accelerator).
    pub fn state_file(&self) -> Utf8PathBuf {
        self.runtime("state.json")
    }
    /// What QEMU printed on stderr in this run.
    pub fn qemu_stderr(&self) -> Utf8PathBuf {
        self.runtime("qemu.stderr")
    }
    /// Held (shared) on a template's or base's image by its dependants.
    pub fn backing_lock(&self) -> Utf8PathBuf {
        self.runtime("backing.lock")
    }
    /// The live mounts of this run.
    pub fn live_mounts(&self) -> Utf8PathBuf {
        self.runtime("live-mounts.json")
    }
    /// Everything the guest printed on its serial console, kept across runs.
    pub fn console_log(&self) -> Utf8PathBuf {
        self.data("console.log")
    }
    /// When and with which config the guest was last provisioned.
    pub fn provision_record(&self) -> Utf8PathBuf {
        self.data("provisioned.json")
    }
    /// What makes this VM a disposable (its template and owner).
    pub fn disposable_record(&self) -> Utf8PathBuf {
        self.data("disposable.json")
    }
    /// The root overlay of a template-based VM.
    pub fn root_overlay(&self) -> Utf8PathBuf {
        self.data("root.qcow2")
    }
    /// The private disk of a template-based VM.
    pub fn private_disk(&self) -> Utf8PathBuf {
        self.data("private.img")
    }

    /// Fails when a socket this VM's run uses (`shares` included) would
    /// not fit in `sun_path`.
    pub fn check_socket_paths<'a>(
        &self,
        shares: impl IntoIterator<Item = (&'a str, ShareKind)>,
    ) -> Result<(), Error> {
        let virtiofs = shares
            .into_iter()
            .filter(|(_, kind)| *kind == ShareKind::Virtiofs)
            .map(|(id, _)| self.virtiofs_socket(id));
        let fixed = [
            self.qmp_socket(),
            self.serial_socket(),
            self.spice_socket(),
            self.vnc_socket(),
            self.ssh_master_socket(),
            agent_socket(&self.paths.runtime),
        ];
        for socket in fixed.into_iter().chain(virtiofs) {
            check_socket_path(socket)?;
        }
        Ok(())
    }
}

/// Fails when `socket` would not fit in `sun_path`.
pub fn check_socket_path(socket: Utf8PathBuf) -> Result<(), Error> {
    if socket.as_str().len() > SOCKET_PATH_MAX {
        return Err(Error::SocketPathTooLong { path: socket });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_share_id_is_caught_before_qemu_starts() {
        let layout = Layout::under(Utf8Path::new(&format!("/tmp/{}", "k".repeat(60))));
        let files = VmFiles::new(&layout, &"vm".parse().unwrap());
        assert!(files.check_socket_paths([]).is_ok());
        let long = "s".repeat(40);
        let error = files
            .check_socket_paths([(long.as_str(), ShareKind::Virtiofs)])
            .unwrap_err();
        assert!(matches!(error, Error::SocketPathTooLong { .. }), "{error}");
        // Only virtiofs shares have a socket.
        assert!(
            files
                .check_socket_paths([(long.as_str(), ShareKind::NineP)])
                .is_ok()
        );
    }
}
