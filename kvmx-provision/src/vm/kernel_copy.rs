//! The copy of the guest's kernel and initrd that kvmx keeps beside an
//! image to boot it directly (`Vm::kernel_boot`), kept in step with the
//! guest: before a stop, kvmx compares it with the guest's `/vmlinuz` and
//! `/initrd.img` (the links Debian's kernel packages point at the newest
//! kernel) and fetches what changed, so a kernel that `apt upgrade`
//! installed boots from the next start on, as it would through GRUB.

use std::time::{Duration, SystemTime};

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::layout::DirectBoot;

use super::Vm;
use crate::Error;
use crate::guest::{Discard, Guest};

/// The guest's files the copy follows, with the copy's own.
fn followed(copy: &DirectBoot) -> [(&'static str, &Utf8Path); 2] {
    [("/vmlinuz", &copy.kernel), ("/initrd.img", &copy.initrd)]
}

/// A file's size and modification time in whole seconds.
type Stamp = (u64, u64);

impl Vm {
    /// Whether this VM boots a copy of its own guest's kernel: not one on a
    /// template (its kernel is the template's), nor a builder.
    pub(crate) fn keeps_kernel_copy(&self) -> bool {
        self.template.is_none()
            && self.extra_disks.is_empty()
            && DirectBoot::beside(&self.image()).kernel.exists()
    }

    /// Fetches the guest's kernel and initrd where they differ from the
    /// copy beside the image; says whether anything was fetched. A VM
    /// that keeps no copy, and a guest without the links, have nothing to
    /// refresh.
    pub(crate) fn refresh_kernel_copy(&self) -> Result<bool, Error> {
        if !self.keeps_kernel_copy() {
            return Ok(false);
        }
        // A guest that does not answer is stopped without waiting on it.
        if !self.ssh_target()?.greets(Duration::from_secs(1)) {
            return Ok(false);
        }
        let copy = DirectBoot::beside(&self.image());
        let guest = self.guest()?;
        let mut words = vec!["stat", "-L", "-c", "%s %Y"];
        words.extend(followed(&copy).iter().map(|(path, _)| *path));
        let output = guest.exec(&words).output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let stamps: Vec<Stamp> = text.lines().filter_map(parse_stamp).collect();
        if !output.success() || stamps.len() != followed(&copy).len() {
            return Ok(false);
        }
        let mut fetched = false;
        for ((path, local), stamp) in followed(&copy).into_iter().zip(stamps) {
            if local_stamp(local) != Some(stamp) {
                fetch(&guest, path, local, stamp)?;
                fetched = true;
            }
        }
        Ok(fetched)
    }
}

/// Copies the guest's file `path` (`stamp` in the guest) over `local`,
/// through a temporary file: a copy cut short never replaces a good one.
fn fetch(guest: &Guest, path: &str, local: &Utf8Path, (size, seconds): Stamp) -> Result<(), Error> {
    let temp = Utf8PathBuf::from(format!("{local}.new"));
    let status = guest.copy_from(path, &temp, &mut Discard)?;
    let complete = status.success() && std::fs::metadata(&temp).is_ok_and(|m| m.len() == size);
    if !complete {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::Remote {
            problem: format!("could not copy the guest's {path} beside the image"),
            hint: "check the guest's free space and its /vmlinuz and /initrd.img links".into(),
        });
    }
    let file = std::fs::File::options()
        .write(true)
        .open(&temp)
        .map_err(Error::io("open", &temp))?;
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
        .map_err(Error::io("date", &temp))?;
    std::fs::rename(&temp, local).map_err(Error::io("keep", local))
}

fn parse_stamp(line: &str) -> Option<Stamp> {
    let (size, seconds) = line.trim().split_once(' ')?;
    Some((size.parse().ok()?, seconds.parse().ok()?))
}

fn local_stamp(path: &Utf8Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let seconds = meta
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?;
    Some((meta.len(), seconds.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_from_stat() {
        assert_eq!(
            parse_stamp("8247232 1764171120\n"),
            Some((8247232, 1764171120))
        );
        assert_eq!(parse_stamp("stat: cannot statx '/vmlinuz'"), None);
    }

    #[test]
    fn a_local_stamp_has_whole_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("vmlinuz");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(5).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_millis(7_500))
            .unwrap();
        assert_eq!(local_stamp(&path), Some((5, 7)));
    }
}
