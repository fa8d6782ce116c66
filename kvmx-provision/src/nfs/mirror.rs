//! The filesystem `kvmx-nfsd` serves: a host folder, seen through NFSv3.
//!
//! NFS names files by 64-bit ids; this keeps a table of the ids it handed
//! out and the path (below the shared folder) each stands for, updated on
//! rename and remove.
//!
//! Access control, since the server listens on the host's loopback where
//! any local user can connect:
//! * a file handle is the share's secret followed by the file id, so only a
//!   client that mounted with the secret holds valid handles;
//! * MOUNT only answers for the path `/SECRET` (the export list shows `/`).
//!
//! Confinement to the folder: names with `/` are refused, `..` stops at the
//! root, and no path is followed through a symlink (the client resolves
//! symlinks itself, so a path the server needs never contains one). A guest
//! racing a rename against the server's checks is not defended against.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nfsserve::fs_util::{metadata_to_fattr3, path_setattr};
use nfsserve::nfs::{
    fattr3, fileid3, filename3, nfs_fh3, nfspath3, nfsstat3, nfsstring, sattr3, set_size3,
};
use nfsserve::vfs::{DirEntry, NFSFileSystem, ReadDirResult, VFSCapabilities};

/// The id of the shared folder itself.
const ROOT: fileid3 = 1;

/// A host folder served over NFS.
pub struct MirrorFs {
    root: PathBuf,
    read_only: bool,
    secret: Vec<u8>,
    ids: Mutex<Ids>,
}

/// Ids and the relative paths they stand for ("" is the root).
#[derive(Default)]
struct Ids {
    paths: HashMap<fileid3, PathBuf>,
    by_path: HashMap<PathBuf, fileid3>,
    next: fileid3,
}

impl Ids {
    fn id_of(&mut self, path: &Path) -> fileid3 {
        if let Some(id) = self.by_path.get(path) {
            return *id;
        }
        self.next += 1;
        self.paths.insert(self.next, path.to_owned());
        self.by_path.insert(path.to_owned(), self.next);
        self.next
    }

    /// Forgets `path` and everything below it.
    fn forget(&mut self, path: &Path) {
        let gone: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in gone {
            if let Some(id) = self.by_path.remove(&p) {
                self.paths.remove(&id);
            }
        }
    }

    /// `from` and everything below it now live at `to`.
    fn rename(&mut self, from: &Path, to: &Path) {
        self.forget(to);
        let moved: Vec<(PathBuf, fileid3)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        for (old, id) in moved {
            let new = to.join(old.strip_prefix(from).expect("below from"));
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), id);
            self.paths.insert(id, new);
        }
    }
}

impl MirrorFs {
    /// Serves `root` (which must exist) to clients that know `secret`.
    pub fn new(root: &Path, read_only: bool, secret: &[u8]) -> std::io::Result<MirrorFs> {
        let mut ids = Ids {
            next: ROOT,
            ..Ids::default()
        };
        ids.paths.insert(ROOT, PathBuf::new());
        ids.by_path.insert(PathBuf::new(), ROOT);
        Ok(MirrorFs {
            root: root.canonicalize()?,
            read_only,
            secret: secret.to_vec(),
            ids: Mutex::new(ids),
        })
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relative(&self, id: fileid3) -> Result<PathBuf, nfsstat3> {
        self.ids()
            .paths
            .get(&id)
            .cloned()
            .ok_or(nfsstat3::NFS3ERR_STALE)
    }

    /// The host path of `id`, once every folder above it is checked to be
    /// a real folder inside the share (no symlink on the way).
    fn entry(&self, id: fileid3) -> Result<PathBuf, nfsstat3> {
        let relative = self.relative(id)?;
        if let Some(parent) = relative.parent() {
            self.check_real_dir(parent)?;
        }
        Ok(self.root.join(relative))
    }

    /// The host path of folder `id`, checked like [`MirrorFs::entry`] and
    /// itself a real folder.
    fn dir(&self, id: fileid3) -> Result<(PathBuf, PathBuf), nfsstat3> {
        let relative = self.relative(id)?;
        self.check_real_dir(&relative)?;
        Ok((self.root.join(&relative), relative))
    }

    fn check_real_dir(&self, relative: &Path) -> Result<(), nfsstat3> {
        let path = self.root.join(relative);
        match path.canonicalize() {
            Ok(real) if real == path && real.is_dir() => Ok(()),
            Ok(_) => Err(nfsstat3::NFS3ERR_NOTDIR),
            Err(error) => Err(status(&error)),
        }
    }

    /// A new entry `name` in folder `dirid`: its host and relative paths.
    fn child(&self, dirid: fileid3, name: &filename3) -> Result<(PathBuf, PathBuf), nfsstat3> {
        self.writable()?;
        let name = plain_name(name)?;
        let (dir, relative) = self.dir(dirid)?;
        Ok((dir.join(name), relative.join(name)))
    }

    fn writable(&self) -> Result<(), nfsstat3> {
        if self.read_only {
            Err(nfsstat3::NFS3ERR_ROFS)
        } else {
            Ok(())
        }
    }

    fn attributes(&self, id: fileid3, path: &Path) -> Result<fattr3, nfsstat3> {
        let metadata = path.symlink_metadata().map_err(|e| status(&e))?;
        Ok(metadata_to_fattr3(id, &metadata))
    }

    /// Records the new entry and returns its id and attributes.
    fn added(&self, path: &Path, relative: &Path) -> Result<(fileid3, fattr3), nfsstat3> {
        let id = self.ids().id_of(relative);
        Ok((id, self.attributes(id, path)?))
    }
}

/// A single path component, not `.` or `..`.
fn plain_name(name: &filename3) -> Result<&OsStr, nfsstat3> {
    let bytes: &[u8] = name.as_ref();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(nfsstat3::NFS3ERR_INVAL);
    }
    if bytes == b"." || bytes == b".." {
        return Err(nfsstat3::NFS3ERR_EXIST);
    }
    Ok(OsStr::from_bytes(bytes))
}

/// The NFS status for an I/O error.
fn status(error: &std::io::Error) -> nfsstat3 {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::NotFound => nfsstat3::NFS3ERR_NOENT,
        K::PermissionDenied => nfsstat3::NFS3ERR_ACCES,
        K::AlreadyExists => nfsstat3::NFS3ERR_EXIST,
        K::NotADirectory => nfsstat3::NFS3ERR_NOTDIR,
        K::IsADirectory => nfsstat3::NFS3ERR_ISDIR,
        K::DirectoryNotEmpty => nfsstat3::NFS3ERR_NOTEMPTY,
        K::ReadOnlyFilesystem => nfsstat3::NFS3ERR_ROFS,
        K::StorageFull => nfsstat3::NFS3ERR_NOSPC,
        K::InvalidFilename => nfsstat3::NFS3ERR_NAMETOOLONG,
        _ if error.raw_os_error() == Some(nix::libc::ELOOP) => nfsstat3::NFS3ERR_ACCES,
        _ => nfsstat3::NFS3ERR_IO,
    }
}

/// Opens an existing file without following a symlink.
fn open(path: &Path, write: bool) -> Result<std::fs::File, nfsstat3> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| status(&e))
}

#[async_trait::async_trait]
impl NFSFileSystem for MirrorFs {
    fn capabilities(&self) -> VFSCapabilities {
        if self.read_only {
            VFSCapabilities::ReadOnly
        } else {
            VFSCapabilities::ReadWrite
        }
    }

    fn root_dir(&self) -> fileid3 {
        ROOT
    }

    async fn lookup(&self, dirid: fileid3, filename: &filename3) -> Result<fileid3, nfsstat3> {
        let (_, relative) = self.dir(dirid)?;
        let child = match filename.as_ref() {
            b"." => relative,
            b".." => relative.parent().map(Path::to_owned).unwrap_or_default(),
            _ => relative.join(plain_name(filename)?),
        };
        self.root
            .join(&child)
            .symlink_metadata()
            .map_err(|e| status(&e))?;
        Ok(self.ids().id_of(&child))
    }

    async fn getattr(&self, id: fileid3) -> Result<fattr3, nfsstat3> {
        self.attributes(id, &self.entry(id)?)
    }

    async fn setattr(&self, id: fileid3, setattr: sattr3) -> Result<fattr3, nfsstat3> {
        self.writable()?;
        let path = self.entry(id)?;
        // Changing a symlink's mode or times would change its target's.
        if !path
            .symlink_metadata()
            .map_err(|e| status(&e))?
            .is_symlink()
        {
            path_setattr(&path, &setattr).await?;
        }
        self.attributes(id, &path)
    }

    async fn read(
        &self,
        id: fileid3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsstat3> {
        let mut file = open(&self.entry(id)?, false)?;
        let size = file.metadata().map_err(|e| status(&e))?.len();
        file.seek(SeekFrom::Start(offset)).map_err(|e| status(&e))?;
        let mut data = Vec::with_capacity(count.min(1 << 20) as usize);
        file.take(u64::from(count))
            .read_to_end(&mut data)
            .map_err(|e| status(&e))?;
        let end = offset + data.len() as u64 >= size;
        Ok((data, end))
    }

    async fn write(&self, id: fileid3, offset: u64, data: &[u8]) -> Result<fattr3, nfsstat3> {
        self.writable()?;
        let path = self.entry(id)?;
        open(&path, true)?
            .write_all_at(data, offset)
            .map_err(|e| status(&e))?;
        self.attributes(id, &path)
    }

    async fn create(
        &self,
        dirid: fileid3,
        filename: &filename3,
        attr: sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (path, relative) = self.child(dirid, filename)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(matches!(attr.size, set_size3::size(0)))
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| status(&e))?;
        path_setattr(&path, &attr).await?;
        self.added(&path, &relative)
    }

    async fn create_exclusive(
        &self,
        dirid: fileid3,
        filename: &filename3,
    ) -> Result<fileid3, nfsstat3> {
        let (path, relative) = self.child(dirid, filename)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| status(&e))?;
        Ok(self.added(&path, &relative)?.0)
    }

    async fn mkdir(
        &self,
        dirid: fileid3,
        dirname: &filename3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (path, relative) = self.child(dirid, dirname)?;
        std::fs::create_dir(&path).map_err(|e| status(&e))?;
        self.added(&path, &relative)
    }

    async fn remove(&self, dirid: fileid3, filename: &filename3) -> Result<(), nfsstat3> {
        let (path, relative) = self.child(dirid, filename)?;
        let metadata = path.symlink_metadata().map_err(|e| status(&e))?;
        if metadata.is_dir() {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| status(&e))?;
        self.ids().forget(&relative);
        Ok(())
    }

    async fn rename(
        &self,
        from_dirid: fileid3,
        from_filename: &filename3,
        to_dirid: fileid3,
        to_filename: &filename3,
    ) -> Result<(), nfsstat3> {
        let (from, from_relative) = self.child(from_dirid, from_filename)?;
        let (to, to_relative) = self.child(to_dirid, to_filename)?;
        std::fs::rename(&from, &to).map_err(|e| status(&e))?;
        self.ids().rename(&from_relative, &to_relative);
        Ok(())
    }

    async fn readdir(
        &self,
        dirid: fileid3,
        start_after: fileid3,
        max_entries: usize,
    ) -> Result<ReadDirResult, nfsstat3> {
        let (dir, relative) = self.dir(dirid)?;
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| status(&e))?
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        // A cookie is the id of the last entry sent: go on after its name.
        let after = (start_after != 0)
            .then(|| self.ids().paths.get(&start_after).cloned())
            .flatten()
            .and_then(|p| p.file_name().map(OsStr::to_owned));
        let mut result = ReadDirResult {
            entries: Vec::new(),
            end: false,
        };
        let mut rest = names
            .into_iter()
            .filter(|name| after.as_ref().is_none_or(|after| name > after))
            .peekable();
        while result.entries.len() < max_entries {
            let Some(name) = rest.next() else { break };
            let child = relative.join(&name);
            let id = self.ids().id_of(&child);
            // Gone since the listing: leave it out.
            let Ok(attr) = self.attributes(id, &dir.join(&name)) else {
                continue;
            };
            result.entries.push(DirEntry {
                fileid: id,
                name: nfsstring(name.as_bytes().to_vec()),
                attr,
            });
        }
        result.end = rest.peek().is_none();
        Ok(result)
    }

    async fn symlink(
        &self,
        dirid: fileid3,
        linkname: &filename3,
        symlink: &nfspath3,
        _attr: &sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (path, relative) = self.child(dirid, linkname)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(symlink.as_ref()), &path)
            .map_err(|e| status(&e))?;
        self.added(&path, &relative)
    }

    async fn readlink(&self, id: fileid3) -> Result<nfspath3, nfsstat3> {
        let target = std::fs::read_link(self.entry(id)?).map_err(|e| status(&e))?;
        Ok(nfsstring(target.as_os_str().as_bytes().to_vec()))
    }

    /// Only `/SECRET` (and folders below it) can be mounted.
    async fn path_to_id(&self, path: &[u8]) -> Result<fileid3, nfsstat3> {
        let mut components = path.split(|b| *b == b'/').filter(|c| !c.is_empty());
        if !components
            .next()
            .is_some_and(|first| same(first, self.secret_text().as_bytes()))
        {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let mut id = ROOT;
        for component in components {
            id = self.lookup(id, &nfsstring(component.to_vec())).await?;
        }
        Ok(id)
    }

    fn id_to_fh(&self, id: fileid3) -> nfs_fh3 {
        let mut data = self.secret.clone();
        data.extend_from_slice(&id.to_le_bytes());
        nfs_fh3 { data }
    }

    fn fh_to_id(&self, handle: &nfs_fh3) -> Result<fileid3, nfsstat3> {
        let (secret, id) = handle
            .data
            .split_at_checked(self.secret.len())
            .ok_or(nfsstat3::NFS3ERR_BADHANDLE)?;
        let id: [u8; 8] = id.try_into().map_err(|_| nfsstat3::NFS3ERR_BADHANDLE)?;
        if !same(secret, &self.secret) {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        Ok(fileid3::from_le_bytes(id))
    }
}

impl MirrorFs {
    /// The secret as the client writes it in the mount path.
    fn secret_text(&self) -> String {
        hex::encode(&self.secret)
    }
}

/// Compares in a time that does not depend on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
