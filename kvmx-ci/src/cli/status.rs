//! `kvmx-ci status`, `log` and `report`.

use std::time::SystemTime;

use kvmx_core::Layout;
use serde::Serialize;

use super::progress::Lines;
use super::{exit, print_json};
use crate::Error;
use crate::job;
use crate::paths::JobPaths;
use crate::report::Foreign;
use crate::schedule;
use crate::store::{RunRecord, Runs, Timestamp};

#[derive(Serialize)]
struct JobStatus {
    job: String,
    last: Option<RunRecord>,
    next_due: Option<Timestamp>,
}

pub(super) fn status(layout: &Layout, json: bool) -> Result<u8, Error> {
    let mut rows = Vec::new();
    for job in job::load_all(layout)? {
        crate::runner::recover(layout, &job, &mut Lines { json })?;
        let last = Runs::open(&JobPaths::new(layout, &job.name)).last()?;
        let next_due = match &job.schedule {
            Some(schedule) => schedule::next_after(schedule, SystemTime::now())?.map(Timestamp),
            None => None,
        };
        rows.push(JobStatus {
            job: job.name,
            last,
            next_due,
        });
    }
    if json {
        print_json(&rows);
        return Ok(exit::PASSED);
    }
    println!(
        "{:<20} {:<10} {:>9} {:<12} {:<20} {:<20}",
        "JOB", "RESULT", "DURATION", "COMMIT", "STARTED", "NEXT DUE"
    );
    for row in &rows {
        let last = row.last.as_ref();
        let result = last.map_or("-".to_owned(), RunRecord::outcome);
        let duration = last
            .and_then(RunRecord::duration)
            .map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        let commit = last
            .and_then(|r| r.commit.as_deref())
            .map_or("-".to_owned(), |c| c[..c.len().min(12)].to_owned());
        let started = last.map_or("-".to_owned(), |r| r.started.to_string());
        let next = row
            .next_due
            .as_ref()
            .map_or("-".to_owned(), ToString::to_string);
        println!(
            "{:<20} {:<10} {:>9} {:<12} {:<20} {:<20}",
            row.job, result, duration, commit, started, next
        );
    }
    Ok(exit::PASSED)
}

pub(super) fn log(
    layout: &Layout,
    name: &str,
    run: Option<u64>,
    follow: bool,
    json: bool,
) -> Result<u8, Error> {
    let job = job::find(layout, name)?;
    crate::runner::recover(layout, &job, &mut Lines { json })?;
    let runs = Runs::open(&JobPaths::new(layout, &job.name));
    let record = match run {
        Some(id) => runs.get(id)?,
        None => runs.last()?.ok_or_else(|| {
            Error::Usage(format!("job {name} has not run yet: `kvmx-ci run {name}`"))
        })?,
    };
    let file = runs.log_file(record.id);
    let mut stdout = std::io::stdout().lock();
    if follow {
        let id = record.id;
        let finished = || {
            runs.get(id)
                .map(|r| r.result != crate::store::RunResult::Running)
                .unwrap_or(true)
        };
        crate::store::follow(&file, &finished, &mut stdout)?;
    } else if json {
        let text = std::fs::read(&file).map_err(Error::io(&file))?;
        print_json(&serde_json::json!({
            "run": record,
            "log": String::from_utf8_lossy(&text),
        }));
    } else {
        let text = std::fs::read(&file).map_err(Error::io(&file))?;
        std::io::Write::write_all(&mut stdout, &text).map_err(Error::io("stdout"))?;
    }
    Ok(exit::PASSED)
}

pub(super) fn report(
    layout: &Layout,
    dir: &camino::Utf8Path,
    force: bool,
    json: bool,
) -> Result<u8, Error> {
    let mut runs = Vec::new();
    for job in job::load_all(layout)? {
        crate::runner::recover(layout, &job, &mut Lines { json })?;
        runs.push(Runs::open(&JobPaths::new(layout, &job.name)));
    }
    let foreign = if force {
        Foreign::Allow
    } else {
        Foreign::Refuse
    };
    let written = crate::report::write(dir, &runs, foreign)?;
    if json {
        print_json(&written);
    } else {
        println!("wrote {} ({} files)", dir.join("index.html"), written.len());
    }
    Ok(exit::PASSED)
}
