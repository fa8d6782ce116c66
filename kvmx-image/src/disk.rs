//! Putting the disk together from a tree: partition table, the ext4 root
//! file system made from the tree (`mkfs.ext4 -d`, no mount), GRUB or the
//! kernel and initrd beside the image, and the conversion to qcow2.

use std::fs::File;

use camino::Utf8Path;
use kvmx_core::config::ImageFormat;

use crate::mbr::{self, PartitionLayout};
use crate::prerequisites::{Requirement, grub_dir};
use crate::rootfs::BLOCK;
use crate::userns::GuestRoot;
use crate::{Error, Result};
use kvmx_core::process::{Runner, Tool};

/// GRUB modules built into `core.img`: enough to read the partition, find
/// the root by UUID and load Linux, with the serial console.
pub const GRUB_MODULES: &[&str] = &[
    "biosdisk",
    "part_msdos",
    "ext2",
    "normal",
    "linux",
    "search",
    "search_fs_uuid",
    "serial",
    "terminal",
    "configfile",
    "echo",
    "test",
    "boot",
    "gzio",
];

/// What GRUB needs on the host.
pub fn grub_requirements() -> Vec<Requirement> {
    vec![
        Requirement::program("grub-mkimage", "grub-common"),
        Requirement::File {
            path: grub_dir().join("boot.img"),
            package: "grub-pc-bin",
        },
        Requirement::File {
            path: grub_dir().join("normal.mod"),
            package: "grub-pc-bin",
        },
    ]
}

/// What assembling the raw disk needs on the host.
pub fn requirements() -> Vec<Requirement> {
    vec![
        Requirement::program("mkfs.ext4", "e2fsprogs"),
        Requirement::program("tar", "tar"),
    ]
}

/// Unpacks the tree and the overlay and makes the file system, as the
/// guest's root. Arguments: tree folder, tarball, overlay tarball, raw
/// disk, partition offset, blocks, UUID, kernel and initrd destinations
/// (empty: none).
const ASSEMBLE: &str = r#"set -eu
tree=$1
mkdir "$tree"
# Device nodes cannot be made in a user namespace; the guest mounts
# devtmpfs on /dev.
tar -C "$tree" --numeric-owner -xpf "$2" --exclude='./dev/*'
tar -C "$tree" --numeric-owner -xpf "$3"
# The kernel copy keeps the guest's dates, which kvmx compares with the
# guest's before each stop.
if [ -n "$8" ]; then
    cp -L --preserve=timestamps "$tree/vmlinuz" "$8"
    cp -L --preserve=timestamps "$tree/initrd.img" "$9"
fi
# GRUB 2.06 cannot read metadata_csum_seed or orphan_file.
mkfs.ext4 -q -F -L root -U "$7" -b 4096 -O ^metadata_csum_seed,^orphan_file \
    -E offset="$5",nodiscard -d "$tree" "$4" "$6"
rm -rf "$tree"
"#;

/// The inputs of [`make_raw`].
#[derive(Debug, Clone, Copy)]
pub struct RawDisk<'a> {
    /// The bootstrapped tree.
    pub rootfs: &'a Utf8Path,
    /// The VM's files over it.
    pub overlay: &'a Utf8Path,
    /// A work folder for the unpacked tree.
    pub work: &'a Utf8Path,
    /// The raw disk file to fill (it exists, empty).
    pub raw: &'a Utf8Path,
    /// Its size in bytes.
    pub size: u64,
    /// UUID of the root file system.
    pub uuid: &'a str,
    /// Kernel and initrd destinations for direct boot.
    pub direct: Option<(&'a Utf8Path, &'a Utf8Path)>,
}

/// The partition of a disk of `size`, or the error that it is too small.
pub fn layout(size: u64, needed: u64) -> Result<PartitionLayout> {
    let layout = PartitionLayout::for_disk(size);
    match layout {
        Some(layout) if layout.bytes() >= needed => Ok(layout),
        _ => Err(Error::TooSmall {
            size_mib: size >> 20,
            needed_mib: (needed + mbr::PARTITION_START * mbr::SECTOR).div_ceil(1 << 20),
        }),
    }
}

/// Writes the partition table and the root file system into `disk.raw`.
pub fn make_raw(disk: &RawDisk, layout: PartitionLayout, runner: &Runner) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(disk.raw)
        .map_err(Error::io("open", disk.raw))?;
    file.set_len(disk.size)
        .map_err(Error::io("size", disk.raw))?;
    mbr::write_partition_table(&file, layout, rand_u32())
        .map_err(Error::io("write the partition table of", disk.raw))?;
    drop(file);
    let (kernel, initrd) = match disk.direct {
        Some((kernel, initrd)) => (kernel.as_str(), initrd.as_str()),
        None => ("", ""),
    };
    let tool = Tool::new("sh", "make the root file system")
        .args(["-c", ASSEMBLE, "assemble"])
        .arg(disk.work.join("tree"))
        .args([disk.rootfs, disk.overlay, disk.raw])
        .arg(layout.offset().to_string())
        .arg((layout.bytes() / BLOCK).to_string())
        .args([disk.uuid, kernel, initrd]);
    runner.run(&GuestRoot::detect().tool(tool))?;
    Ok(())
}

/// GRUB's prefix on a one-partition disk: `/boot/grub` of the root.
pub const GRUB_PREFIX: &str = "(hd0,msdos1)/boot/grub";

/// Makes `core.img` with `grub-mkimage` for GRUB's folder `prefix` and
/// writes GRUB into the disk.
pub fn install_grub(raw: &Utf8Path, work: &Utf8Path, prefix: &str, runner: &Runner) -> Result<()> {
    let core_path = work.join("core.img");
    runner.run(
        &Tool::new("grub-mkimage", "make GRUB's core image")
            .args(["-O", "i386-pc", "-p", prefix, "-d"])
            .arg(grub_dir())
            .arg("-o")
            .arg(&core_path)
            .args(GRUB_MODULES),
    )?;
    let boot_path = grub_dir().join("boot.img");
    let boot_img = std::fs::read(&boot_path).map_err(Error::io("read", &boot_path))?;
    let core_img = std::fs::read(&core_path).map_err(Error::io("read", &core_path))?;
    let (boot, core) = mbr::grub_images(&boot_img, &core_img)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .map_err(Error::io("open", raw))?;
    mbr::write_grub(&file, &boot, &core).map_err(Error::io("write GRUB into", raw))?;
    file.sync_all().map_err(Error::io("write", raw))?;
    Ok(())
}

/// Converts the raw disk to `format` at `target` (for raw: a copy that
/// keeps holes is not needed, the caller renames instead).
pub fn convert(
    raw: &Utf8Path,
    target: &Utf8Path,
    format: ImageFormat,
    compress: bool,
    runner: &Runner,
) -> Result<()> {
    let format = match format {
        ImageFormat::Qcow2 => "qcow2",
        ImageFormat::Raw => "raw",
    };
    let mut tool =
        Tool::new("qemu-img", "convert the image").args(["convert", "-f", "raw", "-O", format]);
    if compress {
        tool = tool.arg("-c");
    }
    runner.run(&tool.arg(raw).arg(target))?;
    Ok(())
}

/// Copies the raw disk onto a block device.
pub fn write_device(raw: &Utf8Path, device: &Utf8Path) -> Result<()> {
    let mut from = File::open(raw).map_err(Error::io("read", raw))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(Error::io("open", device))?;
    std::io::copy(&mut from, &mut to).map_err(Error::io("write", device))?;
    to.sync_all().map_err(Error::io("write", device))?;
    Ok(())
}

/// A random 32-bit number (the disk signature).
pub(crate) fn rand_u32() -> u32 {
    use rand_core::RngCore;
    rand_core::OsRng.next_u32()
}

/// A random UUID (version 4) for the root file system.
pub fn random_uuid() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let uuid = random_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(uuid, random_uuid());
    }

    #[test]
    fn too_small_names_what_is_needed() {
        let Err(Error::TooSmall {
            size_mib,
            needed_mib,
        }) = layout(256 << 20, 900 << 20)
        else {
            panic!("expected too small");
        };
        assert_eq!((size_mib, needed_mib), (256, 901));
        assert!(layout(2 << 30, 900 << 20).is_ok());
    }
}
