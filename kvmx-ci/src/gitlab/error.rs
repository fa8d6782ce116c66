//! What goes wrong in a stage of the GitLab driver.

use camino::Utf8PathBuf;

/// A failure of a stage that is not the job script's own: gitlab-runner
/// gets `$SYSTEM_FAILURE_EXIT_CODE` for each of them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitlabError {
    /// A variable gitlab-runner sets is missing.
    #[error(
        "the environment variable {name} is not set: kvmx-ci gitlab runs as gitlab-runner's custom executor, which sets it for every stage"
    )]
    MissingVariable {
        /// The variable.
        name: String,
    },
    /// A variable has a value the driver cannot use.
    #[error("the environment variable {name}={value:?} is wrong: {problem}")]
    BadVariable {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// No template was named.
    #[error(
        "no template: pass --template NAME or set KVMX_CI_TEMPLATE to a registered kvmx VM with its own image"
    )]
    NoTemplate,
    /// The template cannot be opened.
    #[error("the template {name} cannot be opened")]
    Template {
        /// The template's name.
        name: String,
        /// Why.
        #[source]
        source: Box<kvmx_provision::Error>,
    },
    /// kvmx's folders cannot be found.
    #[error(transparent)]
    Layout(#[from] kvmx_core::layout::LayoutError),
    /// The job's VM could not be made or booted.
    #[error("the job's VM {vm} did not come up")]
    Boot {
        /// The VM.
        vm: String,
        /// Why.
        #[source]
        source: Box<kvmx_provision::Error>,
    },
    /// The job's VM is not there or not running for `run`.
    #[error(
        "the job's VM {vm} is not running: `prepare` did not run or failed, or the VM stopped since"
    )]
    NotRunning {
        /// The VM.
        vm: String,
    },
    /// The guest could not run the script (SSH failed or dropped).
    #[error("the script {script} could not run in the job's VM {vm}")]
    Guest {
        /// The VM.
        vm: String,
        /// The script.
        script: Utf8PathBuf,
        /// Why.
        #[source]
        source: Box<kvmx_provision::Error>,
    },
    /// A signal stopped the stage; the VM was erased.
    #[error("the stage was stopped by a signal; the job's VM {vm} was erased")]
    Interrupted {
        /// The VM.
        vm: String,
    },
    /// The job's VM could not be erased.
    #[error("the job's VM {vm} could not be erased; `kvmx-ci gitlab cleanup` tries again")]
    Erase {
        /// The VM.
        vm: String,
        /// Why.
        #[source]
        source: Box<kvmx_provision::Error>,
    },
    /// A folder of the VM is left that is not a disposable's.
    #[error(
        "{path} is in the way of the job's VM {vm} and is not a disposable's: remove it if it is not needed"
    )]
    InTheWay {
        /// The VM.
        vm: String,
        /// The folder.
        path: Utf8PathBuf,
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
}

impl GitlabError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<Utf8PathBuf>) -> impl FnOnce(std::io::Error) -> GitlabError {
        let path = path.into();
        move |source| GitlabError::Io { path, source }
    }
}
