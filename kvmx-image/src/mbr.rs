//! The first megabyte of the disk, written by hand so that no root, loop
//! device or `grub-bios-setup` is needed: an MS-DOS partition table with one
//! bootable Linux partition from sector 2048, and GRUB's `boot.img` in the
//! MBR with its `core.img` in the gap before the partition.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// First sector of the root partition (1 MiB): sectors 1..2047 hold
/// `core.img`.
pub const PARTITION_START: u64 = 2048;

/// Where the root partition lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLayout {
    /// First sector.
    pub start: u64,
    /// Length in sectors (whole 4 KiB blocks).
    pub sectors: u64,
}

impl PartitionLayout {
    /// The partition of a disk of `disk_bytes`, or `None` if too small.
    pub fn for_disk(disk_bytes: u64) -> Option<Self> {
        let total = disk_bytes / SECTOR;
        let sectors = total.checked_sub(PARTITION_START)? / 8 * 8;
        (sectors >= 8 && sectors <= u64::from(u32::MAX)).then_some(PartitionLayout {
            start: PARTITION_START,
            sectors,
        })
    }

    /// Byte offset of the partition.
    pub fn offset(self) -> u64 {
        self.start * SECTOR
    }

    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        self.sectors * SECTOR
    }
}

/// The MBR with `layout` as its one partition (bootable, type 0x83) and
/// `disk_id` as its signature; the boot code area is left zero.
pub fn partition_table(layout: PartitionLayout, disk_id: u32) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    mbr[440..444].copy_from_slice(&disk_id.to_le_bytes());
    let entry = &mut mbr[446..462];
    entry[0] = 0x80;
    // CHS fields unused (LBA only), as for disks past 8 GiB.
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&(layout.start as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(layout.sectors as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// Why GRUB's images do not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrubLayoutError {
    /// `boot.img` is not one sector.
    #[error("GRUB's boot.img has {0} bytes, not 512")]
    BootImage(usize),
    /// `core.img` does not fit before the partition.
    #[error("GRUB's core.img has {0} bytes: more than fits before the partition")]
    CoreTooBig(usize),
}

/// The MBR boot code and `core.img`, patched as `grub-bios-setup` would:
/// returns the new first 440 bytes of the MBR and the core image to write
/// from sector 1.
pub fn grub_images(
    boot_img: &[u8],
    core_img: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), GrubLayoutError> {
    if boot_img.len() != SECTOR as usize {
        return Err(GrubLayoutError::BootImage(boot_img.len()));
    }
    let sectors = core_img.len().div_ceil(SECTOR as usize);
    if sectors < 1 || sectors as u64 + 1 > PARTITION_START {
        return Err(GrubLayoutError::CoreTooBig(core_img.len()));
    }
    let mut boot = boot_img[..440].to_vec();
    // kernel_sector: where core.img starts.
    boot[0x5c..0x64].copy_from_slice(&1u64.to_le_bytes());
    // boot_drive: 0xff means "the drive the BIOS booted from".
    boot[0x64] = 0xff;
    // The drive check jump, made a no-op as grub-bios-setup does for hard
    // disks.
    boot[0x66] = 0x90;
    boot[0x67] = 0x90;

    let mut core = core_img.to_vec();
    core.resize(sectors * SECTOR as usize, 0);
    // The blocklist at the end of core.img's first sector (diskboot.img):
    // the rest of core.img starts at sector 2, n-1 sectors, loaded at
    // segment 0x820.
    let list = SECTOR as usize - 12;
    core[list..list + 8].copy_from_slice(&2u64.to_le_bytes());
    core[list + 8..list + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    core[list + 10..list + 12].copy_from_slice(&0x820u16.to_le_bytes());
    Ok((boot, core))
}

/// Writes the partition table into `disk`.
pub fn write_partition_table(
    disk: &File,
    layout: PartitionLayout,
    disk_id: u32,
) -> std::io::Result<()> {
    disk.write_all_at(&partition_table(layout, disk_id), 0)
}

/// Writes GRUB's patched images into `disk`, keeping its partition table.
pub fn write_grub(disk: &File, boot: &[u8], core: &[u8]) -> std::io::Result<()> {
    disk.write_all_at(boot, 0)?;
    disk.write_all_at(core, SECTOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_leaves_a_megabyte_and_whole_blocks() {
        let layout = PartitionLayout::for_disk(4 << 30).unwrap();
        assert_eq!(layout.start, 2048);
        assert_eq!(layout.sectors, (4u64 << 30) / 512 - 2048);
        let odd = PartitionLayout::for_disk((1 << 30) + 3 * 512).unwrap();
        assert_eq!(odd.sectors % 8, 0);
        assert!(PartitionLayout::for_disk(1 << 20).is_none());
    }

    #[test]
    fn partition_entry_bytes() {
        let mbr = partition_table(
            PartitionLayout {
                start: 2048,
                sectors: 8,
            },
            0xdeadbeef,
        );
        assert_eq!(&mbr[440..444], &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(mbr[446], 0x80);
        assert_eq!(mbr[450], 0x83);
        assert_eq!(&mbr[454..458], &[0x00, 0x08, 0, 0]);
        assert_eq!(&mbr[458..462], &[8, 0, 0, 0]);
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        assert!(mbr[462..510].iter().all(|&b| b == 0));
    }

    #[test]
    fn grub_patches() {
        let boot_img = vec![0xaa; 512];
        let core_img = vec![0x11; 1000];
        let (boot, core) = grub_images(&boot_img, &core_img).unwrap();
        assert_eq!(boot.len(), 440);
        assert_eq!(&boot[0x5c..0x64], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(boot[0x64], 0xff);
        assert_eq!(&boot[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(boot[0x65], 0xaa);
        assert_eq!(core.len(), 1024);
        assert_eq!(&core[500..508], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&core[508..510], &[1, 0]);
        assert_eq!(&core[510..512], &[0x20, 0x08]);
        assert!(grub_images(&boot_img, &vec![0; 2048 * 512]).is_err());
        assert!(grub_images(&[0; 10], &core_img).is_err());
    }

    #[test]
    fn sfdisk_reads_the_table() {
        let sfdisk = crate::prerequisites::find_program("sfdisk")
            .expect("sfdisk is installed (package fdisk, in scripts/install-deps)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let file = File::create(&path).unwrap();
        file.set_len(64 << 20).unwrap();
        let layout = PartitionLayout::for_disk(64 << 20).unwrap();
        write_partition_table(&file, layout, 0x1234).unwrap();
        let out = std::process::Command::new(sfdisk.as_str())
            .arg("--dump")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("start=        2048, size=      129024, type=83, bootable"),
            "{text}"
        );
    }
}
