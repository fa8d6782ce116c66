//! The answers that make Debian's installer run unattended: a preseed
//! made from `kvmx.toml`, and the files that go beside it into the
//! installer's initrd (a script for the end of the install, the user's
//! keys and the guest's host key). Pure functions: what goes into the
//! initrd is [`initrd_files`], made by [`crate::cpio::newc`] into an
//! archive appended to a copy of the installer's initrd.

use kvmx_core::config::{Config, Encryption, VolumeLayout};
use kvmx_core::process::shell_quote;

use crate::image_bootstrap::{PlanFile, TRUST_BODY, trust_files};
use crate::overlay::Overlay;

/// The line the end-of-install script prints on the serial console when
/// everything it had to do is done; an install that powers off without
/// it did not finish.
pub const DONE_MARKER: &str = "kvmx-install: done";

/// The line it prints when one of its commands failed (the installer
/// then shows an error and waits for an answer that never comes).
pub const FAILED_MARKER: &str = "kvmx-install: failed";

/// Where the files for the installed system live in the initrd.
const FILES_DIR: &str = "kvmx";

/// Packages every installed guest gets beside `create.packages`.
pub const BASE_PACKAGES: &[&str] = &["openssh-server", "sudo", "qemu-guest-agent"];

/// The installer's kernel command line: no questions (answers come from
/// `/preseed.cfg` in the initrd, which the installer reads by itself),
/// the serial console, and the plain text interface, whose progress
/// lines can be read from the console log.
pub const KERNEL_ARGS: &str =
    "auto=true priority=critical console=ttyS0,115200n8 DEBIAN_FRONTEND=text";

/// What the preseed is made from besides the config.
#[derive(Debug, Clone)]
pub struct PreseedInput<'a> {
    /// The VM's resolved config.
    pub config: &'a Config,
    /// The guest's host name.
    pub hostname: String,
    /// The user's password as a crypt hash; `None`: locked.
    pub password_hash: Option<String>,
    /// The user's uid and the gid of its group (the host user's).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Keys authorized for the user, one line each.
    pub authorized_keys: Vec<String>,
    /// The guest's ed25519 host key, OpenSSH format.
    pub host_key_private: String,
    /// Its public line.
    pub host_key_public: String,
    /// The LUKS passphrase, with `create.encryption = "luks"`.
    pub passphrase: Option<&'a str>,
}

/// A mirror URL as the installer's questions take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `http` or `https`.
    pub protocol: String,
    /// Host name, with `:port` when given.
    pub host: String,
    /// The archive's folder, starting with `/`.
    pub directory: String,
}

/// Splits `url` (`http://host[:port]/dir/`) for `mirror/<protocol>/*`; a
/// URL without a scheme is taken as http.
pub fn split_mirror(url: &str) -> Mirror {
    let (protocol, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), url),
    };
    let (host, directory) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let directory = match directory.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    };
    Mirror {
        protocol,
        host: host.to_owned(),
        directory,
    }
}

/// The preseed file for `input`.
pub fn preseed(input: &PreseedInput<'_>) -> String {
    let config = input.config;
    let create = &config.create;
    let install = &config.install;
    let mirror = split_mirror(&create.mirror);
    let protocol = &mirror.protocol;
    let domain = config.vm.domain.as_ref().map(ToString::to_string);
    let user = config.vm.user.to_string();
    let mut out = String::from(HEAD);
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };

    line("\n### Locale, keyboard, network".into());
    line(format!(
        "d-i debian-installer/locale string {}",
        install.locale
    ));
    line(format!(
        "d-i keyboard-configuration/xkb-keymap select {}",
        install.keyboard
    ));
    line("d-i netcfg/choose_interface select auto".into());
    line(format!("d-i netcfg/get_hostname string {}", input.hostname));
    line(format!("d-i netcfg/hostname string {}", input.hostname));
    line(format!(
        "d-i netcfg/get_domain string {}",
        domain.as_deref().unwrap_or_default()
    ));
    line("d-i hw-detect/load_firmware boolean false".into());

    line("\n### Mirror".into());
    line("d-i mirror/country string manual".into());
    line(format!("d-i mirror/protocol string {protocol}"));
    line(format!(
        "d-i mirror/{protocol}/hostname string {}",
        mirror.host
    ));
    line(format!(
        "d-i mirror/{protocol}/directory string {}",
        mirror.directory
    ));
    line(format!("d-i mirror/{protocol}/proxy string"));
    line(format!("d-i mirror/suite string {}", create.suite));
    line(format!("d-i mirror/codename string {}", create.suite));

    line("\n### The user: sudo, no root password".into());
    line("d-i passwd/root-login boolean false".into());
    line("d-i passwd/make-user boolean true".into());
    line("d-i passwd/user-fullname string".into());
    line(format!("d-i passwd/username string {user}"));
    line(format!("d-i passwd/user-uid string {}", input.uid));
    // `!` locks the password: keys only.
    line(format!(
        "d-i passwd/user-password-crypted password {}",
        input.password_hash.as_deref().unwrap_or("!")
    ));

    line("\n### Clock".into());
    line("d-i clock-setup/utc boolean true".into());
    line(format!("d-i time/zone string {}", install.timezone));
    line("d-i clock-setup/ntp boolean false".into());

    line("\n### Disk".into());
    line(partitioning(input));

    line("\n### Packages".into());
    line("d-i base-installer/install-recommends boolean false".into());
    let kernel = create
        .packages
        .iter()
        .map(ToString::to_string)
        .find(|p| p.starts_with("linux-image-"));
    if let Some(kernel) = &kernel {
        line(format!("d-i base-installer/kernel/image string {kernel}"));
    }
    line("d-i apt-setup/non-free-firmware boolean false".into());
    line("d-i apt-setup/non-free boolean false".into());
    line("d-i apt-setup/contrib boolean false".into());
    line("d-i apt-setup/cdrom/set-first boolean false".into());
    line("d-i apt-setup/services-select multiselect security, updates".into());
    line(format!(
        "d-i apt-setup/security_host string {}",
        mirror.host
    ));
    line(format!(
        "d-i apt-setup/security_path string {}-security",
        mirror.directory.trim_end_matches('/')
    ));
    // No task: the base system, then the packages below.
    line("tasksel tasksel/first multiselect".into());
    let packages: Vec<String> = BASE_PACKAGES
        .iter()
        .map(|p| (*p).to_owned())
        .chain(
            create
                .packages
                .iter()
                .map(ToString::to_string)
                .filter(|p| Some(p) != kernel.as_ref()),
        )
        .collect();
    line(format!("d-i pkgsel/include string {}", packages.join(" ")));
    line("d-i pkgsel/upgrade select none".into());
    line("d-i pkgsel/update-policy select none".into());
    line("popularity-contest popularity-contest/participate boolean false".into());

    line("\n### Boot: GRUB on the disk, consoles on the serial port too".into());
    line("d-i grub-installer/only_debian boolean true".into());
    line("d-i grub-installer/with_other_os boolean false".into());
    line("d-i grub-installer/bootdev string /dev/vda".into());
    line(format!(
        "d-i debian-installer/add-kernel-opts string {}",
        crate::guest::CONSOLE_CMDLINE
    ));

    line("\n### The end: kvmx's files, then power off".into());
    line(format!(
        "d-i preseed/late_command string sh /{FILES_DIR}/late.sh"
    ));
    line("d-i finish-install/reboot_in_progress note".into());
    line("d-i debian-installer/exit/poweroff boolean true".into());
    out
}

const HEAD: &str = "\
# Debian installer preseed made by kvmx from kvmx.toml. It lives only in
# the installer's initrd, made in a private folder and removed after the
# install.
";

/// The disk layout: one root partition (regular), LVM, or LVM inside
/// LUKS (the installer's crypto recipe always puts LVM inside).
fn partitioning(input: &PreseedInput<'_>) -> String {
    let create = &input.config.create;
    let method = match (create.layout, create.encryption) {
        (_, Encryption::Luks) => "crypto",
        (VolumeLayout::Lvm, Encryption::None) => "lvm",
        (VolumeLayout::Plain, Encryption::None) => "regular",
    };
    let mut lines = vec![
        "d-i partman-auto/disk string /dev/vda".to_owned(),
        format!("d-i partman-auto/method string {method}"),
        "d-i partman-auto/choose_recipe select atomic".into(),
    ];
    if method != "regular" {
        lines.extend([
            format!(
                "d-i partman-auto-lvm/new_vg_name string {}",
                create.lvm.volume_group
            ),
            "d-i partman-auto-lvm/guided_size string max".into(),
            "d-i partman-lvm/device_remove_lvm boolean true".into(),
            "d-i partman-md/device_remove_md boolean true".into(),
            "d-i partman-lvm/confirm boolean true".into(),
            "d-i partman-lvm/confirm_nooverwrite boolean true".into(),
        ]);
    }
    if method == "crypto" {
        let passphrase = input.passphrase.unwrap_or_default();
        lines.extend([
            format!("d-i partman-crypto/passphrase password {passphrase}"),
            format!("d-i partman-crypto/passphrase-again password {passphrase}"),
            "d-i partman-crypto/weak_passphrase boolean true".into(),
            // Filling the disk with random data first takes hours under
            // emulation; a new image file holds no old data to hide.
            "d-i partman-auto-crypto/erase_disks boolean false".into(),
            "d-i partman-crypto/erase_data boolean false".into(),
        ]);
    }
    lines.extend([
        "d-i partman-partitioning/confirm_write_new_label boolean true".into(),
        "d-i partman/choose_partition select finish".into(),
        "d-i partman/confirm boolean true".into(),
        "d-i partman/confirm_nooverwrite boolean true".into(),
        "d-i partman-basicfilesystems/no_swap boolean false".into(),
    ]);
    lines.join("\n")
}

/// The script run by `preseed/late_command` (by the installer's shell,
/// with the new system mounted at `/target`): it copies kvmx's files into
/// the new system and runs [`setup_script`] there, then prints
/// [`DONE_MARKER`] on the serial console. On a failure it prints
/// [`FAILED_MARKER`] with the status instead.
pub fn late_script() -> String {
    format!(
        r#"#!/bin/sh
# kvmx: run by the Debian installer's preseed/late_command.
set -eu
trap 'status=$?; if [ "$status" -ne 0 ]; then echo "{FAILED_MARKER} (status $status)" > /dev/ttyS0; fi' EXIT
rm -rf /target{SETUP_DIR}
mkdir -p /target{SETUP_DIR}
chmod 0700 /target{SETUP_DIR}
cp -a /{FILES_DIR}/. /target{SETUP_DIR}/
chroot /target sh {SETUP_DIR}/setup.sh
rm -rf /target{SETUP_DIR}
sync
echo "{DONE_MARKER}" > /dev/ttyS0
"#
    )
}

/// Where [`late_script`] puts kvmx's files in the new system while
/// [`setup_script`] runs: root's home, which no one else may read.
const SETUP_DIR: &str = "/root/kvmx-install";

/// The script run in the new system: the user's group gets the host
/// user's gid, sudo without a password, the user's keys, the host key
/// kvmx recorded and sshd's drop-in.
pub fn setup_script(input: &PreseedInput<'_>) -> String {
    format!(
        "#!/bin/sh\n# kvmx: run in the new system at the end of the install.\nset -eu\nfrom={SETUP_DIR}\nroot=\nuser={}\nuid={}\ngid={}\n{SETUP_USER}{TRUST_BODY}",
        shell_quote(input.config.vm.user.as_str()),
        input.uid,
        input.gid,
    )
}

const SETUP_USER: &str = r#"# The user's group takes the host user's gid when it is free (the
# installer chose the first free one), and sudo needs no password.
group=$(id -gn "$user")
if [ "$(id -g "$user")" != "$gid" ] && ! getent group "$gid" > /dev/null; then
    groupmod --gid "$gid" "$group"
    chown -R "$user:$group" "/home/$user"
fi
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > /etc/sudoers.d/90-kvmx
chmod 0440 /etc/sudoers.d/90-kvmx
"#;

/// Everything the initrd gets: `/preseed.cfg` and the folder of
/// [`late_script`] with the files it copies, all readable by root alone.
pub fn initrd_files(input: &PreseedInput<'_>) -> Overlay {
    let mut overlay = Overlay::new();
    overlay.file("preseed.cfg", 0o600, preseed(input));
    overlay.dir(FILES_DIR, 0o700, 0, 0);
    overlay.file(&format!("{FILES_DIR}/late.sh"), 0o700, late_script());
    overlay.file(&format!("{FILES_DIR}/setup.sh"), 0o700, setup_script(input));
    let trust: Vec<PlanFile> = trust_files(
        FILES_DIR,
        &input.authorized_keys,
        &input.host_key_private,
        &input.host_key_public,
    );
    for file in trust {
        overlay.file(&file.path, file.mode, file.contents);
    }
    overlay
}

#[cfg(test)]
mod tests;
