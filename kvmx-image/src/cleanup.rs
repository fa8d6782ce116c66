//! Guards for what a build makes before it is complete: a temporary image
//! file and a work folder. Dropped without being kept (on an error, or after
//! SIGINT/SIGTERM stopped the build), they remove what they hold, so that a
//! failed build leaves no partial image that `kvmx up` would boot.

use camino::{Utf8Path, Utf8PathBuf};

use crate::userns::GuestRoot;
use crate::{Error, Result};

/// A file that becomes the result by a rename, or is removed.
#[derive(Debug)]
pub struct TempFile {
    path: Option<Utf8PathBuf>,
}

impl TempFile {
    /// A new, unique, empty file in `dir`, named after `name`.
    pub fn new_in(dir: &Utf8Path, name: &str) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempfile_in(dir)
            .map_err(Error::io("create a file in", dir))?;
        let (_, path) = file
            .keep()
            .map_err(|e| Error::io("create a file in", dir)(e.error))?;
        let path = Utf8PathBuf::from_path_buf(path).expect("made from a UTF-8 folder");
        Ok(TempFile { path: Some(path) })
    }

    /// Its path.
    pub fn path(&self) -> &Utf8Path {
        self.path.as_deref().expect("kept only once")
    }

    /// Renames it to `target`, replacing what is there.
    pub fn keep(mut self, target: &Utf8Path) -> Result<()> {
        let path = self.path.take().expect("kept only once");
        if let Err(source) = std::fs::rename(&path, target) {
            let _ = std::fs::remove_file(&path);
            return Err(Error::io("rename the new image to", target)(source));
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A work folder removed when dropped, with the files of guest users in it.
#[derive(Debug)]
pub struct WorkDir {
    path: Utf8PathBuf,
    root: GuestRoot,
}

impl WorkDir {
    /// A new, unique folder in `dir`.
    pub fn new_in(dir: &Utf8Path, prefix: &str, root: GuestRoot) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let made = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(dir)
            .map_err(Error::io("create a folder in", dir))?;
        let path = Utf8PathBuf::from_path_buf(made.keep()).expect("made from a UTF-8 folder");
        Ok(WorkDir { path, root })
    }

    /// Its path.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        self.root.remove_tree(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_files_and_folders_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let file = TempFile::new_in(dir, "box.img").unwrap();
        let work = WorkDir::new_in(dir, ".work-", GuestRoot::detect()).unwrap();
        std::fs::write(work.path().join("x"), "x").unwrap();
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 2);
        drop(file);
        drop(work);
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    }

    #[test]
    fn kept_file_is_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let file = TempFile::new_in(dir, "box.img").unwrap();
        std::fs::write(file.path(), "image").unwrap();
        file.keep(&dir.join("box.img")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("box.img")).unwrap(),
            "image"
        );
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);
    }
}
