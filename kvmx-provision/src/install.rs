//! kvmx-image's installer run by QEMU ([`QemuInstaller`]): the VM itself,
//! under its own name and run lock, boots the installer on the blank disk
//! of the build's work folder, with no shares, no forwards and no SSH.
//! Its serial console is read as it comes: the installer's steps become
//! stages ([`progress`]), every byte goes to `install.log`, and the run
//! ends when the guest powers off (QEMU runs with `-no-reboot`), when the
//! installer asks a question nobody will answer, at `install.timeout`, or
//! on cancel; QEMU is killed on every end but a clean power-off.

pub mod progress;

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use kvmx_core::CancelFlag;
use kvmx_core::config::NetworkMode;
use kvmx_core::layout::Layout;
use kvmx_core::observe::{Observer, Stages};
use kvmx_image::install::{InstallError, InstallJob, InstallMedia, InstallerVm};

use crate::vm::Patience;
use crate::{Error, Vm, state};
use progress::{Progress, Verdict};

/// The least memory the Debian installer is given: its initrd alone
/// unpacks to about 150 MiB, and below 1 GiB it runs in low-memory mode.
const NETBOOT_MEMORY_MIB: u64 = 1024;

/// How often the console log and QEMU are looked at.
const POLL: Duration = Duration::from_millis(500);

/// Runs installers with QEMU, in kvmx's folders `layout`.
#[derive(Debug, Clone)]
pub struct QemuInstaller {
    layout: Layout,
}

impl QemuInstaller {
    /// Installer runs whose sockets live in `layout`'s runtime folder.
    pub fn new(layout: &Layout) -> Self {
        QemuInstaller {
            layout: layout.clone(),
        }
    }

    /// The VM of the installer's run: the VM's own name and hardware on
    /// the job's blank disk, without what a first boot of the installed
    /// system would need (shares, forwards, SSH, provisioning).
    fn vm(&self, job: &InstallJob) -> Vm {
        let mut config = job.config.clone();
        config.shares.clear();
        config.network.forwards.clear();
        config.ssh.enabled = false;
        config.image.snapshot = false;
        config.image.backing = false;
        config.image.recreate_overlay = false;
        if matches!(job.media, InstallMedia::Kernel { .. }) {
            // The netboot installer fetches everything from the mirror and
            // talks on the serial console only.
            config.network.mode = NetworkMode::User;
            config.network.restrict = false;
            config.image.cdrom = None;
            config.display = Default::default();
            if config.hardware.memory.as_mib() < NETBOOT_MEMORY_MIB {
                config.hardware.memory =
                    kvmx_core::config::values::ByteSize::mib(NETBOOT_MEMORY_MIB);
            }
        }
        let mut vm = Vm::new(&self.layout, job.name.clone(), config);
        vm.installer = Some(job.media.clone());
        vm
    }
}

impl InstallerVm for QemuInstaller {
    fn run(
        &self,
        job: &InstallJob,
        observer: &mut dyn Observer,
        cancel: &CancelFlag,
    ) -> Result<(), InstallError> {
        let vm = self.vm(job);
        let mut stages = Stages::new(observer);
        let patience = Patience {
            limit: Some(job.timeout),
            cancel: cancel.clone(),
            passphrase: None,
        };
        let started = vm
            .start(false, None, &patience, &mut stages)
            .map_err(|e| failure(format!("the installer's VM did not start: {e}")))?;
        let Some(run) = state::read(&vm.files) else {
            let _ = vm.kill();
            return Err(failure("the installer's VM stopped at once".into()));
        };
        if let Some(note) = &started.accelerator_note {
            stages.note(&format!("the install runs under TCG (slow): {note}"));
        }
        stages.stage("installer: booting");
        let mut watch = Watch {
            vm: &vm,
            job,
            pid: run.pid,
            progress: Progress::new(job.done_marker, job.failed_marker),
            stages,
            cancel,
        };
        let result = watch.follow();
        // Whatever the end, no QEMU is left, nor a run state that says
        // it crashed.
        let _ = vm.kill();
        result
    }
}

/// One installer run being followed.
struct Watch<'a, 'o> {
    vm: &'a Vm,
    job: &'a InstallJob,
    pid: i32,
    progress: Progress,
    stages: Stages<'o>,
    cancel: &'a CancelFlag,
}

impl Watch<'_, '_> {
    fn follow(&mut self) -> Result<(), InstallError> {
        let console = self.vm.files.console_log();
        let mut log = std::fs::File::create(&self.job.log)
            .map_err(|e| failure(format!("cannot write {}: {e}", self.job.log)))?;
        let mut offset = 0;
        let deadline = Instant::now() + self.job.timeout;
        loop {
            let alive = state::process_alive(self.pid);
            // Read after the liveness check: what QEMU wrote before it
            // exited is in the file.
            offset = self.read_console(&console, offset, &mut log);
            match self.progress.verdict() {
                Verdict::Failed => {
                    return Err(self.failed("the install's last step failed"));
                }
                Verdict::Stuck => {
                    return Err(self.failed(
                        "the installer asks a question the preseed does not answer (an error, or a missing answer)",
                    ));
                }
                Verdict::Running | Verdict::Done => {}
            }
            if !alive {
                self.stages.finish(None);
                return match (self.job.done_marker, self.progress.verdict()) {
                    (None, _) | (Some(_), Verdict::Done) => Ok(()),
                    _ => {
                        Err(self.failed("the installer powered off before the end of the install"))
                    }
                };
            }
            if self.cancel.is_cancelled() {
                return Err(InstallError {
                    message: "interrupted".into(),
                    cancelled: true,
                });
            }
            if Instant::now() > deadline {
                return Err(self.failed(&format!(
                    "install.timeout ({} s) reached",
                    self.job.timeout.as_secs()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reads the console log from `offset` into the progress and the
    /// install log; returns the new offset.
    fn read_console(&mut self, console: &Utf8Path, offset: u64, log: &mut std::fs::File) -> u64 {
        let Ok(mut file) = std::fs::File::open(console) else {
            return offset;
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return offset;
        }
        let _ = log.write_all(&bytes);
        for step in self.progress.feed(&bytes) {
            self.stages.stage(&format!("installer: {step}"));
        }
        offset + bytes.len() as u64
    }

    /// The error of a failed run: `what`, the step it failed in and the
    /// last console lines.
    fn failed(&mut self, what: &str) -> InstallError {
        self.stages.finish(Some("failed"));
        let step = match self.progress.step() {
            Some(step) => format!(" during \"{step}\""),
            None => String::new(),
        };
        failure(format!(
            "{what}{step}; the last console lines:\n{}\n(the whole log: {})",
            self.progress.tail().join("\n"),
            self.job.log
        ))
    }
}

fn failure(message: String) -> InstallError {
    InstallError {
        message,
        cancelled: false,
    }
}

/// Options of [`Vm::install_with`].
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    force: bool,
    cancel: CancelFlag,
    passphrase: Option<kvmx_image::volumes::Passphrase>,
}

impl InstallOptions {
    /// What `kvmx install` does: refuse an existing image.
    pub fn new() -> Self {
        InstallOptions::default()
    }

    /// Replace an existing image (once the new one is complete).
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// A flag that stops the install when set (QEMU is killed, no image
    /// is left).
    pub fn cancel(mut self, cancel: CancelFlag) -> Self {
        self.cancel = cancel;
        self
    }

    /// The LUKS passphrase to give the installer instead of a new random
    /// one (`create.passphrase = "file"` makes one).
    pub fn passphrase(mut self, passphrase: Option<kvmx_image::volumes::Passphrase>) -> Self {
        self.passphrase = passphrase;
        self
    }
}

impl Vm {
    /// Makes the VM's image with the installer, whatever `create.method`
    /// says (`kvmx install`): Debian's netboot installer preseeded from
    /// the config, or `install.iso`. Refuses a VM that runs, one whose
    /// root comes from a template, and an existing image unless forced.
    pub fn install_with(
        &self,
        options: &InstallOptions,
        observer: &mut dyn Observer,
    ) -> Result<kvmx_image::BuildReport, Error> {
        if let Some(template) = self.template() {
            return Err(Error::Usage(format!(
                "{} runs from template {}'s image: install that one",
                self.name,
                template.name()
            )));
        }
        if self.is_running() {
            return Err(Error::Usage(format!(
                "{0} is running: stop it first (`kvmx stop {0}`)",
                self.name
            )));
        }
        let report = crate::builder::image_builder(
            &self.layout,
            self.name.clone(),
            self.config.clone(),
            options.passphrase.clone(),
        )?
        .install(true)
        .force(options.force)
        .cancel(options.cancel.clone())
        .build(observer)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use camino::Utf8Path;
    use kvmx_core::config::{self, DisplayKind};

    use super::*;

    fn job(toml: &str, media: InstallMedia) -> InstallJob {
        let layout = Layout::under(Utf8Path::new("/kvmx"));
        let parsed = config::parse_toml(toml, "kvmx.toml".into()).unwrap();
        let config = config::resolve(
            parsed,
            Utf8Path::new("/projects/example"),
            "example".parse().unwrap(),
            &layout,
        );
        InstallJob {
            name: "example".parse().unwrap(),
            config,
            media,
            done_marker: None,
            failed_marker: None,
            timeout: Duration::from_secs(60),
            log: "/kvmx/data/example/install.log".into(),
        }
    }

    const TOML: &str = "[hardware]\nmemory = \"512M\"\n\
        [network]\nforwards = [{ host = 8080, guest = 80 }]\n\
        [[shares]]\nid = \"code\"\nhost = \".\"\nguest = \"/srv\"\nkind = \"9p\"\n\
        [display]\nkind = \"vnc\"\n";

    /// The installer's run has no shares, forwards or SSH; the netboot
    /// installer gets 1 GiB and the serial console alone.
    #[test]
    fn the_installer_runs_without_what_the_system_needs() {
        let installer = QemuInstaller::new(&Layout::under(Utf8Path::new("/kvmx")));
        let netboot = installer.vm(&job(
            TOML,
            InstallMedia::Kernel {
                kernel: "/k".into(),
                initrd: "/i".into(),
                append: "auto=true".into(),
            },
        ));
        let config = &netboot.config;
        assert!(config.shares.is_empty() && config.network.forwards.is_empty());
        assert!(!config.ssh.enabled);
        assert_eq!(config.hardware.memory.as_mib(), 1024);
        assert_eq!(config.display.kind, DisplayKind::None);
        assert!(netboot.installer.is_some());

        let iso = installer.vm(&job(TOML, InstallMedia::Iso("/x.iso".into())));
        assert_eq!(iso.config.display.kind, DisplayKind::Vnc);
        assert_eq!(iso.config.hardware.memory.as_mib(), 512);
        assert!(iso.config.shares.is_empty());
    }
}
