//! Images made by an installer run in the VM itself
//! (`create.method = "install"`, `kvmx install`): Debian's netboot
//! installer with a preseed made from the config ([`crate::preseed`]), or
//! any installer ISO for an interactive install. kvmx-image prepares the
//! blank disk and what the installer boots; a runner of VMs (kvmx-provision's
//! `QemuInstaller`) implements [`InstallerVm`] to run it.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::config::Config;
use kvmx_core::config::values::VmName;
use kvmx_core::observe::Observer;

use crate::prerequisites::Requirement;

/// The Debian package of the netboot installer.
pub const NETBOOT_PACKAGE: &str = "debian-installer-12-netboot-amd64";

/// Where [`NETBOOT_PACKAGE`] puts the installer's kernel and initrd (its
/// text-mode flavour, which runs on the serial console).
pub const NETBOOT_DIR: &str =
    "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64";

/// The netboot installer's kernel.
pub fn netboot_kernel() -> Utf8PathBuf {
    Utf8Path::new(NETBOOT_DIR).join("linux")
}

/// The netboot installer's initrd (gzip-compressed cpio).
pub fn netboot_initrd() -> Utf8PathBuf {
    Utf8Path::new(NETBOOT_DIR).join("initrd.gz")
}

/// The netboot installer's files, as build requirements.
pub fn netboot_requirements() -> Vec<Requirement> {
    [netboot_kernel(), netboot_initrd()]
        .into_iter()
        .map(|path| Requirement::File {
            path,
            package: NETBOOT_PACKAGE,
        })
        .collect()
}

/// What the installer boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMedia {
    /// A kernel and initrd booted directly by QEMU (Debian's netboot
    /// installer, its initrd carrying the preseed).
    Kernel {
        /// The kernel.
        kernel: Utf8PathBuf,
        /// The initrd (a private copy with kvmx's files appended).
        initrd: Utf8PathBuf,
        /// The kernel command line.
        append: String,
    },
    /// An installer ISO attached as a CD-ROM and booted once.
    Iso(Utf8PathBuf),
}

/// One install for an [`InstallerVm`].
#[derive(Debug, Clone)]
pub struct InstallJob {
    /// The VM being installed.
    pub name: VmName,
    /// Its resolved config, with `image.path` set to the blank disk.
    pub config: Config,
    /// What the installer boots from.
    pub media: InstallMedia,
    /// The line the guest prints on its serial console when an
    /// unattended install finished; a power-off without it is a failed
    /// install. `None` for an interactive install: any power-off ends it.
    pub done_marker: Option<&'static str>,
    /// A line that says the install failed, at once.
    pub failed_marker: Option<&'static str>,
    /// How long the installer may run.
    pub timeout: Duration,
    /// Where the whole console output of the installer is kept.
    pub log: Utf8PathBuf,
}

/// A failed install.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InstallError {
    /// What went wrong: the installer's step and its last console lines.
    pub message: String,
    /// Cancelled rather than failed.
    pub cancelled: bool,
}

/// Runs an installer in a VM, on the job's blank disk, until the guest
/// powers off. An implementation reports the installer's steps as stages
/// to `observer`, keeps its console output in the job's log, and ends the
/// VM on a failure, a time-out or `cancel`.
pub trait InstallerVm: std::fmt::Debug + Send + Sync {
    /// Runs `job` to its end.
    fn run(
        &self,
        job: &InstallJob,
        observer: &mut dyn Observer,
        cancel: &CancelFlag,
    ) -> Result<(), InstallError>;
}
