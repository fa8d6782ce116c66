//! A VM and what can be done to it: start, inspect, pause, stop, remove.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use camino::Utf8PathBuf;
use kvmx_core::config::values::VmName;
use kvmx_core::config::{Bootloader, Config, NetworkMode, Protocol, ShareKind};
use kvmx_core::layout::{DirectBoot, Layout, VmPaths};
use kvmx_core::observe::{Observer, Stages};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::Serialize;

use crate::Error;
use crate::files::VmFiles;
use crate::lifecycle::Patience;
use crate::qemu::{self, Accel, KernelBoot, Launch};
use crate::qmp::{Qmp, QmpError, commands};
use crate::ssh::SshTarget;
use crate::state::{self, PortForward, Probe, RunLock, RunState};
use crate::warm::WarmRun;

/// How long QMP calls may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU gets to open its QMP socket after it starts.
const QEMU_START_DEADLINE: Duration = Duration::from_secs(15);
/// How long QMP `quit` and SIGTERM each get before the next step.
const QUIT_DEADLINE: Duration = Duration::from_secs(10);

/// The state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// QEMU runs and the guest runs.
    Running,
    /// QEMU runs and the guest is paused.
    Paused,
    /// Another `kvmx up` is starting it.
    Starting,
    /// Not running.
    Stopped,
    /// QEMU died without a clean stop.
    Crashed,
}

/// What `status` tells.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The VM's name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// QEMU's pid while it runs.
    pub pid: Option<i32>,
    /// Seconds since QEMU started.
    pub uptime_seconds: Option<u64>,
    /// The accelerator of the run.
    pub accelerator: Option<Accel>,
    /// Forwarded ports, SSH first.
    pub forwards: Vec<PortForward>,
    /// The disk image.
    pub image: Utf8PathBuf,
    /// The image's virtual size in bytes, when it exists.
    pub image_virtual_size: Option<u64>,
    /// Bytes the image takes on the host's disk.
    pub image_disk_usage: Option<u64>,
    /// The last console lines of a crashed VM.
    pub last_console: Vec<String>,
}

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

/// How the VM was stopped: the step of the escalation that worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopStep {
    /// It was not running.
    AlreadyStopped,
    /// ACPI power button (QMP `system_powerdown`).
    AcpiPowerdown,
    /// `poweroff` over SSH.
    SshPoweroff,
    /// QMP `quit`.
    QmpQuit,
    /// SIGTERM to QEMU.
    Sigterm,
    /// SIGKILL to QEMU.
    Sigkill,
}

/// A VM with its resolved config.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Its name.
    pub name: VmName,
    /// Its effective config.
    pub config: Config,
    /// Its files.
    pub files: VmFiles,
    /// The folders of its base box, if it has one.
    pub base: Option<VmPaths>,
    /// The template whose image it runs from, if it is template-based.
    pub template: Option<Box<Vm>>,
    /// kvmx's folders.
    pub layout: Layout,
}

impl Vm {
    /// The VM `name` with its resolved `config`.
    pub fn new(layout: &Layout, name: VmName, config: Config) -> Vm {
        Vm {
            files: VmFiles::new(layout, &name),
            base: config.image.base.as_ref().map(|base| layout.vm(base)),
            name,
            config,
            template: None,
            layout: layout.clone(),
        }
    }

    /// The disk image path.
    pub fn image(&self) -> Utf8PathBuf {
        self.config
            .image
            .path
            .clone()
            .unwrap_or_else(|| self.files.paths.default_image())
    }

    /// The current state and facts of the VM.
    pub fn status(&self) -> Result<Status, Error> {
        let image = self.image();
        let mut status = Status {
            name: self.name.to_string(),
            state: State::Stopped,
            pid: None,
            uptime_seconds: None,
            accelerator: None,
            forwards: Vec::new(),
            image_virtual_size: kvmx_core::image_size::virtual_size(&image),
            image_disk_usage: disk_usage(&image),
            image,
            last_console: Vec::new(),
        };
        let run = state::read(&self.files);
        match state::probe(&self.files)? {
            Probe::Free => {
                if run.is_some() {
                    status.state = State::Crashed;
                    status.last_console = state::console_tail(&self.files, 15);
                }
            }
            Probe::Held => match run {
                None => status.state = State::Starting,
                Some(run) => {
                    status.state = match self.qmp().and_then(|mut q| Ok(q.run_state()?)) {
                        Ok(qemu_state) if qemu_state == "paused" => State::Paused,
                        _ => State::Running,
                    };
                    status.pid = Some(run.pid);
                    status.uptime_seconds = Some(now().saturating_sub(run.started_at));
                    status.accelerator = Some(run.accelerator);
                    status.forwards = run.forwards;
                }
            },
        }
        Ok(status)
    }

    /// Connects to the VM's QMP socket.
    pub fn qmp(&self) -> Result<Qmp, Error> {
        Ok(Qmp::connect(&self.files.qmp_socket(), QMP_TIMEOUT)?)
    }

    /// How to reach the running guest over SSH.
    pub fn ssh_target(&self) -> Result<SshTarget, Error> {
        if !self.config.ssh.enabled {
            return Err(Error::Remote {
                problem: format!(
                    "SSH is disabled for {}: its config sets ssh.enabled = false",
                    self.name
                ),
                hint: "set ssh.enabled = true in the [ssh] table of kvmx.toml, then restart the VM (`kvmx restart`)".into(),
            });
        }
        let run = state::read(&self.files).ok_or_else(|| Error::NotRunning {
            vm: self.name.to_string(),
        })?;
        let port = run.ssh_port.ok_or_else(|| Error::NoSshPort {
            vm: self.name.to_string(),
        })?;
        let ssh = &self.config.ssh;
        // A template-based guest is the template's, with its keys.
        let system = self.system();
        Ok(SshTarget {
            user: ssh
                .user
                .as_ref()
                .unwrap_or(&self.config.vm.user)
                .to_string(),
            port,
            keys: std::iter::once(system.files.paths.ssh_key())
                .chain(system.base_key())
                .collect(),
            known_hosts: system.files.paths.known_hosts(),
            control: Some(crate::ssh::master_socket(&self.files.paths.runtime)),
            env: ssh
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// The base box's private key, for an image made from a base.
    fn base_key(&self) -> Option<Utf8PathBuf> {
        let key = self.base.as_ref()?.ssh_key();
        key.exists().then_some(key)
    }

    /// Starts the VM and, with `wait_for_ssh`, waits until the guest
    /// answers SSH (when SSH is enabled). A running VM is left as it is.
    pub fn up(&self, wait_for_ssh: bool, observer: &mut dyn Observer) -> Result<UpReport, Error> {
        let patience = Patience::default();
        self.start(wait_for_ssh, None, &patience, &mut Stages::new(observer))
    }

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
        self.files.check_socket_paths()?;
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
        match (ssh_port, wait_for_ssh, restore) {
            (Some(_), true, Some(state)) => {
                progress.stage("restoring the warm state");
                crate::warm::load(self, state)?;
                crate::warm::wake(self, patience.timeout(self))?;
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
            match share.kind {
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
            .filter(|s| s.kind == ShareKind::Nfs)
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

    /// The kernel beside the system's image, for an image without a
    /// bootloader (a template-based VM boots its template's).
    fn kernel_boot(&self) -> Result<Option<KernelBoot>, Error> {
        let system = self.system();
        let files = DirectBoot::beside(&system.image());
        if system.config.create.bootloader != Bootloader::Direct && !files.kernel.exists() {
            return Ok(None);
        }
        let append =
            std::fs::read_to_string(&files.cmdline).map_err(Error::io("read", &files.cmdline))?;
        Ok(Some(KernelBoot {
            kernel: files.kernel,
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
        Ok(Launch {
            accel,
            ssh_port,
            kernel_boot: self.kernel_boot()?,
            qmp_socket: self.files.qmp_socket(),
            serial_socket: self.files.serial_socket(),
            console_log: self.files.console_log(),
            spice_socket: self.files.spice_socket(),
            vnc_socket: self.files.vnc_socket(),
            runtime_dir: self.files.paths.runtime.clone(),
            memory_file,
            incoming: matches!(warm, Some(WarmRun::Restore(_))),
            clock_pipe: warm.map(|_| crate::clock::pipe_base(&self.files.paths.runtime)),
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
            .filter(|s| s.kind == ShareKind::Virtiofs)
        {
            let log = self
                .files
                .paths
                .runtime
                .join(format!("virtiofsd-{}.log", share.id));
            let socket = launch.virtiofs_socket(share.id.as_str());
            crate::virtiofs::start(&socket, &share.host, share.read_only, &log)?;
        }
        if let Some(pipe) = &launch.clock_pipe {
            crate::clock::make_pipes(pipe)?;
        }
        // A fresh console log per run, so a crash shows this run's lines.
        let _ = std::fs::remove_file(self.files.console_log());
        let stderr_path = self.files.paths.runtime.join("qemu.stderr");
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
            std::thread::sleep(Duration::from_millis(100));
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
            if target.answers() {
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
            std::thread::sleep(Duration::from_secs(1));
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

    /// Stops the VM, escalating with a deadline at each step: ACPI power
    /// button, SSH `poweroff`, QMP `quit`, SIGTERM, SIGKILL. `force` goes
    /// straight to QMP `quit`.
    pub fn stop(&self, force: bool, observer: &mut dyn Observer) -> Result<StopStep, Error> {
        let mut progress = Stages::new(observer);
        let Some(run) = self.running_state()? else {
            self.cleared();
            return Ok(StopStep::AlreadyStopped);
        };
        // A host mount of a guest folder would hang once the guest is gone.
        self.unmount_ssh_shares();
        let patience = Duration::from_secs(self.config.supervise.shutdown_timeout);
        let pid = run.pid;
        // One QMP connection for the whole escalation: the guest's
        // SHUTDOWN event ends each wait.
        let mut qmp = self.qmp().ok();
        if !force {
            progress.stage("ACPI power-off");
            let pressed = qmp
                .as_mut()
                .is_some_and(|q| q.execute(&commands::SystemPowerdown).is_ok());
            if pressed && wait_shutdown(&mut qmp, pid, patience) {
                return Ok(self.stopped(StopStep::AcpiPowerdown));
            }
            if let (true, Ok(target)) = (self.config.ssh.enabled, self.ssh_target()) {
                progress.stage("poweroff over SSH");
                let mut poweroff = target.command();
                poweroff
                    .args(["-o", "BatchMode=yes", "sudo -n poweroff"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // The connection drops as the guest goes down; a hung
                // guest must not hang the stop.
                let _ = run_within(&mut poweroff, patience);
                if wait_shutdown(&mut qmp, pid, patience) {
                    return Ok(self.stopped(StopStep::SshPoweroff));
                }
            }
        }
        progress.stage("QMP quit");
        let quit = match qmp.as_mut() {
            Some(q) => q.execute(&commands::Quit).map(drop),
            None => self
                .qmp()
                .and_then(|mut q| Ok(q.execute(&commands::Quit).map(drop)?))
                .map_err(|_| QmpError::Closed),
        };
        if quit.is_ok() && wait_exit(pid, QUIT_DEADLINE) {
            return Ok(self.stopped(StopStep::QmpQuit));
        }
        progress.stage("SIGTERM");
        signal(pid, Signal::SIGTERM);
        if wait_exit(pid, QUIT_DEADLINE) {
            return Ok(self.stopped(StopStep::Sigterm));
        }
        progress.stage("SIGKILL");
        signal(pid, Signal::SIGKILL);
        wait_exit(pid, QUIT_DEADLINE);
        Ok(self.stopped(StopStep::Sigkill))
    }

    /// Kills QEMU at once (SIGKILL).
    pub fn kill(&self) -> Result<bool, Error> {
        let Some(run) = self.running_state()? else {
            self.cleared();
            return Ok(false);
        };
        self.unmount_ssh_shares();
        signal(run.pid, Signal::SIGKILL);
        wait_exit(run.pid, QUIT_DEADLINE);
        self.stopped(StopStep::Sigkill);
        Ok(true)
    }

    /// Pauses the guest's CPUs.
    pub fn pause(&self) -> Result<(), Error> {
        self.require_running()?;
        self.qmp()?.execute(&commands::Stop)?;
        Ok(())
    }

    /// Resumes a paused guest.
    pub fn resume(&self) -> Result<(), Error> {
        self.require_running()?;
        self.qmp()?.execute(&commands::Cont)?;
        Ok(())
    }

    /// Deletes the VM's disk image and data folder (keys, logs). Refuses
    /// while it runs; never deletes a block device.
    pub fn destroy(&self) -> Result<Vec<Utf8PathBuf>, Error> {
        if self.running_state()?.is_some() {
            return Err(Error::Running {
                vm: self.name.to_string(),
            });
        }
        let dependants = self.dependants();
        if !dependants.is_empty() {
            return Err(Error::HasDependants {
                vm: self.name.to_string(),
                dependants,
            });
        }
        let mut removed = Vec::new();
        let image = self.image();
        let is_file = std::fs::symlink_metadata(&image).is_ok_and(|m| m.file_type().is_file());
        // A template-based VM's image is its template's (snapshot mode) or
        // lives in its data folder.
        let owns_image = self.template.is_none() && !image.starts_with(&self.files.paths.data);
        if is_file && owns_image {
            std::fs::remove_file(&image).map_err(Error::io("remove", &image))?;
            removed.push(image);
        }
        for folder in [&self.files.paths.data, &self.files.paths.runtime] {
            if folder.exists() {
                std::fs::remove_dir_all(folder).map_err(Error::io("remove", folder))?;
                removed.push(folder.clone());
            }
        }
        Ok(removed)
    }

    /// The state of the current run, `None` when QEMU does not run.
    /// Whether its QEMU runs (paused or not); cheaper than [`Vm::status`].
    pub fn is_running(&self) -> bool {
        matches!(self.running_state(), Ok(Some(_)))
    }

    fn running_state(&self) -> Result<Option<RunState>, Error> {
        match state::probe(&self.files)? {
            Probe::Free => Ok(None),
            Probe::Held => Ok(state::read(&self.files)),
        }
    }

    fn require_running(&self) -> Result<RunState, Error> {
        self.running_state()?.ok_or_else(|| Error::NotRunning {
            vm: self.name.to_string(),
        })
    }

    fn stopped(&self, step: StopStep) -> StopStep {
        self.wait_for_lock_release();
        crate::nfs::stop_all(&self.files.paths.runtime);
        crate::ssh::end_master(&self.files.paths.runtime);
        self.cleared();
        step
    }

    /// Quits QEMU at once and forgets the run, keeping every file.
    pub(crate) fn halt(&self) {
        if let Ok(Some(run)) = self.running_state() {
            let _ = self.qmp().and_then(|mut q| Ok(q.execute(&commands::Quit)?));
            if !wait_exit(run.pid, QUIT_DEADLINE) {
                signal(run.pid, Signal::SIGKILL);
                wait_exit(run.pid, QUIT_DEADLINE);
            }
            self.wait_for_lock_release();
        }
        state::clear(&self.files);
    }

    /// Forgets the run; a disposable is erased once it stops.
    fn cleared(&self) {
        state::clear(&self.files);
        let _ = crate::disposable::remove_folders(self);
    }

    /// A killed QEMU's threads may still be exiting after its main thread
    /// is gone; the lock is free once the last one is.
    fn wait_for_lock_release(&self) {
        let deadline = Instant::now() + QUIT_DEADLINE;
        while Instant::now() < deadline {
            if matches!(state::probe(&self.files), Ok(Probe::Free)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn signal(pid: i32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
}

/// Waits up to `patience` for QEMU `pid` to end after a power-off request:
/// for the guest's `SHUTDOWN` event when QMP is connected, then for the
/// process.
fn wait_shutdown(qmp: &mut Option<Qmp>, pid: i32, patience: Duration) -> bool {
    let Some(connection) = qmp else {
        return wait_exit(pid, patience);
    };
    match connection.wait_event("SHUTDOWN", patience, |_| true) {
        Err(QmpError::NoEvent { .. }) => false,
        // The event, or QEMU gone with its socket.
        _ => wait_exit(pid, QUIT_DEADLINE),
    }
}

/// Runs `command`, killing it when it takes longer than `deadline`; its
/// status, or `None` when it was killed or could not start.
fn run_within(command: &mut Command, deadline: Duration) -> Option<std::process::ExitStatus> {
    let mut child = command.spawn().ok()?;
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Waits up to `deadline` for `pid` to exit.
pub(crate) fn wait_exit(pid: i32, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if !state::process_alive(pid) || is_zombie(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A QEMU started by this very process and already dead stays a zombie
/// until reaped; count it as gone.
fn is_zombie(pid: i32) -> bool {
    state::proc_stat(pid).is_some_and(|fields| fields.first().is_some_and(|s| s == "Z"))
}

/// A free TCP port on 127.0.0.1 (SSH forward, NFS servers).
pub(crate) fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(Error::io("bind", camino::Utf8Path::new("127.0.0.1")))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("bind", camino::Utf8Path::new("127.0.0.1")))?
        .port();
    Ok(port)
}

fn tail(text: &str, lines: usize) -> String {
    state::last_lines(text, lines).join("\n")
}

fn disk_usage(image: &camino::Utf8Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(image).ok().map(|m| m.blocks() * 512)
}
