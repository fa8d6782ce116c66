//! The error of building an image.

use camino::Utf8PathBuf;

use crate::prerequisites::Missing;
use crate::process::ToolError;

/// What can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
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
    /// The config asks for something this build cannot do.
    #[error("{0}")]
    Unsupported(String),
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
    /// A key could not be made or read.
    #[error("SSH key {path}")]
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

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::ImageExists(_) => Some("pass --force to replace it".into()),
            Error::Missing(missing) => {
                let packages = Missing::packages(missing);
                (!packages.is_empty()).then(|| format!("apt-get install {}", packages.join(" ")))
            }
            Error::Tool(tool) => Some(format!("the full output is in {}", tool.log)),
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
