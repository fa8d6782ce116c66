//! Rules that a single value's type cannot check: ranges, and values that
//! only make sense together.

use std::collections::BTreeSet;

use super::model::{
    Bootloader, Config, Distribution, Encryption, ImageFormat, ImageType, Lvm, Method, NetworkMode,
    PassphraseSource, ShareKind, VolumeLayout,
};

/// A broken rule, with the key path it is about (table keys and array
/// indices), so the caller can point at the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Keys from the top, e.g. `["shares", "1", "id"]`.
    pub path: Vec<String>,
    /// What is wrong and what is allowed.
    pub message: String,
    /// What to do, when the message does not say it.
    pub hint: Option<String>,
}

fn problem(path: &[&str], message: String) -> Problem {
    Problem {
        path: path.iter().map(|s| s.to_string()).collect(),
        message,
        hint: None,
    }
}

/// Checks the rules; returns every broken one, first in file order of
/// sections.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_hardware(config, &mut problems);
    check_image(config, &mut problems);
    check_create(config, &mut problems);
    check_builder(config, &mut problems);
    check_network(config, &mut problems);
    check_ssh(config, &mut problems);
    check_shares(config, &mut problems);
    check_disposable(config, &mut problems);
    check_install(config, &mut problems);
    problems
}

fn check_hardware(config: &Config, problems: &mut Vec<Problem>) {
    let hardware = &config.hardware;
    if !(1..=255).contains(&hardware.cpus) {
        problems.push(problem(
            &["hardware", "cpus"],
            format!("cpus = {} is out of range: use 1 to 255", hardware.cpus),
        ));
    }
    if hardware.usb > 3 {
        problems.push(problem(
            &["hardware", "usb"],
            format!(
                "usb = {} is not a USB level: use 0 (none), 1, 2 or 3",
                hardware.usb
            ),
        ));
    }
    if hardware.machine.trim().is_empty() {
        problems.push(problem(
            &["hardware", "machine"],
            "machine is empty: name a QEMU machine type such as \"pc\" or \"q35\"".into(),
        ));
    }
    for (key, value) in [
        ("boot_timeout", config.supervise.boot_timeout),
        ("shutdown_timeout", config.supervise.shutdown_timeout),
    ] {
        if value == 0 {
            problems.push(problem(
                &["supervise", key],
                format!("{key} = 0 leaves no time: give a number of seconds"),
            ));
        }
    }
    if hardware.memory.as_mib() < 64 {
        problems.push(problem(
            &["hardware", "memory"],
            format!(
                "memory = \"{}\" is too small: a guest needs at least 64M",
                hardware.memory
            ),
        ));
    }
}

fn check_image(config: &Config, problems: &mut Vec<Problem>) {
    let image = &config.image;
    if image.backing && image.base.is_none() {
        problems.push(problem(
            &["image", "backing"],
            "backing = true needs a base image: set image.base to the VM to build on".into(),
        ));
    }
    if image.backing && image.format != ImageFormat::Qcow2 {
        problems.push(problem(
            &["image", "format"],
            "an image with a backing file must be qcow2: set format = \"qcow2\"".into(),
        ));
    }
    if let Some(template) = &config.template.name {
        if image.base.is_some() {
            problems.push(problem(
                &["template", "name"],
                "a VM runs from a template or from a base box, not both: remove template.name or image.base".into(),
            ));
        }
        if config.vm.name.as_ref() == Some(template) {
            problems.push(problem(
                &["template", "name"],
                format!("{template} cannot be its own template: name another VM"),
            ));
        }
    }
    if config.network.restrict && config.network.mode != NetworkMode::User {
        problems.push(problem(
            &["network", "restrict"],
            "restrict = true applies to user networking: set mode = \"user\" or remove it".into(),
        ));
    }
    if image.recreate_overlay && !image.backing {
        problems.push(problem(
            &["image", "recreate_overlay"],
            "recreate_overlay = true needs backing = true: only an overlay can be re-created"
                .into(),
        ));
    }
}

fn check_create(config: &Config, problems: &mut Vec<Problem>) {
    let create = &config.create;
    let is_word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !is_word(&create.suite) {
        problems.push(problem(
            &["create", "suite"],
            format!(
                "suite \"{}\" is not a release name: use a codename such as \"bookworm\"",
                create.suite
            ),
        ));
    }
    if !is_word(&create.arch) {
        problems.push(problem(
            &["create", "arch"],
            format!(
                "arch \"{}\" is not an architecture name such as \"amd64\"",
                create.arch
            ),
        ));
    }
    let schemes = ["http://", "https://", "file://"];
    if !schemes.iter().any(|s| create.mirror.starts_with(s)) {
        problems.push(problem(
            &["create", "mirror"],
            format!(
                "mirror \"{}\" is not a URL: use http://, https:// or file://",
                create.mirror
            ),
        ));
    }
    if create.compression && config.image.format != ImageFormat::Qcow2 {
        problems.push(problem(
            &["create", "compression"],
            "compression works with qcow2 images only: set image.format = \"qcow2\" or drop it"
                .into(),
        ));
    }
}

/// The small unencrypted `/boot` of builder layouts, and room for the
/// partition table and LVM's metadata.
const BOOT_AND_METADATA: u64 = 320 * 1024 * 1024;

/// Rules of the images made in a builder VM: LVM, LUKS, image-bootstrap.
fn check_builder(config: &Config, problems: &mut Vec<Problem>) {
    let create = &config.create;
    if create.distribution != Distribution::Debian && create.method != Method::ImageBootstrap {
        problems.push(problem(
            &["create", "distribution"],
            "only image-bootstrap installs a distribution other than Debian: set create.method = \"image-bootstrap\"".into(),
        ));
    }
    if create.method == Method::ImageBootstrap
        && (create.layout != VolumeLayout::Plain || create.encryption != Encryption::None)
    {
        problems.push(problem(
            &["create", "method"],
            "image-bootstrap partitions the disk itself: use it with layout = \"plain\" and encryption = \"none\", or use method = \"mmdebstrap\" for LVM and LUKS".into(),
        ));
    }
    if create.encryption == Encryption::None && create.passphrase != PassphraseSource::File {
        problems.push(problem(
            &["create", "passphrase"],
            "passphrase is used only with encryption = \"luks\"".into(),
        ));
    }
    if create.layout == VolumeLayout::Plain && create.lvm != Lvm::default() {
        problems.push(problem(
            &["create", "lvm"],
            "[create.lvm] is used only with layout = \"lvm\"".into(),
        ));
    }
    if !create.needs_builder() {
        return;
    }
    if create.bootloader != Bootloader::Grub {
        problems.push(problem(
            &["create", "bootloader"],
            "images made in a builder VM (LVM, LUKS, image-bootstrap) boot with GRUB: set bootloader = \"grub\"".into(),
        ));
    }
    if create.image_type != ImageType::File {
        problems.push(problem(
            &["create", "image_type"],
            "images made in a builder VM (LVM, LUKS, image-bootstrap) are files: set image_type = \"file\"".into(),
        ));
    }
    let lvm = &create.lvm;
    let mut names = BTreeSet::new();
    let mut mounts = BTreeSet::new();
    for (index, volume) in lvm.volumes.iter().enumerate() {
        let index = index.to_string();
        let name = volume.name.as_str();
        if ["root", "swap"].contains(&name) || !names.insert(name) {
            problems.push(problem(
                &["create", "lvm", "volumes", &index, "name"],
                format!(
                    "the volume name \"{name}\" is taken: root, swap and each volume need their own"
                ),
            ));
        }
        let mount = volume.mount.as_path().as_str();
        if ["/", "/boot"].contains(&mount) || !mounts.insert(mount) {
            problems.push(problem(
                &["create", "lvm", "volumes", &index, "mount"],
                format!(
                    "{mount} is mounted already: give each volume its own folder, not / or /boot"
                ),
            ));
        }
    }
    let fixed: u64 = [lvm.root_size, lvm.swap_size]
        .into_iter()
        .flatten()
        .chain(lvm.volumes.iter().map(|v| v.size))
        .map(|size| size.bytes())
        .sum();
    let room = config.image.size.bytes().saturating_sub(BOOT_AND_METADATA);
    if create.layout == VolumeLayout::Lvm && fixed >= room {
        problems.push(problem(
            &["create", "lvm"],
            format!(
                "the volumes need {} MiB but the image (image.size) leaves {} MiB after /boot: make the image larger or the volumes smaller",
                fixed >> 20,
                room >> 20
            ),
        ));
    }
}

fn check_network(config: &Config, problems: &mut Vec<Problem>) {
    let network = &config.network;
    if network.mode != NetworkMode::Tap {
        for key in ["address", "netmask", "gateway"] {
            let set = match key {
                "address" => network.address.is_some(),
                "netmask" => network.netmask.is_some(),
                _ => network.gateway.is_some(),
            };
            if set {
                problems.push(problem(
                    &["network", key],
                    format!("{key} applies to mode = \"tap\" only; user networking uses DHCP"),
                ));
            }
        }
    }
    if network.mode != NetworkMode::User && !network.forwards.is_empty() {
        problems.push(problem(
            &["network", "forwards"],
            "port forwards need mode = \"user\"".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for (index, forward) in network.forwards.iter().enumerate() {
        if !seen.insert((forward.address, forward.protocol, forward.host)) {
            problems.push(problem(
                &["network", "forwards", &index.to_string()],
                format!(
                    "host port {} is forwarded twice: each host port can go to one guest port",
                    forward.host
                ),
            ));
        }
    }
}

fn check_ssh(config: &Config, problems: &mut Vec<Problem>) {
    for name in config.ssh.env.keys() {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            problems.push(problem(
                &["ssh", "env", name],
                format!(
                    "\"{name}\" is not an environment variable name: use letters, digits and '_'"
                ),
            ));
        }
    }
}

fn check_shares(config: &Config, problems: &mut Vec<Problem>) {
    let smb: Vec<usize> = (0..config.shares.len())
        .filter(|i| config.shares[*i].kind == Some(ShareKind::Smb))
        .collect();
    if let Some(second) = smb.get(1) {
        problems.push(problem(
            &["shares", &second.to_string(), "kind"],
            "only one share can be of kind \"smb\": QEMU serves one SMB folder per VM".into(),
        ));
    }
    if let Some(first) = smb.first()
        && config.network.mode != NetworkMode::User
    {
        problems.push(problem(
            &["shares", &first.to_string(), "kind"],
            "an \"smb\" share needs network.mode = \"user\" (QEMU's own SMB server)".into(),
        ));
    }
    let mut ids = BTreeSet::new();
    let mut guests = BTreeSet::new();
    for (index, share) in config.shares.iter().enumerate() {
        let index = index.to_string();
        if !ids.insert(share.id.as_str()) {
            problems.push(problem(
                &["shares", &index, "id"],
                format!(
                    "share id \"{}\" is used twice: give each share its own id",
                    share.id
                ),
            ));
        }
        if !guests.insert(share.guest.as_path()) {
            problems.push(problem(
                &["shares", &index, "guest"],
                format!(
                    "two shares are mounted at {} in the guest: give each its own folder",
                    share.guest
                ),
            ));
        }
        if share.msize.is_some_and(|m| m < 4096) {
            problems.push(problem(
                &["shares", &index, "msize"],
                "msize must be at least 4096 bytes".into(),
            ));
        }
    }
}

fn check_disposable(config: &Config, problems: &mut Vec<Problem>) {
    if config
        .disposable
        .clamav_database
        .as_ref()
        .is_some_and(|path| path.as_str().is_empty())
    {
        problems.push(problem(
            &["disposable", "clamav_database"],
            "clamav_database is empty: name a host folder of ClamAV signatures, or leave it out to use the template's own".into(),
        ));
    }
}

/// Rules of `create.method = "install"` and the `[install]` table.
fn check_install(config: &Config, problems: &mut Vec<Problem>) {
    let install = &config.install;
    if install.timeout == 0 {
        problems.push(problem(
            &["install", "timeout"],
            "timeout = 0 leaves the installer no time: give a number of seconds".into(),
        ));
    }
    if install
        .iso
        .as_ref()
        .is_some_and(|iso| iso.as_str().is_empty())
    {
        problems.push(problem(
            &["install", "iso"],
            "iso is empty: name an installer ISO, or leave it out for Debian's netboot installer"
                .into(),
        ));
    }
    for (key, value) in [
        ("locale", &install.locale),
        ("keyboard", &install.keyboard),
        ("timezone", &install.timezone),
    ] {
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            problems.push(problem(
                &["install", key],
                format!("{key} = {value:?} is not a single word such as the default's"),
            ));
        }
    }
    let create = &config.create;
    if create.method != Method::Install {
        return;
    }
    if create.bootloader != Bootloader::Grub {
        problems.push(problem(
            &["create", "bootloader"],
            "an installed system boots with its own bootloader: set bootloader = \"grub\" with method = \"install\"".into(),
        ));
    }
    if create.image_type != ImageType::File {
        problems.push(problem(
            &["create", "image_type"],
            "the installer writes an image file: set image_type = \"file\" with method = \"install\"".into(),
        ));
    }
    let lvm = &create.lvm;
    if lvm.root_size.is_some() || lvm.swap_size.is_some() || !lvm.volumes.is_empty() {
        problems.push(problem(
            &["create", "lvm"],
            "the Debian installer sizes its volumes itself: with method = \"install\", [create.lvm] takes only volume_group".into(),
        ));
    }
    if create.passphrase == PassphraseSource::Ask && create.encryption == Encryption::Luks {
        problems.push(problem(
            &["create", "passphrase"],
            "the Debian installer needs the passphrase when it starts: use passphrase = \"file\" with method = \"install\"".into(),
        ));
    }
}
