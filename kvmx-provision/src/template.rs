//! Template-based VMs, Qubes-like: the root disk is made afresh from the
//! template's image at every start, and a private disk keeps what must
//! persist.
//!
//! The chain is guarded by a "backing lock" in each VM's runtime folder,
//! handed down to QEMU like the run lock: a running VM holds its own
//! exclusively, and a VM running on another's image (template or base-box
//! overlay) holds that one shared. So a template cannot start while a
//! dependant runs, and the other way round, whoever crashes.

use std::fs::File;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::values::VmName;
use kvmx_core::config::{Config, ImageFormat, TemplateRoot};
use kvmx_core::process::{Runner, Tool};
use kvmx_core::{CancelFlag, Layout, Project, Registry};
use kvmx_image::qemu_img;

use crate::files::VmFiles;
use crate::guest::{OutputSink, quote};
use crate::state::{self, ensure_private_dir};
use crate::{Error, Vm};

/// The label and serial of the private disk; the guest finds it by its
/// serial under /dev/disk/by-id.
const PRIVATE_SERIAL: &str = "kvmx-private";

/// Marks a private disk that already holds the template's first contents.
const PRIVATE_MARKER: &str = ".kvmx-private";

impl Vm {
    /// The VM `name` with its resolved `config`; a template-based VM also
    /// loads its template (a registered VM) and runs from its image.
    pub fn open(layout: &Layout, name: VmName, config: Config) -> Result<Vm, Error> {
        let Some(template) = config.template.name.clone() else {
            return Ok(Vm::new(layout, name, config));
        };
        let project = Project::select(Some(template.as_str()), &layout.config_dir, layout)?;
        let loaded = project.load(layout)?;
        if loaded.config.template.name.is_some() {
            return Err(Error::NestedTemplate {
                vm: name.to_string(),
                template: template.to_string(),
            });
        }
        let template = Vm::new(layout, loaded.name, loaded.config);
        Ok(Vm::on_template(layout, name, config, template))
    }

    /// A VM whose root comes from `template`'s image (a fresh overlay, or
    /// QEMU's `-snapshot` on the template's image).
    pub(crate) fn on_template(
        layout: &Layout,
        name: VmName,
        mut config: Config,
        template: Vm,
    ) -> Vm {
        let image = &mut config.image;
        match config.template.root {
            TemplateRoot::Overlay => {
                image.path = Some(VmFiles::new(layout, &name).root_overlay());
                image.format = ImageFormat::Qcow2;
                image.snapshot = false;
            }
            TemplateRoot::Snapshot => {
                image.path = Some(template.image());
                image.format = template.config.image.format;
                image.snapshot = true;
            }
        }
        image.base = None;
        image.backing = false;
        let mut vm = Vm::new(layout, name, config);
        vm.template = Some(Box::new(template));
        vm
    }

    /// The VM whose image holds this VM's system: its template, or itself.
    pub fn system(&self) -> &Vm {
        self.template.as_deref().unwrap_or(self)
    }

    /// The private disk of a template-based VM that has one.
    pub fn private_disk(&self) -> Option<Utf8PathBuf> {
        (self.template.is_some() && self.config.template.private_disk)
            .then(|| self.files.private_disk())
    }

    /// The runtime folder of the VM whose image this VM's disk is built
    /// on while it runs: its template, or its base when it is an overlay.
    fn backing_owner(&self) -> Option<(String, VmFiles)> {
        if let Some(template) = &self.template {
            return Some((template.name.to_string(), template.files.clone()));
        }
        let base = self.config.image.base.as_ref()?;
        self.config
            .image
            .backing
            .then(|| (base.to_string(), VmFiles::new(&self.layout, base)))
    }

    /// Takes the backing locks for a start: this VM's own, exclusively
    /// (nothing may run on its image meanwhile), and its template's or
    /// base's, shared (it must not run meanwhile). The locks go to QEMU.
    pub(crate) fn take_backing_locks(&self) -> Result<Vec<File>, Error> {
        let own = open_backing_lock(&self.files)?;
        if own.try_lock().is_err() {
            let users = self.dependants_running();
            return Err(Error::ImageInUse {
                vm: self.name.to_string(),
                users,
            });
        }
        let mut locks = vec![own];
        if let Some((owner, files)) = self.backing_owner() {
            let shared = open_backing_lock(&files)?;
            if shared.try_lock_shared().is_err() {
                return Err(Error::BackingRunning {
                    vm: self.name.to_string(),
                    owner,
                });
            }
            locks.push(shared);
        }
        Ok(locks)
    }

    /// The running VMs that run on this VM's image.
    fn dependants_running(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.layout.runtime_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|entry| {
                let name: VmName = entry.file_name().to_str()?.parse().ok()?;
                let files = VmFiles::new(&self.layout, &name);
                let run = state::read(&files)?;
                (run.backing.as_deref() == Some(self.name.as_str())).then(|| name.to_string())
            })
            .collect();
        names.sort();
        names
    }

    /// The name of the VM this one runs on, recorded in its run state.
    pub(crate) fn backing_name(&self) -> Option<String> {
        self.backing_owner().map(|(name, _)| name)
    }

    /// The registered VMs and disposables built on this VM's image, which
    /// would break if it were destroyed.
    pub fn dependants(&self) -> Vec<String> {
        let mut names = Vec::new();
        if let Ok(registry) = Registry::load(&self.layout) {
            for (name, dir) in &registry.vms {
                let Some(config) = Project::in_dir(dir)
                    .and_then(|project| project.load(&self.layout).ok())
                    .map(|loaded| loaded.config)
                else {
                    continue;
                };
                let on_template = config.template.name.as_ref() == Some(&self.name);
                let on_base =
                    config.image.backing && config.image.base.as_ref() == Some(&self.name);
                if on_template || on_base {
                    names.push(name.clone());
                }
            }
        }
        names.extend(crate::disposable::of_template(&self.layout, &self.name));
        names
    }

    /// Before a start: a fresh root overlay for a template-based VM (or a
    /// base-box overlay with `recreate_overlay`), and the private disk at
    /// the first start.
    /// A restored disposable's root is an overlay on the `warm_disk`.
    pub(crate) fn prepare_disks(&self, warm_disk: Option<&Utf8Path>) -> Result<(), Error> {
        if let Some(disk) = warm_disk {
            make_overlay(&self.image(), disk, ImageFormat::Qcow2)?;
        } else if let Some(template) = &self.template {
            let image = template.image();
            if !image.exists() {
                return Err(Error::NoTemplateImage {
                    vm: self.name.to_string(),
                    template: template.name.to_string(),
                    path: image,
                });
            }
            if self.config.template.root == TemplateRoot::Overlay {
                let format = template.config.image.format;
                make_overlay(&self.image(), &image, format)?;
            }
        } else if self.config.image.recreate_overlay {
            let overlay = self.image();
            let (backing, format) = backing_file(&overlay)?;
            make_overlay(&overlay, &backing, format)?;
        }
        if let Some(disk) = self.private_disk()
            && !disk.exists()
        {
            make_private_disk(&disk, self.config.template.private_size.bytes())?;
        }
        Ok(())
    }

    /// After SSH answers: mounts the private disk; at its first use it
    /// first gets what the template has at the mount point (the user's
    /// home with the authorized SSH key, by default).
    pub(crate) fn mount_private_disk(&self, sink: &mut dyn OutputSink) -> Result<(), Error> {
        if self.private_disk().is_none() {
            return Ok(());
        }
        let mount = quote(self.config.template.private_mount.as_path().as_str());
        let device = format!("/dev/disk/by-id/virtio-{PRIVATE_SERIAL}");
        let script = format!(
            "set -e; mountpoint -q {mount} && exit 0; \
             t=$(mktemp -d); mount {device} \"$t\"; \
             if [ ! -e \"$t/{PRIVATE_MARKER}\" ]; then mkdir -p {mount}; cp -a {mount}/. \"$t\"/; touch \"$t/{PRIVATE_MARKER}\"; fi; \
             umount \"$t\"; rmdir \"$t\"; mkdir -p {mount}; mount {device} {mount}"
        );
        let status = self
            .ssh_target()?
            .run(&format!("sudo sh -c {}", quote(&script)), sink)?;
        crate::provision::check(format!("mounting the private disk at {mount}"), status)
    }
}

fn open_backing_lock(files: &VmFiles) -> Result<File, Error> {
    ensure_private_dir(&files.paths.runtime)?;
    let path = files.backing_lock();
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("open", &path))
}

/// Replaces `overlay` with a fresh qcow2 overlay on `backing`.
fn make_overlay(overlay: &Utf8Path, backing: &Utf8Path, format: ImageFormat) -> Result<(), Error> {
    let parent = overlay.parent().unwrap_or(Utf8Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
    let fresh = overlay.with_extension("qcow2.new");
    qemu_img::create_overlay(&tools(), &fresh, backing, format)?;
    std::fs::rename(&fresh, overlay).map_err(Error::io("replace", overlay))
}

/// The backing file of a qcow2 overlay, and its format.
fn backing_file(overlay: &Utf8Path) -> Result<(Utf8PathBuf, ImageFormat), Error> {
    qemu_img::backing_of(&tools(), overlay)?.ok_or_else(|| Error::NotAnOverlay {
        path: overlay.to_owned(),
    })
}

/// A sparse file with an empty ext4 file system, made without root.
fn make_private_disk(disk: &Utf8Path, bytes: u64) -> Result<(), Error> {
    let fresh = disk.with_extension("img.new");
    let file = File::create(&fresh).map_err(Error::io("create", &fresh))?;
    file.set_len(bytes).map_err(Error::io("size", &fresh))?;
    drop(file);
    tools()
        .run(
            &Tool::new("mkfs.ext4", "make the private disk's file system")
                .args(["-q", "-F", "-L", PRIVATE_SERIAL])
                .args(["-O", "^metadata_csum_seed,^orphan_file"])
                .arg(&fresh),
        )
        .map_err(kvmx_image::Error::from)?;
    std::fs::rename(&fresh, disk).map_err(Error::io("rename", disk))
}

/// The runner of the disk tools: short work, not logged, not cancelled.
fn tools() -> Runner {
    Runner::unlogged(CancelFlag::new())
}

/// The serial the private disk has in the guest.
pub(crate) fn private_serial() -> &'static str {
    PRIVATE_SERIAL
}
