//! Starting a VM: the accelerator, QEMU detached with its daemons, and
//! the wait until the guest answers SSH.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use kvmx_core::CancelFlag;
use kvmx_core::config::{Bootloader, NetworkMode, Protocol, ShareKind};
use kvmx_core::layout::DirectBoot;
use kvmx_core::observe::Stages;
use serde::Serialize;

use super::Vm;
use crate::Error;
use crate::host::{free_port, now};
use crate::qemu::{self, Accel, KernelBoot, Launch};
use crate::state::{self, PortForward, RunLock, RunState};
use crate::unlock::UnlockError;
use crate::warm::WarmRun;
use kvmx_core::config::{Encryption, PassphraseSource};
use kvmx_image::install::InstallMedia;
use kvmx_image::volumes::Passphrase;

/// How long QEMU gets to open its QMP socket after it starts.
const QEMU_START_DEADLINE: Duration = Duration::from_secs(15);

/// How long one look for sshd's greeting waits, and the pause between
/// looks: a booting guest's sshd is seen within a tenth of a second of
/// listening.
const SSH_GREETING_PATIENCE: Duration = Duration::from_millis(500);
const GREETING_RETRY: Duration = Duration::from_millis(100);

/// The pause after a login failed although sshd greeted (the user's key
/// or PAM not ready yet).
const LOGIN_RETRY: Duration = Duration::from_millis(500);

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// False when the VM was already running.
    pub started: bool,
    /// The accelerator in use.
    pub accelerator: Accel,
    /// Why `auto` chose TCG, if it did.
    pub accelerator_note: Option<String>,
    /// The SSH port, if any.
    pub ssh_port: Option<u16>,
    /// Seconds from start until the guest answered.
    pub seconds: f64,
}

/// How long a wait may last, and the flag that ends it early.
#[derive(Debug, Clone, Default)]
pub(crate) struct Patience {
    /// The limit; `None` takes the VM's `supervise.boot_timeout`.
    pub(crate) limit: Option<Duration>,
    /// Set by the caller to give up.
    pub(crate) cancel: CancelFlag,
    /// The LUKS passphrase given by the caller (`passphrase = "ask"`).
    pub(crate) passphrase: Option<Passphrase>,
}

impl Patience {
    /// The limit for `vm`.
    pub(crate) fn timeout(&self, vm: &Vm) -> Duration {
        self.limit
            .unwrap_or(Duration::from_secs(vm.config.supervise.boot_timeout))
    }
}

impl Vm {
    /// Starts the VM, booting it, or restoring a warm state of its
    /// template (and then setting its clock).
    pub(crate) fn start(
        &self,
        wait_for_ssh: bool,
        warm: Option<WarmRun>,
        patience: &Patience,
        progress: &mut Stages<'_>,
    ) -> Result<UpReport, Error> {
        let started_at = Instant::now();
        self.files.check_socket_paths(
            self.config
                .shares
                .iter()
                .map(|share| (share.id.as_str(), share.kind())),
        )?;
        let lock = match RunLock::try_take(&self.files)? {
            RunLock::Acquired(lock) => lock,
            RunLock::Busy => return self.already_running(),
        };
        if state::read(&self.files).is_some() {
            let console = state::console_tail(&self.files, 10);
            progress.note(&format!(
                "the last run of {} ended without a clean stop (QEMU crashed or was killed); its last console lines:\n{}",
                self.name,
                console.join("\n")
            ));
        }
        state::clear(&self.files);
        crate::nfs::stop_all(&self.files.paths.runtime);
        let backing_locks = self.take_backing_locks()?;
        let restore = match warm {
            Some(WarmRun::Restore(state)) => Some(state),
            _ => None,
        };
        self.prepare_disks(restore.map(|state| state.disk()).as_deref())?;
        let image = self.image();
        if !image.exists() {
            return Err(Error::NoImage { path: image });
        }
        self.check_shares()?;
        if self.shares_lack_virtiofsd {
            progress.note(crate::virtiofs::NO_VIRTIOFSD_NOTE);
        }
        let choice = match restore {
            // A saved state restores under the accelerator it ran under.
            Some(warm) => qemu::accel::AccelChoice {
                accel: warm.facts.accelerator,
                fallback_reason: None,
            },
            None => {
                progress.stage("choosing the accelerator");
                qemu::accel::choose(
                    self.config.hardware.accelerator,
                    qemu::QEMU,
                    &self.layout.cache_dir,
                )?
            }
        };
        if let Some(reason) = &choice.fallback_reason {
            progress.note(&format!("using TCG (software emulation): {reason}"));
        }
        let forwards = self.check_forwards()?;
        // Before QEMU starts: a missing passphrase is no reason to boot.
        let passphrase = match restore {
            Some(_) => None,
            // An installer asks for nothing at boot.
            None if self.installer.is_some() => None,
            None => self.luks_passphrase(patience)?,
        };
        progress.stage("starting QEMU");
        let ssh_port = self.wants_ssh().then(free_port).transpose()?;
        let locks: Vec<&File> = std::iter::once(&lock).chain(&backing_locks).collect();
        let launch = self.launch(choice.accel, ssh_port, warm)?;
        let run = self.spawn_qemu(&locks, &launch, forwards, image)?;
        drop(lock);
        drop(backing_locks);
        if let Err(error) = self.start_nfs_servers(run.pid) {
            let _ = self.kill();
            return Err(error);
        }
        if let Some(passphrase) = &passphrase {
            progress.stage("unlocking the disk");
            self.unlock(passphrase, run.pid, patience)?;
        }
        match (ssh_port, wait_for_ssh, restore) {
            (Some(_), true, Some(state)) => {
                progress.stage("restoring the warm state");
                crate::warm::load(self, state)?;
                crate::warm::wake(self, state, patience.timeout(self))?;
            }
            (Some(port), true, None) => {
                progress.stage(&format!("waiting for SSH on 127.0.0.1:{port}"));
                self.wait_for_ssh(run.pid, patience)?;
            }
            _ => {}
        }
        Ok(UpReport {
            started: true,
            accelerator: choice.accel,
            accelerator_note: choice.fallback_reason,
            ssh_port,
            seconds: started_at.elapsed().as_secs_f64(),
        })
    }

    /// Host folders must exist (they are never created in the wrong
    /// place), and what each share kind needs on the host must be there.
    pub fn check_shares(&self) -> Result<(), Error> {
        for share in &self.config.shares {
            match share.kind() {
                ShareKind::NineP
                | ShareKind::Virtiofs
                | ShareKind::Sshfs
                | ShareKind::ReverseSshfs => {}
                ShareKind::Nfs => {
                    crate::nfs::find_nfsd()?;
                }
                ShareKind::Smb if std::path::Path::new("/usr/sbin/smbd").exists() => {}
                ShareKind::Smb => {
                    return Err(Error::MissingTool {
                        program: "smbd".into(),
                        needed_by: format!("the smb share {}", share.id),
                        provider: crate::Provider::Debian("samba"),
                    });
                }
            }
            if !share.host.is_dir() {
                return Err(Error::Share {
                    share: share.id.to_string(),
                    problem: crate::ShareProblem::HostFolderMissing {
                        host: share.host.clone(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Starts the NFS server of each `nfs` share, for QEMU of pid `qemu`.
    fn start_nfs_servers(&self, qemu: i32) -> Result<(), Error> {
        for share in self
            .config
            .shares
            .iter()
            .filter(|s| s.kind() == ShareKind::Nfs)
        {
            crate::nfs::start(&self.files.paths.runtime, share, qemu)?;
        }
        Ok(())
    }

    fn already_running(&self) -> Result<UpReport, Error> {
        // Another `up` may still be writing the state file.
        let deadline = Instant::now() + QEMU_START_DEADLINE;
        loop {
            if let Some(run) = state::read(&self.files) {
                return Ok(UpReport {
                    started: false,
                    accelerator: run.accelerator,
                    accelerator_note: None,
                    ssh_port: run.ssh_port,
                    seconds: 0.0,
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Locked {
                    vm: self.name.to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wants_ssh(&self) -> bool {
        self.config.ssh.enabled && self.config.network.mode == NetworkMode::User
    }

    /// Fails when a configured host port is taken, before QEMU starts.
    fn check_forwards(&self) -> Result<Vec<PortForward>, Error> {
        let mut forwards = Vec::new();
        for forward in &self.config.network.forwards {
            let protocol = forward.protocol.as_str();
            let address = (forward.address, forward.host.0);
            let free = match forward.protocol {
                Protocol::Tcp => std::net::TcpListener::bind(address).is_ok(),
                Protocol::Udp => std::net::UdpSocket::bind(address).is_ok(),
            };
            if !free {
                return Err(Error::PortInUse {
                    port: forward.host.0,
                    address: forward.address.to_string(),
                    what: format!("{protocol} forward to guest port {}", forward.guest),
                });
            }
            forwards.push(PortForward {
                protocol: protocol.into(),
                address: forward.address.to_string(),
                host: forward.host.0,
                guest: forward.guest.0,
            });
        }
        Ok(forwards)
    }

    /// The kernel beside the system's image: an image without a bootloader
    /// has only that one, and a GRUB image the copy of its guest's kernel
    /// that kvmx keeps, which boots without GRUB's slow load through the
    /// BIOS (a template-based VM boots its template's). Through its PVH
    /// entry where it has one.
    fn kernel_boot(&self) -> Result<Option<KernelBoot>, Error> {
        let system = self.system();
        let files = DirectBoot::beside(&system.image());
        if system.config.create.bootloader != Bootloader::Direct && !files.kernel.exists() {
            return Ok(None);
        }
        let append =
            std::fs::read_to_string(&files.cmdline).map_err(Error::io("read", &files.cmdline))?;
        Ok(Some(KernelBoot {
            kernel: qemu::pvh::uncompressed(&files.kernel).unwrap_or(files.kernel),
            initrd: files.initrd,
            append: append.trim().to_owned(),
        }))
    }

    /// What this run needs beyond the config.
    fn launch(
        &self,
        accel: Accel,
        ssh_port: Option<u16>,
        warm: Option<WarmRun>,
    ) -> Result<Launch, Error> {
        let memory_file = match warm {
            Some(WarmRun::Save(memory)) => Some((memory.to_owned(), true)),
            Some(WarmRun::Restore(state)) => Some((state.memory(), false)),
            None => None,
        };
        let (kernel_boot, install_cdrom) = match &self.installer {
            None => (self.kernel_boot()?, None),
            Some(InstallMedia::Iso(iso)) => (None, Some(iso.clone())),
            Some(InstallMedia::Kernel {
                kernel,
                initrd,
                append,
            }) => (
                Some(KernelBoot {
                    kernel: kernel.clone(),
                    initrd: initrd.clone(),
                    append: append.clone(),
                }),
                None,
            ),
        };
        Ok(Launch {
            accel,
            ssh_port,
            kernel_boot,
            install_cdrom,
            no_reboot: self.installer.is_some(),
            qmp_socket: self.files.qmp_socket(),
            serial_socket: self.files.serial_socket(),
            console_log: self.files.console_log(),
            spice_socket: self.files.spice_socket(),
            vnc_socket: self.files.vnc_socket(),
            runtime_dir: self.files.paths.runtime.clone(),
            memory_file,
            incoming: matches!(warm, Some(WarmRun::Restore(_))),
            clock_pipe: warm.map(|_| crate::clock::pipe_base(&self.files.paths.runtime)),
            extra_disks: self.extra_disks.clone(),
            private_disk: self
                .private_disk()
                .map(|disk| (disk, crate::template::private_serial().into())),
        })
    }

    fn spawn_qemu(
        &self,
        locks: &[&File],
        launch: &Launch,
        mut forwards: Vec<PortForward>,
        image: Utf8PathBuf,
    ) -> Result<RunState, Error> {
        std::fs::create_dir_all(&self.files.paths.data)
            .map_err(Error::io("create", &self.files.paths.data))?;
        for share in self
            .config
            .shares
            .iter()
            .filter(|s| s.kind() == ShareKind::Virtiofs)
        {
            let log = self.files.virtiofsd_log(share.id.as_str());
            let socket = self.files.virtiofs_socket(share.id.as_str());
            crate::virtiofs::start(&socket, &share.host, share.read_only, &log)?;
        }
        if let Some(pipe) = &launch.clock_pipe {
            crate::clock::make_pipes(pipe)?;
        }
        // A fresh console log per run, so a crash shows this run's lines.
        let _ = std::fs::remove_file(self.files.console_log());
        let stderr_path = self.files.qemu_stderr();
        let stderr = File::create(&stderr_path).map_err(Error::io("create", &stderr_path))?;
        for lock in locks {
            state::hand_down(lock)?;
        }
        let mut child = Command::new(qemu::QEMU)
            .args(qemu::qemu_args(&self.config, launch))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: qemu::QEMU.into(),
                source,
            })?;
        let pid = child.id() as i32;
        if let Some(port) = launch.ssh_port {
            forwards.insert(
                0,
                PortForward {
                    protocol: "tcp".into(),
                    address: "127.0.0.1".into(),
                    host: port,
                    guest: 22,
                },
            );
        }
        let run = RunState {
            pid,
            started_at: now(),
            accelerator: launch.accel,
            ssh_port: launch.ssh_port,
            forwards,
            image,
            backing: self.backing_name(),
        };
        state::write(&self.files, &run)?;
        let _ = std::fs::write(self.files.paths.pid_file(), format!("{pid}\n"));
        // Wait for QMP: then QEMU has parsed its options and opened the
        // disk and ports.
        let deadline = Instant::now() + QEMU_START_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                state::clear(&self.files);
                let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(Error::QemuFailed {
                    status: status
                        .code()
                        .map(|c| format!(", with status {c}"))
                        .unwrap_or_default(),
                    stderr: tail(&text, 20),
                });
            }
            if self.qmp().is_ok() {
                return Ok(run);
            }
            if Instant::now() > deadline {
                return Err(Error::QemuFailed {
                    status: " (no QMP socket in time)".into(),
                    stderr: tail(
                        &std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                        20,
                    ),
                });
            }
            // A connect attempt costs next to nothing, and a restored
            // disposable waits on this socket.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the guest of QEMU `pid` answers SSH, within
    /// `patience`; a wait given up leaves QEMU running, and says so.
    pub(crate) fn wait_for_ssh(&self, pid: i32, patience: &Patience) -> Result<(), Error> {
        let target = self.ssh_target()?;
        let timeout = patience.timeout(self);
        let deadline = Instant::now() + timeout;
        loop {
            if patience.cancel.is_cancelled() {
                return Err(Error::Interrupted {
                    left: self.still_running_note(),
                });
            }
            if !state::process_alive(pid) {
                return Err(self.guest_error(
                    "QEMU exited before the guest answered SSH".into(),
                    "the guest powered off or crashed during boot; see the console lines above",
                ));
            }
            // A login costs about a second of an emulated guest's CPU, so
            // it is tried once sshd greets, which is polled often.
            let greeted = target.greets(SSH_GREETING_PATIENCE);
            if greeted && target.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let accel = state::read(&self.files).map(|r| r.accelerator);
                let hint = if accel == Some(Accel::Kvm) {
                    "KVM may hang on this host: try KVMX_ACCEL=tcg; or raise supervise.boot_timeout"
                } else if self.console_is_empty() {
                    "the guest printed nothing on its serial console: the image may not boot (check create.bootloader), or it does not print to ttyS0"
                } else {
                    "the guest booted but SSH did not answer: check that sshd runs and the VM's key is authorized, or raise supervise.boot_timeout"
                };
                return Err(self.guest_error(
                    format!(
                        "the guest did not answer SSH within {} s; {}",
                        timeout.as_secs(),
                        self.still_running_note()
                    ),
                    hint,
                ));
            }
            std::thread::sleep(if greeted { LOGIN_RETRY } else { GREETING_RETRY });
        }
    }

    /// The passphrase of an encrypted image: the caller's, or the one
    /// kept in the data folder of the VM whose image this is.
    fn luks_passphrase(&self, patience: &Patience) -> Result<Option<Passphrase>, Error> {
        let system = self.system();
        let create = &system.config.create;
        if create.encryption != Encryption::Luks {
            return Ok(None);
        }
        if let Some(given) = &patience.passphrase {
            return Ok(Some(given.clone()));
        }
        let file = system.files.paths.luks_passphrase_file();
        match create.passphrase {
            PassphraseSource::File => Ok(Some(Passphrase::read(&file)?)),
            PassphraseSource::Ask => Err(Error::Usage(format!(
                "{} has an encrypted disk whose passphrase is asked for (create.passphrase = \"ask\"): start it on a terminal",
                self.name
            ))),
        }
    }

    /// Types the passphrase at the guest's unlock prompt; a refused one
    /// powers QEMU off at once.
    fn unlock(&self, passphrase: &Passphrase, pid: i32, patience: &Patience) -> Result<(), Error> {
        let result = crate::unlock::answer(
            &self.files.serial_socket(),
            passphrase,
            patience.timeout(self),
            &patience.cancel,
            &|| state::process_alive(pid),
        );
        match result {
            Ok(()) => Ok(()),
            Err(UnlockError::Cancelled) => Err(Error::Interrupted {
                left: self.still_running_note(),
            }),
            Err(problem) => {
                let refused = problem == UnlockError::Refused;
                if refused {
                    self.halt();
                }
                let hint = if refused {
                    "the passphrase does not match the image: with passphrase = \"file\", the file in the VM's data folder belongs to another build of it"
                } else {
                    "see the console lines above; `kvmx console` shows the prompt"
                };
                Err(self.guest_error(problem.describe(), hint))
            }
        }
    }

    /// The state a given-up wait leaves, and what to do with it.
    pub(crate) fn still_running_note(&self) -> String {
        format!(
            "{0} is still running: `kvmx console {0}` shows its console, `kvmx stop {0}` stops it",
            self.name
        )
    }

    fn console_is_empty(&self) -> bool {
        std::fs::metadata(self.files.console_log()).map_or(true, |m| m.len() == 0)
    }

    fn guest_error(&self, what: String, hint: &str) -> Error {
        Error::Guest {
            what,
            console: state::console_tail(&self.files, 15).join("\n"),
            hint: hint.into(),
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    state::last_lines(text, lines).join("\n")
}
