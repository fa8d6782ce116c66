//! The bootstrap cache: tarballs made by [`crate::bootstrap`], one folder
//! each under `<cache>/bootstrap/`, named by a hash of everything that goes
//! into them ([`BootstrapSpec`] and [`RECIPE_VERSION`]).
//!
//! An entry appears by a rename of a complete folder, so a crash never
//! leaves a half entry that would be used; a lock file per key makes a
//! second build of the same key wait for the first instead of bootstrapping
//! twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::bootstrap::{Bootstrap, BootstrapSpec, RECIPE_VERSION};
use crate::cleanup::WorkDir;
use crate::userns::GuestRoot;
use crate::{Error, Result};
use kvmx_core::process::Runner;

const TARBALL: &str = "rootfs.tar";
const ENTRY: &str = "entry.json";

/// Whether a build used the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheUse {
    /// The tree came from the cache.
    Hit,
    /// The tree was bootstrapped and stored in the cache.
    Miss,
    /// `--no-cache`: bootstrapped, not stored.
    Bypassed,
    /// No bootstrap (an image from a base VM).
    NotNeeded,
}

/// One cached tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Its key.
    pub key: String,
    /// What went into it.
    pub spec: BootstrapSpec,
    /// The recipe version it was made with.
    pub recipe: u32,
    /// When it was made (seconds since the epoch).
    pub created: u64,
    /// Size of the tarball in bytes.
    pub size: u64,
}

/// The bootstrap cache under a cache folder.
#[derive(Debug, Clone)]
pub struct BootstrapCache {
    dir: Utf8PathBuf,
}

/// The key of `spec`: the first 16 bytes of the SHA-256 of its JSON with
/// the recipe version, in hex.
pub fn key(spec: &BootstrapSpec) -> String {
    digest_key(&serde_json::json!({ "recipe": RECIPE_VERSION, "spec": spec }))
}

/// A cache key of `keyed`: the first 16 bytes of the SHA-256 of its JSON,
/// in hex.
pub fn digest_key(keyed: &serde_json::Value) -> String {
    let digest = sha2::Sha256::digest(keyed.to_string().as_bytes());
    hex::encode(&digest[..16])
}

/// Waits for the lock of `key` in the cache folder `dir`, checking for a
/// cancel while waiting.
pub(crate) fn lock_key(
    dir: &Utf8Path,
    key: &str,
    runner: &Runner,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join(format!("{key}.lock"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("open", &path))?;
    loop {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                file = back;
                kvmx_core::process::check_cancel(runner.cancel_flag())?;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, errno)) => {
                return Err(Error::io("lock", path)(errno.into()));
            }
        }
    }
}

impl BootstrapCache {
    /// The cache in `cache_dir` (kvmx's cache folder).
    pub fn new(cache_dir: &Utf8Path) -> Self {
        BootstrapCache {
            dir: cache_dir.join("bootstrap"),
        }
    }

    /// Its folder.
    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// The tarball of `spec` from the cache, made first if absent.
    pub fn get_or_make(
        &self,
        spec: &BootstrapSpec,
        method: &dyn Bootstrap,
        runner: &Runner,
    ) -> Result<(Utf8PathBuf, CacheUse)> {
        let key = key(spec);
        let entry_dir = self.dir.join(&key);
        std::fs::create_dir_all(&self.dir).map_err(Error::io("create", &self.dir))?;
        let _lock = lock_key(&self.dir, &key, runner)?;
        if entry_dir.join(ENTRY).is_file() {
            runner.note(&format!("# bootstrap cache hit: {entry_dir}"));
            return Ok((entry_dir.join(TARBALL), CacheUse::Hit));
        }
        runner.note(&format!("# bootstrap cache miss: {key}"));
        let work = WorkDir::new_in(&self.dir, &format!(".{key}.partial-"), GuestRoot::detect())?;
        let tarball = work.path().join(TARBALL);
        let scratch = work.path().join("scratch");
        std::fs::create_dir(&scratch).map_err(Error::io("create", &scratch))?;
        method.bootstrap(spec, &tarball, &scratch, runner)?;
        kvmx_core::process::check_cancel(runner.cancel_flag())?;
        GuestRoot::detect().remove_tree(&scratch);
        let size = tarball
            .metadata()
            .map_err(Error::io("read", &tarball))?
            .len();
        let entry = CacheEntry {
            key: key.clone(),
            spec: spec.clone(),
            recipe: RECIPE_VERSION,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            size,
        };
        let entry_file = work.path().join(ENTRY);
        let text = serde_json::to_string_pretty(&entry).expect("entries serialize");
        std::fs::write(&entry_file, text).map_err(Error::io("write", &entry_file))?;
        std::fs::rename(work.path(), &entry_dir).map_err(Error::io("store", &entry_dir))?;
        Ok((entry_dir.join(TARBALL), CacheUse::Miss))
    }

    /// The cached trees, oldest first.
    pub fn list(&self) -> Result<Vec<CacheEntry>> {
        let mut entries = Vec::new();
        let read = match std::fs::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(Error::io("read", &self.dir)(e)),
        };
        for item in read.flatten() {
            let path = item.path().join(ENTRY);
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(entry) = serde_json::from_str::<CacheEntry>(&text)
            {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| e.created);
        Ok(entries)
    }

    /// Removes every cached tree (and leftovers of interrupted ones);
    /// returns those removed.
    pub fn clear(&self) -> Result<Vec<CacheEntry>> {
        let entries = self.list()?;
        if let Ok(read) = std::fs::read_dir(&self.dir) {
            for item in read.flatten() {
                let Ok(path) = Utf8PathBuf::from_path_buf(item.path()) else {
                    continue;
                };
                if path.is_dir() {
                    GuestRoot::detect().remove_tree(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvmx_core::config::Create;

    #[test]
    fn key_changes_with_every_input() {
        let base = BootstrapSpec::from_config(&Create::default());
        let mut keys = vec![key(&base)];
        let mut other = base.clone();
        other.suite = "trixie".into();
        keys.push(key(&other));
        let mut other = base.clone();
        other.mirror = "http://mirror.example/debian".into();
        keys.push(key(&other));
        let mut other = base.clone();
        other.packages.push("vim".into());
        keys.push(key(&other));
        let mut other = base.clone();
        other.method = kvmx_core::config::Method::Debootstrap;
        keys.push(key(&other));
        let mut other = base.clone();
        other.arch = "i386".into();
        keys.push(key(&other));
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count);
        assert_eq!(key(&base), key(&base.clone()));
        assert_eq!(key(&base).len(), 32);
    }

    struct FakeBootstrap;
    impl Bootstrap for FakeBootstrap {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn requirements(&self) -> Vec<crate::prerequisites::Requirement> {
            Vec::new()
        }
        fn bootstrap(
            &self,
            _: &BootstrapSpec,
            tarball: &Utf8Path,
            _: &Utf8Path,
            _: &Runner,
        ) -> Result<()> {
            std::fs::write(tarball, "tree").unwrap();
            Ok(())
        }
    }

    #[test]
    fn second_get_hits_and_clear_empties() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let cache = BootstrapCache::new(dir);
        let runner = Runner::new(&dir.join("log"), crate::CancelFlag::new());
        let spec = BootstrapSpec::from_config(&Create::default());
        let (first, use1) = cache.get_or_make(&spec, &FakeBootstrap, &runner).unwrap();
        let (second, use2) = cache.get_or_make(&spec, &FakeBootstrap, &runner).unwrap();
        assert_eq!((use1, use2), (CacheUse::Miss, CacheUse::Hit));
        assert_eq!(first, second);
        assert_eq!(cache.list().unwrap().len(), 1);
        assert_eq!(cache.clear().unwrap().len(), 1);
        assert!(cache.list().unwrap().is_empty());
    }
}
