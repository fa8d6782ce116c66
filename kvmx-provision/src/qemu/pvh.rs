//! Booting a Linux kernel through its PVH entry: QEMU loads the
//! uncompressed kernel (an ELF file) straight into guest memory, where a
//! bzImage would first decompress itself in the guest. Under TCG that
//! decompression, XZ for Debian's kernels, took about 3 s of every boot;
//! Firecracker and Cloud Hypervisor boot uncompressed kernels for the same
//! reason. The uncompressed kernel is made once per kernel, beside it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

/// The ELF note type of the PVH entry point (Xen's
/// `XEN_ELFNOTE_PHYS32_ENTRY`), which QEMU looks for.
const PVH_ENTRY_NOTE: u32 = 18;

/// The uncompressed kernel of bzImage `kernel`, made beside it (as
/// `<kernel>.pvh`, with the kernel's modification time) unless one made
/// from this kernel is there: `None` when the kernel has no PVH entry, is
/// not a bzImage, or its compression has no decompressor on this host.
/// Those boot as the bzImage, which is only slower.
pub fn uncompressed(kernel: &Utf8Path) -> Option<Utf8PathBuf> {
    // Beside the file itself, where a run links to it (a builder's overlay).
    let kernel = &Utf8PathBuf::from_path_buf(std::fs::canonicalize(kernel).ok()?).ok()?;
    let elf = pvh_file(kernel);
    let modified = |path: &Utf8Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let kernel_time = modified(kernel)?;
    if modified(&elf) == Some(kernel_time) {
        return Some(elf);
    }
    let image = std::fs::read(kernel).ok()?;
    let bytes = decompress(payload(&image)?)?;
    if !has_pvh_entry(&bytes) {
        return None;
    }
    // Several VMs of one template may start at once: each writes its own
    // file and renames it into place.
    let temp = Utf8PathBuf::from(format!("{elf}.{}", std::process::id()));
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| {
            write_sparse(&mut file, &bytes)?;
            file.set_modified(kernel_time)
        })
        .and_then(|()| std::fs::rename(&temp, &elf));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
        return None;
    }
    Some(elf)
}

/// Writes `bytes` to the new file `file`, leaving holes where they are
/// zeros: half of a Debian kernel's 66 MB is its zeroed data.
fn write_sparse(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    for block in bytes.chunks(4096) {
        if block.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(block.len() as i64))?;
        } else {
            file.write_all(block)?;
        }
    }
    file.set_len(bytes.len() as u64)
}

/// Where the uncompressed kernel of `kernel` is kept.
pub fn pvh_file(kernel: &Utf8Path) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{kernel}.pvh"))
}

/// The compressed kernel inside a bzImage (boot protocol 2.08 or later),
/// without the uncompressed size the kernel's build appends to it.
fn payload(image: &[u8]) -> Option<&[u8]> {
    if image.get(0x202..0x206)? != b"HdrS" || u16::from_le_bytes(bytes_at(image, 0x206)?) < 0x208 {
        return None;
    }
    let setup_sectors = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sectors + 1) * 512 + u32_at(image, 0x248)?;
    let length = u32_at(image, 0x24c)?;
    image.get(start..start + length.checked_sub(4)?)
}

/// The `N` bytes of `data` at `at`, for a little-endian field.
fn bytes_at<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The little-endian 32-bit field of `data` at `at`, as a size or offset.
fn u32_at(data: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32::from_le_bytes(bytes_at(data, at)?)).ok()
}

/// Decompresses `data` with the host's tool for its format.
fn decompress(data: &[u8]) -> Option<Vec<u8>> {
    let tool = match data {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x1f, 0x8b, ..] => "gzip",
        _ => return None,
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let fed = stdin.write_all(data);
    drop(stdin);
    let out = reader.join().ok()?.ok()?;
    let status = child.wait().ok()?;
    (fed.is_ok() && status.success()).then_some(out)
}

/// Whether the 64-bit little-endian ELF file `elf` has a PVH entry note.
fn has_pvh_entry(elf: &[u8]) -> bool {
    notes(elf).is_some_and(|notes| notes.contains(&(b"Xen".to_vec(), PVH_ENTRY_NOTE)))
}

/// The (name, type) of every note in `elf`'s note segments.
fn notes(elf: &[u8]) -> Option<Vec<(Vec<u8>, u32)>> {
    const PT_NOTE: usize = 4;
    let u16_at = |at: usize| bytes_at(elf, at).map(|b| usize::from(u16::from_le_bytes(b)));
    let u64_at = |at: usize| usize::try_from(u64::from_le_bytes(bytes_at(elf, at)?)).ok();
    // ELF magic, 64-bit, little-endian.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let (table, entry_size, count) = (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?);
    let mut found = Vec::new();
    for index in 0..count {
        let header = table + index * entry_size;
        if u32_at(elf, header)? != PT_NOTE {
            continue;
        }
        let (mut at, end) = (
            u64_at(header + 8)?,
            u64_at(header + 8)? + u64_at(header + 32)?,
        );
        while at + 12 <= end {
            let (name_size, desc_size) = (u32_at(elf, at)?, u32_at(elf, at + 4)?);
            let kind = u32::from_le_bytes(bytes_at(elf, at + 8)?);
            let name = elf.get(at + 12..at + 12 + name_size)?;
            found.push((name.strip_suffix(b"\0").unwrap_or(name).to_vec(), kind));
            at += 12 + name_size.next_multiple_of(4) + desc_size.next_multiple_of(4);
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-bit ELF file whose one note segment holds a note `name` of
    /// type `kind`.
    fn elf_with_note(name: &[u8], kind: u32) -> Vec<u8> {
        let mut note = Vec::new();
        let name_with_nul = [name, b"\0"].concat();
        note.extend((name_with_nul.len() as u32).to_le_bytes());
        note.extend(4u32.to_le_bytes());
        note.extend(kind.to_le_bytes());
        note.extend(&name_with_nul);
        note.resize(note.len().next_multiple_of(4), 0);
        note.extend(0x0100_0850u32.to_le_bytes());
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let mut header = vec![0u8; 56];
        header[..4].copy_from_slice(&4u32.to_le_bytes());
        header[8..16].copy_from_slice(&120u64.to_le_bytes());
        header[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf.extend(header);
        elf.extend(note);
        elf
    }

    /// A bzImage around `elf`, compressed by `tool` as the kernel's build
    /// does (the uncompressed size appended).
    fn bzimage(elf: &[u8], tool: &str) -> Vec<u8> {
        let mut child = Command::new(tool)
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(elf).unwrap();
        let mut compressed = child.wait_with_output().unwrap().stdout;
        compressed.extend((elf.len() as u32).to_le_bytes());
        let mut image = vec![0u8; 2 * 512];
        image[0x1f1] = 1;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(compressed.len() as u32).to_le_bytes());
        image.extend([0u8; 16]);
        image.extend(compressed);
        image
    }

    #[test]
    fn a_pvh_kernel_is_uncompressed_once_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let elf = elf_with_note(b"Xen", PVH_ENTRY_NOTE);
        for tool in ["xz", "gzip"] {
            let kernel = Utf8PathBuf::from_path_buf(dir.path().join(tool)).unwrap();
            std::fs::write(&kernel, bzimage(&elf, tool)).unwrap();
            let made = uncompressed(&kernel).expect("a PVH kernel");
            assert_eq!(made, format!("{kernel}.pvh"));
            assert_eq!(std::fs::read(&made).unwrap(), elf, "{tool}");
            // Kept: a second boot reads the file made by the first...
            let time = std::fs::metadata(&kernel).unwrap().modified().unwrap();
            let kept = std::fs::File::options().write(true).open(&made).unwrap();
            kept.set_len(4).unwrap();
            kept.set_modified(time).unwrap();
            assert_eq!(uncompressed(&kernel), Some(made.clone()));
            assert_eq!(std::fs::read(&made).unwrap().len(), 4);
            // ...until the kernel is another one, older or newer.
            let other = std::fs::File::options().write(true).open(&kernel).unwrap();
            other
                .set_modified(time - std::time::Duration::from_secs(60))
                .unwrap();
            assert_eq!(uncompressed(&kernel), Some(made.clone()));
            assert_eq!(std::fs::read(&made).unwrap(), elf, "{tool} again");
        }
    }

    #[test]
    fn zeros_are_written_as_holes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut bytes = vec![0u8; 1 << 20];
        bytes[5000] = 1;
        bytes.extend([2u8; 100]);
        bytes.extend([0u8; 8192]);
        write_sparse(&mut std::fs::File::create(&path).unwrap(), &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < 256 << 10, "{allocated} bytes allocated");
    }

    #[test]
    fn a_kernel_without_the_pvh_note_boots_as_the_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = Utf8PathBuf::from_path_buf(dir.path().join("vmlinuz")).unwrap();
        std::fs::write(&kernel, bzimage(&elf_with_note(b"Xen", 17), "xz")).unwrap();
        assert_eq!(uncompressed(&kernel), None);
        assert!(!dir.path().join("vmlinuz.pvh").exists());
        std::fs::write(&kernel, b"not a kernel").unwrap();
        assert_eq!(uncompressed(&kernel), None);
    }

    #[test]
    fn notes_are_read_with_their_names_and_types() {
        let elf = elf_with_note(b"Linux", 6);
        assert_eq!(notes(&elf), Some(vec![(b"Linux".to_vec(), 6)]));
        assert!(!has_pvh_entry(&elf));
        assert!(has_pvh_entry(&elf_with_note(b"Xen", PVH_ENTRY_NOTE)));
        assert_eq!(notes(b"\x7fELF\x01\x01"), None, "32-bit");
    }
}
