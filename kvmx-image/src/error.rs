//! The error of building an image.

use camino::Utf8PathBuf;
use kvmx_core::ErrorKind;

use crate::mbr::GrubLayoutError;
use crate::prerequisites::Missing;
use kvmx_core::process::{ProcessError, ToolError};

/// What can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image exists and `force` was not given.
    #[error("the image {0} already exists")]
    ImageExists(Utf8PathBuf),
    /// Tools or files the build needs are not installed.
    #[error("missing prerequisites:\n{}", Missing::list(.0))]
    Missing(Vec<Missing>),
    /// A tool failed; the error carries the tail of its output.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The build was interrupted by a signal.
    #[error("interrupted: the partial image was removed")]
    Interrupted,
    /// The configured size cannot hold the system.
    #[error("the image size {size_mib} MiB is too small: the system needs about {needed_mib} MiB")]
    TooSmall {
        /// The configured size.
        size_mib: u64,
        /// What the system needs, with file system overhead.
        needed_mib: u64,
    },
    /// The config and options ask for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The VM's user cannot be added to the guest's accounts.
    #[error("cannot add the VM's user to the guest: {problem}")]
    User {
        /// Why not.
        problem: String,
    },
    /// The bootstrapped tarball is not a system tree.
    #[error("{tarball} holds no /etc/passwd or /etc/group: not a system tree")]
    NotASystem {
        /// The tarball.
        tarball: Utf8PathBuf,
    },
    /// GRUB's images, as installed on the host, cannot be written to the
    /// disk.
    #[error(transparent)]
    Grub(#[from] GrubLayoutError),
    /// The password could not be hashed.
    #[error("cannot hash the password: {0}")]
    PasswordHash(String),
    /// The base VM cannot be used.
    #[error("cannot use the base VM \"{name}\": {reason}")]
    Base {
        /// The base's name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// A file operation failed, or another kvmx-core operation did (its
    /// `Io` error names the action and the file).
    #[error(transparent)]
    Core(#[from] kvmx_core::Error),
    /// A job in the builder VM failed.
    #[error("the builder VM failed: {0}")]
    Builder(#[from] crate::builder::BuilderError),
    /// The installer failed, stopped early or ran out of time.
    #[error("the install failed")]
    Install(#[from] crate::install::InstallError),
    /// A key could not be made or read.
    #[error("cannot make or read the SSH key {path}")]
    Key {
        /// The key file.
        path: Utf8PathBuf,
        /// The reason.
        #[source]
        source: ssh_key::Error,
    },
}

impl Error {
    /// A closure turning an I/O error into kvmx-core's `Io` error.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<Utf8PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| {
            Error::Core(kvmx_core::Error::Io {
                action,
                path,
                source,
            })
        }
    }

    /// What kind of failure this is. Every variant is named, so a new one
    /// cannot go without a decision.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(error) => error.kind(),
            Error::Interrupted => ErrorKind::Interrupted,
            Error::ImageExists(_)
            | Error::Missing(_)
            | Error::Tool(_)
            | Error::TooSmall { .. }
            | Error::Unsupported(_)
            | Error::User { .. }
            | Error::NotASystem { .. }
            | Error::Grub(_)
            | Error::PasswordHash(_)
            | Error::Base { .. }
            | Error::Builder(_)
            | Error::Install(_)
            | Error::Key { .. } => ErrorKind::Failure,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::ImageExists(_) => Some("pass --force to replace it".into()),
            Error::Missing(missing) => {
                let packages = Missing::packages(missing);
                (!packages.is_empty()).then(|| format!("apt-get install {}", packages.join(" ")))
            }
            Error::Tool(tool) => tool
                .log
                .as_ref()
                .map(|log| format!("the full output is in {log}")),
            Error::Builder(_) => {
                Some("the builder's whole output is in the VM's create.log".into())
            }
            Error::Install(_) => Some(
                "the installer's whole console output is in the VM's install.log; `kvmx install --force` tries again".into(),
            ),
            Error::User { .. } => Some("set vm.user in kvmx.toml to another name".into()),
            Error::NotASystem { .. } => Some(
                "the bootstrap may have failed quietly: clear the cache with `kvmx-create cache clear` and build again".into(),
            ),
            Error::Grub(_) => Some(
                "reinstall the host's grub-pc-bin package, or set create.bootloader = \"direct\"".into(),
            ),
            Error::TooSmall { needed_mib, .. } => Some(format!(
                "set image.size to at least {}M",
                needed_mib.div_ceil(256) * 256
            )),
            Error::Core(kvmx_core::Error::Io { source, .. })
                if source.raw_os_error() == Some(nix::libc::ENOSPC) =>
            {
                Some("free some disk space and try again".into())
            }
            Error::Core(error) => error.hint(),
            _ => None,
        }
    }
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ProcessError> for Error {
    fn from(error: ProcessError) -> Self {
        match error {
            ProcessError::Failed(tool) => Error::Tool(tool),
            ProcessError::Interrupted => Error::Interrupted,
            ProcessError::Spawn { program, source } => Error::Core(kvmx_core::Error::io_doing(
                "run",
                program.as_str().into(),
            )(source)),
            // A kind added later: its text is kept.
            other => Error::Unsupported(other.to_string()),
        }
    }
}
