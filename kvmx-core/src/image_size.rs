//! The virtual size of a disk image, read from the file itself.
//!
//! `kvmx list` and `status` show it for every VM, so it must cost a read of
//! a few bytes, not a `qemu-img info` process per VM. kvmx's images are
//! qcow2 or raw: a qcow2 image starts with a header that holds its size
//! (big-endian, at byte 24); anything else is raw, as large as the file or
//! block device.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use camino::Utf8Path;

/// The first bytes of every qcow2 image.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// The header fields read here end at byte 32: magic, version, backing
/// file offset and length, cluster bits, then the virtual size.
const QCOW2_HEADER_LEN: usize = 32;
/// QEMU's unit of disk size.
const SECTOR: u64 = 512;
/// Cluster sizes QEMU accepts: 512 bytes to 2 MiB.
const QCOW2_CLUSTER_BITS: std::ops::RangeInclusive<u32> = 9..=21;

/// The guest-visible size of the image at `path` in bytes: the size in a
/// qcow2 header, or the length of a raw file or block device. `None` when
/// it cannot be read, is neither a file nor a block device, or starts like
/// a qcow2 image but its header is cut short or not one QEMU would open.
pub fn virtual_size(path: &Utf8Path) -> Option<u64> {
    use std::os::unix::fs::FileTypeExt;
    // Opening a FIFO would block, and a folder has no size.
    let kind = std::fs::metadata(path).ok()?.file_type();
    if !(kind.is_file() || kind.is_block_device()) {
        return None;
    }
    let mut file = File::open(path).ok()?;
    let mut header = Vec::with_capacity(QCOW2_HEADER_LEN);
    (&mut file)
        .take(QCOW2_HEADER_LEN as u64)
        .read_to_end(&mut header)
        .ok()?;
    if header.starts_with(&QCOW2_MAGIC) {
        return qcow2_size(&header);
    }
    // The end of a block device is its size, as for a file; QEMU shows a
    // raw image to the guest in whole sectors.
    let length = file.seek(SeekFrom::End(0)).ok()?;
    Some(length.div_ceil(SECTOR) * SECTOR)
}

/// The virtual size in a qcow2 header (`header` starts with the magic).
fn qcow2_size(header: &[u8]) -> Option<u64> {
    let header: &[u8; QCOW2_HEADER_LEN] = header.try_into().ok()?;
    let field = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap());
    let version = field(4);
    let cluster_bits = field(20);
    if !matches!(version, 2 | 3) || !QCOW2_CLUSTER_BITS.contains(&cluster_bits) {
        return None;
    }
    Some(u64::from_be_bytes(header[24..32].try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use camino::Utf8PathBuf;

    use super::*;

    fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        (dir, root)
    }

    /// `qemu-img create` of a real image.
    fn qemu_img_create(path: &Utf8Path, format: &str, size: &str, extra: &[&str]) {
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .args(extra)
            .arg(path)
            .arg(size)
            .status()
            .expect("qemu-img (package qemu-utils) is needed by these tests");
        assert!(status.success(), "qemu-img create {path} {size} failed");
    }

    /// What QEMU itself says of the image.
    fn qemu_img_virtual_size(path: &Utf8Path) -> u64 {
        let output = Command::new("qemu-img")
            .args(["info", "-U", "--output=json"])
            .arg(path)
            .output()
            .unwrap();
        assert!(output.status.success(), "qemu-img info {path}: {output:?}");
        let info: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        info["virtual-size"].as_u64().unwrap()
    }

    #[test]
    fn qcow2_images_of_every_kind_have_the_size_qemu_reports() {
        let (_dir, root) = temp();
        let cases: &[(&str, &str, &[&str])] = &[
            ("plain.qcow2", "10G", &[]),
            ("odd.qcow2", "1000001k", &[]),
            ("v2.qcow2", "3G", &["-o", "compat=0.10"]),
            ("small-clusters.qcow2", "64M", &["-o", "cluster_size=512"]),
            ("big-clusters.qcow2", "2T", &["-o", "cluster_size=2M"]),
            ("empty.qcow2", "0", &[]),
        ];
        for (name, size, extra) in cases {
            let path = root.join(name);
            qemu_img_create(&path, "qcow2", size, extra);
            assert_eq!(
                virtual_size(&path),
                Some(qemu_img_virtual_size(&path)),
                "{name}"
            );
        }
        assert_eq!(virtual_size(&root.join("plain.qcow2")), Some(10 << 30));
    }

    #[test]
    fn an_overlay_has_its_own_size_not_its_backing_files() {
        let (_dir, root) = temp();
        let base = root.join("base.qcow2");
        qemu_img_create(&base, "qcow2", "2G", &[]);
        let overlay = root.join("overlay.qcow2");
        qemu_img_create(
            &overlay,
            "qcow2",
            "5G",
            &["-F", "qcow2", "-b", base.as_str()],
        );
        assert_eq!(virtual_size(&overlay), Some(5 << 30));
        assert_eq!(
            virtual_size(&overlay),
            Some(qemu_img_virtual_size(&overlay))
        );
    }

    #[test]
    fn raw_images_are_as_large_as_their_file() {
        let (_dir, root) = temp();
        let raw = root.join("box.img");
        qemu_img_create(&raw, "raw", "3G", &[]);
        assert_eq!(virtual_size(&raw), Some(3 << 30));
        assert_eq!(virtual_size(&raw), Some(qemu_img_virtual_size(&raw)));

        let text = root.join("notes.txt");
        std::fs::write(&text, "not an image, but QEMU would read it raw").unwrap();
        assert_eq!(virtual_size(&text), Some(qemu_img_virtual_size(&text)));

        let empty = root.join("empty.img");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(virtual_size(&empty), Some(0));

        // A start of the magic alone is no qcow2 header.
        let prefix = root.join("prefix.img");
        std::fs::write(&prefix, b"QFI").unwrap();
        assert_eq!(virtual_size(&prefix), Some(512));
        assert_eq!(virtual_size(&prefix), Some(qemu_img_virtual_size(&prefix)));
    }

    #[test]
    fn a_cut_or_corrupt_qcow2_header_has_no_size() {
        let (_dir, root) = temp();
        let good = root.join("good.qcow2");
        qemu_img_create(&good, "qcow2", "1G", &[]);
        let bytes = std::fs::read(&good).unwrap();
        let variant = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| {
            let mut copy = bytes.clone();
            edit(&mut copy);
            let path = root.join(name);
            std::fs::write(&path, copy).unwrap();
            virtual_size(&path)
        };
        assert_eq!(variant("magic-only", &|b| b.truncate(4)), None);
        assert_eq!(variant("cut-in-size", &|b| b.truncate(30)), None);
        assert_eq!(variant("header-only", &|b| b.truncate(32)), Some(1 << 30));
        assert_eq!(variant("version-9", &|b| b[7] = 9), None);
        assert_eq!(variant("version-1", &|b| b[7] = 1), None);
        assert_eq!(variant("clusters-4g", &|b| b[23] = 32), None);
        assert_eq!(variant("clusters-256", &|b| b[23] = 8), None);
    }

    #[test]
    fn what_is_not_an_image_file_has_no_size() {
        let (_dir, root) = temp();
        assert_eq!(virtual_size(&root.join("missing.img")), None);
        assert_eq!(virtual_size(&root), None);
        assert_eq!(virtual_size(Utf8Path::new("/dev/null")), None);
        let fifo = root.join("fifo");
        nix::unistd::mkfifo(fifo.as_std_path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(virtual_size(&fifo), None, "a FIFO must not block");
    }

    #[test]
    fn a_symlink_is_followed_to_its_image() {
        let (_dir, root) = temp();
        let image = root.join("real.qcow2");
        qemu_img_create(&image, "qcow2", "7G", &[]);
        let link = root.join("link.qcow2");
        std::os::unix::fs::symlink(&image, &link).unwrap();
        assert_eq!(virtual_size(&link), Some(7 << 30));
    }
}
