//! The host side of running VMs: processes and ports.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::Error;
use crate::state;

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sends `signal` to `pid`, if it still exists.
pub(crate) fn signal(pid: i32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
}

/// Waits up to `deadline` for `pid` to exit.
pub(crate) fn wait_exit(pid: i32, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if !state::process_alive(pid) || is_zombie(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A QEMU started by this very process and already dead stays a zombie
/// until reaped; count it as gone.
fn is_zombie(pid: i32) -> bool {
    state::proc_stat(pid).is_some_and(|fields| fields.first().is_some_and(|s| s == "Z"))
}

/// A free TCP port on 127.0.0.1 (SSH forward, NFS servers).
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(Error::io("bind", camino::Utf8Path::new("127.0.0.1")))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("bind", camino::Utf8Path::new("127.0.0.1")))?
        .port();
    Ok(port)
}

/// Runs `command`, killing it when it takes longer than `deadline`; its
/// status, or `None` when it was killed.
pub(crate) fn run_within(
    command: &mut std::process::Command,
    deadline: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let mut child = command.spawn()?;
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}
