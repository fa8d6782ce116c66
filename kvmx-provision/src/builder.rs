//! kvmx-image's builder VM run by QEMU: each job is a VM of its own,
//! named `kvmx-builder-<pid>-<n>`, on a fresh qcow2 overlay of the cached
//! builder image, with the job's disks attached. Its folders live beside
//! the builder image in the cache and go when the job ends, however it
//! ends: a guard kills QEMU and removes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::config::ImageFormat;
use kvmx_core::config::values::VmName;
use kvmx_core::layout::{DirectBoot, Layout};
use kvmx_core::observe::{Silent, Stream};
use kvmx_core::process::Runner;
use kvmx_image::ImageBuilder;
use kvmx_image::builder::{BuilderError, BuilderImage, BuilderJob, BuilderVm};
use kvmx_image::volumes::Passphrase;

use crate::guest::{Lines, OutputSink};
use crate::qemu::ExtraDisk;
use crate::{Error, ImagePolicy, UpOptions, Vm};

/// How long the builder may take to answer SSH (a boot under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the guest's final `sync` may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// The build of VM `name`'s image as kvmx-create, `kvmx up` and `kvmx
/// install` do it: with the base box looked up, a [`QemuBuilder`] for what
/// needs root (LVM, LUKS, image-bootstrap) and a
/// [`QemuInstaller`](crate::install::QemuInstaller) for an image made by
/// an installer (`create.method = "install"`). `passphrase` is the LUKS
/// passphrase when the config says to ask for it.
pub fn image_builder(
    layout: &Layout,
    name: VmName,
    config: kvmx_core::config::Config,
    passphrase: Option<Passphrase>,
) -> Result<ImageBuilder, Error> {
    Ok(ImageBuilder::for_vm(layout, name, config)?
        .builder_vm(Arc::new(QemuBuilder::new(layout)))
        .installer_vm(Arc::new(crate::install::QemuInstaller::new(layout)))
        .passphrase(passphrase))
}

/// Runs builder jobs with QEMU, in kvmx's folders `layout`.
#[derive(Debug, Clone)]
pub struct QemuBuilder {
    layout: Layout,
}

impl QemuBuilder {
    /// Builder VMs whose sockets live in `layout`'s runtime folder.
    pub fn new(layout: &Layout) -> Self {
        QemuBuilder {
            layout: layout.clone(),
        }
    }

    /// A name no other builder run of this host has now.
    fn run_name() -> VmName {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        format!("kvmx-builder-{}-{n}", std::process::id())
            .parse()
            .expect("a valid VM name")
    }

    /// The VM of one run: the builder image's config on an overlay in
    /// `<builder folder>/runs/<name>`, with the builder's key and host
    /// key.
    fn prepare(&self, image: &BuilderImage, job: &BuilderJob) -> Result<Vm, Error> {
        let name = Self::run_name();
        let layout = Layout {
            data_dir: image.paths.data.join("runs"),
            ..self.layout.clone()
        };
        let paths = layout.vm(&name);
        std::fs::create_dir_all(&paths.data).map_err(Error::io("create", &paths.data))?;
        let overlay = paths.data.join("overlay.qcow2");
        kvmx_image::qemu_img::create_overlay(
            &Runner::unlogged(CancelFlag::new()),
            &overlay,
            &image.image,
            ImageFormat::Qcow2,
        )?;
        link_direct_boot(&image.image, &overlay)?;
        let builder_key = image.paths.ssh_key();
        let key = std::fs::read(&builder_key).map_err(Error::io("read", &builder_key))?;
        kvmx_image::keys::write_private(&paths.ssh_key(), &key)?;
        let known_hosts = kvmx_image::keys::known_hosts_as(&image.paths, &name)?;
        kvmx_core::atomic_file::write(
            &paths.known_hosts(),
            known_hosts.as_bytes(),
            kvmx_core::atomic_file::Overwrite::Yes,
        )?;
        let mut config = image.config.clone();
        config.vm.name = Some(name.clone());
        config.image.path = Some(overlay);
        config.image.format = ImageFormat::Qcow2;
        let mut vm = Vm::new(&layout, name, config);
        vm.extra_disks = job
            .disks
            .iter()
            .map(|disk| ExtraDisk {
                path: disk.path.clone(),
                serial: disk.serial.clone(),
                read_only: disk.read_only,
            })
            .collect();
        Ok(vm)
    }
}

/// Links the kernel, initrd and command line that `image` boots with (a
/// direct boot) beside `overlay`, where the run's VM looks for them.
fn link_direct_boot(image: &Utf8Path, overlay: &Utf8Path) -> Result<(), Error> {
    let (from, to) = (DirectBoot::beside(image), DirectBoot::beside(overlay));
    for (file, link) in [
        (&from.kernel, &to.kernel),
        (&from.initrd, &to.initrd),
        (&from.cmdline, &to.cmdline),
    ] {
        if file.exists() {
            std::os::unix::fs::symlink(file, link).map_err(Error::io("link", link))?;
        }
    }
    Ok(())
}

/// Ends a run's VM and removes its folders when dropped.
struct RunGuard {
    vm: Vm,
    folders: [Utf8PathBuf; 2],
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let _ = self.vm.kill();
        for folder in &self.folders {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// Output lines to the job's callback, stderr marked.
struct ToCallback<'a>(&'a mut dyn FnMut(&str));

impl OutputSink for ToCallback<'_> {
    fn line(&mut self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => (self.0)(line),
            Stream::Stderr => (self.0)(&format!("! {line}")),
        }
    }
}

fn failed(error: Error, doing: &str) -> BuilderError {
    let cancelled = matches!(error, Error::Cancelled { .. } | Error::Interrupted { .. });
    BuilderError {
        message: format!("{doing}: {error}"),
        cancelled,
    }
}

impl BuilderVm for QemuBuilder {
    fn run(
        &self,
        image: &BuilderImage,
        job: &BuilderJob,
        output: &mut dyn FnMut(&str),
        cancel: &CancelFlag,
    ) -> Result<(), BuilderError> {
        let vm = self
            .prepare(image, job)
            .map_err(|e| failed(e, "preparing the builder VM"))?;
        let guard = RunGuard {
            folders: [vm.files.paths.data.clone(), vm.files.paths.runtime.clone()],
            vm,
        };
        let vm = &guard.vm;
        let booted = std::time::Instant::now();
        vm.up_with(
            &UpOptions::new()
                .image(ImagePolicy::Fail)
                .timeout(BOOT_TIMEOUT)
                .cancel(cancel.clone()),
            &mut Silent,
        )
        .map_err(|e| failed(e, "starting the builder VM"))?;
        output(&format!(
            "== the builder VM is up after {:.1}s",
            booted.elapsed().as_secs_f64()
        ));
        let guest = vm
            .guest()
            .map_err(|e| failed(e, "reaching the builder VM"))?;
        let mut tail = Tail::default();
        let code = {
            let mut forward = |line: &str| {
                tail.push(line);
                output(line);
            };
            let mut sink = ToCallback(&mut forward);
            let mut lines = Lines::new(&mut sink);
            let code = guest
                .exec(&["sudo", "-n", "sh", "-c", &job.script, "kvmx-builder"])
                .stdin(job.stdin.clone())
                .timeout(job.timeout)
                .cancel(cancel)
                .stream(&mut lines);
            lines.finish();
            code
        }
        .map_err(|e| failed(e, "running the job in the builder VM"))?;
        if code != 0 {
            return Err(BuilderError {
                message: format!(
                    "the job exited with status {code}; its last lines:\n{}",
                    tail.lines.join("\n")
                ),
                cancelled: false,
            });
        }
        // The job's disks are raw files QEMU writes straight into
        // (cache=unsafe skips only the flushes), and the builder's overlay
        // is thrown away: once the guest has synced, nothing is lost by
        // ending QEMU at once instead of waiting for a power-off. The
        // guard ends it.
        let synced = guest
            .exec(&["sync"])
            .timeout(SYNC_TIMEOUT)
            .cancel(cancel)
            .output()
            .map_err(|e| failed(e, "syncing the builder VM's disks"))?;
        if !synced.success() {
            return Err(BuilderError {
                message: "sync failed in the builder VM".into(),
                cancelled: false,
            });
        }
        Ok(())
    }
}

/// The last lines of a job's output, for its error.
#[derive(Default)]
struct Tail {
    lines: Vec<String>,
}

impl Tail {
    const KEEP: usize = 15;

    fn push(&mut self, line: &str) {
        if self.lines.len() == Self::KEEP {
            self.lines.remove(0);
        }
        self.lines.push(line.to_owned());
    }
}
