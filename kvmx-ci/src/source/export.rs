//! Export of a commit by its id: `git archive` of the mirror into a
//! temporary tar file, unpacked by kvmx-ci into the destination folder. The
//! result is the commit's tree as it is: the commit's own export
//! attributes are overridden.
//! Every path is checked before anything is written, and nothing lands
//! outside the folder.

use std::collections::HashSet;
use std::path::{Component, PathBuf};

use camino::Utf8Path;

use super::SourceError;
use super::git::Git;

/// Writes the tree of `commit` into `dest` (missing or empty).
pub(crate) fn archive(
    git: &Git,
    scratch: &Utf8Path,
    commit: &str,
    dest: &Utf8Path,
) -> Result<(), SourceError> {
    std::fs::create_dir_all(dest).map_err(SourceError::io(dest))?;
    let mut entries = std::fs::read_dir(dest).map_err(SourceError::io(dest))?;
    if entries.next().is_some() {
        return Err(SourceError::Io {
            path: dest.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the export folder is not empty; give a new or empty folder",
            ),
        });
    }
    std::fs::create_dir_all(scratch).map_err(SourceError::io(scratch))?;
    let tar = tempfile::Builder::new()
        .prefix("export-")
        .suffix(".tar")
        .tempfile_in(scratch)
        .map_err(SourceError::io(scratch))?;
    let tar_path = Utf8Path::from_path(tar.path()).unwrap_or(scratch);
    // The mirror's own attributes win over the commit's .gitattributes:
    // the export is the commit's tree, with nothing left out
    // (export-ignore) or rewritten (export-subst).
    let info = git.mirror().join("info");
    std::fs::create_dir_all(&info).map_err(SourceError::io(&info))?;
    let attributes = info.join("attributes");
    std::fs::write(&attributes, "* -export-ignore -export-subst\n")
        .map_err(SourceError::io(&attributes))?;
    let written = git
        .run(
            &format!("archive commit {commit}"),
            &["archive", "--format=tar", "-o", tar_path.as_str(), commit],
        )
        .map_err(SourceError::from)
        .and_then(|_| check_paths(tar_path, commit, dest))
        .and_then(|()| unpack(tar_path, commit, dest));
    if written.is_err() {
        // Half an export must not look like a whole one.
        let _ = std::fs::remove_dir_all(dest);
    }
    written
}

/// Refuses absolute paths, `..` and paths through a symlink of the
/// archive before anything is unpacked.
fn check_paths(tar_path: &Utf8Path, commit: &str, dest: &Utf8Path) -> Result<(), SourceError> {
    let file = std::fs::File::open(tar_path).map_err(SourceError::io(tar_path))?;
    let mut archive = tar::Archive::new(file);
    let mut symlinks: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(SourceError::io(tar_path))? {
        let entry = entry.map_err(SourceError::io(tar_path))?;
        let path = entry.path().map_err(SourceError::io(tar_path))?;
        let escapes = path
            .components()
            .any(|part| !matches!(part, Component::Normal(_) | Component::CurDir))
            || path.ancestors().any(|above| symlinks.contains(above));
        if entry.header().entry_type().is_symlink() {
            symlinks.insert(path.to_path_buf());
        }
        if escapes {
            return Err(SourceError::UnsafePath {
                commit: commit.to_owned(),
                entry: path.to_string_lossy().into_owned(),
                dest: dest.to_owned(),
            });
        }
    }
    Ok(())
}

fn unpack(tar_path: &Utf8Path, commit: &str, dest: &Utf8Path) -> Result<(), SourceError> {
    let file = std::fs::File::open(tar_path).map_err(SourceError::io(tar_path))?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_mtime(true);
    for entry in archive.entries().map_err(SourceError::io(tar_path))? {
        let mut entry = entry.map_err(SourceError::io(tar_path))?;
        // git archive's pax header (the commit id) is no file.
        if entry.header().entry_type().is_pax_global_extensions() {
            continue;
        }
        let path = entry
            .path()
            .map_err(SourceError::io(tar_path))?
            .into_owned();
        // unpack_in also refuses a path through a symlink out of `dest`.
        let inside = entry.unpack_in(dest).map_err(SourceError::io(dest))?;
        if !inside {
            return Err(SourceError::UnsafePath {
                commit: commit.to_owned(),
                entry: path.to_string_lossy().into_owned(),
                dest: dest.to_owned(),
            });
        }
    }
    Ok(())
}
