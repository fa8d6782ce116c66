//! Run folders under `<data>/ci/<job>/runs/<id>/`: `run.json`, the combined
//! log with timestamps, one log per step, artifacts; retention; runs left by
//! a killed kvmx-ci.
//!
//! A run's id is the next number after the highest one the job had; it is
//! taken by creating its folder, which fails when another process took it
//! first, so racing runs of one job get distinct ids. `run.json` is always
//! replaced whole. It names the process that runs it (pid and start time):
//! a run still marked running whose process is gone was interrupted, and
//! the next reader records that.

mod log;
mod owner;
mod record;
#[cfg(test)]
mod tests;

use std::io::ErrorKind;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::observe::{Event, Observer};

pub use log::{StepLog, follow};
pub use owner::Owner;
pub use record::{RunRecord, RunResult, StepRecord, Timestamp};

use crate::Error;
use crate::paths::JobPaths;
use log::LogFile;

/// The reason of a run whose kvmx-ci went away while it ran.
pub const INTERRUPTED: &str = "interrupted";

/// The record in a run folder.
const RECORD: &str = "run.json";
/// The combined log in a run folder.
const LOG: &str = "log";
/// Created by the one caller of [`Runs::interrupted`] that is given the run.
const CLAIMED: &str = ".interrupted-claimed";
/// The highest id a job had, kept by [`Runs::prune`] so that an id is never
/// given twice.
const LAST_ID: &str = ".last-id";

/// What can be wrong with run folders.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No run has this id.
    #[error("job {job} has no run {id}; {}", known_ids(.known))]
    UnknownRun {
        /// The job.
        job: String,
        /// The id asked for.
        id: u64,
        /// The ids it has.
        known: Vec<u64>,
    },
    /// A run folder has no `run.json`.
    #[error(
        "run {id} of job {job} has no {RECORD}: it is starting, or kvmx-ci was killed while it started (then remove {dir})"
    )]
    Starting {
        /// The job.
        job: String,
        /// The run.
        id: u64,
        /// Its folder.
        dir: Utf8PathBuf,
    },
    /// A `run.json` cannot be read as a run record.
    #[error("{path} is not a valid run record; repair it or remove its run folder")]
    BadRecord {
        /// The file.
        path: Utf8PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A log could not be written.
    #[error("cannot write the log {path}")]
    Log {
        /// The log.
        path: Utf8PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error(transparent)]
    Write(#[from] kvmx_core::Error),
}

fn known_ids(known: &[u64]) -> String {
    if known.is_empty() {
        return "it has no runs yet".to_owned();
    }
    let ids: Vec<String> = known.iter().map(u64::to_string).collect();
    format!("its runs: {}", ids.join(", "))
}

/// The runs of one job.
#[derive(Debug, Clone)]
pub struct Runs {
    job: String,
    dir: Utf8PathBuf,
}

impl Runs {
    /// The runs of the job whose files are `paths`.
    pub fn open(paths: &JobPaths) -> Runs {
        Runs {
            job: paths.root.file_name().unwrap_or_default().to_owned(),
            dir: paths.runs.clone(),
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The folder of run `id`.
    pub fn dir(&self, id: u64) -> Utf8PathBuf {
        self.dir.join(id.to_string())
    }

    /// The combined log of run `id`.
    pub fn log_file(&self, id: u64) -> Utf8PathBuf {
        self.dir(id).join(LOG)
    }

    /// Begins a run of `job`: a new folder with the next id, its `run.json`
    /// saying `running` with this process as its owner, an empty log and
    /// the `steps/` and `artifacts/` folders. `verified` is false under the
    /// policy `none`.
    pub fn begin(&self, job: &str, verified: bool) -> Result<Run, Error> {
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))?;
        let mut id = self.highest_id()?;
        let dir = loop {
            id += 1;
            let dir = self.dir(id);
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                // Another process took this id: try the next.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(dir)(e)),
            }
        };
        for folder in ["steps", "artifacts"] {
            let folder = dir.join(folder);
            std::fs::create_dir(&folder).map_err(Error::io(folder))?;
        }
        let log = LogFile::open(dir.join(LOG))?;
        let run = Run {
            record: RunRecord::begin(job, id, verified),
            dir,
            log,
            log_error: None,
        };
        run.save()?;
        Ok(run)
    }

    /// Every run, by id. A run marked running whose process is gone is
    /// recorded as `error`, reason `interrupted`, first. Folders without
    /// `run.json` (a run being created) are left out.
    pub fn list(&self) -> Result<Vec<RunRecord>, Error> {
        let mut records = Vec::new();
        for id in self.ids()? {
            if let Some(record) = self.read(id)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// The interrupted runs not handed out before: each is returned to one
    /// caller only, even when processes ask at once, so that caller can
    /// release the run's VM.
    pub fn interrupted(&self) -> Result<Vec<RunRecord>, Error> {
        let mut claimed = Vec::new();
        for record in self.list()? {
            if record.result != RunResult::Error || record.reason.as_deref() != Some(INTERRUPTED) {
                continue;
            }
            let claim = self.dir(record.id).join(CLAIMED);
            match std::fs::File::create_new(&claim) {
                Ok(_) => claimed.push(record),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(claim)(e)),
            }
        }
        Ok(claimed)
    }

    /// Run `id`; an unknown id is an error that names the job and its ids.
    pub fn get(&self, id: u64) -> Result<RunRecord, Error> {
        match self.read(id)? {
            Some(record) => Ok(record),
            None if self.dir(id).is_dir() => Err(StoreError::Starting {
                job: self.job.clone(),
                id,
                dir: self.dir(id),
            }
            .into()),
            None => Err(StoreError::UnknownRun {
                job: self.job.clone(),
                id,
                known: self.ids()?,
            }
            .into()),
        }
    }

    /// The newest run, if any.
    pub fn last(&self) -> Result<Option<RunRecord>, Error> {
        for id in self.ids()?.into_iter().rev() {
            if let Some(record) = self.read(id)? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Removes the folders of all runs but the newest `keep`; a run under
    /// way is never removed. Returns the ids removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<u64>, Error> {
        let records = self.list()?;
        let Some(newest) = records.last().map(|r| r.id) else {
            return Ok(Vec::new());
        };
        let old: Vec<u64> = records
            .iter()
            .rev()
            .skip(keep)
            .filter(|r| r.result != RunResult::Running)
            .map(|r| r.id)
            .rev()
            .collect();
        if old.is_empty() {
            return Ok(old);
        }
        // Written before anything goes, so that the next run does not take
        // the id of a removed one.
        if self.recorded_last_id()? < newest {
            let path = self.dir.join(LAST_ID);
            atomic_file::write(&path, newest.to_string().as_bytes(), Overwrite::Yes)
                .map_err(StoreError::from)?;
        }
        for &id in &old {
            // Renamed first, so a half-removed folder never reads as a run.
            let doomed = self.dir.join(format!(".removing-{id}"));
            std::fs::rename(self.dir(id), &doomed).map_err(Error::io(self.dir(id)))?;
            std::fs::remove_dir_all(&doomed).map_err(Error::io(&doomed))?;
        }
        Ok(old)
    }

    /// The ids of the run folders, in order.
    fn ids(&self) -> Result<Vec<u64>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io(&self.dir))?;
            // Only names that are plain numbers: `.last-id`, `.removing-3`
            // and strays are not runs.
            if let Some(id) = entry.file_name().to_str().and_then(parse_id) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The highest id ever given: of the folders and of removed runs.
    fn highest_id(&self) -> Result<u64, Error> {
        let folders = self.ids()?.last().copied().unwrap_or(0);
        Ok(folders.max(self.recorded_last_id()?))
    }

    fn recorded_last_id(&self) -> Result<u64, Error> {
        let path = self.dir.join(LAST_ID);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().unwrap_or(0)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io(path)(e)),
        }
    }

    /// Reads run `id`, recording it as interrupted when its process is
    /// gone; none when it has no `run.json`.
    fn read(&self, id: u64) -> Result<Option<RunRecord>, Error> {
        let path = self.dir(id).join(RECORD);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path)(e)),
        };
        let mut record: RunRecord = serde_json::from_slice(&text)
            .map_err(|source| StoreError::BadRecord { path, source })?;
        if record.result == RunResult::Running && !record.owner.is_alive() {
            // The log's last change is the best guess of when it stopped.
            let stopped = std::fs::metadata(self.log_file(id))
                .and_then(|m| m.modified())
                .map(Timestamp)
                .unwrap_or_else(|_| Timestamp::now());
            record.close(
                stopped,
                RunResult::Error,
                Some(INTERRUPTED.to_owned()),
                None,
            );
            save(&self.dir(id), &record)?;
        }
        Ok(Some(record))
    }
}

/// A run folder's name as its id: digits only, no leading zero.
fn parse_id(name: &str) -> Option<u64> {
    let plain =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) && !name.starts_with('0');
    plain.then(|| name.parse().ok()).flatten()
}

/// Writes `record` as the `run.json` of `dir`, whole or not at all.
fn save(dir: &Utf8Path, record: &RunRecord) -> Result<(), Error> {
    let mut json = serde_json::to_vec_pretty(record).expect("a run record is always JSON");
    json.push(b'\n');
    atomic_file::write(&dir.join(RECORD), &json, Overwrite::Yes).map_err(StoreError::from)?;
    Ok(())
}

impl RunRecord {
    /// Ends the run at `at`; steps still running end with it.
    fn close(
        &mut self,
        at: Timestamp,
        result: RunResult,
        reason: Option<String>,
        status: Option<i32>,
    ) {
        self.finished = Some(at);
        self.result = result;
        self.reason = reason;
        self.status = status;
        let step_result = match result {
            // A run cannot pass with a step that never ended.
            RunResult::Passed | RunResult::Running => RunResult::Error,
            other => other,
        };
        for step in &mut self.steps {
            if step.result == RunResult::Running {
                step.result = step_result;
                step.finished.get_or_insert(at);
            }
        }
    }
}

/// The run under way. Dropping it without [`Run::finish`] leaves it
/// `running` until this process ends; then it reads as interrupted.
pub struct Run {
    dir: Utf8PathBuf,
    record: RunRecord,
    log: LogFile,
    /// The first failure to write a log, reported by [`Run::finish`].
    log_error: Option<StoreError>,
}

impl Run {
    /// Its id.
    pub fn id(&self) -> u64 {
        self.record.id
    }

    /// Its folder.
    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// Its record, to fill in (commit, signer, VM, artifacts); written by
    /// [`Run::save`] and [`Run::finish`].
    pub fn record(&mut self) -> &mut RunRecord {
        &mut self.record
    }

    /// Writes its `run.json` as it is now.
    pub fn save(&self) -> Result<(), Error> {
        save(&self.dir, &self.record)
    }

    /// Writes a line of the runner's own to the combined log.
    pub fn note(&mut self, text: &str) {
        let now = Timestamp::now();
        for line in text.lines() {
            let written = self.log.line(&format!("{now} [{}] {line}", log::RUNNER));
            self.keep_error(written);
        }
    }

    /// Begins step `name`: its record (running, begun now) and its log
    /// `steps/<n>-<name>.log`.
    pub fn step(&mut self, name: &str) -> StepLog<'_> {
        let index = self.record.steps.len();
        self.record.steps.push(StepRecord {
            name: name.to_owned(),
            started: Timestamp::now(),
            finished: None,
            status: None,
            result: RunResult::Running,
        });
        let path =
            self.dir
                .join("steps")
                .join(format!("{}-{}.log", index + 1, log::file_name(name)));
        let file = match LogFile::open(path) {
            Ok(file) => Some(file),
            Err(Error::Io { path, source }) => {
                self.keep_error(Err(StoreError::Log { path, source }));
                None
            }
            Err(_) => None,
        };
        self.note(&format!("step {name} started"));
        StepLog::new(self, index, file)
    }

    /// Where artifacts copied back from the guest go.
    pub fn artifacts_dir(&self) -> Utf8PathBuf {
        self.dir.join("artifacts")
    }

    /// Ends the run: its result, the reason (for `error`, `rejected`,
    /// `failed`, `cancelled`) and the failing step's exit status. Steps
    /// still running end with it. The record is saved even when a log
    /// could not be written; then that failure is the error.
    pub fn finish(
        mut self,
        result: RunResult,
        reason: Option<String>,
        status: Option<i32>,
    ) -> Result<RunRecord, Error> {
        let now = Timestamp::now();
        self.record.close(now, result, reason, status);
        let duration = humantime::format_duration(std::time::Duration::from_secs(
            self.record.started.until(now).as_secs(),
        ));
        self.note(&format!(
            "run {} ended: {} after {duration}",
            self.record.id,
            self.record.outcome()
        ));
        self.save()?;
        match self.log_error {
            Some(error) => Err(error.into()),
            None => Ok(self.record),
        }
    }

    /// Keeps the first failure to write a log.
    fn keep_error(&mut self, written: Result<(), StoreError>) {
        if let Err(error) = written {
            self.log_error.get_or_insert(error);
        }
    }
}

impl Observer for Run {
    /// kvmx's progress outside the steps (bringing the VM up) as runner
    /// lines.
    fn event(&mut self, event: Event<'_>) {
        if let Some(text) = log::event_text(&event) {
            self.note(&text);
        }
    }
}
