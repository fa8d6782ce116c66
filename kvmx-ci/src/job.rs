//! Job files: one strict TOML file per job, `<config>/ci/<job>.toml`, whose
//! file stem is the job's name.
//!
//! The model is here; reading a file ([`Job::load`], [`load_all`],
//! [`find`]) and the rules that involve several values are in its
//! submodules. Errors point at the file, line and column, as `kvmx.toml`'s
//! do.

mod check;
mod load;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use camino::Utf8PathBuf;
use kvmx_core::config::values::VmName;
use serde::{Deserialize, Serialize};

pub use load::{check_all, find, load_all};

/// One job, as its file says, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's name: its file stem (not written in the file).
    #[serde(skip)]
    pub name: String,
    /// The file it was read from (not written in the file).
    #[serde(skip)]
    pub file: Utf8PathBuf,
    /// Where the code comes from and how it is verified.
    pub source: Source,
    /// The VM the steps run in.
    pub vm: VmSpec,
    /// The steps, run in order in the guest; the first failure ends the run.
    // Missing steps are reported by the checks, with a better message than
    // serde's "missing field".
    #[serde(rename = "step", default)]
    pub steps: Vec<Step>,
    /// The whole run's time limit, VM work included.
    #[serde(with = "humantime_serde", default = "default_job_timeout")]
    pub timeout: Duration,
    /// Environment variables every step gets.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Guest paths copied back into the run folder after the steps (also
    /// after a failed step).
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// When `run --due`, the timer or the daemon run it; none: only by hand.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// How many runs are kept; older run folders are removed.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// A host command told about the result.
    #[serde(default)]
    pub notify: Option<Notify>,
}

fn default_job_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_keep() -> usize {
    20
}

/// The git source of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A git URL, `file://` URL or local path.
    pub url: String,
    /// The branch followed in `commits` mode.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// The tag pattern (git glob, e.g. `v*`) followed in `tag` mode.
    #[serde(default)]
    pub tag: Option<String>,
    /// How signatures are checked.
    pub verify: Policy,
    /// What must be signed.
    #[serde(default)]
    pub mode: Mode,
    /// `ssh` policy: an allowed_signers file (relative to the job file).
    #[serde(default)]
    pub allowed_signers: Option<Utf8PathBuf>,
    /// `openpgp` policy: armored public keys imported into a keyring used
    /// only for this job (relative to the job file).
    #[serde(default)]
    pub keyring: Option<Utf8PathBuf>,
    /// `openpgp` policy: the fingerprints allowed to sign.
    #[serde(default)]
    pub signers: Vec<String>,
    /// The first verified commit; else recorded by `kvmx-ci trust`.
    #[serde(default)]
    pub trust_root: Option<String>,
}

fn default_branch() -> String {
    "main".to_owned()
}

/// How a source's signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// git's SSH signatures against the job's allowed_signers file.
    Ssh,
    /// OpenPGP signatures against the job's own keyring and fingerprints.
    Openpgp,
    /// No check: every report says "unverified".
    None,
}

/// What a policy applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every new commit since the last verified one is signed.
    #[default]
    Commits,
    /// The newest tag matching the pattern carries a valid signature.
    Tag,
}

/// The VM a job runs in: exactly one of `project`, `name`, `template`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// A kvmx project inside the repository (a folder relative to its root
    /// holding `kvmx.toml` or `kvmxfile`).
    #[serde(default)]
    pub project: Option<Utf8PathBuf>,
    /// A registered VM.
    #[serde(default)]
    pub name: Option<VmName>,
    /// A template; runs get disposables of it.
    #[serde(default)]
    pub template: Option<VmName>,
    /// How fresh the VM must be for each run.
    pub fresh: Freshness,
    /// Where the exported source lands in the guest; relative paths are
    /// under the guest user's home.
    #[serde(default = "default_workdir")]
    pub workdir: String,
}

fn default_workdir() -> String {
    "src".to_owned()
}

/// How fresh a job's VM is for each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// A throwaway VM from a template; nothing is kept.
    Disposable,
    /// Destroy and rebuild the image, then provision.
    Recreate,
    /// Reuse the VM and provision it again.
    Provision,
    /// Reuse the VM as it is.
    Reuse,
}

/// One named step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Its name in logs and reports.
    pub name: String,
    /// A shell command line, run by the guest user's shell in the workdir.
    pub run: String,
    /// Its time limit.
    #[serde(with = "humantime_serde", default = "default_step_timeout")]
    pub timeout: Duration,
}

fn default_step_timeout() -> Duration {
    Duration::from_secs(1800)
}

/// When a job is due: a cron expression or a systemd calendar spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Five fields, `minute hour day month weekday` (parsed by croner).
    Cron(String),
    /// A systemd `OnCalendar=` spec (checked by `systemd-analyze calendar`).
    OnCalendar(String),
}

/// A host command run after a run, with the result in its environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// A shell command line run on the host by `sh -c`.
    pub command: String,
    /// Which results call it.
    #[serde(default)]
    pub on: NotifyOn,
}

/// Which results call the notify command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// Only `passed`.
    Success,
    /// Everything but `passed`.
    #[default]
    Failure,
    /// Every result.
    Always,
}
