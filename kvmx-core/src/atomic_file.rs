//! Writing files so that a crash at any moment leaves either the old or the
//! new content, never a mix.

use std::io::Write;

use camino::Utf8Path;

use crate::Error;

/// Whether an existing file may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it.
    Yes,
    /// Fail with [`Error::Exists`].
    No,
}

/// Writes `contents` to `path` through a temporary file in the same folder
/// and a rename, creating the folder if needed.
pub fn write(path: &Utf8Path, contents: &[u8], overwrite: Overwrite) -> Result<(), Error> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_str().is_empty() => parent,
        _ => Utf8Path::new("."),
    };
    std::fs::create_dir_all(folder).map_err(Error::io_doing("create", folder))?;
    let mut temp =
        tempfile::NamedTempFile::new_in(folder).map_err(Error::io_doing("write into", folder))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(Error::io_doing("write", path))?;
    let persisted = match overwrite {
        Overwrite::Yes => temp.persist(path),
        Overwrite::No => temp.persist_noclobber(path),
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => Error::Exists {
            path: path.to_owned(),
        },
        _ => Error::io_doing("write", path)(e.error),
    })?;
    Ok(())
}
