//! The files of a running VM: sockets, lock and state in the runtime
//! folder, the console log in the data folder (it outlives a crash).

use camino::Utf8PathBuf;
use kvmx_core::config::values::VmName;
use kvmx_core::layout::{Layout, SOCKET_PATH_MAX, VmPaths};

use crate::Error;

/// Where one VM's runtime files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFiles {
    /// The VM's data and runtime folders.
    pub paths: VmPaths,
}

impl VmFiles {
    /// The files of `name` under `layout`.
    pub fn new(layout: &Layout, name: &VmName) -> VmFiles {
        VmFiles {
            paths: layout.vm(name),
        }
    }

    /// QMP control socket.
    pub fn qmp_socket(&self) -> Utf8PathBuf {
        self.paths.runtime.join("qmp.sock")
    }
    /// Serial console socket (for `kvmx console`).
    pub fn serial_socket(&self) -> Utf8PathBuf {
        self.paths.runtime.join("serial.sock")
    }
    /// SPICE socket.
    pub fn spice_socket(&self) -> Utf8PathBuf {
        self.paths.runtime.join("spice.sock")
    }
    /// VNC socket.
    pub fn vnc_socket(&self) -> Utf8PathBuf {
        self.paths.runtime.join("vnc.sock")
    }
    /// What `up` decided for this run (pid, ports, accelerator).
    pub fn state_file(&self) -> Utf8PathBuf {
        self.paths.runtime.join("state.json")
    }
    /// Everything the guest printed on its serial console, kept across runs.
    pub fn console_log(&self) -> Utf8PathBuf {
        self.paths.data.join("console.log")
    }

    /// Fails when a socket path would not fit in `sun_path`.
    pub fn check_socket_paths(&self) -> Result<(), Error> {
        for socket in [
            self.qmp_socket(),
            self.serial_socket(),
            self.spice_socket(),
            self.vnc_socket(),
        ] {
            if socket.as_str().len() > SOCKET_PATH_MAX {
                return Err(Error::SocketPathTooLong { path: socket });
            }
        }
        Ok(())
    }
}
