//! kvmx-ci's errors.

use kvmx_core::ErrorKind;

/// What went wrong in kvmx-ci.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A job file is wrong (with file, line and column).
    #[error(transparent)]
    Job(#[from] kvmx_core::config::ConfigError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: camino::Utf8PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A kvmx folder cannot be found.
    #[error(transparent)]
    Layout(#[from] kvmx_core::layout::LayoutError),
    /// The VM side failed.
    #[error(transparent)]
    Vm(#[from] kvmx_provision::Error),
    /// Another run of the job holds its lock.
    #[error("a run of job {job} is under way; wait for it with `kvmx-ci run --wait {job}`")]
    Busy {
        /// The job.
        job: String,
    },
    /// The work was stopped by SIGINT, SIGTERM or a cancel flag.
    #[error("cancelled")]
    Cancelled,
    /// A run folder or its record is wrong or missing.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The HTML report cannot be written.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// No job file has this name.
    #[error("no job `{name}` in {dir}{}", known_jobs(.known, .suggestion.as_deref()))]
    UnknownJob {
        /// The name asked for.
        name: String,
        /// The folder of job files.
        dir: camino::Utf8PathBuf,
        /// The jobs there are.
        known: Vec<String>,
        /// The closest known name.
        suggestion: Option<String>,
    },
    /// A schedule cannot be checked, computed or turned into a timer.
    #[error("schedule `{schedule}`: {message}")]
    Schedule {
        /// The schedule as the job file writes it.
        schedule: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A unit file is in the way that kvmx-ci did not write.
    #[error("{path} exists and was not written by kvmx-ci; move it away or ask to replace it")]
    ForeignUnit {
        /// The unit file.
        path: camino::Utf8PathBuf,
    },
    /// A tool (systemd-analyze, systemctl, ...) failed or ran past its
    /// deadline.
    #[error(transparent)]
    Tool(#[from] kvmx_core::process::ProcessError),
    /// A kvmx-core file operation (an atomic write) failed.
    #[error(transparent)]
    Core(#[from] kvmx_core::Error),
    /// The source failed verification or could not be checked.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Wrong use: the message says what to do.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Advice for the user, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Job(error) => error.hint.clone(),
            Error::Core(error) => error.hint(),
            Error::Vm(error) => error.hint(),
            _ => None,
        }
    }

    /// What kind of failure this is, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Job(_) | Error::Schedule { .. } => ErrorKind::Config,
            Error::Usage(_) | Error::UnknownJob { .. } | Error::ForeignUnit { .. } => {
                ErrorKind::Usage
            }
            Error::Cancelled => ErrorKind::Interrupted,
            Error::Core(error) => error.kind(),
            Error::Vm(error) => error.kind(),
            _ => ErrorKind::Failure,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<camino::Utf8PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

fn known_jobs(known: &[String], suggestion: Option<&str>) -> String {
    let mut text = if known.is_empty() {
        " (there are no job files yet: write one as <name>.toml there)".to_owned()
    } else {
        format!(" (jobs: {})", known.join(", "))
    };
    if let Some(name) = suggestion {
        text.push_str(&format!("; did you mean `{name}`?"));
    }
    text
}
