//! Whether a VM runs, from files that survive a crash of kvmx or QEMU.
//!
//! `up` takes an exclusive `flock` on the VM's run lock and hands the
//! locked descriptor to QEMU, so the lock lives exactly as long as QEMU
//! does, whatever kills whom ([`kvmx_core::run_lock`] defines it for every
//! crate). The state file records what `up` decided; a clean stop removes
//! it, so a state file with a free lock means QEMU died.

use std::fs::File;
use std::os::fd::AsRawFd;

use camino::Utf8PathBuf;
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::run_lock;
pub use kvmx_core::run_lock::Probe;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::files::VmFiles;
use crate::qemu::Accel;

/// What `up` decided for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// QEMU's process id.
    pub pid: i32,
    /// When QEMU started (seconds since the epoch).
    pub started_at: u64,
    /// The accelerator in use.
    pub accelerator: Accel,
    /// The host port forwarded to the guest's SSH.
    pub ssh_port: Option<u16>,
    /// Every forwarded port, SSH included.
    pub forwards: Vec<PortForward>,
    /// The disk image.
    pub image: Utf8PathBuf,
    /// The VM whose image this run's disk is built on (template or base).
    #[serde(default)]
    pub backing: Option<String>,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address listened on.
    pub address: String,
    /// Host port.
    pub host: u16,
    /// Guest port.
    pub guest: u16,
}

/// The lock of a VM's runtime: held by `up` while it starts QEMU, then by
/// QEMU itself (see [`kvmx_core::run_lock`]).
pub enum RunLock {
    /// Nobody runs the VM; this process now holds the lock.
    Acquired(File),
    /// QEMU (or another `kvmx up`) holds it.
    Busy,
}

impl RunLock {
    /// Tries to take the lock for a start, creating the runtime folder; a
    /// command that only probes the lock holds it shared for an instant,
    /// which is waited out, not taken for a run.
    pub fn try_take(files: &VmFiles) -> Result<RunLock, Error> {
        ensure_private_dir(&files.paths.runtime)?;
        Ok(match run_lock::take(&files.paths)? {
            Some(file) => RunLock::Acquired(file),
            None => RunLock::Busy,
        })
    }
}

/// Whether the VM runs (or is being started): its run lock is held. Creates
/// no folder or file.
pub fn probe(files: &VmFiles) -> Result<Probe, Error> {
    Ok(run_lock::probe(&files.paths)?)
}

/// Lets a child process inherit the locked descriptor, so the lock stays
/// held while the child lives.
pub fn hand_down(lock: &File) -> Result<(), Error> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    fcntl(lock.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(|errno| Error::io("share", camino::Utf8Path::new("the VM lock"))(errno.into()))?;
    Ok(())
}

/// Creates `dir` (and its parent, kvmx's runtime root) with mode 0700.
pub fn ensure_private_dir(dir: &camino::Utf8Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    for folder in [dir.parent(), Some(dir)].into_iter().flatten() {
        if !folder.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder)
                .map_err(Error::io("create", folder))?;
            std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
                .map_err(Error::io("set the mode of", folder))?;
        }
    }
    Ok(())
}

/// The recorded state of the last run, if any.
pub fn read(files: &VmFiles) -> Option<RunState> {
    let text = std::fs::read_to_string(files.state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records the state of a run.
pub fn write(files: &VmFiles, state: &RunState) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(state).expect("state serializes");
    Ok(atomic_file::write(
        &files.state_file(),
        &text,
        Overwrite::Yes,
    )?)
}

/// Removes what a run leaves behind: the state file and sockets.
pub fn clear(files: &VmFiles) {
    for path in [
        files.state_file(),
        files.qmp_socket(),
        files.serial_socket(),
        files.spice_socket(),
        files.vnc_socket(),
        files.paths.pid_file(),
    ] {
        let _ = std::fs::remove_file(path);
    }
}

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces and parentheses): index 0 is field 3 of `proc(5)`, the state.
pub(crate) fn proc_stat(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = stat.rsplit_once(')')?;
    Some(fields.split_whitespace().map(str::to_owned).collect())
}

/// The CPU time a process (all its threads) has used, in clock ticks.
pub(crate) fn cpu_ticks(pid: i32) -> Option<u64> {
    let fields = proc_stat(pid)?;
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(ticks(11)? + ticks(12)?)
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The last `lines` lines of the console log.
pub fn console_tail(files: &VmFiles, lines: usize) -> Vec<String> {
    let text = std::fs::read(files.console_log()).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    last_lines(&text, lines)
        .iter()
        .map(|line| line.trim_end_matches('\r').to_owned())
        .collect()
}

/// The last `count` lines of `text`.
pub fn last_lines(text: &str, count: usize) -> Vec<&str> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(count)..].to_vec()
}
