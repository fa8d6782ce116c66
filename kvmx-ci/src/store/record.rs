//! What `run.json` holds: a run's result, its steps and who runs it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::owner::Owner;

/// A moment, written in JSON as an RFC 3339 UTC time
/// (`2026-11-29T13:20:01.250Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// This moment, to the millisecond: what `run.json` can hold, so a
    /// record read back equals the one written.
    pub fn now() -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let millis = Duration::from_millis(since_epoch.as_millis() as u64);
        Timestamp(UNIX_EPOCH + millis)
    }

    /// The time from `self` to `later`; zero when the clock went back.
    pub fn until(self, later: Timestamp) -> Duration {
        later.0.duration_since(self.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    /// To the second, as log lines and reports show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_seconds(self.0).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))
    }
}

/// How a run or a step ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// Under way.
    Running,
    /// Every step succeeded.
    Passed,
    /// A step exited non-zero.
    Failed,
    /// kvmx-ci or the VM failed (not the steps), or the run was interrupted.
    Error,
    /// The source did not pass verification; no VM work was done.
    Rejected,
    /// Stopped on request (a signal or `cancel`).
    Cancelled,
}

impl RunResult {
    /// The word used in `run.json`, logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Running => "running",
            RunResult::Passed => "passed",
            RunResult::Failed => "failed",
            RunResult::Error => "error",
            RunResult::Rejected => "rejected",
            RunResult::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name, as in the job file.
    pub name: String,
    /// When it began.
    pub started: Timestamp,
    /// When it ended; none while it runs.
    pub finished: Option<Timestamp>,
    /// Its exit status; none while it runs or when it had none (killed at
    /// its time limit, the connection lost).
    pub status: Option<i32>,
    /// How it ended.
    pub result: RunResult,
}

impl StepRecord {
    /// How long it ran; none while it runs.
    pub fn duration(&self) -> Option<Duration> {
        self.finished.map(|end| self.started.until(end))
    }
}

/// Everything known about one run: the content of its `run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The job's name.
    pub job: String,
    /// The run's number within the job: 1, 2, 3…
    pub id: u64,
    /// The kvmx-ci version that ran it.
    pub kvmx_version: String,
    /// When it began.
    pub started: Timestamp,
    /// When it ended; none while it runs.
    pub finished: Option<Timestamp>,
    /// How it ended.
    pub result: RunResult,
    /// Why, for `error`, `rejected`, `failed` and `cancelled`.
    pub reason: Option<String>,
    /// The exit status of the step that failed.
    pub status: Option<i32>,
    /// The commit that ran, once the source is verified.
    pub commit: Option<String>,
    /// Who signed it; none under the policy `none` or before verification.
    pub signer: Option<String>,
    /// Whether the source was verified (false under the policy `none`:
    /// reports say "unverified").
    pub verified: bool,
    /// The branch or tag that was followed.
    pub reference: Option<String>,
    /// The VM the steps ran in.
    pub vm: Option<String>,
    /// The steps begun, in order.
    pub steps: Vec<StepRecord>,
    /// The artifacts copied back, as paths relative to `artifacts/`.
    pub artifacts: Vec<String>,
    /// The process running it, to tell a run under way from one whose
    /// kvmx-ci was killed.
    pub(crate) owner: Owner,
}

impl RunRecord {
    /// A run begun now by this process.
    pub(crate) fn begin(job: &str, id: u64, verified: bool) -> RunRecord {
        RunRecord {
            job: job.to_owned(),
            id,
            kvmx_version: env!("CARGO_PKG_VERSION").to_owned(),
            started: Timestamp::now(),
            finished: None,
            result: RunResult::Running,
            reason: None,
            status: None,
            commit: None,
            signer: None,
            verified,
            reference: None,
            vm: None,
            steps: Vec::new(),
            artifacts: Vec::new(),
            owner: Owner::current(),
        }
    }

    /// How long it ran; none while it runs.
    pub fn duration(&self) -> Option<Duration> {
        self.finished.map(|end| self.started.until(end))
    }

    /// The process that runs or ran it.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The result with its reason, as `status` shows it: `error (interrupted)`.
    pub fn outcome(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{} ({reason})", self.result),
            None => self.result.to_string(),
        }
    }
}
