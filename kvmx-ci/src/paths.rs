//! Where kvmx-ci keeps a job's files: everything of a job under
//! `<data>/ci/<job>/`, its lock under the runtime folder, job files under
//! `<config>/ci/`.

use camino::Utf8PathBuf;
use kvmx_core::Layout;

/// The folder of job files.
pub fn jobs_dir(layout: &Layout) -> Utf8PathBuf {
    layout.config_dir.join("ci")
}

/// The files of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPaths {
    /// `<data>/ci/<job>`: everything below is the job's.
    pub root: Utf8PathBuf,
    /// The bare mirror of the source.
    pub mirror: Utf8PathBuf,
    /// The last verified commit and its signer (JSON).
    pub verified: Utf8PathBuf,
    /// The trust root recorded by `kvmx-ci trust` (JSON).
    pub trust: Utf8PathBuf,
    /// The job's own OpenPGP keyring (a GnuPG home).
    pub keyring: Utf8PathBuf,
    /// The last verified commit, exported (a project job's VM config
    /// lives there).
    pub checkout: Utf8PathBuf,
    /// One folder per run.
    pub runs: Utf8PathBuf,
    /// Held while a run of the job is under way.
    pub lock: Utf8PathBuf,
}

impl JobPaths {
    /// The files of the job `name`.
    pub fn new(layout: &Layout, name: &str) -> JobPaths {
        let root = layout.data_dir.join("ci").join(name);
        JobPaths {
            mirror: root.join("mirror.git"),
            verified: root.join("verified.json"),
            trust: root.join("trust.json"),
            keyring: root.join("gnupg"),
            checkout: root.join("checkout"),
            runs: root.join("runs"),
            lock: layout.runtime_dir.join("ci").join(format!("{name}.lock")),
            root,
        }
    }
}
