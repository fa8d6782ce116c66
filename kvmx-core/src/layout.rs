//! Where kvmx keeps its files.
//!
//! Config and the registry go under the XDG config dir, images and keys
//! under the XDG data dir (`<data>/<vm>/`), sockets, pid and lock files under
//! the XDG runtime dir. `KVMX_HOME` moves all of it under one folder, which
//! is how tests stay hermetic.

use camino::{Utf8Path, Utf8PathBuf};

use crate::config::values::VmName;

/// The environment variable that moves every kvmx folder under one root.
pub const HOME_VARIABLE: &str = "KVMX_HOME";

/// The environment variable that moves the cache folder alone (tests share
/// one bootstrap cache between hermetic homes with it).
pub const CACHE_VARIABLE: &str = "KVMX_CACHE_DIR";

/// The unix socket path limit (`sun_path`, including the final NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// The root folders of kvmx's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Config and registry.
    pub config_dir: Utf8PathBuf,
    /// Per-VM images, keys and logs.
    pub data_dir: Utf8PathBuf,
    /// Sockets, pid and lock files.
    pub runtime_dir: Utf8PathBuf,
    /// Rebuildable caches (bootstrap results).
    pub cache_dir: Utf8PathBuf,
}

/// Why the folders cannot be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Neither `KVMX_HOME` nor `HOME` is set.
    #[error("cannot find a home folder: neither {HOME_VARIABLE} nor HOME is set")]
    NoHome,
    /// A folder path is not UTF-8.
    #[error("the path {0:?} is not valid UTF-8")]
    NotUtf8(std::path::PathBuf),
}

/// systemd's folder of a user's own units: `$XDG_CONFIG_HOME/systemd/user`,
/// or `~/.config/systemd/user`; none when neither variable is set.
pub fn systemd_user_dir() -> Option<Utf8PathBuf> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let config = match (var("XDG_CONFIG_HOME"), var("HOME")) {
        (Some(config), _) => Utf8PathBuf::from(config),
        (None, Some(home)) => Utf8PathBuf::from(home).join(".config"),
        (None, None) => return None,
    };
    Some(config.join("systemd").join("user"))
}

impl Layout {
    /// Every folder under `root`, as `KVMX_HOME` asks.
    pub fn under(root: &Utf8Path) -> Layout {
        Layout {
            config_dir: root.join("config"),
            data_dir: root.join("data"),
            runtime_dir: root.join("run"),
            cache_dir: root.join("cache"),
        }
    }

    /// The folders for this process: `KVMX_HOME` if set, else XDG;
    /// `KVMX_CACHE_DIR` then moves the cache folder.
    pub fn from_env() -> Result<Layout, LayoutError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let mut layout = Layout::from_home_env()?;
        if let Some(cache) = var(CACHE_VARIABLE) {
            layout.cache_dir = utf8(cache.into())?;
        }
        Ok(layout)
    }

    fn from_home_env() -> Result<Layout, LayoutError> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(root) = var(HOME_VARIABLE) {
            return Ok(Layout::under(&utf8(root.into())?));
        }
        let home = utf8(var("HOME").ok_or(LayoutError::NoHome)?.into())?;
        let xdg = |name: &str, fallback: &str| -> Result<Utf8PathBuf, LayoutError> {
            match var(name) {
                Some(dir) => Ok(utf8(dir.into())?.join("kvmx")),
                None => Ok(home.join(fallback).join("kvmx")),
            }
        };
        let runtime_dir = match var("XDG_RUNTIME_DIR") {
            Some(dir) => utf8(dir.into())?.join("kvmx"),
            None => Utf8PathBuf::from(format!("/tmp/kvmx-{}", nix::unistd::getuid())),
        };
        Ok(Layout {
            config_dir: xdg("XDG_CONFIG_HOME", ".config")?,
            data_dir: xdg("XDG_DATA_HOME", ".local/share")?,
            runtime_dir,
            cache_dir: xdg("XDG_CACHE_HOME", ".cache")?,
        })
    }

    /// The registry file.
    pub fn registry_file(&self) -> Utf8PathBuf {
        self.config_dir.join("registry.toml")
    }

    /// The files of one VM.
    pub fn vm(&self, name: &VmName) -> VmPaths {
        VmPaths {
            data: self.data_dir.join(name.as_str()),
            runtime: self.runtime_dir.join(name.as_str()),
        }
    }
}

fn utf8(path: std::path::PathBuf) -> Result<Utf8PathBuf, LayoutError> {
    Utf8PathBuf::from_path_buf(path).map_err(LayoutError::NotUtf8)
}

/// The folders of one VM; the files in them are named by methods here so
/// that every crate agrees on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    /// Images, keys, logs (kept).
    pub data: Utf8PathBuf,
    /// Sockets, pid, lock (gone at reboot).
    pub runtime: Utf8PathBuf,
}

impl VmPaths {
    /// The default image file.
    pub fn default_image(&self) -> Utf8PathBuf {
        self.data.join("box.img")
    }
    /// The VM's SSH client private key.
    pub fn ssh_key(&self) -> Utf8PathBuf {
        self.data.join("ssh").join("id_ed25519")
    }
    /// known_hosts with the guest's host keys.
    pub fn known_hosts(&self) -> Utf8PathBuf {
        self.data.join("ssh").join("known_hosts")
    }
}

impl VmPaths {
    /// The log of `kvmx-create`: the full output of every tool it ran.
    pub fn create_log(&self) -> Utf8PathBuf {
        self.data.join("create.log")
    }
    /// The whole console output of the last installer run
    /// (`create.method = "install"`).
    pub fn install_log(&self) -> Utf8PathBuf {
        self.data.join("install.log")
    }
    /// The first user's random password (mode 0600), kept so that
    /// `kvmx-create password` can show it; absent for a set or locked one.
    pub fn password_file(&self) -> Utf8PathBuf {
        self.data.join("password")
    }
    /// The LUKS passphrase of an encrypted image (mode 0600), made at
    /// create time unless the config says to ask for it.
    pub fn luks_passphrase_file(&self) -> Utf8PathBuf {
        self.data.join("luks-passphrase")
    }
    /// QEMU's pid file while the VM runs (for people and scripts; whether
    /// the VM runs is told by [`VmPaths::run_lock`]).
    pub fn pid_file(&self) -> Utf8PathBuf {
        self.runtime.join("qemu.pid")
    }
    /// The lock held for as long as the VM runs (see [`crate::run_lock`]).
    pub fn run_lock(&self) -> Utf8PathBuf {
        self.runtime.join("lock")
    }
}

/// The files of a `bootloader = "direct"` image, kept beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectBoot {
    /// The kernel, for QEMU's `-kernel`.
    pub kernel: Utf8PathBuf,
    /// The initrd, for `-initrd`.
    pub initrd: Utf8PathBuf,
    /// A one-line file with the kernel command line, for `-append`.
    pub cmdline: Utf8PathBuf,
}

impl DirectBoot {
    /// The files beside `image`: `<image>.vmlinuz`, `<image>.initrd`,
    /// `<image>.cmdline`.
    pub fn beside(image: &Utf8Path) -> DirectBoot {
        let with = |suffix: &str| Utf8PathBuf::from(format!("{image}.{suffix}"));
        DirectBoot {
            kernel: with("vmlinuz"),
            initrd: with("initrd"),
            cmdline: with("cmdline"),
        }
    }
}
