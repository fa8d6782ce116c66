//! Building bootable guest images for kvmx VMs, without root.
//!
//! [`ImageBuilder`] turns a VM's resolved config into a disk image:
//!
//! 1. [`bootstrap`]: a Debian tree as a tarball (mmdebstrap in unshare mode,
//!    or debootstrap as root), shared between VMs through the [`cache`],
//!    tuned to boot fast ([`boot_tuning`]);
//! 2. [`guest`]: the VM's own files (host name, network, first user, keys,
//!    GRUB config) as an [`overlay`] tarball;
//! 3. [`disk`]: both unpacked as the guest's root ([`userns`]) and turned
//!    into an ext4 file system with `mkfs.ext4 -d`, inside a partition table
//!    and GRUB written by hand ([`mbr`]), then converted to qcow2.
//!
//! What kvmx hands image-bootstrap, run in a builder VM for
//! `method = "image-bootstrap"`, is planned by [`image_bootstrap`].
//!
//! Images made from another VM's image (base boxes) are in [`base`]. Tools
//! run through [`kvmx_core::process`], which logs their output and stops them on
//! [`CancelFlag`]. The library never prints: the caller gets progress
//! through a [`kvmx_core::Observer`] and the result as a [`BuildReport`].

pub mod accounts;
pub mod base;
pub mod boot_tuning;
pub mod bootstrap;
mod build;
pub mod builder;
pub mod cache;
pub mod cleanup;
pub mod cpio;
pub mod disk;
mod error;
pub mod guest;
pub mod image_bootstrap;
pub mod install;
pub mod keys;
pub mod mbr;
pub mod overlay;
pub mod password;
pub mod prerequisites;
pub mod preseed;
pub mod qemu_img;
pub mod rootfs;
pub mod userns;
pub mod volumes;

pub use base::BaseVm;
pub use build::{BuildReport, ImageBuilder, Stage, StageTime};
pub use cache::{BootstrapCache, CacheEntry, CacheUse};
pub use error::{Error, Result};
pub use kvmx_core::CancelFlag;
