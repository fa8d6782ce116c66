//! The per-job lock: one run of a job at a time.

use std::fs::File;
use std::time::Duration;

use kvmx_core::CancelFlag;
use nix::fcntl::{Flock, FlockArg};

use crate::Error;
use crate::paths::JobPaths;

/// Held while a run of the job is under way; released when dropped (or
/// when the process dies, so a killed run never blocks the next).
#[derive(Debug)]
pub struct JobLock {
    _flock: Flock<File>,
}

/// Takes the job's lock. When another run holds it: fails with
/// [`Error::Busy`], or with `wait` waits until it is free (or `cancel` is
/// set).
pub fn take(
    job: &str,
    paths: &JobPaths,
    wait: bool,
    cancel: &CancelFlag,
) -> Result<JobLock, Error> {
    let dir = paths.lock.parent().expect("the lock file has a folder");
    kvmx_provision::state::ensure_private_dir(dir)?;
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&paths.lock)
        .map_err(Error::io(&paths.lock))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(JobLock { _flock: flock }),
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) if wait => {
                if cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                file = returned;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(Error::Busy {
                    job: job.to_owned(),
                });
            }
            Err((_, errno)) => return Err(Error::io(&paths.lock)(errno.into())),
        }
    }
}
