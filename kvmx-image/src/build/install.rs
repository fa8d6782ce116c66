//! An image made by an installer run in the VM: a blank disk in a private
//! work folder beside the image, the installer's media (for Debian's
//! netboot installer a private copy of its initrd with the preseed and
//! kvmx's files appended), the install run by the [`InstallerVm`], then
//! the disk moved into place and the guest's host key recorded. A failed
//! or interrupted install leaves no disk behind.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use camino::Utf8Path;
use kvmx_core::config::PassphraseSource;
use kvmx_core::observe::Observer;
use kvmx_core::process::Runner;

use super::{BuildReport, ImageBuilder, Stage, Timer};
use crate::install::{InstallJob, InstallMedia, InstallerVm, netboot_initrd, netboot_kernel};
use crate::password::GuestPassword;
use crate::prerequisites::{self, Requirement};
use crate::preseed::{self, PreseedInput};
use crate::{Error, Result, keys};

impl ImageBuilder {
    /// The image made by the installer: Debian's netboot installer
    /// preseeded from the config, or `install.iso`.
    pub(super) fn build_with_installer(
        &self,
        runner: &Runner,
        timer: &mut Timer,
    ) -> Result<BuildReport> {
        let iso = self.config.install.iso.clone();
        let image = timer.run(Stage::Check, &self.cancel, || {
            let image = self.check_target()?;
            let mut needs = vec![Requirement::program("qemu-img", "qemu-utils")];
            match &iso {
                Some(iso) => needs.push(Requirement::File {
                    path: iso.clone(),
                    package: "an installer ISO (install.iso)",
                }),
                None => needs.extend(crate::install::netboot_requirements()),
            }
            prerequisites::check(&needs).map_err(Error::Missing)?;
            Ok((image, None))
        })?;
        let Some(installer) = self.installer.clone() else {
            return Err(Error::Unsupported(
                "this program gave the image builder no way to run an installer: install with kvmx up or kvmx install".into(),
            ));
        };
        let hostname = self.hostname();
        let unattended = iso.is_none();
        let trust = match unattended {
            true => Some(self.installer_keys(timer)?),
            false => None,
        };
        let work = self.work_dir(&image)?;
        // The initrd copy holds the password hash (and a LUKS passphrase):
        // no other user may even list the folder.
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(Error::io("protect", work.path()))?;
        let format = self.config.image.format;
        let disk = work.path().join(format!("disk.{}", format.as_str()));
        let media = timer.run(Stage::GuestSetup, &self.cancel, || {
            crate::qemu_img::create(runner, &disk, format, self.config.image.size.bytes())?;
            let media = match (&iso, &trust) {
                (Some(iso), _) => InstallMedia::Iso(iso.clone()),
                (None, Some(trust)) => {
                    let initrd = work.path().join("initrd");
                    let input = PreseedInput {
                        config: &self.config,
                        hostname: hostname.clone(),
                        password_hash: trust.password.hash.clone(),
                        uid: trust.ids.0,
                        gid: trust.ids.1,
                        authorized_keys: trust.authorized_keys.clone(),
                        host_key_private: trust.host_key.private.clone(),
                        host_key_public: trust.host_key.public.clone(),
                        passphrase: trust.passphrase.as_ref().map(|p| p.expose()),
                    };
                    write_initrd(&netboot_initrd(), &initrd, &preseed::initrd_files(&input))?;
                    InstallMedia::Kernel {
                        kernel: netboot_kernel(),
                        initrd,
                        append: preseed::KERNEL_ARGS.into(),
                    }
                }
                (None, None) => unreachable!("an unattended install has keys"),
            };
            Ok((media, None))
        })?;
        let mut config = self.config.clone();
        config.image.path = Some(disk.clone());
        let job = InstallJob {
            name: self.name.clone(),
            config,
            media,
            done_marker: unattended.then_some(preseed::DONE_MARKER),
            failed_marker: unattended.then_some(preseed::FAILED_MARKER),
            timeout: Duration::from_secs(self.config.install.timeout),
            log: self.paths.install_log(),
        };
        timer.run_observed(Stage::Install, &self.cancel, |observer| {
            self.run_installer(installer.as_ref(), &job, runner, observer)?;
            Ok(((), None))
        })?;
        timer.run(Stage::Finish, &self.cancel, || {
            std::fs::rename(&disk, &image).map_err(Error::io("rename the image to", &image))?;
            match &trust {
                Some(trust) => self.keep_trust(
                    &trust.host_key.public,
                    trust.passphrase.as_ref(),
                    &trust.password,
                )?,
                // The installed system's keys are its own: nothing kvmx
                // knows of an earlier image holds for it.
                None => {
                    let _ = std::fs::remove_file(self.paths.known_hosts());
                    self.forget_secrets();
                }
            }
            Ok(((), None))
        })?;
        drop(work);
        let kept_passphrase = trust.as_ref().is_some_and(|t| t.passphrase.is_some())
            && self.config.create.passphrase == PassphraseSource::File;
        let password_file = trust
            .and_then(|t| t.password.random)
            .map(|_| self.paths.password_file());
        let mut report = self.whole_disk_report(image, password_file, self.paths.install_log());
        report.luks_passphrase_file = kept_passphrase.then(|| self.paths.luks_passphrase_file());
        Ok(report)
    }

    /// The VM's client key, a new host key, the password and the LUKS
    /// passphrase, for a preseeded install.
    fn installer_keys(&self, timer: &mut Timer) -> Result<InstallTrust> {
        let hostname = self.hostname();
        timer.run(Stage::Keys, &self.cancel, || {
            let mut authorized_keys = vec![keys::client_key(&self.paths, &self.name)?];
            if let Some(setting) = &self.config.ssh.authorized_key {
                authorized_keys.push(keys::extra_authorized_key(setting)?);
            }
            let trust = InstallTrust {
                authorized_keys,
                host_key: keys::new_host_key(&hostname)?,
                password: GuestPassword::from_config(&self.config.vm.password)?,
                passphrase: self.luks_passphrase()?,
                ids: crate::accounts::host_ids_for_guest(),
            };
            Ok((trust, None))
        })
    }

    fn run_installer(
        &self,
        installer: &dyn InstallerVm,
        job: &InstallJob,
        runner: &Runner,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        runner.note(&format!(
            "# installer: {:?}; its console output goes to {}",
            job.media, job.log
        ));
        installer
            .run(job, observer, &self.cancel)
            .map_err(|error| match error.cancelled {
                true => Error::Interrupted,
                false => {
                    runner.note(&format!("# install failed: {error}"));
                    Error::Install(error)
                }
            })
    }
}

/// What a preseeded install gives the guest.
struct InstallTrust {
    authorized_keys: Vec<String>,
    host_key: keys::HostKey,
    password: GuestPassword,
    passphrase: Option<crate::volumes::Passphrase>,
    ids: (u32, u32),
}

/// A copy of the installer's `initrd` at `target`, readable by its owner
/// alone, with `files` appended as a second (uncompressed) cpio archive:
/// the kernel unpacks both into the installer's root.
fn write_initrd(
    initrd: &Utf8Path,
    target: &Utf8Path,
    files: &crate::overlay::Overlay,
) -> Result<()> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(Error::io("create", target))?;
    let mut input = std::fs::File::open(initrd).map_err(Error::io("read", initrd))?;
    let copied = std::io::copy(&mut input, &mut out).map_err(Error::io("write", target))?;
    // Each archive starts on a four-byte boundary (the kernel skips the
    // zeros between them).
    let padding = vec![0u8; (copied.next_multiple_of(4) - copied) as usize];
    out.write_all(&padding)
        .and_then(|()| out.write_all(&crate::cpio::newc(files)))
        .and_then(|()| out.sync_all())
        .map_err(Error::io("write", target))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initrd_copy_is_private_and_ends_with_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(dir.path()).unwrap();
        let original = dir.join("initrd.gz");
        std::fs::write(&original, b"0123456").unwrap();
        let mut files = crate::overlay::Overlay::new();
        files.file("preseed.cfg", 0o600, "d-i x string y\n");
        let copy = dir.join("initrd");
        write_initrd(&original, &copy, &files).unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        assert_eq!(&bytes[..7], b"0123456");
        assert_eq!(bytes[7], 0);
        assert_eq!(&bytes[8..14], b"070701");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Never over an existing file.
        assert!(write_initrd(&original, &copy, &files).is_err());
    }
}
