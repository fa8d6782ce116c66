//! The registry: which project folder each VM name belongs to.
//!
//! A TOML file in the config dir, changed under a lock file and written
//! atomically, so concurrent `kvmx init`s neither lose entries nor leave a
//! torn file.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::atomic_file::{self, Overwrite};
use crate::layout::Layout;
use crate::{Error, config::ConfigError};

/// VM names and their project folders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Name → project folder.
    #[serde(default)]
    pub vms: BTreeMap<String, Utf8PathBuf>,
}

impl Registry {
    /// Reads the registry; a missing file is an empty registry.
    pub fn load(layout: &Layout) -> Result<Registry, Error> {
        let file = layout.registry_file();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(e) => return Err(Error::io(&file)(e)),
        };
        toml::from_str(&text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::at_offset(&file, &text, offset, e.message().to_owned())
                .with_hint("fix or remove the registry file; `kvmx init` in each project registers it again")
                .into()
        })
    }

    /// The folder of `name`.
    pub fn get(&self, name: &str) -> Option<&Utf8Path> {
        self.vms.get(name).map(Utf8PathBuf::as_path)
    }

    /// Registers `name` for `folder`. Registering the same pair again is
    /// fine; a name taken by another folder is an error unless `replace`.
    pub fn register(
        layout: &Layout,
        name: &str,
        folder: &Utf8Path,
        replace: bool,
    ) -> Result<(), Error> {
        Self::change(layout, |registry| {
            if let Some(existing) = registry.vms.get(name)
                && existing != folder
                && !replace
            {
                return Err(Error::NameTaken {
                    name: name.to_owned(),
                    existing: existing.clone(),
                });
            }
            registry.vms.insert(name.to_owned(), folder.to_owned());
            Ok(())
        })
    }

    /// Removes `name`; returns whether it was there.
    pub fn unregister(layout: &Layout, name: &str) -> Result<bool, Error> {
        let mut removed = false;
        Self::change(layout, |registry| {
            removed = registry.vms.remove(name).is_some();
            Ok(())
        })?;
        Ok(removed)
    }

    fn change(
        layout: &Layout,
        edit: impl FnOnce(&mut Registry) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let lock_path = layout.config_dir.join("registry.lock");
        std::fs::create_dir_all(&layout.config_dir)
            .map_err(Error::io_doing("create", &layout.config_dir))?;
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io_doing("open", &lock_path))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io_doing("lock", &lock_path)(errno.into()))?;
        let mut registry = Self::load(layout)?;
        edit(&mut registry)?;
        let text = toml::to_string(&registry).expect("the registry always serializes");
        atomic_file::write(&layout.registry_file(), text.as_bytes(), Overwrite::Yes)
    }
}
