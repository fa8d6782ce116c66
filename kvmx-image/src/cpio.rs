//! An [`Overlay`] as a cpio archive in the "newc" format, the one the
//! Linux kernel unpacks from an initrd. The kernel takes several archives
//! one after the other, compressed or not, so an archive appended to a
//! copy of an installer's initrd adds files to its root without
//! unpacking it (this is how the preseed reaches Debian's installer).

use crate::overlay::{Content, Entry, Overlay};

/// The magic of a newc header.
const MAGIC: &str = "070701";
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The archive of `overlay`'s entries, in their order, ending with the
/// trailer and padded to a multiple of 512 bytes. Modification times are
/// zero, so equal overlays give equal bytes.
pub fn newc(overlay: &Overlay) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, entry) in overlay.entries().iter().enumerate() {
        let (kind, data): (u32, &[u8]) = match &entry.content {
            Content::Dir => (S_IFDIR, &[]),
            Content::File(bytes) => (S_IFREG, bytes),
            Content::Symlink(target) => (S_IFLNK, target.as_bytes()),
        };
        let inode = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let links = if kind == S_IFDIR { 2 } else { 1 };
        record(
            &mut out,
            entry,
            inode,
            kind | (entry.mode & 0o7777),
            links,
            data,
        );
    }
    let trailer = Entry {
        path: TRAILER.into(),
        content: Content::File(Vec::new()),
        mode: 0,
        uid: 0,
        gid: 0,
    };
    record(&mut out, &trailer, 0, 0, 1, &[]);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

fn record(out: &mut Vec<u8>, entry: &Entry, inode: u32, mode: u32, links: u32, data: &[u8]) {
    let name_size = entry.path.len() + 1;
    let fields = [
        inode,
        mode,
        entry.uid,
        entry.gid,
        links,
        0, // mtime
        u32::try_from(data.len()).expect("an initrd file under 4 GiB"),
        0, // dev major
        0, // dev minor
        0, // rdev major
        0, // rdev minor
        u32::try_from(name_size).expect("a short path"),
        0, // check
    ];
    out.extend_from_slice(MAGIC.as_bytes());
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(entry.path.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// Pads to the next multiple of four bytes, as newc aligns each header
/// and each file's data.
fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    fn sample() -> Overlay {
        let mut overlay = Overlay::new();
        overlay
            .file(
                "preseed.cfg",
                0o600,
                "d-i debian-installer/locale string C\n",
            )
            .dir("kvmx", 0o700, 0, 0)
            .file("kvmx/late.sh", 0o700, "echo hi\n")
            .file("kvmx/odd", 0o644, "abc")
            .symlink("kvmx/link", "late.sh");
        overlay
    }

    #[test]
    fn layout_is_aligned_and_ends_with_the_trailer() {
        let bytes = newc(&sample());
        assert_eq!(bytes.len() % 512, 0);
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!\0"));
        // The first header: inode 1, a regular file of mode 0600.
        assert_eq!(&bytes[6..22], b"0000000100008180");
    }

    /// The system's cpio (or bsdtar) lists and unpacks the archive.
    #[test]
    fn a_real_cpio_reads_it() {
        let bytes = newc(&sample());
        let dir = tempfile::tempdir().unwrap();
        let (program, list, extract): (&str, &[&str], &[&str]) = if which("cpio") {
            (
                "cpio",
                &["-t", "-v"],
                &["-i", "-d", "--no-absolute-filenames"],
            )
        } else if which("bsdtar") {
            ("bsdtar", &["-t", "-v", "-f", "-"], &["-x", "-f", "-"])
        } else {
            panic!("neither cpio nor bsdtar is installed: apt-get install cpio");
        };
        let run = |args: &[&str]| {
            let mut child = Command::new(program)
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&bytes).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{program} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        };
        let listing = run(list);
        for name in [
            "preseed.cfg",
            "kvmx",
            "kvmx/late.sh",
            "kvmx/odd",
            "kvmx/link",
        ] {
            assert!(
                listing
                    .lines()
                    .any(|l| l.ends_with(name) || l.contains(&format!("{name} -> "))),
                "{name} missing from:\n{listing}"
            );
        }
        assert!(listing.contains("-rw-------"), "{listing}");
        run(extract);
        let root = dir.path();
        assert_eq!(
            std::fs::read_to_string(root.join("kvmx/late.sh")).unwrap(),
            "echo hi\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("kvmx/odd")).unwrap(),
            "abc"
        );
        assert_eq!(
            std::fs::read_link(root.join("kvmx/link")).unwrap(),
            std::path::Path::new("late.sh")
        );
    }

    fn which(program: &str) -> bool {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}
