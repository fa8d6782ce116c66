//! Images made from another VM's image (a base box): a full copy, or a
//! qcow2 overlay with the base's image as its backing file. The guest is the
//! base's, so the base's keys reach it: its host key is recorded for this
//! VM, and its client key is tried after this VM's own.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::Project;
use kvmx_core::config::values::VmName;
use kvmx_core::config::{Bootloader, ImageFormat};
use kvmx_core::layout::{Layout, VmPaths};
use kvmx_core::run_lock;

use crate::{Error, Result};
use kvmx_core::process::Runner;

/// The base VM, as its own config describes it.
#[derive(Debug, Clone)]
pub struct BaseVm {
    /// Its name.
    pub name: VmName,
    /// Its image.
    pub image: Utf8PathBuf,
    /// Its image format.
    pub format: ImageFormat,
    /// How its image boots.
    pub bootloader: Bootloader,
    /// Its files.
    pub paths: VmPaths,
}

impl BaseVm {
    /// The registered VM `name`, as its own config describes it.
    pub fn registered(layout: &Layout, name: &str) -> Result<BaseVm, Error> {
        let project = Project::select(Some(name), &layout.config_dir, layout)?;
        let loaded = project.load(layout)?;
        let paths = layout.vm(&loaded.name);
        let config = &loaded.config;
        Ok(BaseVm {
            image: config
                .image
                .path
                .clone()
                .unwrap_or_else(|| paths.default_image()),
            format: config.image.format,
            bootloader: config.create.bootloader,
            paths,
            name: loaded.name,
        })
    }

    fn refuse(&self, reason: impl Into<String>) -> Error {
        Error::Base {
            name: self.name.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether the base runs now: its run lock is held, by its QEMU or by a
    /// `kvmx up` starting it.
    pub fn is_running(&self) -> Result<bool> {
        Ok(run_lock::probe(&self.paths)? == run_lock::Probe::Held)
    }

    /// Checks that the base can be used now.
    pub fn check(&self, overlay: bool) -> Result<()> {
        if !self.image.is_file() {
            return Err(self.refuse(format!(
                "its image {} does not exist (run kvmx-create {} first)",
                self.image, self.name
            )));
        }
        if self.is_running()? {
            let what = if overlay {
                "an overlay on a running VM's image would break when the base writes to it"
            } else {
                "a copy of a running VM's disk would be inconsistent"
            };
            return Err(self.refuse(format!("it is running: {what}")));
        }
        Ok(())
    }

    /// Writes the new image at `target`: a qcow2 overlay backed by the
    /// base's image, or a full copy in `format`.
    pub fn make_image(
        &self,
        target: &Utf8Path,
        format: ImageFormat,
        overlay: bool,
        runner: &Runner,
    ) -> Result<()> {
        if overlay {
            if format != ImageFormat::Qcow2 {
                return Err(Error::Unsupported(
                    "an image backed by a base is a qcow2 overlay: set image.format = \"qcow2\""
                        .into(),
                ));
            }
            crate::qemu_img::create_overlay(runner, target, &self.image, self.format)?;
        } else {
            crate::qemu_img::convert(runner, &self.image, self.format, target, format)?;
        }
        Ok(())
    }

    /// The base's known_hosts text with this VM's alias.
    pub fn known_hosts_for(&self, vm: &VmName) -> Result<String> {
        crate::keys::known_hosts_as(&self.paths, vm)
    }
}

#[cfg(test)]
mod tests {
    use camino::Utf8PathBuf;

    use super::*;

    fn base_in(dir: &tempfile::TempDir) -> BaseVm {
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let paths = VmPaths {
            data: root.join("data/basebox"),
            runtime: root.join("run/basebox"),
        };
        std::fs::create_dir_all(&paths.data).unwrap();
        let image = paths.default_image();
        std::fs::write(&image, b"").unwrap();
        BaseVm {
            name: "basebox".parse().unwrap(),
            image,
            format: ImageFormat::Raw,
            bootloader: Bootloader::Direct,
            paths,
        }
    }

    #[test]
    fn a_base_whose_run_lock_is_held_is_refused_and_one_never_started_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(&dir);
        assert!(!base.is_running().unwrap());
        base.check(true).unwrap();
        assert!(!base.paths.runtime.exists(), "the check created files");

        std::fs::create_dir_all(&base.paths.runtime).unwrap();
        let lock = run_lock::take(&base.paths).unwrap().unwrap();
        assert!(base.is_running().unwrap());
        for overlay in [true, false] {
            let error = base.check(overlay).unwrap_err().to_string();
            assert!(error.contains("it is running"), "{error}");
        }
        drop(lock);
        base.check(false).unwrap();
    }

    #[test]
    fn a_stale_pid_file_does_not_make_a_base_run() {
        let dir = tempfile::tempdir().unwrap();
        let base = base_in(&dir);
        std::fs::create_dir_all(&base.paths.runtime).unwrap();
        std::fs::write(base.paths.pid_file(), format!("{}\n", std::process::id())).unwrap();
        assert!(!base.is_running().unwrap());
    }
}
