//! The error of running and reaching VMs.

use camino::Utf8PathBuf;

use crate::qmp::QmpError;

/// What can go wrong running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kvmx-core operation failed.
    #[error(transparent)]
    Core(#[from] kvmx_core::Error),
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
    /// A socket path is longer than a unix socket allows.
    #[error("the socket path {path} is longer than 107 bytes")]
    SocketPathTooLong {
        /// The path.
        path: Utf8PathBuf,
    },
    /// The VM has no image yet.
    #[error("the VM has no image at {path}")]
    NoImage {
        /// Where it should be.
        path: Utf8PathBuf,
    },
    /// The VM must be stopped for this.
    #[error("{vm} is running")]
    Running {
        /// The VM.
        vm: String,
    },
    /// The VM must be running for this.
    #[error("{vm} is not running")]
    NotRunning {
        /// The VM.
        vm: String,
    },
    /// A host port a forward needs is taken.
    #[error("host port {port} ({what}) is already in use on {address}")]
    PortInUse {
        /// The port.
        port: u16,
        /// The address.
        address: String,
        /// What the forward is for.
        what: String,
    },
    /// QEMU could not start or exited at once.
    #[error("QEMU exited while starting{status}:\n{stderr}")]
    QemuFailed {
        /// ", with status N" or empty.
        status: String,
        /// The end of what QEMU printed.
        stderr: String,
    },
    /// The guest died or never answered.
    #[error("{what}; the last lines of its console:\n{console}")]
    Guest {
        /// What happened.
        what: String,
        /// The end of the serial console log.
        console: String,
        /// The likely cause.
        hint: String,
    },
    /// Reaching or using the guest over SSH failed for a known reason.
    #[error("{problem}")]
    Remote {
        /// What went wrong, naming the value at fault.
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// ssh could not reach the guest, or lost the connection while a
    /// command ran (ssh's own status 255, told apart from a command's).
    #[error("{problem}")]
    Transport {
        /// What went wrong, naming the guest's port.
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// Work in the guest ran past its timeout and was killed.
    #[error("{what} did not finish within {} and was killed", seconds(*.after))]
    TimedOut {
        /// The work, e.g. "the guest command `make test`".
        what: String,
        /// The timeout it had.
        after: std::time::Duration,
    },
    /// Work in the guest was cancelled through its cancel flag and killed.
    #[error("{what} was cancelled and killed")]
    Cancelled {
        /// The work.
        what: String,
    },
    /// A provisioning or hook step failed in the guest.
    #[error(transparent)]
    Step(#[from] crate::provision::StepFailed),
    /// A tool or a copy in the guest failed.
    #[error("{what}:\n{output}")]
    Tool {
        /// What failed, with its exit status.
        what: String,
        /// The end of what it printed.
        output: String,
    },
    /// A result would overwrite a file.
    #[error("{path} already exists")]
    TargetExists {
        /// The file.
        path: Utf8PathBuf,
    },
    /// A program could not be run.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A closure wrapping an I/O error from `action` on `path`.
    pub fn io<'a>(
        action: &'static str,
        path: &'a camino::Utf8Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Core(kvmx_core::Error::io_doing(action, path)(source))
    }

    /// Advice for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Core(error) => error.hint(),
            Error::NoImage { .. } => {
                Some("build it with `kvmx-create`, or let `kvmx up` build it".into())
            }
            Error::Running { .. } => Some("stop it first with `kvmx stop`".into()),
            Error::NotRunning { .. } => Some("start it with `kvmx up`".into()),
            Error::PortInUse { .. } => {
                Some("free the port or change network.forwards in kvmx.toml".into())
            }
            Error::Guest { hint, .. }
            | Error::Remote { hint, .. }
            | Error::Transport { hint, .. } => Some(hint.clone()),
            Error::TargetExists { .. } => {
                Some("kvmx never overwrites a file: remove or rename it, then run again".into())
            }
            Error::SocketPathTooLong { .. } => {
                Some("use a shorter VM name or a shorter XDG_RUNTIME_DIR / KVMX_HOME".into())
            }
            _ => None,
        }
    }
}

/// A duration as people write it: "90 s", "1.5 s", "250 ms".
fn seconds(duration: std::time::Duration) -> String {
    if duration < std::time::Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs_f64())
    }
}
