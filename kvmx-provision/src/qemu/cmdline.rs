//! The QEMU command line: one pure function of the config and of what `up`
//! decided for this run (accelerator, SSH port, file paths). Golden tests
//! pin its output.

use camino::Utf8PathBuf;
use kvmx_core::config::{
    Config, DisplayKind, DriveInterface, Media, NetworkMode, ShareKind, Sound, Vga,
};

/// The accelerator a run uses, after `auto` has been decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Kernel, initrd and command line for a direct kernel boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    /// `-kernel`.
    pub kernel: Utf8PathBuf,
    /// `-initrd`.
    pub initrd: Utf8PathBuf,
    /// `-append`.
    pub append: String,
}

/// What a run needs beyond the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The accelerator.
    pub accel: Accel,
    /// Host port forwarded to the guest's SSH (user networking with SSH).
    pub ssh_port: Option<u16>,
    /// Direct kernel boot, when the image has no bootloader.
    pub kernel_boot: Option<KernelBoot>,
    /// QMP socket.
    pub qmp_socket: Utf8PathBuf,
    /// Serial console socket.
    pub serial_socket: Utf8PathBuf,
    /// Serial console log.
    pub console_log: Utf8PathBuf,
    /// SPICE socket (display kind spice).
    pub spice_socket: Utf8PathBuf,
    /// VNC socket (display kind vnc).
    pub vnc_socket: Utf8PathBuf,
    /// The folder of the virtiofsd sockets.
    pub runtime_dir: Utf8PathBuf,
    /// Guest memory in this file instead of an anonymous memfd, mapped
    /// shared (writes reach the file) or private (copy-on-write).
    pub memory_file: Option<(Utf8PathBuf, bool)>,
    /// Wait for a saved state through QMP (`-incoming defer`) instead of
    /// booting.
    pub incoming: bool,
    /// A template-based VM's private disk (raw), with its serial.
    pub private_disk: Option<(Utf8PathBuf, String)>,
    /// More raw disks, each found in the guest by its serial (the builder
    /// VM's target and inputs). Written without honouring flushes: a
    /// builder's disks are thrown away if the host fails mid-build.
    pub extra_disks: Vec<ExtraDisk>,
    /// The host end of the port through which a restored guest's clock is
    /// set (warm disposables; `clock.rs`).
    pub clock_pipe: Option<Utf8PathBuf>,
    /// An installer ISO attached as a CD-ROM and booted once, before the
    /// disk (`install.iso`).
    pub install_cdrom: Option<Utf8PathBuf>,
    /// QEMU exits when the guest reboots, as it does when it powers off
    /// (an installer's run ends either way).
    pub no_reboot: bool,
}

/// A raw disk beside the VM's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    /// The file.
    pub path: Utf8PathBuf,
    /// The serial the guest sees (`/dev/disk/by-id/virtio-<serial>`).
    pub serial: String,
    /// Attached read-only.
    pub read_only: bool,
}

impl Launch {
    /// The vhost-user socket of the virtiofs share `id`.
    pub fn virtiofs_socket(&self, id: &str) -> Utf8PathBuf {
        crate::files::virtiofs_socket(&self.runtime_dir, id)
    }
}

/// The arguments (without the program) that run `config` as `launch` says.
/// `config` must be resolved (name and image path set).
pub fn qemu_args(config: &Config, launch: &Launch) -> Vec<String> {
    let mut args = Args::default();
    let name = config.vm.name.as_ref().map_or("vm", |n| n.as_str());
    let hardware = &config.hardware;
    args.push("-name", format!("{name},process=kvmx-{name}"));
    args.flag("-nodefaults");
    args.flag("-no-user-config");
    // Guest memory is a shared memfd from boot: vhost-user devices
    // (virtiofs) need it, and only then can a folder be hot-plugged later.
    let memory = hardware.memory.as_mib();
    let backend = match &launch.memory_file {
        None => format!("memory-backend-memfd,id=mem0,size={memory}M,share=on"),
        Some((path, shared)) => format!(
            "memory-backend-file,id=mem0,size={memory}M,mem-path={},share={}",
            escape(path.as_str()),
            if *shared { "on" } else { "off" }
        ),
    };
    args.push("-object", backend);
    args.push(
        "-machine",
        format!(
            "{},accel={},memory-backend=mem0",
            hardware.machine,
            launch.accel.as_str()
        ),
    );
    let cpu = if launch.accel == Accel::Kvm {
        "host"
    } else {
        "max"
    };
    args.push("-cpu", cpu);
    args.push("-smp", hardware.cpus.to_string());
    args.push("-m", format!("{memory}M"));
    disks(config, &mut args);
    if let Some((disk, serial)) = &launch.private_disk {
        args.push(
            "-drive",
            format!(
                "file={},id=private,format=raw,if=none",
                escape(disk.as_str())
            ),
        );
        // In the last PCI slot: SeaBIOS boots the first disk it finds.
        args.push(
            "-device",
            format!("virtio-blk-pci,drive=private,serial={serial},addr=0x1f"),
        );
    }
    for (index, disk) in launch.extra_disks.iter().enumerate() {
        let read_only = if disk.read_only { ",read-only=on" } else { "" };
        args.push(
            "-drive",
            format!(
                "file={},id=extra{index},format=raw,if=none,cache=unsafe{read_only}",
                escape(disk.path.as_str())
            ),
        );
        // Below the private disk's slot, from the top: SeaBIOS boots the
        // first disk it finds, which must stay the VM's own.
        args.push(
            "-device",
            format!(
                "virtio-blk-pci,drive=extra{index},serial={},addr={:#x}",
                disk.serial,
                0x1e - index
            ),
        );
    }
    if let Some(iso) = &launch.install_cdrom {
        args.push(
            "-drive",
            format!(
                "file={},id=installer,media=cdrom,readonly=on",
                escape(iso.as_str())
            ),
        );
        args.push("-boot", "once=d");
    }
    if launch.no_reboot {
        args.flag("-no-reboot");
    }
    if let Some(boot) = &launch.kernel_boot {
        args.push("-kernel", boot.kernel.as_str());
        args.push("-initrd", boot.initrd.as_str());
        args.push("-append", boot.append.as_str());
    }
    network(config, launch, &mut args);
    shares(config, launch, &mut args);
    devices(config, &mut args);
    display(config, launch, &mut args);
    args.push(
        "-chardev",
        format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
            escape(launch.serial_socket.as_str()),
            escape(launch.console_log.as_str())
        ),
    );
    args.push("-serial", "chardev:serial0");
    args.push(
        "-chardev",
        format!(
            "socket,id=qmp0,path={},server=on,wait=off",
            escape(launch.qmp_socket.as_str())
        ),
    );
    args.push("-mon", "chardev=qmp0,mode=control");
    if let Some(pipe) = &launch.clock_pipe {
        args.push("-device", "virtio-serial-pci,id=kvmx-serial");
        args.push(
            "-chardev",
            format!("pipe,id=kvmx-clock,path={}", escape(pipe.as_str())),
        );
        args.push(
            "-device",
            format!(
                "virtserialport,bus=kvmx-serial.0,chardev=kvmx-clock,name={}",
                crate::clock::PORT
            ),
        );
        // The agent's port (agent.rs): commands with no login.
        args.push(
            "-chardev",
            format!(
                "socket,id=kvmx-agent,path={},server=on,wait=off",
                escape(crate::files::agent_socket(&launch.runtime_dir).as_str())
            ),
        );
        args.push(
            "-device",
            format!(
                "virtserialport,bus=kvmx-serial.0,chardev=kvmx-agent,name={}",
                crate::agent::PORT
            ),
        );
    }
    if launch.incoming {
        args.push("-incoming", "defer");
    }
    args.0.extend(hardware.qemu_args.iter().cloned());
    args.0
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push(&mut self, option: &str, value: impl Into<String>) {
        self.0.push(option.to_owned());
        self.0.push(value.into());
    }
    fn flag(&mut self, option: &str) {
        self.0.push(option.to_owned());
    }
}

fn disks(config: &Config, args: &mut Args) {
    let image = &config.image;
    let path = image
        .path
        .as_ref()
        .expect("a resolved config has an image path");
    let mut drive = format!("file={},id=disk0", escape(path.as_str()));
    match image.media {
        Media::Cdrom => drive.push_str(",media=cdrom,readonly=on"),
        Media::Disk => {
            let format = image.format.as_str();
            let interface = match image.interface {
                DriveInterface::Virtio => "virtio",
                DriveInterface::Ide => "ide",
                DriveInterface::Scsi => "scsi",
            };
            drive.push_str(&format!(",format={format},if={interface}"));
            if image.discard {
                drive.push_str(",discard=unmap");
            }
        }
    }
    if let Some(options) = &image.drive_options {
        drive.push(',');
        drive.push_str(options);
    }
    args.push("-drive", drive);
    if let Some(cdrom) = &image.cdrom {
        args.push(
            "-drive",
            format!("file={},media=cdrom,readonly=on", escape(cdrom.as_str())),
        );
    }
    if image.snapshot {
        args.flag("-snapshot");
    }
}

fn network(config: &Config, launch: &Launch, args: &mut Args) {
    let network = &config.network;
    let netdev = match network.mode {
        NetworkMode::None => return,
        NetworkMode::Tap => {
            let name = config.vm.name.as_ref().map_or("vm", |n| n.as_str());
            format!(
                "tap,id=net0,ifname={},script=no,downscript=no",
                tap_name(name)
            )
        }
        NetworkMode::User => {
            let mut netdev = String::from("user,id=net0");
            if network.restrict {
                netdev.push_str(",restrict=on");
            }
            if let Some(port) = launch.ssh_port {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-:22"));
            }
            // QEMU serves one folder over SMB per network (validation
            // allows one), through its own smbd at 10.0.2.4.
            if let Some(share) = config.shares.iter().find(|s| s.kind() == ShareKind::Smb) {
                netdev.push_str(&format!(",smb={}", escape(share.host.as_str())));
            }
            for forward in &network.forwards {
                let protocol = forward.protocol.as_str();
                netdev.push_str(&format!(
                    ",hostfwd={protocol}:{}:{}-:{}",
                    forward.address, forward.host, forward.guest
                ));
            }
            netdev
        }
    };
    args.push("-netdev", netdev);
    args.push("-device", format!("{},netdev=net0", network.nic_model));
}

/// Tap interface names are limited to 15 bytes.
fn tap_name(vm: &str) -> String {
    let mut name = format!("kvmx-{vm}");
    name.truncate(15);
    name
}

fn shares(config: &Config, launch: &Launch, args: &mut Args) {
    for share in config
        .shares
        .iter()
        .filter(|s| s.kind() == ShareKind::Virtiofs)
    {
        let socket = launch.virtiofs_socket(share.id.as_str());
        args.push(
            "-chardev",
            format!(
                "socket,id=vfs-{},path={}",
                share.id,
                escape(socket.as_str())
            ),
        );
        args.push(
            "-device",
            format!(
                "vhost-user-fs-pci,chardev=vfs-{id},tag={id},queue-size={}",
                crate::virtiofs::QUEUE_SIZE,
                id = share.id
            ),
        );
    }
    for share in config
        .shares
        .iter()
        .filter(|s| s.kind() == ShareKind::NineP)
    {
        let mut fsdev = format!(
            "local,id=fs-{id},path={path},security_model=none",
            id = share.id,
            path = escape(share.host.as_str())
        );
        if share.read_only {
            fsdev.push_str(",readonly=on");
        }
        args.push("-fsdev", fsdev);
        args.push(
            "-device",
            format!("virtio-9p-pci,fsdev=fs-{id},mount_tag={id}", id = share.id),
        );
    }
}

fn devices(config: &Config, args: &mut Args) {
    let hardware = &config.hardware;
    // A fresh generation id at every start: a guest restored from a saved
    // state learns it and reseeds its RNG (Linux 5.18+).
    args.push("-device", "vmgenid,guid=auto");
    if hardware.virtio_rng {
        args.push("-object", "rng-random,id=rng0,filename=/dev/urandom");
        let mut device = String::from("virtio-rng-pci,rng=rng0");
        if let Some(bytes) = hardware.virtio_rng_max_bytes {
            device.push_str(&format!(",max-bytes={bytes}"));
        }
        if let Some(period) = hardware.virtio_rng_period_ms {
            device.push_str(&format!(",period={period}"));
        }
        args.push("-device", device);
    }
    match hardware.usb {
        0 => {}
        1 => args.push("-device", "piix3-usb-uhci,id=usb"),
        2 => args.push("-device", "usb-ehci,id=usb"),
        _ => args.push("-device", "qemu-xhci,id=usb"),
    }
    if hardware.sound != Sound::None {
        args.push("-audiodev", "pa,id=snd0");
        match hardware.sound {
            Sound::Hda => {
                args.push("-device", "intel-hda");
                args.push("-device", "hda-duplex,audiodev=snd0");
            }
            Sound::Ac97 => args.push("-device", "AC97,audiodev=snd0"),
            Sound::Sb16 => args.push("-device", "sb16,audiodev=snd0"),
            Sound::Es1370 => args.push("-device", "ES1370,audiodev=snd0"),
            Sound::None => {}
        }
    }
}

fn display(config: &Config, launch: &Launch, args: &mut Args) {
    let display = &config.display;
    let vga = |default: Vga| match display.vga.unwrap_or(default) {
        Vga::Std => "std",
        Vga::Qxl => "qxl",
        Vga::Virtio => "virtio",
        Vga::Cirrus => "cirrus",
        Vga::None => "none",
    };
    match display.kind {
        DisplayKind::None => {
            args.push("-display", "none");
            if let Some(card) = display.vga {
                args.push("-vga", vga(card));
            }
        }
        DisplayKind::Spice => {
            args.push("-vga", vga(Vga::Qxl));
            args.push("-display", "none");
            args.push(
                "-spice",
                format!(
                    "unix=on,addr={},disable-ticketing=on",
                    escape(launch.spice_socket.as_str())
                ),
            );
            if display.vdagent {
                args.push("-device", "virtio-serial-pci");
                args.push("-chardev", "spicevmc,id=vdagent,name=vdagent");
                args.push(
                    "-device",
                    "virtserialport,chardev=vdagent,name=com.redhat.spice.0",
                );
            }
        }
        DisplayKind::Vnc => {
            args.push("-vga", vga(Vga::Std));
            args.push("-display", "none");
            args.push(
                "-vnc",
                format!("unix:{}", escape(launch.vnc_socket.as_str())),
            );
        }
        DisplayKind::Gtk => {
            args.push("-vga", vga(Vga::Std));
            args.push("-display", "gtk");
        }
        DisplayKind::Sdl => {
            args.push("-vga", vga(Vga::Std));
            args.push("-display", "sdl");
        }
    }
}

/// QEMU option values separate with commas; a comma in a path is doubled.
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}
