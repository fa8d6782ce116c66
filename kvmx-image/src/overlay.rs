//! The files a build adds to the bootstrapped tree, with the owners and
//! modes they have in the guest, written as a tarball that is unpacked over
//! the tree as the guest's root (see [`crate::userns`]).

use std::io::Write;

use camino::Utf8Path;

use crate::{Error, Result};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A folder.
    Dir,
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
}

/// One file, folder or link, at a path relative to the guest's `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path in the guest, without the leading `/`.
    pub path: String,
    /// What it is.
    pub content: Content,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The files a build adds, in order (folders before what they hold).
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    entries: Vec<Entry>,
}

impl Overlay {
    /// An empty overlay.
    pub fn new() -> Self {
        Overlay::default()
    }

    /// Adds a file owned by root.
    pub fn file(&mut self, path: &str, mode: u32, contents: impl Into<Vec<u8>>) -> &mut Self {
        self.owned_file(path, mode, 0, 0, contents)
    }

    /// Adds a file owned by `uid`:`gid`.
    pub fn owned_file(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        contents: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.push(path, Content::File(contents.into()), mode, uid, gid)
    }

    /// Adds a folder owned by `uid`:`gid`.
    pub fn dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) -> &mut Self {
        self.push(path, Content::Dir, mode, uid, gid)
    }

    /// Adds a symbolic link owned by root.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.push(path, Content::Symlink(target.into()), 0o777, 0, 0)
    }

    fn push(&mut self, path: &str, content: Content, mode: u32, uid: u32, gid: u32) -> &mut Self {
        self.entries.push(Entry {
            path: path.trim_start_matches('/').to_owned(),
            content,
            mode,
            uid,
            gid,
        });
        self
    }

    /// The entries.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        let path = path.trim_start_matches('/');
        self.entries.iter().rev().find(|e| e.path == path)
    }

    /// Writes the overlay as a tarball at `path`.
    pub fn write_tar(&self, path: &Utf8Path) -> Result<()> {
        let file = std::fs::File::create(path).map_err(Error::io("create", path))?;
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        for entry in &self.entries {
            append(&mut builder, entry).map_err(Error::io("write", path))?;
        }
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(Error::io("write", path))?;
        Ok(())
    }
}

fn append(builder: &mut tar::Builder<impl Write>, entry: &Entry) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid.into());
    header.set_gid(entry.gid.into());
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let path = &entry.path;
    match &entry.content {
        Content::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, path, std::io::empty())
        }
        Content::File(bytes) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            builder.append_data(&mut header, path, bytes.as_slice())
        }
        Content::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, path, target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tarball_keeps_owners_and_modes() {
        let mut overlay = Overlay::new();
        overlay
            .dir("/home/user", 0o700, 1000, 1000)
            .owned_file("home/user/.ssh/authorized_keys", 0o600, 1000, 1000, "key\n")
            .symlink("etc/link", "/target");
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("o.tar");
        overlay.write_tar(&path).unwrap();
        let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
        let seen: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("home/user".into(), 0o700, 1000, 0),
                ("home/user/.ssh/authorized_keys".into(), 0o600, 1000, 4),
                ("etc/link".into(), 0o777, 0, 0),
            ]
        );
    }
}
