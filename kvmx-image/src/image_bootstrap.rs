//! What kvmx hands image-bootstrap (hartwork's tool that writes a bootable
//! Arch, Debian or Gentoo system onto a block device, as root) in the
//! builder VM: its command line, the files kvmx writes in the builder
//! beforehand, and the shell script that runs it. Nothing here runs a
//! process; the builder code writes [`Plan::files`] and runs
//! [`Plan::script`].
//!
//! The plan follows image-bootstrap 4.0.0 ([`PIP_REQUIREMENT`]), whose
//! argparse code it was written from:
//!
//! - global options before the distribution: `--hostname NAME`,
//!   `--password-file FILE` (the first line of FILE is the root password,
//!   set with `chpasswd` in the chroot), `--scripts-chroot DIRECTORY` and
//!   `--scripts-post DIRECTORY` (hooks, run in name order),
//!   `--bootloader chroot-grub2-drive` (GRUB for BIOS, installed from inside
//!   the new system), `--color never`, `--verbose`, and for Debian `--arch`;
//! - then the distribution's subcommand and its options: `debian --release
//!   SUITE --mirror URL`, `arch --arch x86_64`, `gentoo --arch amd64` (Arch
//!   and Gentoo take `--arch` after the subcommand: their subcommand's
//!   default would override a global one);
//! - then the target device, which only the builder knows: the script
//!   appends it.
//!
//! Every path option is relative to the work folder: image-bootstrap makes
//! them absolute from its working directory, which the script sets.
//!
//! image-bootstrap partitions the device (one ext4 partition, msdos
//! label), bootstraps the system and installs GRUB. What it leaves out for
//! a plain (non-OpenStack) image, kvmx adds through its hooks:
//!
//! - the chroot hook ([`CHROOT_HOOK`]), run inside the new system after
//!   GRUB's config was made, installs sudo, sshd and the QEMU guest agent
//!   (and acpid and dhcpcd on Gentoo, which has OpenRC and so no logind),
//!   creates the user with the given uid and gid and passwordless sudo,
//!   enables the services and a getty on `ttyS0`, and adds
//!   `console=ttyS0,115200n8` to the kernel command line in
//!   `/etc/default/grub` before making `grub.cfg` again;
//! - the post hook ([`POST_HOOK`]), run in the builder with the new root
//!   mounted at `$IB_ROOT`, copies the files made on the host (SSH host
//!   key, authorized keys, sshd drop-in) from the work folder into it.
//!
//! The root password is never in the plan: the script reads it from its
//! standard input into a 0600 file that it removes when it ends.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::Distribution;
use kvmx_core::process::{Runner, Tool, shell_quote};

use crate::prerequisites::Requirement;
use crate::{Error, Result};

/// The image-bootstrap release the plan was written for, as a pip
/// requirement.
///
/// The builder image's recipe installs it in a virtual environment that
/// sees the system's Python packages, with its dependencies taken from
/// Debian ([`BUILDER_PACKAGES`]):
///
/// ```sh
/// python3 -m venv --system-site-packages /opt/image-bootstrap
/// /opt/image-bootstrap/bin/pip install --no-deps 'image-bootstrap==4.0.0'
/// ln -s /opt/image-bootstrap/bin/image-bootstrap /usr/local/bin/image-bootstrap
/// ```
///
/// A venv rather than `pip install --break-system-packages`: pip then
/// writes nothing into the folders dpkg owns, and bookworm's PEP 668
/// marker stays meaningful. `--no-deps` because its dependencies
/// (beautifulsoup4, colorama, lxml, requests, setuptools, PyYAML) are all
/// Debian packages: nothing to compile (lxml) and only one download from
/// PyPI. It requires Python 3.11 or later, which bookworm has.
pub const PIP_REQUIREMENT: &str = "image-bootstrap==4.0.0";

/// The file pip downloads for [`PIP_REQUIREMENT`], and its SHA-256: the
/// download is checked against it before any builder uses it.
pub const WHEEL: (&str, &str) = (
    "image_bootstrap-4.0.0-py3-none-any.whl",
    "e55e8ea93195bc495eeee7e7db7a9b9f933fec209a1996849a4c0fa4936a1bcb",
);

/// The wheel in kvmx's cache folder, downloaded once by the host's pip
/// and checked against [`WHEEL`]'s digest. The host fetches it, not the
/// builder: the host's pip has its configuration (an index mirror, a
/// proxy's certificate authority) and the guest has only Debian's.
pub fn cached_wheel(cache_dir: &Utf8Path, runner: &Runner) -> Result<Utf8PathBuf> {
    let (name, digest) = WHEEL;
    let dir = cache_dir.join("wheels");
    let wheel = dir.join(name);
    if wheel.is_file() && sha256_hex(&wheel)? == digest {
        return Ok(wheel);
    }
    crate::prerequisites::check(&[Requirement::File {
        path: "/usr/lib/python3/dist-packages/pip/__init__.py".into(),
        package: "python3-pip",
    }])
    .map_err(Error::Missing)?;
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let work = crate::cleanup::WorkDir::new_in(&dir, ".download-", crate::userns::GuestRoot::Root)?;
    runner.run(
        &Tool::new("/usr/bin/python3", "download image-bootstrap with pip")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--dest",
            ])
            .arg(work.path())
            .arg(PIP_REQUIREMENT),
    )?;
    let downloaded = work.path().join(name);
    let found = sha256_hex(&downloaded)?;
    if found != digest {
        return Err(Error::Unsupported(format!(
            "{name} from pip has SHA-256 {found}, not the {digest} kvmx expects: refusing it"
        )));
    }
    std::fs::rename(&downloaded, &wheel).map_err(Error::io("store", &wheel))?;
    Ok(wheel)
}

fn sha256_hex(path: &Utf8Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The Debian (bookworm) packages the builder needs so that image-bootstrap
/// runs for Debian, Arch and Gentoo: Python and the venv module, its Python
/// dependencies, and the programs it calls on the builder side (the chroot
/// side uses the new system's own). By program: `debootstrap` (Debian);
/// `kpartx`; `parted` and `partprobe` (parted); `mkfs.ext4` and `tune2fs`
/// (e2fsprogs); `blkid`, `blockdev` and `unshare` (util-linux); `mount`
/// and `umount` (mount); `wget` (Arch and Gentoo downloads, and debootstrap);
/// `gpg` (Gentoo's signatures); `unxz` (xz-utils: Gentoo's snapshot);
/// `zstd` (Arch's bootstrap tarball, unpacked by `tar`); ca-certificates
/// (https mirrors). `chroot`, `cp`, `find`, `sed`, `tar`, `md5sum`,
/// `sha512sum` and `install` come with every Debian system.
pub const BUILDER_PACKAGES: &[&str] = &[
    "python3",
    "python3-venv",
    "python3-bs4",
    "python3-colorama",
    "python3-lxml",
    "python3-requests",
    "python3-setuptools",
    "python3-yaml",
    "debootstrap",
    "kpartx",
    "parted",
    "e2fsprogs",
    "util-linux",
    "mount",
    "wget",
    "gpg",
    "xz-utils",
    "zstd",
    "ca-certificates",
];

/// The command, found on `PATH` in the builder.
pub const PROGRAM: &str = "image-bootstrap";

/// The root password file the script writes, relative to the work folder.
pub const PASSWORD_FILE: &str = "root-password";

/// The folder of chroot hooks, relative to the work folder.
pub const CHROOT_DIR: &str = "chroot";

/// The folder of post hooks, relative to the work folder.
pub const POST_DIR: &str = "post";

/// The folder of the files the post hook copies into the new system,
/// relative to the work folder.
pub const GUEST_DIR: &str = "guest";

/// The chroot hook, relative to the work folder.
pub const CHROOT_HOOK: &str = "chroot/50-kvmx-guest";

/// The post hook, relative to the work folder.
pub const POST_HOOK: &str = "post/50-kvmx-guest";

/// The kernel's consoles: the screen and the first serial port.
pub const CONSOLE_ARGS: &str = crate::guest::CONSOLE_CMDLINE;

/// What a plan is made from: the guest's settings, all validated by the
/// config layer.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// The distribution to install.
    pub distribution: Distribution,
    /// The guest's host name.
    pub hostname: String,
    /// The user's name.
    pub user: String,
    /// The user's uid.
    pub uid: u32,
    /// The user's primary gid (a group named after the user, unless a
    /// group has that gid already).
    pub gid: u32,
    /// Public keys authorized for the user, one line each.
    pub authorized_keys: Vec<String>,
    /// The guest's ed25519 SSH host key, OpenSSH format.
    pub host_key_private: String,
    /// Its public line.
    pub host_key_public: String,
    /// Debian's mirror (`create.mirror`); Arch and Gentoo use
    /// image-bootstrap's defaults, so this is not used for them.
    pub mirror: Option<String>,
    /// Debian's release, e.g. `bookworm` (image-bootstrap supports bookworm
    /// and later); not used for Arch and Gentoo.
    pub suite: String,
    /// The architecture, Debian's or the distribution's spelling: `amd64`
    /// and `x86_64` are both understood for each distribution. It must be
    /// the builder's own.
    pub arch: String,
    /// Files the post hook copies into the new system as they are, paths
    /// relative to its `/` (the network's, made as for every kvmx guest);
    /// used for the systemd distributions, Debian and Arch.
    pub root_files: Vec<PlanFile>,
}

/// A file kvmx writes in the builder before running [`Plan::script`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFile {
    /// Relative to the work folder.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Its contents.
    pub contents: String,
}

/// What kvmx hands image-bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// image-bootstrap's command line, program first, without the target
    /// device (which the script appends); paths in it are relative to the
    /// work folder.
    pub argv: Vec<String>,
    /// Files to write in the work folder first (folders made as needed).
    pub files: Vec<PlanFile>,
    /// A POSIX sh script, run as root in the builder with the work folder
    /// as `$1`, the target device as `$2` and the root password as the
    /// first line of its standard input.
    pub script: String,
}

/// The plan for `input`.
pub fn plan(input: &PlanInput) -> Plan {
    let argv = argv(input);
    // One option (with its value) a line, the subcommand on its own.
    let mut command = String::new();
    for (index, word) in argv.iter().enumerate() {
        let option = word.starts_with("--");
        let subcommand = !option && index > 0 && !argv[index - 1].starts_with("--");
        if index > 0 {
            command.push_str(if option || subcommand {
                " \\\n    "
            } else {
                " "
            });
        }
        command.push_str(&shell_quote(word));
    }
    let script = format!("{RUN_HEAD}{command} \\\n    \"$device\"\n");
    Plan {
        argv,
        files: files(input),
        script,
    }
}

/// The architecture as image-bootstrap spells it for `distribution`.
fn arch_name(distribution: Distribution, arch: &str) -> &str {
    match (distribution, arch) {
        (Distribution::Arch, "amd64") => "x86_64",
        (Distribution::Arch, "i386") => "i686",
        (Distribution::Debian | Distribution::Gentoo, "x86_64") => "amd64",
        (Distribution::Debian, "i686") => "i386",
        _ => arch,
    }
}

fn argv(input: &PlanInput) -> Vec<String> {
    let arch = arch_name(input.distribution, &input.arch);
    let debian_include = format!(
        "--debootstrap-opt=--include={}",
        debian_packages().join(",")
    );
    let mut argv: Vec<&str> = vec![
        PROGRAM,
        "--color",
        "never",
        "--verbose",
        "--hostname",
        input.hostname.as_str(),
        "--password-file",
        PASSWORD_FILE,
        "--bootloader",
        "chroot-grub2-drive",
        "--scripts-chroot",
        CHROOT_DIR,
        "--scripts-post",
        POST_DIR,
    ];
    match input.distribution {
        Distribution::Debian => {
            argv.extend(["--arch", arch, "debian", "--release", &input.suite]);
            if let Some(mirror) = &input.mirror {
                argv.extend(["--mirror", mirror.as_str()]);
            }
            argv.extend([
                "--debootstrap",
                DEBOOTSTRAP_WRAPPER,
                "--debootstrap-opt=--variant=minbase",
                &debian_include,
            ]);
        }
        Distribution::Arch => argv.extend(["arch", "--arch", arch]),
        Distribution::Gentoo => argv.extend(["gentoo", "--arch", arch]),
    }
    argv.into_iter().map(String::from).collect()
}

fn files(input: &PlanInput) -> Vec<PlanFile> {
    let mut files = vec![
        PlanFile {
            path: CHROOT_HOOK.into(),
            mode: 0o755,
            contents: chroot_hook(input),
        },
        PlanFile {
            path: POST_HOOK.into(),
            mode: 0o755,
            contents: post_hook(input),
        },
    ];
    files.extend(trust_files(
        GUEST_DIR,
        &input.authorized_keys,
        &input.host_key_private,
        &input.host_key_public,
    ));
    files.extend(root_files(input).iter().map(|file| PlanFile {
        path: format!("{GUEST_DIR}/root/{}", file.path),
        ..file.clone()
    }));
    if input.distribution == Distribution::Debian {
        files.push(PlanFile {
            path: format!("bin/{DEBOOTSTRAP_WRAPPER}"),
            mode: 0o755,
            contents: format!(
                "{DEBOOTSTRAP_HEAD}initramfs_config() {{\n{}}}\n{DEBOOTSTRAP_RUN}",
                crate::boot_tuning::INITRAMFS_CONFIG
            ),
        });
    }
    files
}

/// The distributions whose new system runs systemd (Gentoo's runs OpenRC).
fn uses_systemd(distribution: Distribution) -> bool {
    distribution != Distribution::Gentoo
}

/// The files of [`PlanInput::root_files`] that go into the new system:
/// all of them for systemd's distributions, none for Gentoo (networkd's
/// and resolved's files mean nothing to OpenRC).
fn root_files(input: &PlanInput) -> &[PlanFile] {
    if uses_systemd(input.distribution) {
        &input.root_files
    } else {
        &[]
    }
}

/// What debootstrap adds to its minimal base for Debian: every kvmx guest's
/// packages ([`crate::bootstrap::BASE_PACKAGES`]), but the kernel and
/// initramfs-tools, which image-bootstrap names itself.
fn debian_packages() -> Vec<&'static str> {
    crate::bootstrap::BASE_PACKAGES
        .iter()
        .copied()
        .filter(|package| !package.starts_with("linux-image-") && *package != "initramfs-tools")
        .collect()
}

/// The files [`TRUST_BODY`] copies into a new system, in the folder
/// `dir`: the user's authorized keys, the guest's host key pair and
/// sshd's drop-in.
pub(crate) fn trust_files(
    dir: &str,
    authorized_keys: &[String],
    host_key_private: &str,
    host_key_public: &str,
) -> Vec<PlanFile> {
    let file = |name: &str, mode: u32, contents: String| PlanFile {
        path: format!("{dir}/{name}"),
        mode,
        contents,
    };
    let mut keys = authorized_keys.join("\n");
    keys.push('\n');
    let mut private = host_key_private.to_owned();
    if !private.ends_with('\n') {
        private.push('\n');
    }
    vec![
        file("authorized_keys", 0o644, keys),
        file("ssh_host_ed25519_key", 0o600, private),
        file(
            "ssh_host_ed25519_key.pub",
            0o644,
            format!("{}\n", host_key_public.trim_end()),
        ),
        file("sshd_config", 0o644, SSHD_DROP_IN.into()),
    ]
}

/// The shell assignments of the user's name and ids, for the hooks.
fn user_vars(input: &PlanInput) -> String {
    format!(
        "user={}\nuid={}\ngid={}\n",
        shell_quote(&input.user),
        input.uid,
        input.gid
    )
}

fn chroot_hook(input: &PlanInput) -> String {
    let (packages, services) = match input.distribution {
        Distribution::Debian => (DEBIAN_PACKAGES, SYSTEMD_SERVICES_DEBIAN),
        Distribution::Arch => (ARCH_PACKAGES, SYSTEMD_SERVICES_ARCH),
        Distribution::Gentoo => (GENTOO_PACKAGES, GENTOO_SERVICES),
    };
    let mut hook = String::from(CHROOT_HEAD);
    hook.push_str(&user_vars(input));
    hook.push_str(packages);
    hook.push_str(USER_SETUP);
    if input.distribution != Distribution::Gentoo {
        hook.push_str(LINGER);
    }
    hook.push_str(SSHD_INCLUDE);
    hook.push_str(services);
    hook.push_str(GRUB_SERIAL);
    if uses_systemd(input.distribution) {
        hook.push_str(RESOLVED_LINK);
    }
    hook
}

fn post_hook(input: &PlanInput) -> String {
    let mut hook = format!("{POST_HEAD}{}{TRUST_BODY}{USER_PASSWORD}", user_vars(input));
    if !root_files(input).is_empty() {
        hook.push_str(ROOT_FILES_COPY);
    }
    hook
}

/// The script's head: the password file from standard input, then
/// image-bootstrap's command (followed by the quoted argv).
const RUN_HEAD: &str = r#"#!/bin/sh
# Writes a new system onto the device $2 with image-bootstrap, from the
# files in the work folder $1. Standard input holds the root password,
# then the user's password hash (an empty line: locked); each goes into a
# 0600 file removed on exit, never into a command line or the environment
# (the shell's builtin read and printf carry them).
set -eu
work=$1
device=$2
cd "$work"
KVMX_WORK=$(pwd -P)
export KVMX_WORK
trap 'rm -f root-password user-password' EXIT
trap 'exit 130' HUP INT TERM
rm -f root-password user-password
(
    umask 077
    IFS= read -r line || true
    printf '%s\n' "$line" > root-password
    IFS= read -r line || true
    printf '%s\n' "$line" > user-password
)
if ! grep -q . root-password; then
    echo "kvmx: no root password on standard input" >&2
    exit 1
fi
# image-bootstrap runs the hooks only from folders that no one but root
# may write to.
chmod 0755 chroot chroot/* post post/*
# kvmx's own commands (Debian's debootstrap wrapper).
PATH="$KVMX_WORK/bin:$PATH"
export PATH
"#;

const CHROOT_HEAD: &str = r#"#!/bin/sh
# kvmx: what every kvmx guest has, set up inside the new system by
# image-bootstrap's chroot phase (after GRUB's config was made).
set -eu
"#;

/// Debian's packages come with debootstrap ([`debian_packages`]).
const DEBIAN_PACKAGES: &str = "# The packages came with debootstrap: no apt run here.\n";

const ARCH_PACKAGES: &str = r#"# sshd, sudo and the QEMU guest agent; systemd's logind powers off on the
# ACPI power button.
pacman --sync --noconfirm --needed openssh sudo qemu-guest-agent
"#;

/// Gentoo builds from source unless its binary host has a package with the
/// same USE flags, so this takes a while (image-bootstrap has already built
/// a kernel by then); `--getbinpkg` uses the binary packages where it can.
const GENTOO_PACKAGES: &str = r#"# sshd, sudo, the QEMU guest agent, acpid for the ACPI power button (no
# logind with OpenRC) and dhcpcd for the network. Built from source unless
# the binary host has them with the same USE flags: this takes a while.
mkdir -p /etc/portage/package.use
echo 'app-admin/sudo -sendmail' > /etc/portage/package.use/kvmx
FEATURES=-news emerge --getbinpkg --noreplace --jobs 2 \
    net-misc/openssh app-admin/sudo app-emulation/qemu-guest-agent \
    sys-power/acpid net-misc/dhcpcd
"#;

const USER_SETUP: &str = r#"# The user, with the host user's ids, no password (SSH keys only) and sudo
# without one.
if ! getent group "$gid" > /dev/null; then
    groupadd --gid "$gid" "$user"
fi
useradd --uid "$uid" --gid "$gid" --home-dir "/home/$user" --create-home \
    --shell /bin/bash "$user"
usermod --password '*' "$user"
mkdir -p /etc/sudoers.d
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > /etc/sudoers.d/90-kvmx
chmod 0440 /etc/sudoers.d/90-kvmx
visudo -c -f /etc/sudoers.d/90-kvmx
"#;

const LINGER: &str = r#"# The user's systemd instance runs from boot: every kvmx command logs in.
mkdir -p /var/lib/systemd/linger
: > "/var/lib/systemd/linger/$user"
"#;

const SSHD_INCLUDE: &str = r#"# sshd reads kvmx's drop-in (copied by the post hook).
mkdir -p /etc/ssh/sshd_config.d
if ! grep -q '^Include[[:space:]]*/etc/ssh/sshd_config.d/' /etc/ssh/sshd_config; then
    sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
fi
"#;

const SYSTEMD_SERVICES_DEBIAN: &str = r#"# Services, the network (networkd's file comes with the post hook), and a
# login on the serial console. Units without an [Install] section (the
# guest agent's) are started by udev when their device shows.
for unit in ssh.service qemu-guest-agent.service; do
    if grep -qs '^\[Install\]' "/lib/systemd/system/$unit" "/usr/lib/systemd/system/$unit"; then
        systemctl enable "$unit"
    fi
done
systemctl enable systemd-networkd.service systemd-resolved.service
systemctl enable serial-getty@ttyS0.service
"#;

const SYSTEMD_SERVICES_ARCH: &str = r#"# Services, the network (image-bootstrap wrote eth0's networkd file), and
# a login on the serial console. Units without an [Install] section are
# started by udev when their device shows.
for unit in sshd.service qemu-guest-agent.service; do
    if grep -qs '^\[Install\]' "/usr/lib/systemd/system/$unit"; then
        systemctl enable "$unit"
    fi
done
systemctl enable systemd-networkd.service systemd-resolved.service
systemctl enable serial-getty@ttyS0.service
"#;

const GENTOO_SERVICES: &str = r#"# Services, and a login on the serial console.
for service in sshd qemu-guest-agent acpid dhcpcd; do
    rc-update add "$service" default
done
sed -i '/^#\{0,1\}s0:/d' /etc/inittab
echo 's0:12345:respawn:/sbin/agetty -L 115200 ttyS0 vt100' >> /etc/inittab
"#;

const GRUB_SERIAL: &str = r#"# The kernel's console and GRUB's menu also on the serial port, kept in
# /etc/default/grub for the configs made at kernel updates; then grub.cfg
# again, with the root given by UUID as image-bootstrap wrote it (the
# builder may have no /dev/disk/by-uuid link for the partition).
cat >> /etc/default/grub <<'EOF'

# Set by kvmx: consoles on the screen and the first serial port.
GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
EOF
grub-mkconfig -o /boot/grub/grub.cfg
uuid=$(sed -n 's|^/dev/disk/by-uuid/\([0-9a-fA-F-]*\)[[:space:]]\{1,\}/[[:space:]].*|\1|p' /etc/fstab)
if [ -z "$uuid" ]; then
    echo "kvmx: no root file system UUID in /etc/fstab" >&2
    exit 1
fi
sed -i "/^[[:space:]]*linux[[:space:]]/ s,root=[^[:space:]]*,root=UUID=$uuid," /boot/grub/grub.cfg
"#;

const RESOLVED_LINK: &str = r#"# Name servers from systemd-resolved. Last: the chroot has no DNS after it.
ln -sf /run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
rm -f /etc/.resolv.conf.systemd-resolved.bak
"#;

/// Copies the files of [`PlanInput::root_files`] into the new system,
/// replacing what is there (a link included).
const ROOT_FILES_COPY: &str = r#"# The network's files, made as for every kvmx guest.
cp -R --preserve=mode --remove-destination "$from/root/." "$root/"
"#;

/// The command image-bootstrap runs instead of `debootstrap`, from the
/// work folder's `bin` (on the script's `PATH`).
const DEBOOTSTRAP_WRAPPER: &str = "kvmx-debootstrap";

/// Its head; then `initramfs_config` is defined from
/// [`crate::boot_tuning::INITRAMFS_CONFIG`] and [`DEBOOTSTRAP_RUN`] follows.
const DEBOOTSTRAP_HEAD: &str = r#"#!/bin/sh
# kvmx: debootstrap for image-bootstrap, which passes the new system's
# folder as the argument before the last (then the mirror).
set -eu
eval "target=\${$(($# - 1))}"
"#;

/// The wrapper's body. Before debootstrap: the small initramfs's config,
/// so the kernel's postinst builds it once and small (under emulation the
/// full one takes many minutes). After it: `/etc/resolv.conf` as a plain
/// file again, which image-bootstrap writes for the chroot's apt
/// (systemd-resolved's postinst made it a link into `/run`, empty until
/// boot); the chroot hook links it back.
const DEBOOTSTRAP_RUN: &str = r#"initramfs_config "$target"
# debootstrap keeps only the last --include: image-bootstrap's (kernel,
# initramfs-tools, GRUB) and kvmx's (--debootstrap-opt) become one.
includes=
for arg do
    shift
    case $arg in
        --include=*) includes=${includes:+$includes,}${arg#--include=} ;;
        *) set -- "$@" "$arg" ;;
    esac
done
debootstrap ${includes:+"--include=$includes"} "$@"
rm -f "$target/etc/resolv.conf"
# image-bootstrap writes /etc/network/interfaces, which minbase has no
# folder for (networkd is used, not ifupdown).
mkdir -p "$target/etc/network"
"#;

const POST_HEAD: &str = r#"#!/bin/sh
# kvmx: the files made on the host, copied into the new system, mounted at
# $IB_ROOT, by image-bootstrap's post phase.
set -eu
from=$KVMX_WORK/guest
root=$IB_ROOT
"#;

/// Copies [`trust_files`] from `$from` into the new system at `$root`;
/// `$user`, `$uid` and `$gid` name the user (whose home exists).
pub(crate) const TRUST_BODY: &str = r#"# The SSH host key given, and only that one.
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0600 "$from/ssh_host_ed25519_key" "$root/etc/ssh/ssh_host_ed25519_key"
install -m 0644 "$from/ssh_host_ed25519_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
install -d -m 0755 "$root/etc/ssh/sshd_config.d"
install -m 0644 "$from/sshd_config" "$root/etc/ssh/sshd_config.d/kvmx.conf"
# The user's keys.
install -d -m 0700 "$root/home/$user/.ssh"
install -m 0600 "$from/authorized_keys" "$root/home/$user/.ssh/authorized_keys"
chown -R "$uid:$gid" "$root/home/$user/.ssh"
"#;

/// Sets the user's password hash the script read, when there is one (the
/// chroot hook left the password locked).
const USER_PASSWORD: &str = r#"# The user's password, when it has one: its hash, from the host.
if grep -q . "$KVMX_WORK/user-password"; then
    printf '%s:%s\n' "$user" "$(cat "$KVMX_WORK/user-password")" | chroot "$root" chpasswd -e
fi
"#;

/// sshd's drop-in: the given host key, keys only, no root.
const SSHD_DROP_IN: &str = "HostKey /etc/ssh/ssh_host_ed25519_key\n\
                            PasswordAuthentication no\n\
                            KbdInteractiveAuthentication no\n\
                            PermitRootLogin no\n";

#[cfg(test)]
mod tests {
    use kvmx_testkit::shell::words_seen_by_sh;

    use super::*;

    fn input(distribution: Distribution) -> PlanInput {
        PlanInput {
            distribution,
            hostname: "web".into(),
            user: "dev".into(),
            uid: 1000,
            gid: 1000,
            authorized_keys: vec![
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClient kvmx@host".into(),
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExtra me@laptop".into(),
            ],
            host_key_private: "-----BEGIN OPENSSH PRIVATE KEY-----\n\
                               b3BlbnNzaC1rZXktdjEAAAAA\n\
                               -----END OPENSSH PRIVATE KEY-----\n"
                .into(),
            host_key_public: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost root@web".into(),
            mirror: Some("https://deb.debian.org/debian/".into()),
            suite: "bookworm".into(),
            arch: "amd64".into(),
            root_files: vec![PlanFile {
                path: "etc/systemd/network/80-kvmx.network".into(),
                mode: 0o644,
                contents: "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n".into(),
            }],
        }
    }

    /// The plan as one text: argv a word a line, each file, the script.
    fn render(plan: &Plan) -> String {
        let mut text = String::from("argv:\n");
        for word in &plan.argv {
            text.push_str(&format!("  {word}\n"));
        }
        for file in &plan.files {
            text.push_str(&format!(
                "\n=== {} ({:04o})\n{}",
                file.path, file.mode, file.contents
            ));
        }
        text.push_str(&format!("\n=== script\n{}", plan.script));
        text
    }

    #[test]
    fn image_bootstrap_debian_plan() {
        insta::assert_snapshot!(render(&plan(&input(Distribution::Debian))));
    }

    #[test]
    fn image_bootstrap_arch_plan() {
        insta::assert_snapshot!(render(&plan(&input(Distribution::Arch))));
    }

    #[test]
    fn image_bootstrap_gentoo_plan() {
        insta::assert_snapshot!(render(&plan(&input(Distribution::Gentoo))));
    }

    /// The wrapper runs with a stand-in `debootstrap` that records what it
    /// found and makes resolv.conf the link systemd-resolved's postinst
    /// makes.
    #[test]
    fn image_bootstrap_debootstrap_wrapper_prepares_the_initramfs_and_hands_back_resolv_conf() {
        let plan = plan(&input(Distribution::Debian));
        let wrapper = plan
            .files
            .iter()
            .find(|file| file.path == format!("bin/{DEBOOTSTRAP_WRAPPER}"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join(DEBOOTSTRAP_WRAPPER), &wrapper.contents).unwrap();
        std::fs::write(
            bin.join("debootstrap"),
            "#!/bin/sh\n\
             eval \"target=\\${$(($# - 1))}\"\n\
             echo \"$@\" > \"$target/args\"\n\
             cat \"$target/etc/initramfs-tools/conf.d/kvmx\" > \"$target/seen\"\n\
             ln -s ../run/systemd/resolve/stub-resolv.conf \"$target/etc/resolv.conf\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            bin.join("debootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let status = std::process::Command::new("sh")
            .arg(bin.join(DEBOOTSTRAP_WRAPPER))
            .args(["--arch", "amd64", "--include=a,b", "--variant=minbase"])
            .args(["--include=c", "bookworm"])
            .arg(&target)
            .arg("http://deb.debian.org/debian/")
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .status()
            .unwrap();
        assert!(status.success());
        let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
        assert_eq!(
            read("args").trim_end(),
            format!(
                "--include=a,b,c --arch amd64 --variant=minbase bookworm {} http://deb.debian.org/debian/",
                target.display()
            )
        );
        assert!(read("seen").contains("MODULES=list"), "{}", read("seen"));
        assert!(target.join("etc/initramfs-tools/hooks/kvmx-disk").is_file());
        assert!(target.join("etc/resolv.conf").symlink_metadata().is_err());
        assert!(target.join("etc/network").is_dir());
    }

    const ALL: [Distribution; 3] = [
        Distribution::Debian,
        Distribution::Arch,
        Distribution::Gentoo,
    ];

    #[test]
    fn image_bootstrap_odd_values_reach_image_bootstrap_intact() {
        let mut input = input(Distribution::Debian);
        input.hostname = "we'b $(id)".into();
        input.mirror = Some("http://m.example/debian?a=1&b='2'".into());
        let plan = plan(&input);
        // The command as the script has it, from the program to the device.
        let start = plan.script.find("\nimage-bootstrap ").unwrap();
        let command = plan.script[start + 1..]
            .replace(" \\\n    ", " ")
            .replace("\"$device\"", "/dev/vdb");
        let mut expected = plan.argv.clone();
        expected.push("/dev/vdb".into());
        assert_eq!(words_seen_by_sh(command.trim_end()), expected);
        // The user's name, as the hooks assign it.
        let mut input = input.clone();
        input.user = "d'ev".into();
        let hook = &files(&input)[0].contents;
        let assignment = hook.lines().find(|l| l.starts_with("user=")).unwrap();
        let seen = words_seen_by_sh(&format!("\"$({assignment}; printf %s \"$user\")\""));
        assert_eq!(seen, ["d'ev"]);
    }

    #[test]
    fn image_bootstrap_password_comes_only_from_stdin() {
        for distribution in ALL {
            let plan = plan(&input(distribution));
            let at = plan
                .argv
                .iter()
                .position(|w| w == "--password-file")
                .unwrap();
            assert_eq!(plan.argv[at + 1], PASSWORD_FILE);
            assert!(!plan.argv.iter().any(|w| w == "--password"));
            // The script writes that file from stdin, 0600, and removes it.
            assert!(
                plan.script
                    .contains("printf '%s\\n' \"$line\" > root-password")
            );
            assert!(
                plan.script
                    .contains("trap 'rm -f root-password user-password' EXIT")
            );
            // No file of the plan is the password file.
            assert!(plan.files.iter().all(|f| f.path != PASSWORD_FILE));
        }
    }

    #[test]
    fn image_bootstrap_script_reads_the_passwords_from_stdin_into_private_files() {
        let dir = tempfile::tempdir().unwrap();
        for hook in [CHROOT_HOOK, POST_HOOK] {
            let path = dir.path().join(hook);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let script = format!(
            "{RUN_HEAD}stat -c %a root-password user-password\ncat root-password user-password\nprintf '%s\\n' \"$KVMX_WORK\"\n"
        );
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .arg("sh")
            .arg(dir.path())
            .arg("/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"s3cret 'pw'\n$y$j9T$salt$hash\nnot read\n")
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let dir_path = dir.path().canonicalize().unwrap();
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!(
                "600\n600\ns3cret 'pw'\n$y$j9T$salt$hash\n{}\n",
                dir_path.display()
            )
        );
        assert!(!dir.path().join(PASSWORD_FILE).exists());
        assert!(!dir.path().join("user-password").exists());
    }

    #[test]
    fn image_bootstrap_script_refuses_an_empty_password() {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(RUN_HEAD)
            .arg("sh")
            .arg(dir.path())
            .arg("/dev/null")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(!dir.path().join(PASSWORD_FILE).exists());
    }

    #[test]
    fn image_bootstrap_scripts_are_valid_sh() {
        for distribution in ALL {
            let plan = plan(&input(distribution));
            let scripts = plan
                .files
                .iter()
                .filter(|f| f.mode & 0o111 != 0)
                .map(|f| f.contents.clone())
                .chain([plan.script.clone()]);
            for script in scripts {
                let output = std::process::Command::new("sh")
                    .arg("-n")
                    .arg("-c")
                    .arg(&script)
                    .output()
                    .unwrap();
                assert!(output.status.success(), "{script}\n{output:?}");
            }
        }
    }

    /// Runs `script` with `sh`, `PATH` starting with `bin`, and `env`.
    fn run_sh(script: &str, bin: &std::path::Path, env: &[(&str, &std::path::Path)]) {
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(script).env("PATH", path);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{script}\n{output:?}");
    }

    #[test]
    fn image_bootstrap_post_hook_installs_the_keys() {
        use std::os::unix::fs::PermissionsExt;
        let mut input = input(Distribution::Arch);
        input.uid = nix::unistd::getuid().as_raw();
        input.gid = nix::unistd::getgid().as_raw();
        let plan = plan(&input);
        let work = tempfile::tempdir().unwrap();
        for file in &plan.files {
            let path = work.path().join(&file.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &file.contents).unwrap();
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/ssh")).unwrap();
        std::fs::create_dir_all(root.path().join("home/dev")).unwrap();
        std::fs::write(root.path().join("etc/ssh/ssh_host_rsa_key"), "old").unwrap();
        let hook = std::fs::read_to_string(work.path().join(POST_HOOK)).unwrap();
        run_sh(
            &hook,
            work.path(),
            &[("KVMX_WORK", work.path()), ("IB_ROOT", root.path())],
        );
        let mode = |path: &str| {
            let meta = std::fs::metadata(root.path().join(path)).unwrap();
            meta.permissions().mode() & 0o7777
        };
        let text = |path: &str| std::fs::read_to_string(root.path().join(path)).unwrap();
        assert!(!root.path().join("etc/ssh/ssh_host_rsa_key").exists());
        assert_eq!(mode("etc/ssh/ssh_host_ed25519_key"), 0o600);
        assert_eq!(text("etc/ssh/ssh_host_ed25519_key"), input.host_key_private);
        assert_eq!(mode("etc/ssh/ssh_host_ed25519_key.pub"), 0o644);
        assert_eq!(
            text("etc/ssh/ssh_host_ed25519_key.pub"),
            format!("{}\n", input.host_key_public)
        );
        assert_eq!(text("etc/ssh/sshd_config.d/kvmx.conf"), SSHD_DROP_IN);
        assert_eq!(mode("home/dev/.ssh"), 0o700);
        assert_eq!(mode("home/dev/.ssh/authorized_keys"), 0o600);
        assert_eq!(
            text("home/dev/.ssh/authorized_keys"),
            format!("{}\n", input.authorized_keys.join("\n"))
        );
    }

    #[test]
    fn image_bootstrap_grub_gets_the_serial_console_and_keeps_the_root_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let at = |path: &str| dir.path().join(path);
        for folder in ["etc/default", "boot/grub", "bin"] {
            std::fs::create_dir_all(at(folder)).unwrap();
        }
        let uuid = "0f3c2a4e-1b2c-4d5e-8f90-123456789abc";
        std::fs::write(
            at("etc/fstab"),
            format!("/dev/disk/by-uuid/{uuid} / auto defaults 0 1\n"),
        )
        .unwrap();
        std::fs::write(
            at("etc/default/grub"),
            "GRUB_CMDLINE_LINUX=\"net.ifnames=0\"  # set by image-bootstrap\n",
        )
        .unwrap();
        // grub-mkconfig as the builder's chroot may run it: the root by
        // its device-mapper name.
        let stub = format!(
            "#!/bin/sh\n. {}\nprintf \"\\tset root='hd0,msdos1'\\n\\tlinux /vmlinuz root=/dev/mapper/loop0p1 ro %s\\n%s\\n\" \"$GRUB_CMDLINE_LINUX\" \"$GRUB_TERMINAL\" > \"$2\"\n",
            at("etc/default/grub").display()
        );
        std::fs::write(at("bin/grub-mkconfig"), stub).unwrap();
        run_sh(
            &format!("chmod +x {}", at("bin/grub-mkconfig").display()),
            &at("bin"),
            &[],
        );
        let snippet = GRUB_SERIAL
            .replace("/etc/", &format!("{}/etc/", dir.path().display()))
            .replace("/boot/", &format!("{}/boot/", dir.path().display()));
        run_sh(&snippet, &at("bin"), &[]);
        let cfg = std::fs::read_to_string(at("boot/grub/grub.cfg")).unwrap();
        assert_eq!(
            cfg,
            format!(
                "\tset root='hd0,msdos1'\n\tlinux /vmlinuz root=UUID={uuid} ro net.ifnames=0 {CONSOLE_ARGS}\nconsole serial\n"
            )
        );
    }

    #[test]
    fn image_bootstrap_secrets_of_the_guest_stay_in_files() {
        let input = input(Distribution::Debian);
        let plan = plan(&input);
        let key = plan
            .files
            .iter()
            .find(|f| f.path == "guest/ssh_host_ed25519_key")
            .unwrap();
        assert_eq!(key.mode, 0o600);
        assert_eq!(key.contents, input.host_key_private);
        let all_argv = plan.argv.join(" ");
        assert!(!all_argv.contains("PRIVATE KEY"));
        assert!(!plan.script.contains("PRIVATE KEY"));
        for file in &plan.files {
            if file.path != key.path {
                assert!(!file.contents.contains("PRIVATE KEY"), "{}", file.path);
            }
        }
    }

    #[test]
    fn image_bootstrap_arch_names_per_distribution() {
        let arch_of = |distribution, arch: &str| {
            let mut input = input(distribution);
            input.arch = arch.into();
            let argv = plan(&input).argv;
            let at = argv.iter().rposition(|w| w == "--arch").unwrap();
            argv[at + 1].clone()
        };
        assert_eq!(arch_of(Distribution::Debian, "amd64"), "amd64");
        assert_eq!(arch_of(Distribution::Arch, "amd64"), "x86_64");
        assert_eq!(arch_of(Distribution::Arch, "x86_64"), "x86_64");
        assert_eq!(arch_of(Distribution::Gentoo, "x86_64"), "amd64");
        assert_eq!(arch_of(Distribution::Gentoo, "amd64"), "amd64");
    }

    #[test]
    fn image_bootstrap_mirror_only_for_debian() {
        let mut debian = input(Distribution::Debian);
        debian.mirror = None;
        assert!(!plan(&debian).argv.iter().any(|w| w == "--mirror"));
        for distribution in [Distribution::Arch, Distribution::Gentoo] {
            let argv = plan(&input(distribution)).argv;
            assert!(!argv.iter().any(|w| w == "--mirror" || w == "--release"));
        }
    }

    /// A Python that imports image-bootstrap: a venv made as the builder's
    /// recipe makes it (its dependencies from Debian: scripts/install-deps),
    /// kept in the temporary folder per version.
    fn image_bootstrap_python() -> std::path::PathBuf {
        let version = PIP_REQUIREMENT.split("==").nth(1).unwrap();
        let venv = std::env::temp_dir().join(format!("kvmx-test-image-bootstrap-{version}"));
        let python = venv.join("bin/python3");
        if venv.join("bin/image-bootstrap").is_file() {
            return python;
        }
        let run = |program: &std::path::Path, args: &[&str]| {
            let status = std::process::Command::new(program)
                .args(args)
                .status()
                .unwrap();
            if !status.success() {
                let _ = std::fs::remove_dir_all(&venv);
                panic!("{program:?} {args:?}: {status}");
            }
        };
        let folder = venv.to_str().unwrap();
        // Debian's Python, as in the builder, whatever else is on PATH.
        run(
            "/usr/bin/python3".as_ref(),
            &["-m", "venv", "--system-site-packages", folder],
        );
        run(
            &venv.join("bin/pip"),
            &["install", "--quiet", "--no-deps", PIP_REQUIREMENT],
        );
        python
    }

    /// Parses each distribution's argv with image-bootstrap's own argparse
    /// code; nothing runs as root: its entry point is replaced by one that
    /// prints the parsed options.
    #[test]
    fn image_bootstrap_argv_is_accepted_by_its_argparse() {
        let python = image_bootstrap_python();
        const PARSE: &str = "\
import json, sys
import image_bootstrap.__main__ as main
from directory_bootstrap.shared.metadata import VERSION_STR
def show(function, messenger, options):
    values = vars(options).copy()
    values.pop('distro_class', None)
    values['version'] = VERSION_STR
    print(json.dumps(values, default=str))
main.run_handle_errors = show
sys.argv[0] = 'image-bootstrap'
main._main__level_two()
";
        for distribution in ALL {
            let plan = plan(&input(distribution));
            let output = std::process::Command::new(&python)
                .arg("-c")
                .arg(PARSE)
                .args(&plan.argv[1..])
                .arg("/dev/vdb")
                .output()
                .unwrap();
            assert!(output.status.success(), "{distribution:?}: {output:?}");
            let options: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            let expected_version = PIP_REQUIREMENT.split("==").nth(1).unwrap();
            assert_eq!(options["version"], expected_version);
            assert_eq!(options["hostname"], "web");
            assert_eq!(options["root_password_file"], PASSWORD_FILE);
            assert_eq!(options["root_password"], serde_json::Value::Null);
            assert_eq!(options["scripts_dir_chroot"], CHROOT_DIR);
            assert_eq!(options["scripts_dir_post"], POST_DIR);
            assert_eq!(options["bootloader_approach"], "chroot-grub2-drive");
            assert_eq!(options["color"], "never");
            assert_eq!(options["target_path"], "/dev/vdb");
            match distribution {
                Distribution::Debian => {
                    assert_eq!(options["architecture"], "amd64");
                    assert_eq!(options["release"], "bookworm");
                    assert_eq!(options["mirror_url"], "https://deb.debian.org/debian/");
                }
                Distribution::Arch => assert_eq!(options["architecture"], "x86_64"),
                Distribution::Gentoo => assert_eq!(options["architecture"], "amd64"),
            }
        }
    }
}
