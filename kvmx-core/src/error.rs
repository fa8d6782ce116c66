//! The error of kvmx-core's operations.

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::ConfigError;
use crate::layout::LayoutError;

/// What kind of failure an error is. Every kvmx library error has one (its
/// `kind` method decides it for each variant), and a program picks its exit
/// status from it. Deliberately not `#[non_exhaustive]`: a program's
/// mapping to exit statuses must name every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The work was tried and failed, or the host, the guest or a VM is not
    /// in a state that allows it.
    Failure,
    /// The caller asked wrongly (an argument or an environment variable);
    /// nothing was tried.
    Usage,
    /// A config file is wrong; the error points at the place.
    Config,
    /// A command in the guest failed with this exit status (1 to 255).
    Guest(u8),
    /// Stopped by a signal (SIGINT or SIGTERM).
    Interrupted,
}

/// What can go wrong when kvmx-core reads or writes its files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A config file is wrong; the error points at the place.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// kvmx's folders cannot be found.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// No project file was found walking up from a folder.
    #[error("no kvmx.toml or kvmxfile in {start} or any folder above it")]
    NoProject {
        /// Where the search started.
        start: Utf8PathBuf,
    },
    /// A VM name is neither registered nor a project folder.
    #[error("no VM named \"{name}\"")]
    UnknownVm {
        /// The name asked for.
        name: String,
        /// Registered names, for the hint.
        known: Vec<String>,
    },
    /// A name is already registered for another folder.
    #[error("the name \"{name}\" is already registered for {existing}")]
    NameTaken {
        /// The name.
        name: String,
        /// The folder it belongs to.
        existing: Utf8PathBuf,
    },
    /// A file that would be overwritten already exists.
    #[error("{path} already exists")]
    Exists {
        /// The file.
        path: Utf8PathBuf,
    },
    /// A path is not valid UTF-8.
    #[error("the path {0:?} is not valid UTF-8")]
    NotUtf8(std::path::PathBuf),
    /// A file operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The file.
        path: Utf8PathBuf,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A closure that wraps an I/O error from reading `path`.
    pub fn io(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        Self::io_doing("read", path)
    }

    /// A closure that wraps an I/O error from `action` on `path`.
    pub fn io_doing<'a>(
        action: &'static str,
        path: &'a Utf8Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::NoProject { .. } | Error::UnknownVm { .. } => ErrorKind::Usage,
            Error::Layout(_)
            | Error::NameTaken { .. }
            | Error::Exists { .. }
            | Error::NotUtf8(_)
            | Error::Io { .. } => ErrorKind::Failure,
        }
    }

    /// Advice for the user, when there is something to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(error) => error.hint.clone(),
            Error::NoProject { .. } => Some(
                "run `kvmx init` to make a project here, or name a registered VM (see `kvmx list`)"
                    .into(),
            ),
            Error::UnknownVm { known, .. } if known.is_empty() => {
                Some("no VMs are registered yet: run `kvmx init` in a project folder".into())
            }
            Error::UnknownVm { known, .. } => Some(format!("registered VMs: {}", known.join(", "))),
            Error::NameTaken { .. } => {
                Some("pick another name with --name, or set vm.name in kvmx.toml".into())
            }
            Error::Exists { .. } => Some("pass --force to overwrite it".into()),
            _ => None,
        }
    }
}
