//! One run of a job, in this order: the job's lock; runs left by a killed
//! kvmx-ci marked and cleaned up; the source fetched and verified (a
//! rejection ends the run before any VM work); the verified commit exported
//! by its id; the VM brought up as fresh as the job asks; the source copied
//! in; the steps; the artifacts copied back; the VM stopped (a disposable
//! erased); the result recorded, old runs pruned, the notify command told.

mod notify;
mod observe;
mod vm;

use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::observe::Observer;
use kvmx_core::{CancelFlag, Layout};
use kvmx_provision::guest::quote;

use crate::Error;
use crate::job::{Job, Policy};
use crate::paths::JobPaths;
use crate::source::{self, SourceError, Verified};
use crate::store::{RunRecord, RunResult, Runs};
use kvmx_provision::guest::Lines;
use observe::{Both, RunObserver};

/// How to run a job.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Wait for another run of the same job instead of failing at once.
    pub wait: bool,
    /// Set to stop the run: the VM is stopped (a disposable erased) and the
    /// run recorded as `cancelled`.
    pub cancel: CancelFlag,
}

/// Runs `job` once and returns its record; progress goes to `observer`
/// (and everything to the run's log). An `Err` means no run was recorded
/// (the job is busy, or its folders cannot be written).
pub fn run(
    layout: &Layout,
    job: &Job,
    options: &RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunRecord, Error> {
    let paths = JobPaths::new(layout, &job.name);
    let _lock = crate::lock::take(&job.name, &paths, options.wait, &options.cancel)?;
    let runs = Runs::open(&paths);
    recover_locked(layout, job, &runs, observer)?;
    let mut run = runs.begin(&job.name, job.source.verify != Policy::None)?;
    let outcome = {
        let mut log = RunObserver::new(&mut run, observer);
        Attempt {
            layout,
            job,
            paths: &paths,
            cancel: &options.cancel,
            deadline: Instant::now() + job.timeout,
        }
        .run(&mut log)
    };
    let (result, reason, status) = outcome.into_parts();
    if let Some(reason) = &reason {
        run.note(&format!("{result}: {reason}"));
    }
    let record = run.finish(result, reason, status)?;
    runs.prune(job.keep)?;
    if let Some(notify) = &job.notify {
        notify::tell(notify, &record, &runs, observer);
    }
    Ok(record)
}

/// Marks the runs a killed kvmx-ci left as `error (interrupted)` and
/// powers off their VMs; returns them. Does nothing while a run of the job
/// is under way (its owner is alive then).
pub fn recover(
    layout: &Layout,
    job: &Job,
    observer: &mut dyn Observer,
) -> Result<Vec<RunRecord>, Error> {
    let paths = JobPaths::new(layout, &job.name);
    match crate::lock::take(&job.name, &paths, false, &CancelFlag::new()) {
        Ok(_lock) => recover_locked(layout, job, &Runs::open(&paths), observer),
        Err(Error::Busy { .. }) => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

fn recover_locked(
    layout: &Layout,
    job: &Job,
    runs: &Runs,
    observer: &mut dyn Observer,
) -> Result<Vec<RunRecord>, Error> {
    let interrupted = runs.interrupted()?;
    for run in &interrupted {
        vm::cleanup_interrupted(layout, job, run, observer);
    }
    Ok(interrupted)
}

/// How a run ended.
#[derive(Debug)]
enum Outcome {
    Passed,
    /// A step exited non-zero (with its status) or ran out of time.
    Failed {
        reason: String,
        status: Option<i32>,
    },
    /// The source was refused.
    Rejected(String),
    /// Infrastructure: fetch, boot, SSH, image.
    Error(String),
    Cancelled,
}

impl Outcome {
    fn into_parts(self) -> (RunResult, Option<String>, Option<i32>) {
        match self {
            Outcome::Passed => (RunResult::Passed, None, None),
            Outcome::Failed { reason, status } => (RunResult::Failed, Some(reason), status),
            Outcome::Rejected(reason) => (RunResult::Rejected, Some(reason), None),
            Outcome::Error(reason) => (RunResult::Error, Some(reason), None),
            Outcome::Cancelled => (RunResult::Cancelled, None, None),
        }
    }

    /// An infrastructure error, or `Cancelled` when the cancel flag caused it.
    fn from_error(error: impl std::error::Error, cancel: &CancelFlag) -> Outcome {
        if cancel.is_cancelled() {
            Outcome::Cancelled
        } else {
            Outcome::Error(chain(&error))
        }
    }
}

/// An error with its causes, on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The work of one run, with what it needs at hand.
struct Attempt<'a> {
    layout: &'a Layout,
    job: &'a Job,
    paths: &'a JobPaths,
    cancel: &'a CancelFlag,
    deadline: Instant,
}

impl Attempt<'_> {
    fn run(&self, log: &mut RunObserver<'_, '_>) -> Outcome {
        log.stage("verifying the source");
        let verified = match source::verify(self.layout, self.job) {
            Ok(verified) => verified,
            Err(error @ SourceError::Rejected { .. }) => {
                return Outcome::Rejected(error.to_string());
            }
            Err(error) => return Outcome::from_error(error, self.cancel),
        };
        log.record_source(&verified);
        if self.cancel.is_cancelled() {
            return Outcome::Cancelled;
        }
        log.stage("exporting the verified commit");
        let checkout = match self.export(&verified) {
            Ok(checkout) => checkout,
            Err(error) => return Outcome::from_error(error, self.cancel),
        };
        // The VM's own stages follow.
        log.end_stage();
        let job_vm = match vm::bring_up(self, &checkout, log) {
            Ok(job_vm) => job_vm,
            Err(error) => return Outcome::from_error(error, self.cancel),
        };
        log.record_vm(job_vm.vm().name().as_str());
        let outcome = self.in_guest(&job_vm, &checkout, &verified, log);
        if let Err(error) = job_vm.finish(log) {
            log.warn(&format!("the VM did not stop cleanly: {error}"));
        }
        outcome
    }

    /// The source, the steps and the artifacts, in the running VM.
    fn in_guest(
        &self,
        job_vm: &vm::JobVm,
        checkout: &Utf8Path,
        verified: &Verified,
        log: &mut RunObserver<'_, '_>,
    ) -> Outcome {
        let guest = match job_vm.vm().guest() {
            Ok(guest) => guest,
            Err(error) => return Outcome::from_error(error, self.cancel),
        };
        log.stage("copying the source into the guest");
        let workdir = &self.job.vm.workdir;
        // The guest side of kvmx's rsync runs as root: the tree must end up
        // the guest user's, whoever owns it on the host.
        let owner = format!("--chown={}:", guest.target().user);
        let copied = guest.rsync_to(
            &format!("{checkout}/"),
            &format!("{workdir}/"),
            &["--delete".to_owned(), owner],
            &mut log.lines(),
        );
        match copied {
            Ok(status) if status.success() => {}
            Ok(status) => {
                return Outcome::Error(format!(
                    "copying the source into the guest's {workdir} failed ({status})"
                ));
            }
            Err(error) => return Outcome::from_error(error, self.cancel),
        }
        let outcome = self.steps(&guest, verified, log);
        if !self.job.artifacts.is_empty() && !matches!(outcome, Outcome::Cancelled) {
            log.stage("copying artifacts back");
            let copied = log.copy_artifacts(&guest, &self.job.artifacts);
            if let (Outcome::Passed, Err(reason)) = (&outcome, copied) {
                return Outcome::Error(reason);
            }
        }
        outcome
    }

    fn steps(
        &self,
        guest: &kvmx_provision::guest::Guest,
        verified: &Verified,
        log: &mut RunObserver<'_, '_>,
    ) -> Outcome {
        let run_id = log.run_id().to_string();
        for step in &self.job.steps {
            if self.cancel.is_cancelled() {
                return Outcome::Cancelled;
            }
            let Some(remaining) = self.deadline.checked_duration_since(Instant::now()) else {
                return Outcome::Failed {
                    reason: format!(
                        "the job's time limit ({}) was reached before step {}",
                        humantime::format_duration(self.job.timeout),
                        step.name
                    ),
                    status: None,
                };
            };
            let line = format!("cd {} && {}", quote(&self.job.vm.workdir), step.run);
            let limit = step.timeout.min(remaining);
            let mut exec = guest
                .shell(&line)
                .timeout(limit)
                .cancel(self.cancel)
                .env("KVMX_CI_JOB", &self.job.name)
                .env("KVMX_CI_RUN", &run_id)
                .env("KVMX_CI_COMMIT", &verified.commit);
            for (name, value) in &self.job.env {
                exec = exec.env(name, value);
            }
            let (mut step_log, mut terminal) = log.step(&step.name);
            let mut lines = Lines::new(&mut terminal);
            let status = exec.stream(&mut Both(&mut step_log, &mut lines));
            lines.finish();
            match status {
                Ok(0) => step_log.end(Some(0), RunResult::Passed),
                Ok(code) => {
                    step_log.end(Some(code), RunResult::Failed);
                    return Outcome::Failed {
                        reason: format!("step {} exited with status {code}", step.name),
                        status: Some(code),
                    };
                }
                Err(kvmx_provision::Error::TimedOut { .. }) => {
                    step_log.end(None, RunResult::Failed);
                    return Outcome::Failed {
                        reason: format!(
                            "step {} ran out of time after {}",
                            step.name,
                            humantime::format_duration(limit)
                        ),
                        status: None,
                    };
                }
                Err(kvmx_provision::Error::Cancelled { .. }) => {
                    step_log.end(None, RunResult::Cancelled);
                    return Outcome::Cancelled;
                }
                Err(error) => {
                    step_log.end(None, RunResult::Error);
                    return Outcome::from_error(error, self.cancel);
                }
            }
        }
        Outcome::Passed
    }

    /// Exports the verified commit into `<job>/checkout`, replacing the
    /// last one only once the new one is complete.
    fn export(&self, verified: &Verified) -> Result<Utf8PathBuf, Error> {
        let checkout = &self.paths.checkout;
        let fresh = checkout.with_extension("new");
        remove_dir_if_present(&fresh)?;
        source::export(self.layout, self.job, &verified.commit, &fresh)?;
        remove_dir_if_present(checkout)?;
        std::fs::rename(&fresh, checkout).map_err(Error::io(checkout))?;
        Ok(checkout.clone())
    }

    /// What is left of the job's time.
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

fn remove_dir_if_present(dir: &Utf8Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io(dir)(error)),
    }
}
