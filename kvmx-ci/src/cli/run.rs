//! `kvmx-ci run JOB`, `run --due` and `daemon`.

use std::time::{Duration, SystemTime};

use kvmx_core::{CancelFlag, Layout};

use super::progress::Lines;
use super::{exit, print_json, result_code};
use crate::Error;
use crate::job::{self, Job};
use crate::paths::JobPaths;
use crate::runner::{self, RunOptions};
use crate::schedule;
use crate::store::Runs;

pub(super) fn one(layout: &Layout, name: &str, wait: bool, json: bool) -> Result<u8, Error> {
    let job = job::find(layout, name)?;
    let cancel = CancelFlag::on_signals().map_err(Error::io("signal handlers"))?;
    let record = runner::run(
        layout,
        &job,
        &RunOptions { wait, cancel },
        &mut Lines { json },
    )?;
    if json {
        print_json(&record);
    } else {
        println!("{}", summary(&record));
    }
    Ok(result_code(record.result))
}

/// One line: `job #3 passed in 42.0 s at abc1234 (signed by alice)`.
pub(super) fn summary(record: &crate::store::RunRecord) -> String {
    let mut line = format!("{} #{} {}", record.job, record.id, record.result);
    if let Some(duration) = record.duration() {
        line.push_str(&format!(" in {:.1} s", duration.as_secs_f64()));
    }
    if let Some(commit) = &record.commit {
        let signer = record.signer.as_deref().unwrap_or("unverified");
        line.push_str(&format!(
            " at {} ({signer})",
            &commit[..commit.len().min(12)]
        ));
    }
    if let Some(reason) = &record.reason {
        line.push_str(&format!(": {reason}"));
    }
    line
}

/// The jobs whose schedule has come since their last run (or, never run,
/// since their file was written).
pub(super) fn due_jobs(layout: &Layout, now: SystemTime) -> Result<Vec<Job>, Error> {
    let mut due = Vec::new();
    for job in job::load_all(layout)? {
        let Some(schedule) = &job.schedule else {
            continue;
        };
        let since = match Runs::open(&JobPaths::new(layout, &job.name)).last()? {
            Some(last) => last.started.0,
            None => std::fs::metadata(&job.file)
                .and_then(|meta| meta.modified())
                .map_err(Error::io(&job.file))?,
        };
        if schedule::is_due(schedule, since, now)? {
            due.push(job);
        }
    }
    Ok(due)
}

pub(super) fn due(layout: &Layout, wait: bool, json: bool) -> Result<u8, Error> {
    let cancel = CancelFlag::on_signals().map_err(Error::io("signal handlers"))?;
    let mut records = Vec::new();
    let mut worst = exit::PASSED;
    for job in due_jobs(layout, SystemTime::now())? {
        if cancel.is_cancelled() {
            break;
        }
        let options = RunOptions {
            wait,
            cancel: cancel.clone(),
        };
        match runner::run(layout, &job, &options, &mut Lines { json }) {
            Ok(record) => {
                if !json {
                    println!("{}", summary(&record));
                }
                worst = worst.max(result_code(record.result));
                records.push(record);
            }
            // Another run of it is under way: it is not due twice.
            Err(Error::Busy { job }) => eprintln!("note: {job} is running already"),
            Err(error) => return Err(error),
        }
    }
    if json {
        print_json(&records);
    }
    Ok(worst)
}

pub(super) fn daemon(layout: &Layout, interval: u64) -> Result<u8, Error> {
    let cancel = CancelFlag::on_signals().map_err(Error::io("signal handlers"))?;
    eprintln!("kvmx-ci daemon: checking for due jobs every {interval} s");
    while !cancel.is_cancelled() {
        match due_jobs(layout, SystemTime::now()) {
            Ok(jobs) => {
                for job in jobs {
                    let options = RunOptions {
                        wait: false,
                        cancel: cancel.clone(),
                    };
                    match runner::run(layout, &job, &options, &mut Lines { json: false }) {
                        Ok(record) => println!("{}", summary(&record)),
                        Err(error) => eprintln!("error: {}: {}", job.name, runner::chain(&error)),
                    }
                }
            }
            Err(error) => eprintln!("error: {}", runner::chain(&error)),
        }
        sleep_unless_cancelled(Duration::from_secs(interval), &cancel);
    }
    // Stopped by SIGTERM or SIGINT: the way a service ends.
    Ok(exit::PASSED)
}

fn sleep_unless_cancelled(duration: Duration, cancel: &CancelFlag) {
    let end = std::time::Instant::now() + duration;
    while !cancel.is_cancelled() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
}
