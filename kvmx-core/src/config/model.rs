//! The typed model of `kvmx.toml`.
//!
//! Every table is strict (`deny_unknown_fields`) and every field has its
//! default in the `Default` impl next to its struct, so defaults live in one
//! place per table. Defaults that depend on the project (the VM name, the
//! host name, the SSH user, paths) are filled in by [`super::resolve`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::values::{
    ByteSize, Dns, Domain, GuestPath, Hostname, LvmName, PackageName, Port, Resolution, ShareId,
    UserName, VmName,
};

/// A whole `kvmx.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity of the VM and its first user.
    pub vm: Vm,
    /// Virtual hardware.
    pub hardware: Hardware,
    /// The disk image the VM boots.
    pub image: Image,
    /// How `kvmx-create` builds the image.
    pub create: Create,
    /// Networking.
    pub network: Network,
    /// SSH access to the guest.
    pub ssh: Ssh,
    /// Folders shared between host and guest.
    pub shares: Vec<Share>,
    /// Provisioning: files to sync and a command to run.
    pub provision: Provision,
    /// Commands and syncs at start and power-off.
    pub hooks: Hooks,
    /// Graphical display.
    pub display: Display,
    /// Management by `kvmx supervise`.
    pub supervise: Supervise,
    /// Running from a template's image (Qubes-like template VMs).
    pub template: Template,
    /// Disposable VMs made from this VM as their template.
    pub disposable: Disposable,
    /// Installing the guest with an installer (`create.method = "install"`).
    pub install: Install,
}

/// `[vm]`: identity of the VM and its first user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Vm {
    /// The VM's name; defaults to the project folder's name.
    pub name: Option<VmName>,
    /// The guest's host name; defaults to the VM name.
    pub hostname: Option<Hostname>,
    /// The guest's DNS domain.
    pub domain: Option<Domain>,
    /// The first user in the guest, who gets passwordless sudo.
    pub user: UserName,
    /// The first user's password.
    pub password: Password,
}

impl Default for Vm {
    fn default() -> Self {
        Vm {
            name: None,
            hostname: None,
            domain: None,
            user: "user".parse().expect("valid default user"),
            password: Password::Random,
        }
    }
}

/// How the first user's password is set: `"random"`, `"locked"` or
/// `{ plain = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Password {
    /// A random password, stored hashed in the guest and never printed
    /// unless asked for.
    #[default]
    Random,
    /// No password: log in with SSH keys only.
    Locked,
    /// This password (it is stored hashed in the guest).
    Plain(String),
}

const PASSWORD_FORMS: &str = r#""random", "locked" or { plain = "the password" }"#;

impl Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Password::Random => serializer.serialize_str("random"),
            Password::Locked => serializer.serialize_str("locked"),
            Password::Plain(plain) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("plain", plain)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Password;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(PASSWORD_FORMS)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Password, E> {
                match v {
                    "random" => Ok(Password::Random),
                    "locked" => Ok(Password::Locked),
                    _ => Err(E::custom(format!(
                        "password = \"{v}\" is not a password setting: use {PASSWORD_FORMS}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Password, A::Error> {
                let mut plain = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "plain" || plain.is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "unexpected `{key}` in password: use {PASSWORD_FORMS}"
                        )));
                    }
                    plain = Some(map.next_value::<String>()?);
                }
                plain.map(Password::Plain).ok_or_else(|| {
                    serde::de::Error::custom(format!("empty password table: use {PASSWORD_FORMS}"))
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[hardware]`: virtual hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hardware {
    /// Guest memory; a bare number counts MiB.
    pub memory: ByteSize,
    /// Number of virtual CPUs. Two by default: under TCG each runs on a
    /// host thread, so a boot's parallel start runs in parallel (a Debian
    /// guest reached SSH in 23.5 s with two, 31.5 s with one).
    pub cpus: u16,
    /// Guest architecture.
    pub arch: Arch,
    /// QEMU machine type.
    pub machine: String,
    /// Accelerator; `auto` uses KVM when it works and TCG otherwise. The
    /// environment variable `KVMX_ACCEL` overrides it.
    pub accelerator: Accelerator,
    /// USB support: 0 none, 1 USB 1, 2 up to USB 2, 3 up to USB 3.
    pub usb: u8,
    /// A virtio random number generator fed from the host.
    pub virtio_rng: bool,
    /// Rate limit of the RNG: bytes per period.
    pub virtio_rng_max_bytes: Option<u64>,
    /// Rate limit of the RNG: period in milliseconds.
    pub virtio_rng_period_ms: Option<u64>,
    /// Sound card.
    pub sound: Sound,
    /// Extra QEMU arguments, appended last.
    pub qemu_args: Vec<String>,
}

impl Default for Hardware {
    fn default() -> Self {
        Hardware {
            memory: ByteSize::gib(1),
            cpus: 2,
            arch: Arch::X86_64,
            machine: "pc".into(),
            accelerator: Accelerator::Auto,
            usb: 0,
            virtio_rng: true,
            virtio_rng_max_bytes: None,
            virtio_rng_period_ms: None,
            sound: Sound::None,
            qemu_args: Vec::new(),
        }
    }
}

/// Guest CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// 64-bit x86.
    #[serde(rename = "x86_64")]
    X86_64,
}

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// KVM when it works, TCG otherwise.
    Auto,
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// Emulated sound card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sound {
    /// No sound.
    None,
    /// Intel AC'97.
    Ac97,
    /// Intel HD Audio.
    Hda,
    /// Sound Blaster 16.
    Sb16,
    /// Ensoniq AudioPCI ES1370.
    Es1370,
}

/// `[image]`: the disk the VM boots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Image {
    /// Image file (or block device); defaults to `box.img` in the VM's data
    /// folder. Relative paths are taken from the project folder.
    pub path: Option<Utf8PathBuf>,
    /// On-disk format.
    pub format: ImageFormat,
    /// Size of a new image.
    pub size: ByteSize,
    /// How the disk is attached.
    pub interface: DriveInterface,
    /// Extra `-drive` options, such as `cache=none`.
    pub drive_options: Option<String>,
    /// Pass discards (TRIM) from the guest to the image.
    pub discard: bool,
    /// Attach the image as a disk or as a CD-ROM (live images).
    pub media: Media,
    /// An ISO attached as a CD-ROM beside the disk.
    pub cdrom: Option<Utf8PathBuf>,
    /// Make the image from this other VM's image (a base box).
    pub base: Option<VmName>,
    /// With `base`: a qcow2 overlay backed by the base's image instead of a
    /// full copy.
    pub backing: bool,
    /// With `backing`: make a fresh overlay at every start.
    pub recreate_overlay: bool,
    /// Run with QEMU's `-snapshot`: writes are thrown away at power-off.
    pub snapshot: bool,
}

impl Default for Image {
    fn default() -> Self {
        Image {
            path: None,
            format: ImageFormat::Qcow2,
            size: ByteSize::gib(10),
            interface: DriveInterface::Virtio,
            drive_options: None,
            discard: true,
            media: Media::Disk,
            cdrom: None,
            base: None,
            backing: false,
            recreate_overlay: false,
            snapshot: false,
        }
    }
}

/// Disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// QEMU copy-on-write.
    Qcow2,
    /// Plain bytes.
    Raw,
}

impl ImageFormat {
    /// QEMU's name for it (`-drive format=`, `qemu-img -f`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        }
    }
}

/// How the disk is attached to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveInterface {
    /// Paravirtual block device.
    Virtio,
    /// IDE, for systems without virtio drivers (NetBSD, FreeBSD).
    Ide,
    /// SCSI.
    Scsi,
}

/// Whether the image is a disk or a CD-ROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    /// A hard disk.
    Disk,
    /// A CD/DVD, for live images.
    Cdrom,
}

/// `[create]`: how `kvmx-create` builds a new image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Create {
    /// Distribution to install.
    pub distribution: Distribution,
    /// Release (Debian suite or codename).
    pub suite: String,
    /// Architecture name as the distribution spells it.
    pub arch: String,
    /// Package mirror.
    pub mirror: String,
    /// Bootstrap tool.
    pub method: Method,
    /// Packages installed beside the base system.
    pub packages: Vec<PackageName>,
    /// How the image boots.
    pub bootloader: Bootloader,
    /// Write to a file or to a block device (`image.path`).
    pub image_type: ImageType,
    /// Compress a qcow2 image.
    pub compression: bool,
    /// Partitions or LVM volumes.
    pub layout: VolumeLayout,
    /// LUKS over the whole volume, or none.
    pub encryption: Encryption,
    /// Where the LUKS passphrase comes from.
    pub passphrase: PassphraseSource,
    /// `[create.lvm]`: the volume group, with `layout = "lvm"`.
    pub lvm: Lvm,
}

impl Create {
    /// Whether the build needs root and a kernel, so a builder VM: LVM,
    /// LUKS and image-bootstrap.
    pub fn needs_builder(&self) -> bool {
        self.method != Method::Install
            && (self.layout == VolumeLayout::Lvm
                || self.encryption == Encryption::Luks
                || self.method == Method::ImageBootstrap)
    }
}

/// How the disk is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeLayout {
    /// One root partition (a small `/boot` beside it when encrypted).
    #[default]
    Plain,
    /// `/boot` on a partition, the rest a volume group with a root logical
    /// volume, and optional swap and extra volumes.
    Lvm,
}

/// Disk encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// None.
    #[default]
    None,
    /// LUKS2 over everything but `/boot`.
    Luks,
}

/// Where the LUKS passphrase comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassphraseSource {
    /// Made at create time, kept in a 0600 file in the VM's data folder.
    #[default]
    File,
    /// Asked on the terminal at create time and at every start.
    Ask,
}

/// `[create.lvm]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lvm {
    /// The volume group's name.
    pub volume_group: LvmName,
    /// The root volume's size; the rest of the group when unset.
    pub root_size: Option<ByteSize>,
    /// A swap volume of this size.
    pub swap_size: Option<ByteSize>,
    /// More volumes, each with an ext4 file system mounted in the guest.
    pub volumes: Vec<LvmVolume>,
}

impl Default for Lvm {
    fn default() -> Self {
        Lvm {
            volume_group: "kvmx".parse().expect("a valid LVM name"),
            root_size: None,
            swap_size: None,
            volumes: Vec::new(),
        }
    }
}

/// `[[create.lvm.volumes]]`: an extra logical volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LvmVolume {
    /// The logical volume's name.
    pub name: LvmName,
    /// Its size.
    pub size: ByteSize,
    /// Where the guest mounts it.
    pub mount: GuestPath,
}

impl Default for Create {
    fn default() -> Self {
        Create {
            distribution: Distribution::Debian,
            suite: "bookworm".into(),
            arch: "amd64".into(),
            mirror: "https://deb.debian.org/debian/".into(),
            method: Method::Mmdebstrap,
            packages: Vec::new(),
            bootloader: Bootloader::Grub,
            image_type: ImageType::File,
            compression: false,
            layout: VolumeLayout::Plain,
            encryption: Encryption::None,
            passphrase: PassphraseSource::File,
            lvm: Lvm::default(),
        }
    }
}

/// Guest distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Debian GNU/Linux.
    Debian,
    /// Arch Linux (with `method = "image-bootstrap"`).
    Arch,
    /// Gentoo (with `method = "image-bootstrap"`).
    Gentoo,
}

/// Bootstrap tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// mmdebstrap, which works without root.
    Mmdebstrap,
    /// debootstrap, which needs root.
    Debootstrap,
    /// image-bootstrap (Debian, Arch, Gentoo), run in a builder VM.
    #[serde(rename = "image-bootstrap")]
    ImageBootstrap,
    /// An installer run in the VM on a blank disk: Debian's netboot
    /// installer with a preseed made from the config, or `install.iso`.
    #[serde(rename = "install")]
    Install,
}

/// How the image boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bootloader {
    /// GRUB in the image, booted by the BIOS.
    Grub,
    /// Kernel and initrd kept beside the image and given to QEMU.
    Direct,
}

/// Where a new image is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    /// A file.
    File,
    /// A block device (root only).
    Device,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// Network mode.
    pub mode: NetworkMode,
    /// User mode: cut the guest off; forwarded ports still reach it.
    pub restrict: bool,
    /// Ports forwarded from the host to the guest (user mode).
    pub forwards: Vec<Forward>,
    /// Emulated network card.
    pub nic_model: String,
    /// Name servers for the guest, set when the image is made.
    pub dns: Option<Dns>,
    /// Static guest address (tap mode), set when the image is made.
    pub address: Option<Ipv4Addr>,
    /// Netmask of the static address.
    pub netmask: Option<Ipv4Addr>,
    /// Gateway of the static address.
    pub gateway: Option<Ipv4Addr>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            mode: NetworkMode::User,
            restrict: false,
            forwards: Vec::new(),
            nic_model: "virtio-net-pci".into(),
            dns: None,
            address: None,
            netmask: None,
            gateway: None,
        }
    }
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// QEMU's user-mode network (no root needed).
    User,
    /// A tap device on the host.
    Tap,
    /// No network card.
    None,
}

/// A port forwarded from the host into the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Port on the host.
    pub host: Port,
    /// Port in the guest.
    pub guest: Port,
    /// Protocol.
    #[serde(default, skip_serializing_if = "Protocol::is_tcp")]
    pub protocol: Protocol,
    /// Host address to listen on.
    #[serde(default = "localhost", skip_serializing_if = "is_localhost")]
    pub address: IpAddr,
}

fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn is_localhost(address: &IpAddr) -> bool {
    *address == localhost()
}

impl Protocol {
    fn is_tcp(&self) -> bool {
        *self == Protocol::Tcp
    }

    /// `tcp` or `udp`, as QEMU and `kvmx.toml` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Transport protocol of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// `[ssh]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ssh {
    /// Reach the guest over SSH (needed by provisioning, hooks and shares).
    pub enabled: bool,
    /// User to log in as; defaults to `vm.user`.
    pub user: Option<UserName>,
    /// Environment variables passed to commands run over SSH.
    pub env: BTreeMap<String, String>,
    /// Which client key reaches the guest.
    pub key: SshKey,
    /// Another public key to authorize in the guest: a path to a `.pub`
    /// file or the key itself.
    pub authorized_key: Option<String>,
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            enabled: true,
            user: None,
            env: BTreeMap::new(),
            key: SshKey::PerVm,
            authorized_key: None,
        }
    }
}

/// Which client key reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SshKey {
    /// A key pair made for this VM alone.
    PerVm,
    /// The legacy shared insecure key pair, for old images that have it.
    Insecure,
}

/// A folder shared between host and guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// Name of the share (a mount tag for 9p and virtiofs).
    pub id: ShareId,
    /// Folder on the host; relative paths are taken from the project folder.
    pub host: Utf8PathBuf,
    /// Folder in the guest.
    pub guest: GuestPath,
    /// How the folder is shared. For `sshfs` the guest folder is mounted on
    /// the host at `host`; for every other kind the host folder is mounted in
    /// the guest at `guest`. Unset: virtiofs where `virtiofsd` is found,
    /// else 9p; kvmx-provision settles it when it opens the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ShareKind>,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// 9p: largest message size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msize: Option<u32>,
    /// 9p: cache mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<P9Cache>,
}

impl Share {
    /// Its kind. An unset kind reads as 9p, which every QEMU serves; a VM
    /// opened by kvmx-provision has it settled already.
    pub fn kind(&self) -> ShareKind {
        self.kind.unwrap_or(ShareKind::NineP)
    }
}

/// How a folder is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareKind {
    /// virtio-9p, given to QEMU at start.
    #[serde(rename = "9p")]
    NineP,
    /// virtiofs through a virtiofsd daemon.
    Virtiofs,
    /// The guest folder mounted on the host with sshfs.
    Sshfs,
    /// The host folder mounted in the guest over SSH.
    ReverseSshfs,
    /// NFS from a userspace server on the host.
    Nfs,
    /// SMB from the host.
    Smb,
}

/// 9p cache modes (see the kernel's 9p documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum P9Cache {
    /// No caching.
    None,
    /// Loose caching.
    Loose,
    /// Persistent cache with FS-Cache.
    Fscache,
    /// Cache for mmap only.
    Mmap,
}

/// `[provision]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Provision {
    /// Folders copied to the guest before the command runs.
    pub rsync: Vec<RsyncPair>,
    /// Extra rsync options, one per item.
    pub rsync_options: Vec<String>,
    /// Shell command run in the guest.
    pub command: Option<String>,
    /// Provision at every `kvmx up`, not only the first.
    pub always: bool,
    /// Shell command `kvmx upgrade` runs in the guest.
    pub upgrade_command: Option<String>,
}

/// A host folder copied to a guest folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsyncPair {
    /// Source on the host; relative paths are taken from the project folder.
    pub host: Utf8PathBuf,
    /// Destination in the guest.
    pub guest: GuestPath,
}

/// A folder synced at start (host to guest) or power-off (guest to host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFolder {
    /// A name for messages.
    pub id: ShareId,
    /// Folder on the host.
    pub host: Utf8PathBuf,
    /// Folder in the guest.
    pub guest: GuestPath,
}

/// `[hooks]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    /// Command run in the guest once it answers SSH at `up`.
    pub startup_command: Option<String>,
    /// Folders copied to the guest at `up`.
    pub startup_rsync: Vec<SyncFolder>,
    /// Command run in the guest before it is powered off.
    pub pre_poweroff_command: Option<String>,
    /// Folders copied back from the guest before it is powered off.
    pub poweroff_rsync: Vec<SyncFolder>,
}

/// `[display]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Display {
    /// Display kind.
    pub kind: DisplayKind,
    /// Emulated graphics card.
    pub vga: Option<Vga>,
    /// SPICE client command.
    pub spice_client: String,
    /// VNC client command.
    pub vnc_client: String,
    /// Open the client when the VM starts.
    pub open_client: bool,
    /// Add the SPICE agent channel (clipboard, resizing).
    pub vdagent: bool,
    /// Start an xpra session when the VM starts.
    pub xpra: bool,
    /// Start a Xephyr session when the VM starts.
    pub xephyr: bool,
    /// Resize the guest screen to the host's with xrandr.
    pub xrandr: bool,
    /// xrandr output name in the guest.
    pub xrandr_device: Option<String>,
    /// Guest screen resolution.
    pub resolution: Option<Resolution>,
}

impl Default for Display {
    fn default() -> Self {
        Display {
            kind: DisplayKind::None,
            vga: None,
            spice_client: "remote-viewer".into(),
            vnc_client: "vncviewer".into(),
            open_client: false,
            vdagent: false,
            xpra: false,
            xephyr: false,
            xrandr: false,
            xrandr_device: None,
            resolution: None,
        }
    }
}

/// Display kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayKind {
    /// Headless: serial console only.
    None,
    /// SPICE on a unix socket.
    Spice,
    /// VNC on a unix socket.
    Vnc,
    /// A GTK window.
    Gtk,
    /// An SDL window.
    Sdl,
}

/// Emulated graphics card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vga {
    /// Standard VGA.
    Std,
    /// QXL, best with SPICE.
    Qxl,
    /// virtio-gpu.
    Virtio,
    /// Cirrus Logic.
    Cirrus,
    /// No card.
    None,
}

/// `[supervise]`: how kvmx watches over the VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Supervise {
    /// Keep this VM running under `kvmx supervise`.
    pub manage: bool,
    /// Seconds `kvmx up` waits for the guest to answer SSH.
    pub boot_timeout: u64,
    /// Seconds `kvmx stop` waits after each step (ACPI power-off, then SSH
    /// poweroff) before trying the next.
    pub shutdown_timeout: u64,
}

impl Default for Supervise {
    fn default() -> Self {
        Supervise {
            manage: false,
            boot_timeout: 300,
            shutdown_timeout: 60,
        }
    }
}

/// `[template]`: a VM whose root disk is made afresh from a template VM's
/// image at every start; only its private disk persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Template {
    /// The template VM (a registered name); unset for a VM with its own image.
    pub name: Option<VmName>,
    /// How the fresh root is made.
    pub root: TemplateRoot,
    /// A private disk, made at the first start, for what must persist.
    pub private_disk: bool,
    /// Size of the private disk.
    pub private_size: ByteSize,
    /// Where the private disk is mounted in the guest.
    pub private_mount: GuestPath,
}

impl Default for Template {
    fn default() -> Self {
        Template {
            name: None,
            root: TemplateRoot::Overlay,
            private_disk: true,
            private_size: ByteSize::gib(2),
            private_mount: "/home".parse().expect("valid default mount point"),
        }
    }
}

/// How a template-based VM's root is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateRoot {
    /// A fresh qcow2 overlay file backed by the template's image.
    Overlay,
    /// QEMU's `-snapshot` on the template's image: no overlay file.
    Snapshot,
}

/// `[disposable]`: throwaway VMs made from this VM as their template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Disposable {
    /// Keep a saved running state after the first disposable boots, so
    /// later ones restore it instead of booting.
    pub warm: bool,
    /// Guest memory of disposables; defaults to this VM's.
    pub memory: Option<ByteSize>,
    /// A host folder of ClamAV signatures that `kvmx clamav` copies into
    /// the disposable, instead of using the template's own
    /// `/var/lib/clamav`.
    pub clamav_database: Option<Utf8PathBuf>,
}

impl Default for Disposable {
    fn default() -> Self {
        Disposable {
            warm: true,
            memory: None,
            clamav_database: None,
        }
    }
}

/// `[install]`: the installer run by `kvmx install`, and by `kvmx up` when
/// `create.method = "install"` and the image is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Install {
    /// An installer ISO booted as a CD-ROM with the blank disk, for an
    /// interactive install of any system; unset: Debian's netboot
    /// installer, preseeded from this config.
    pub iso: Option<Utf8PathBuf>,
    /// Seconds the installer may run before it is stopped.
    pub timeout: u64,
    /// The guest's locale (Debian installer).
    pub locale: String,
    /// The guest's keyboard layout (Debian installer).
    pub keyboard: String,
    /// The guest's time zone (Debian installer).
    pub timezone: String,
}

impl Default for Install {
    fn default() -> Self {
        Install {
            iso: None,
            timeout: 7200,
            locale: "en_US.UTF-8".into(),
            keyboard: "us".into(),
            timezone: "Etc/UTC".into(),
        }
    }
}
