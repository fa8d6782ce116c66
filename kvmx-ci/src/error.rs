//! kvmx-ci's errors.

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
    /// The source failed verification or could not be checked.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Wrong use: the message says what to do.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<camino::Utf8PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
