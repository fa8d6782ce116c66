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
    /// Building the VM's missing image failed.
    #[error(transparent)]
    Image(#[from] kvmx_image::Error),
    /// A start hook failed after the guest came up; the VM runs on.
    #[error("a start hook of {vm} failed; {vm} is running")]
    StartHook {
        /// The VM.
        vm: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// Waiting for something took longer than allowed.
    #[error("{what} did not happen within {} s; {left}", .after.as_secs())]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: std::time::Duration,
        /// The state it leaves ("the VM is still running").
        left: String,
    },
    /// The caller's cancel flag was set (Ctrl-C).
    #[error("interrupted; {left}")]
    Interrupted {
        /// The state it leaves.
        left: String,
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
            Error::Guest { hint, .. } | Error::Remote { hint, .. } => Some(hint.clone()),
            Error::Image(error) => error.hint(),
            Error::StartHook { vm, source } => Some(format!(
                "{}; run `kvmx restart {vm}` once fixed",
                source.hint().unwrap_or_else(|| "fix the hook".into())
            )),
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
