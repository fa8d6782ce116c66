//! Whether a VM runs: the one definition every crate uses.
//!
//! A VM runs while the run lock in its runtime folder
//! ([`VmPaths::run_lock`]) is held exclusively. `up` takes it with [`take`]
//! and hands the locked descriptor down to QEMU, so it is held exactly as
//! long as QEMU lives, whoever dies first.
//!
//! A [`probe`] creates nothing and holds the lock *shared* for an instant:
//! probes never see each other as a run, and [`take`] tells a probe
//! (shared) from a run (exclusive), waiting out the probe instead of
//! reporting the VM as running.

use std::fs::{File, OpenOptions, TryLockError};
use std::time::{Duration, Instant};

use camino::Utf8Path;

use crate::Error;
use crate::layout::VmPaths;

/// How long [`take`] waits for probes to let go of the lock. A probe holds
/// it for microseconds; only a flood of overlapping probes lasts longer.
const PROBE_PATIENCE: Duration = Duration::from_secs(5);

/// What a [`probe`] of the run lock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Nobody holds the lock: the VM does not run.
    Free,
    /// QEMU, or a `kvmx up` starting it, holds the lock.
    Held,
}

/// Whether the VM of `paths` runs (or is being started). Creates no folder
/// or file: a missing lock file means the VM never ran since the runtime
/// folder was made.
pub fn probe(paths: &VmPaths) -> Result<Probe, Error> {
    let path = paths.run_lock();
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Free),
        Err(error) => return Err(Error::io_doing("open", &path)(error)),
    };
    // Closing the file at the end releases the shared lock.
    match file.try_lock_shared() {
        Ok(()) => Ok(Probe::Free),
        Err(TryLockError::WouldBlock) => Ok(Probe::Held),
        Err(TryLockError::Error(error)) => Err(Error::io_doing("lock", &path)(error)),
    }
}

/// Takes the run lock exclusively, for a start: `None` when the VM runs or
/// another `up` is starting it. The runtime folder must exist; the lock
/// file is created in it.
///
/// The lock is std's `File` lock: closing this descriptor releases it only
/// once every copy handed down to a child is closed too (nix's `Flock`
/// would unlock explicitly on drop, taking QEMU's inherited lock with it).
pub fn take(paths: &VmPaths) -> Result<Option<File>, Error> {
    let path = paths.run_lock();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io_doing("open", &path))?;
    let deadline = Instant::now() + PROBE_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => return Err(Error::io_doing("lock", &path)(error)),
        }
        // Taken shared (a probe) while exclusive failed: wait it out.
        if probe(paths)? == Probe::Held {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(probes_never_let_go(&path));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn probes_never_let_go(path: &Utf8Path) -> Error {
    Error::io_doing("lock", path)(std::io::Error::new(
        std::io::ErrorKind::WouldBlock,
        format!(
            "other processes kept it locked shared (kvmx status or list probing it) for {} s; try again",
            PROBE_PATIENCE.as_secs()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use camino::Utf8PathBuf;

    use super::*;

    fn paths_in(dir: &tempfile::TempDir) -> VmPaths {
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        VmPaths {
            data: root.join("data"),
            runtime: root.join("run"),
        }
    }

    fn with_runtime(dir: &tempfile::TempDir) -> VmPaths {
        let paths = paths_in(dir);
        std::fs::create_dir_all(&paths.runtime).unwrap();
        paths
    }

    #[test]
    fn a_probe_of_a_vm_that_never_ran_is_free_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths_in(&dir);
        assert_eq!(probe(&paths).unwrap(), Probe::Free);
        assert!(!paths.runtime.exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_taken_lock_is_held_until_its_descriptor_closes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_runtime(&dir);
        let lock = take(&paths).unwrap().expect("a free lock is taken");
        assert_eq!(probe(&paths).unwrap(), Probe::Held);
        assert!(take(&paths).unwrap().is_none(), "a second take must fail");
        drop(lock);
        assert_eq!(probe(&paths).unwrap(), Probe::Free);
        assert!(take(&paths).unwrap().is_some());
    }

    #[test]
    fn take_waits_out_a_probe_instead_of_reporting_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_runtime(&dir);
        // A probe caught in the act: the lock held shared.
        let probing = File::create(paths.run_lock()).unwrap();
        probing.lock_shared().unwrap();
        let (taken_tx, taken_rx) = mpsc::channel();
        let taker = {
            let paths = paths.clone();
            std::thread::spawn(move || {
                let taken = take(&paths).unwrap();
                taken_tx.send(()).unwrap();
                taken
            })
        };
        // While the probe holds on, take neither returns nor gives up.
        assert!(
            taken_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "take returned while a probe held the lock"
        );
        drop(probing);
        let taken = taker.join().unwrap();
        assert!(
            taken.is_some(),
            "take must get the lock once the probe is gone"
        );
    }

    #[test]
    fn probes_see_each_other_as_free() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_runtime(&dir);
        let probing = File::create(paths.run_lock()).unwrap();
        probing.lock_shared().unwrap();
        assert_eq!(probe(&paths).unwrap(), Probe::Free);
    }

    #[test]
    fn a_lock_file_that_cannot_be_opened_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = with_runtime(&dir);
        std::fs::create_dir(paths.run_lock()).unwrap();
        let error = take(&paths).unwrap_err().to_string();
        assert!(error.contains(paths.run_lock().as_str()), "{error}");
    }
}
