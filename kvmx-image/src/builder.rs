//! The builder VM: steps that need root and a kernel (partitions, LUKS,
//! LVM, image-bootstrap) run inside a throwaway Debian guest, so the host
//! stays rootless and needs no device-mapper or loop devices.
//!
//! The builder's image is made by the ordinary rootless path and cached
//! under kvmx's cache folder, keyed like the bootstrap cache by everything
//! that goes into it. Each job boots it on a fresh overlay with its disks
//! attached, runs a script as root, syncs and ends it; running a VM is
//! kvmx-provision's business, so it comes in as a [`BuilderVm`].

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::config::values::VmName;
use kvmx_core::config::{Bootloader, Config, ImageFormat};
use kvmx_core::layout::VmPaths;
use kvmx_core::observe::Observer;
use kvmx_core::process::Runner;

use crate::bootstrap::{BootstrapSpec, RECIPE_VERSION};
use crate::{Error, ImageBuilder, Result, image_bootstrap};

/// Raise when what the builder carries changes in a way its package list
/// does not show, such as the boot tuning every kvmx guest gets.
pub const BUILDER_RECIPE_VERSION: u32 = 2;

/// What the builder carries beside image-bootstrap's needs
/// ([`image_bootstrap::BUILDER_PACKAGES`]): volume and file system tools,
/// GRUB and the Debian bootstrappers.
pub const BUILDER_PACKAGES: &[&str] = &[
    "lvm2",
    "cryptsetup",
    "dosfstools",
    "fdisk",
    "parted",
    "e2fsprogs",
    "grub-pc-bin",
    "debootstrap",
    "mmdebstrap",
];

/// Installs image-bootstrap in the builder's tree from its wheel in
/// `/tmp` (checked again there): a venv that sees Debian's Python
/// packages, with only image-bootstrap itself from PyPI.
fn install_image_bootstrap() -> String {
    let (wheel, digest) = image_bootstrap::WHEEL;
    format!(
        "echo '{digest}  /tmp/{wheel}' | sha256sum --check --quiet\n\
         python3 -m venv --system-site-packages /opt/image-bootstrap\n\
         /opt/image-bootstrap/bin/pip install --quiet --no-deps --no-index --no-cache-dir /tmp/{wheel}\n\
         rm /tmp/{wheel}\n\
         ln -s /opt/image-bootstrap/bin/image-bootstrap /usr/local/bin/image-bootstrap\n\
         image-bootstrap --version\n"
    )
}

/// A disk attached to the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderDisk {
    /// The file (raw).
    pub path: Utf8PathBuf,
    /// Its serial: the guest sees `/dev/disk/by-id/virtio-<serial>`.
    pub serial: String,
    /// Attached read-only.
    pub read_only: bool,
}

impl BuilderDisk {
    /// A disk the job writes.
    pub fn writable(path: &Utf8Path, serial: &str) -> Self {
        BuilderDisk {
            path: path.to_owned(),
            serial: serial.to_owned(),
            read_only: false,
        }
    }

    /// A disk the job only reads.
    pub fn read_only(path: &Utf8Path, serial: &str) -> Self {
        BuilderDisk {
            read_only: true,
            ..Self::writable(path, serial)
        }
    }
}

/// One job for the builder.
#[derive(Clone)]
pub struct BuilderJob {
    /// The disks, in order.
    pub disks: Vec<BuilderDisk>,
    /// A POSIX shell script run as root.
    pub script: String,
    /// Its standard input: secrets go here, never into the script.
    pub stdin: Vec<u8>,
    /// How long the script may run.
    pub timeout: Duration,
}

impl std::fmt::Debug for BuilderJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuilderJob")
            .field("disks", &self.disks)
            .field("script", &self.script)
            .field("stdin", &format_args!("<{} bytes>", self.stdin.len()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Runs jobs in a builder VM; kvmx-provision's `QemuBuilder` is the one
/// that boots QEMU.
pub trait BuilderVm: std::fmt::Debug + Send + Sync {
    /// Boots `image` on a fresh overlay with the job's disks, runs its
    /// script as root with its input, hands each output line to `output`,
    /// and ends the VM once its disks are synced. Nothing of the run is left afterwards,
    /// whether it succeeds, fails or is cancelled.
    fn run(
        &self,
        image: &BuilderImage,
        job: &BuilderJob,
        output: &mut dyn FnMut(&str),
        cancel: &CancelFlag,
    ) -> std::result::Result<(), BuilderError>;
}

/// A failed builder job.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuilderError {
    /// What went wrong, with the last lines of output when the script
    /// failed.
    pub message: String,
    /// Cancelled rather than failed.
    pub cancelled: bool,
}

/// The builder's cached image and what reaches it.
#[derive(Debug, Clone)]
pub struct BuilderImage {
    /// The name its keys and known_hosts are made for.
    pub name: VmName,
    /// Its folder in the cache: image, SSH key, known_hosts.
    pub paths: VmPaths,
    /// The image (qcow2), the backing file of each run's overlay.
    pub image: Utf8PathBuf,
    /// Its VM config (memory, CPUs, SSH user).
    pub config: Config,
}

/// The marker of a finished builder image in its folder.
const READY: &str = "ready";

impl BuilderImage {
    /// The builder's VM config: Debian from `mirror` with
    /// [`BUILDER_PACKAGES`] and `extra` packages.
    pub fn config(mirror: &str, extra: &[&str]) -> Config {
        let mut config = Config::default();
        config.create.mirror = mirror.to_owned();
        config.create.packages = BUILDER_PACKAGES
            .iter()
            .chain(image_bootstrap::BUILDER_PACKAGES)
            .chain(extra)
            .map(|p| p.parse().expect("the builder's package names are valid"))
            .collect();
        config.image.format = ImageFormat::Qcow2;
        config.image.size = kvmx_core::config::values::ByteSize::gib(4);
        // Its kernel boots straight from QEMU: GRUB's load of the kernel
        // and initrd through the BIOS cost about 3 s under TCG, and the
        // cached image is never upgraded in place.
        config.create.bootloader = Bootloader::Direct;
        // Two CPUs: QEMU runs a TCG guest's CPUs on threads of their own,
        // and the builder's tools (mkfs, compressors) use them.
        config.hardware.memory = kvmx_core::config::values::ByteSize::gib(2);
        config.hardware.cpus = 2;
        config
    }

    /// The cache key of `config`'s builder: its bootstrap and the builder
    /// recipe.
    pub fn key(config: &Config) -> String {
        let mut spec = BootstrapSpec::from_config(&config.create);
        spec.extra_setup = Some(install_image_bootstrap());
        crate::cache::digest_key(&serde_json::json!({
            "builder": BUILDER_RECIPE_VERSION,
            "recipe": RECIPE_VERSION,
            "spec": spec,
            "memory": config.hardware.memory.bytes(),
            "cpus": config.hardware.cpus,
        }))
    }

    /// The builder of `mirror` from the cache in `cache_dir`, built first
    /// when missing (its stages reported to `observer`). Builds of the
    /// same key wait for each other.
    pub fn ensure(
        cache_dir: &Utf8Path,
        mirror: &str,
        extra: &[&str],
        observer: &mut dyn Observer,
        cancel: &CancelFlag,
    ) -> Result<(BuilderImage, bool)> {
        let config = Self::config(mirror, extra);
        let key = Self::key(&config);
        let dir = cache_dir.join("builder");
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let folder = dir.join(&key);
        let paths = VmPaths {
            data: folder.clone(),
            runtime: folder.join("run"),
        };
        let name: VmName = "kvmx-builder".parse().expect("a valid VM name");
        let image = BuilderImage {
            image: paths.default_image(),
            name: name.clone(),
            paths: paths.clone(),
            config: config.clone(),
        };
        let runner = Runner::unlogged(cancel.clone());
        let _lock = crate::cache::lock_key(&dir, &key, &runner)?;
        if folder.join(READY).is_file() && image.image.is_file() {
            return Ok((image, false));
        }
        // A folder without the marker is what a killed build left.
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).map_err(Error::io("create", &folder))?;
        let wheel = image_bootstrap::cached_wheel(cache_dir, &runner)?;
        let built = ImageBuilder::new(name, config, paths, cache_dir.to_owned())
            .extra_setup(install_image_bootstrap(), vec![wheel])
            .cancel(cancel.clone())
            .build(observer);
        if let Err(error) = built {
            let _ = std::fs::remove_dir_all(&folder);
            return Err(error);
        }
        let ready = folder.join(READY);
        std::fs::write(&ready, format!("{key}\n")).map_err(Error::io("write", &ready))?;
        Ok((image, true))
    }

    /// Removes the cached builder images that no build uses now; returns
    /// their folders.
    pub fn clear(cache_dir: &Utf8Path) -> Result<Vec<Utf8PathBuf>> {
        let dir = cache_dir.join("builder");
        let Ok(read) = dir.read_dir_utf8() else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for entry in read.flatten() {
            let folder = entry.path();
            if !folder.is_dir() {
                continue;
            }
            let lock = dir.join(format!("{}.lock", entry.file_name()));
            let Ok(file) = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
            else {
                continue;
            };
            if nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
                std::fs::remove_dir_all(folder).map_err(Error::io("remove", folder))?;
                removed.push(folder.to_owned());
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_recipe() {
        let a = BuilderImage::key(&BuilderImage::config("https://deb.debian.org/debian/", &[]));
        let b = BuilderImage::key(&BuilderImage::config("http://mirror.example/debian/", &[]));
        let c = BuilderImage::key(&BuilderImage::config(
            "https://deb.debian.org/debian/",
            &["git"],
        ));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            a,
            BuilderImage::key(&BuilderImage::config("https://deb.debian.org/debian/", &[]))
        );
    }

    #[test]
    fn a_job_never_shows_its_input() {
        let job = BuilderJob {
            disks: Vec::new(),
            script: "true".into(),
            stdin: b"correct horse battery staple\n".to_vec(),
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{job:?}");
        assert!(!shown.contains("horse"), "{shown}");
        assert!(shown.contains("<29 bytes>"));
    }
}
