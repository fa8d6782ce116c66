//! What a build needs to know of a bootstrapped tarball before unpacking
//! it: the account files it edits, `/etc/skel`, the kernel's presence and
//! how much room the tree needs.

use std::io::Read;

use camino::Utf8Path;

use crate::{Error, Result};

/// ext4 block size used for the root file system.
pub const BLOCK: u64 = 4096;

/// A file from `/etc/skel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkelFile {
    /// Path below `/etc/skel`.
    pub name: String,
    /// Contents (empty for a folder).
    pub contents: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Whether it is a folder.
    pub is_dir: bool,
}

/// Facts about a tree, read from its tarball.
#[derive(Debug, Clone, Default)]
pub struct Rootfs {
    /// `/etc/passwd`.
    pub passwd: String,
    /// `/etc/group`.
    pub group: String,
    /// `/etc/shadow`.
    pub shadow: String,
    /// `/etc/gshadow`.
    pub gshadow: String,
    /// The contents of `/etc/skel`.
    pub skel: Vec<SkelFile>,
    /// Bytes the tree takes in whole blocks (folders count one block).
    pub used_bytes: u64,
    /// Number of files, folders and links.
    pub entries: u64,
}

impl Rootfs {
    /// Reads `tarball`, skipping over the contents of files it does not
    /// need.
    pub fn read(tarball: &Utf8Path) -> Result<Rootfs> {
        let file = std::fs::File::open(tarball).map_err(Error::io("read", tarball))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut rootfs = Rootfs::default();
        let bad = Error::io("read", tarball);
        let entries = match archive.entries_with_seek() {
            Ok(entries) => entries,
            Err(e) => return Err(bad(e)),
        };
        for entry in entries {
            let mut entry = entry.map_err(Error::io("read", tarball))?;
            let path = entry.path().map_err(Error::io("read", tarball))?;
            let path = path.to_string_lossy();
            let path = path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            let kind = entry.header().entry_type();
            let size = entry.header().size().unwrap_or(0);
            rootfs.entries += 1;
            rootfs.used_bytes += match kind {
                tar::EntryType::Regular => size.div_ceil(BLOCK) * BLOCK,
                tar::EntryType::Directory => BLOCK,
                _ => 0,
            };
            let mut read_text = |target: &mut String| -> Result<()> {
                entry
                    .read_to_string(target)
                    .map(|_| ())
                    .map_err(Error::io("read", tarball))
            };
            match path.as_str() {
                "etc/passwd" => read_text(&mut rootfs.passwd)?,
                "etc/group" => read_text(&mut rootfs.group)?,
                "etc/shadow" => read_text(&mut rootfs.shadow)?,
                "etc/gshadow" => read_text(&mut rootfs.gshadow)?,
                _ => {
                    if let Some(name) = path.strip_prefix("etc/skel/") {
                        let mode = entry.header().mode().unwrap_or(0o644);
                        let is_dir = kind == tar::EntryType::Directory;
                        let mut contents = Vec::new();
                        if kind == tar::EntryType::Regular {
                            entry
                                .read_to_end(&mut contents)
                                .map_err(Error::io("read", tarball))?;
                        }
                        if is_dir || kind == tar::EntryType::Regular {
                            rootfs.skel.push(SkelFile {
                                name: name.to_owned(),
                                contents,
                                mode,
                                is_dir,
                            });
                        }
                    }
                }
            }
        }
        if rootfs.passwd.is_empty() || rootfs.group.is_empty() {
            return Err(Error::NotASystem {
                tarball: tarball.to_owned(),
            });
        }
        Ok(rootfs)
    }

    /// The smallest ext4 file system (bytes) that holds the tree: its
    /// blocks, inode tables, the journal and room to boot.
    pub fn needed_bytes(&self) -> u64 {
        const MIB: u64 = 1 << 20;
        let data = self.used_bytes + self.entries * 256;
        data + data / 10 + 128 * MIB
    }
}
