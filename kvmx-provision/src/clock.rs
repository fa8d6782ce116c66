//! A restored guest's clock. A restored guest is as far behind as its
//! saved state is old, so its clock is set before anything logs in: a
//! loop started as root in the guest before the state was saved waits on
//! a virtio-serial port (`warm_prepare.sh`); right after the restore the host writes its time
//! there, the guest sets its clock and answers. No login, sudo or PAM is
//! involved, which under TCG saves most of a second.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;

/// What the guest says once its clock is set.
const ANSWER: &[u8] = b"set\n";

/// The port's name in the guest (`/dev/virtio-ports/NAME`).
pub const PORT: &str = "kvmx.clock";

/// The host end: QEMU's `pipe` chardev on `BASE.in` (to the guest) and
/// `BASE.out` (from it), in the VM's runtime folder.
pub(crate) fn pipe_base(runtime: &Utf8Path) -> Utf8PathBuf {
    crate::files::clock_pipe(runtime)
}

fn pipe(base: &Utf8Path, direction: &str) -> Utf8PathBuf {
    base.with_extension(direction)
}

/// Makes the two FIFOs, before QEMU opens them.
pub(crate) fn make_pipes(base: &Utf8Path) -> Result<(), Error> {
    for direction in ["in", "out"] {
        let path = pipe(base, direction);
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(path.as_std_path(), Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|errno| Error::io("make the FIFO", &path)(std::io::Error::from(errno)))?;
    }
    Ok(())
}

/// Sends the host's time to the guest's loop and waits until it says the
/// clock is set.
pub(crate) fn set(base: &Utf8Path, deadline: Duration) -> Result<(), Error> {
    let to_guest = pipe(base, "in");
    let from_guest = pipe(base, "out");
    // QEMU holds both FIFOs open read-write, so neither open blocks.
    let mut reply = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(&from_guest)
        .map_err(Error::io("open", &from_guest))?;
    let mut send = OpenOptions::new()
        .write(true)
        .open(&to_guest)
        .map_err(Error::io("open", &to_guest))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    writeln!(send, "{}.{:09}", now.as_secs(), now.subsec_nanos())
        .map_err(Error::io("write", &to_guest))?;
    wait_for_answer(&mut reply, &from_guest, deadline)
}

fn wait_for_answer(reply: &mut File, path: &Utf8Path, deadline: Duration) -> Result<(), Error> {
    let end = Instant::now() + deadline;
    let mut said = Vec::new();
    let mut buffer = [0u8; 64];
    loop {
        match reply.read(&mut buffer) {
            Ok(0) => {
                return Err(Error::WarmState {
                    problem: "the guest's clock port closed (QEMU exited?)".into(),
                });
            }
            Ok(count) => {
                said.extend_from_slice(&buffer[..count]);
                // Only the end matters; a guest cannot make this grow.
                let excess = said.len().saturating_sub(ANSWER.len());
                said.drain(..excess);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(Error::io("read", path)(error)),
        }
        if said == ANSWER {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(Error::Timeout {
                awaited: "the restored guest to set its clock".into(),
                after: deadline,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use super::*;

    /// Plays the guest's loop on the other ends of the FIFOs, as QEMU
    /// would pass them on: reads one time, answers `set`.
    fn guest(base: &Utf8Path, answer: &'static [u8]) -> std::thread::JoinHandle<String> {
        let (to_guest, from_guest) = (pipe(base, "in"), pipe(base, "out"));
        // Both kept open read-write, as QEMU does.
        let hold = |path: &Utf8Path| OpenOptions::new().read(true).write(true).open(path);
        let (input, mut output) = (hold(&to_guest).unwrap(), hold(&from_guest).unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            BufReader::new(input).read_line(&mut line).unwrap();
            output.write_all(answer).unwrap();
            // Keep the writer open until the host has read.
            std::thread::sleep(Duration::from_millis(500));
            line
        })
    }

    /// The FIFOs in a temporary folder (kept while the first value lives).
    fn pipes() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = pipe_base(Utf8Path::from_path(dir.path()).unwrap());
        make_pipes(&base).unwrap();
        (dir, base)
    }

    #[test]
    fn the_host_sends_its_time_and_waits_for_the_guest() {
        let (_dir, base) = pipes();
        let guest = guest(&base, b"set\n");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        set(&base, Duration::from_secs(10)).unwrap();
        let sent: f64 = guest.join().unwrap().trim().parse().unwrap();
        assert!(
            (sent - before.as_secs_f64()).abs() < 5.0,
            "{sent} vs {before:?}"
        );
    }

    #[test]
    fn a_guest_that_does_not_answer_is_an_error() {
        let (_dir, base) = pipes();
        let _guest = guest(&base, b"no\n");
        let error = set(&base, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "timed out after 200 ms waiting for the restored guest to set its clock"
        );
    }

    #[test]
    fn the_guest_script_opens_this_port() {
        let script = include_str!("warm_prepare.sh");
        assert!(script.contains(&format!("/dev/virtio-ports/{PORT}")));
    }
}
