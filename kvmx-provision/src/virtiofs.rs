//! virtiofs: one `virtiofsd` daemon per shared folder, listening on a
//! vhost-user socket in the VM's runtime folder. QEMU connects to it at
//! start, or later through QMP for a live mount; the daemon exits when QEMU
//! lets go of it.
//!
//! The Rust virtiofsd (crates.io) is used: QEMU 7.2's bundled C daemon
//! needs root. As a plain user it runs without a namespace sandbox.
//!
//! virtiofs is the kind of a share whose config names none, where
//! virtiofsd is found: it is the fastest kind (`bench/shares.sh`), as Lima
//! found too. Elsewhere such a share is 9p, which QEMU serves by itself.

use std::path::PathBuf;
use std::process::Command;

use camino::Utf8Path;
use kvmx_core::config::{Config, ShareKind};

use crate::Error;

/// The depth of a virtiofs device's request queue (QEMU's default is
/// 128): room for the guest's read-ahead and parallel requests, as Lima
/// and most virtiofs setups give it.
pub const QUEUE_SIZE: u32 = 1024;

/// The guest's read-ahead on a virtiofs mount, in KiB, instead of Linux's
/// 128: a long read then keeps many requests in flight (hence
/// [`QUEUE_SIZE`]) instead of waiting on each in turn; `bench/shares.sh`
/// reads a large file about as fast as the guest's disk with it.
pub const READ_AHEAD_KIB: u32 = 8192;

/// The guest command that sets the read-ahead of the virtiofs mount at
/// `mount_point` (already quoted for the shell).
pub fn read_ahead_command(mount_point: &str) -> String {
    format!(
        "echo {READ_AHEAD_KIB} | sudo tee /sys/class/bdi/$(mountpoint -d {mount_point})/read_ahead_kb >/dev/null"
    )
}

/// What `up` notes when a share without a kind is 9p for want of virtiofsd.
pub const NO_VIRTIOFSD_NOTE: &str = "virtiofsd not found: shares without a kind use 9p, which is slower; get virtiofsd with `cargo install virtiofsd` or scripts/install-deps";

/// The kind of a share whose config names none, on this host.
pub fn default_share_kind() -> ShareKind {
    if find_virtiofsd().is_some() {
        ShareKind::Virtiofs
    } else {
        ShareKind::NineP
    }
}

/// Gives every share of `config` without a kind this host's default;
/// whether one of them became 9p for want of virtiofsd.
pub(crate) fn settle_share_kinds(config: &mut Config) -> bool {
    let mut unset = config
        .shares
        .iter_mut()
        .filter(|s| s.kind.is_none())
        .peekable();
    if unset.peek().is_none() {
        return false;
    }
    let kind = default_share_kind();
    unset.for_each(|share| share.kind = Some(kind));
    kind == ShareKind::NineP
}

/// Names the virtiofsd binary to use instead of searching for one.
pub const VIRTIOFSD_VARIABLE: &str = "KVMX_VIRTIOFSD";

/// The virtiofsd binary: `KVMX_VIRTIOFSD`, else `virtiofsd` beside kvmx,
/// on PATH or in cargo's bin folder.
pub fn find_virtiofsd() -> Option<PathBuf> {
    crate::daemon::find("virtiofsd", VIRTIOFSD_VARIABLE)
}

/// Starts a detached virtiofsd sharing `folder` on `socket`, and waits for
/// the socket. Its output goes to `log`.
pub fn start(
    socket: &Utf8Path,
    folder: &Utf8Path,
    read_only: bool,
    log: &Utf8Path,
) -> Result<u32, Error> {
    if !folder.is_dir() {
        return Err(Error::NoHostFolder {
            folder: folder.to_owned(),
        });
    }
    let binary = find_virtiofsd().ok_or_else(|| Error::MissingTool {
        program: "virtiofsd".into(),
        needed_by: "virtiofs shares".into(),
        provider: crate::Provider::Instructions(
            "install it with `cargo install virtiofsd` (it needs libseccomp-dev and libcap-ng-dev), or set KVMX_VIRTIOFSD to its path",
        ),
    })?;
    let _ = std::fs::remove_file(socket);
    let root = nix::unistd::geteuid().is_root();
    let mut command = Command::new(&binary);
    command
        .arg(format!("--socket-path={socket}"))
        .arg(format!("--shared-dir={folder}"))
        .arg("--cache=auto")
        .arg(if root {
            "--sandbox=namespace"
        } else {
            "--sandbox=none"
        });
    if read_only {
        command.arg("--readonly");
    }
    crate::daemon::start(command, &format!("virtiofsd for {folder}"), log, || {
        socket.exists()
    })
}
