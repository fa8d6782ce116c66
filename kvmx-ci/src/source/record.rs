//! The job's records: the last verified commit (`verified.json`) and the
//! trust root recorded by `kvmx-ci trust` (`trust.json`), both written
//! atomically.

use camino::Utf8Path;
use kvmx_core::atomic_file::{self, Overwrite};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::SourceError;

/// The trust root recorded by `kvmx-ci trust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TrustRecord {
    /// The trusted commit.
    pub commit: String,
    /// Who signed it (none under the `none` policy).
    pub signer: Option<String>,
    /// The branch or tag it was found on.
    pub reference: String,
}

/// Reads a record; `None` when there is none.
pub(crate) fn read<T: DeserializeOwned>(
    job: &str,
    path: &Utf8Path,
) -> Result<Option<T>, SourceError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(SourceError::io(path)(error)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| SourceError::Record {
            job: job.to_owned(),
            path: path.to_owned(),
            source,
        })
}

/// Writes a record atomically.
pub(crate) fn write<T: Serialize>(path: &Utf8Path, record: &T) -> Result<(), SourceError> {
    let mut text = serde_json::to_vec_pretty(record).expect("a record serializes");
    text.push(b'\n');
    atomic_file::write(path, &text, Overwrite::Yes)?;
    Ok(())
}
