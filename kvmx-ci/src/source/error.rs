//! Why a source could not be verified, exported or trusted.

use camino::Utf8PathBuf;
use kvmx_core::process::ProcessError;

/// What went wrong with a job's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source failed verification: the run is "rejected", no VM work
    /// happens.
    #[error("commit {commit}: {reason}")]
    Rejected {
        /// The commit that failed (the tag's commit in tag mode).
        commit: String,
        /// Why, naming the key, tag or commit concerned.
        reason: String,
    },
    /// Neither the job file nor `kvmx-ci trust` gave a trust root.
    #[error(
        "job {job} has no trust root: run `kvmx-ci trust {job}` to review and record the first \
         trusted commit, or set source.trust_root in the job file"
    )]
    NoTrustRoot {
        /// The job.
        job: String,
    },
    /// The job's source settings do not fit its policy or mode.
    #[error("job {job}: {message}")]
    Config {
        /// The job.
        job: String,
        /// What is wrong and what to set.
        message: String,
    },
    /// The branch or no tag matching the pattern is in the source.
    #[error("{what} not found in {url}")]
    NotFound {
        /// "branch main", "a tag matching v*", "commit 1234…".
        what: String,
        /// The source.
        url: String,
    },
    /// Fetching the source into the job's mirror failed.
    #[error("cannot fetch {url} into the job's mirror {mirror}")]
    Fetch {
        /// The source.
        url: String,
        /// The mirror.
        mirror: Utf8PathBuf,
        /// What git said.
        #[source]
        source: Box<ProcessError>,
    },
    /// The job's keyring file could not be imported.
    #[error("cannot import the OpenPGP keys of {file} into the job's keyring {keyring}")]
    Keyring {
        /// The job's armored keys.
        file: Utf8PathBuf,
        /// The job's GnuPG home.
        keyring: Utf8PathBuf,
        /// What gpg said.
        #[source]
        source: Box<ProcessError>,
    },
    /// A git command on the mirror failed.
    #[error(transparent)]
    Git(Box<ProcessError>),
    /// Export was asked for a commit that is not the last verified one (nor
    /// one of its ancestors).
    #[error(
        "commit {commit} is not verified for job {job}: only the last verified commit \
         ({last}) or its ancestors are exported; run the verification first"
    )]
    NotVerified {
        /// The job.
        job: String,
        /// The commit asked for.
        commit: String,
        /// The last verified commit, or "none".
        last: String,
    },
    /// The archive of a commit holds a path outside the destination, or one
    /// through a symlink of its own.
    #[error(
        "the archive of commit {commit} holds {entry:?}, a path outside {dest}; nothing of it is used"
    )]
    UnsafePath {
        /// The commit.
        commit: String,
        /// The offending path.
        entry: String,
        /// The destination folder.
        dest: Utf8PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: Utf8PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A record (`verified.json`, `trust.json`) could not be read.
    #[error("{path} is not a valid record; remove it and run `kvmx-ci trust {job}` again")]
    Record {
        /// The job.
        job: String,
        /// The file.
        path: Utf8PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be written.
    #[error(transparent)]
    State(#[from] kvmx_core::Error),
}

impl From<ProcessError> for SourceError {
    fn from(error: ProcessError) -> SourceError {
        SourceError::Git(Box::new(error))
    }
}

impl SourceError {
    /// Whether the source itself failed verification (a "rejected" run),
    /// rather than kvmx-ci failing to check it.
    pub fn is_rejection(&self) -> bool {
        matches!(self, SourceError::Rejected { .. })
    }

    pub(crate) fn io(path: impl Into<Utf8PathBuf>) -> impl FnOnce(std::io::Error) -> SourceError {
        let path = path.into();
        move |source| SourceError::Io { path, source }
    }

    pub(crate) fn rejected(commit: &str, reason: impl Into<String>) -> SourceError {
        SourceError::Rejected {
            commit: commit.to_owned(),
            reason: reason.into(),
        }
    }
}
