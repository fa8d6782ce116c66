//! LVM and LUKS images: the plan of a disk with a small unencrypted
//! `/boot` partition and the rest a volume (LUKS2, LVM, or LVM inside
//! LUKS), the guest files that name its devices (fstab, crypttab, GRUB's
//! config) and the script that makes it as root inside the builder VM
//! ([`crate::builder`]).
//!
//! GRUB reads only `/boot`, so it needs no cryptodisk support; the kernel
//! and initrd links live there (`link_in_boot`), so kernel updates keep
//! working. The system's own initramfs, made when it was bootstrapped,
//! carries cryptsetup, lvm2 and the device-mapper modules (their packages'
//! hooks put them in); the kernel command line names the LUKS volume
//! (`cryptopts=`), so no initramfs is made in the builder, which under
//! emulation took longer than everything else there. It asks for the
//! passphrase on the serial console, where kvmx answers it.

use camino::Utf8Path;
use kvmx_core::config::{Create, Encryption, VolumeLayout};
use kvmx_core::process::shell_quote;

use crate::disk::random_uuid;
use crate::guest::{CONSOLE_CMDLINE, grub_cfg};
use crate::{Error, Result};

/// The size of `/boot`: room for three kernels and their initrds.
pub const BOOT_MIB: u64 = 256;

/// The mapping LUKS is opened as, in the builder and in the guest.
pub const CRYPT_NAME: &str = "kvmx_crypt";

/// Serial numbers of the builder's disks: the guest finds them as
/// `/dev/disk/by-id/virtio-<serial>`.
pub mod serials {
    /// The disk being made.
    pub const TARGET: &str = "kvmx-target";
    /// The bootstrapped tree, a tarball read as a disk.
    pub const ROOTFS: &str = "kvmx-rootfs";
    /// The VM's own files, a tarball read as a disk.
    pub const OVERLAY: &str = "kvmx-overlay";
}

/// GRUB's prefix on such a disk: its folder on the `/boot` partition.
pub const GRUB_PREFIX: &str = "(hd0,msdos1)/grub";

/// Packages the guest needs to open its volumes at boot.
pub fn packages(create: &Create) -> Vec<&'static str> {
    let mut packages = Vec::new();
    if create.layout == VolumeLayout::Lvm {
        packages.push("lvm2");
    }
    if create.encryption == Encryption::Luks {
        packages.extend(["cryptsetup", "cryptsetup-initramfs"]);
    }
    packages
}

/// A LUKS passphrase. It reaches the builder and the guest on standard
/// input or the serial console only, and `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<hidden>)")
    }
}

impl Passphrase {
    /// A passphrase typed by the user: one line, not empty.
    pub fn new(text: &str) -> Result<Self> {
        if text.is_empty() || text.contains(['\n', '\r', '\0']) {
            return Err(Error::Unsupported(
                "a LUKS passphrase is one line of text, not empty".into(),
            ));
        }
        Ok(Passphrase(text.to_owned()))
    }

    /// 32 random letters and digits (about 186 bits).
    pub fn random() -> Self {
        Passphrase(crate::password::random_text(32))
    }

    /// The passphrase file of a VM (see [`kvmx_core::layout::VmPaths::luks_passphrase_file`]).
    pub fn read(path: &Utf8Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
        Self::new(text.trim_end_matches('\n'))
    }

    /// Writes it to `path`, mode 0600.
    pub fn write(&self, path: &Utf8Path) -> Result<()> {
        crate::keys::write_private(path, format!("{}\n", self.0).as_bytes())
    }

    /// The text, for the one place that types it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An extra logical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    /// Its name.
    pub name: String,
    /// Its size in MiB.
    pub mib: u64,
    /// Where it is mounted.
    pub mount: String,
    /// Its file system's UUID.
    pub uuid: String,
}

/// Everything about one image's volumes, decided on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    /// Partitions or LVM.
    pub layout: VolumeLayout,
    /// LUKS or none.
    pub encryption: Encryption,
    /// The volume group.
    pub volume_group: String,
    /// UUID of the `/boot` file system.
    pub boot_uuid: String,
    /// UUID of the root file system.
    pub root_uuid: String,
    /// UUID of the LUKS header.
    pub luks_uuid: String,
    /// UUID of the swap volume.
    pub swap_uuid: String,
    /// The root volume's size in MiB; the rest when none.
    pub root_mib: Option<u64>,
    /// The swap volume's size in MiB.
    pub swap_mib: Option<u64>,
    /// More volumes.
    pub volumes: Vec<PlannedVolume>,
}

impl VolumePlan {
    /// The plan of `create`, with new UUIDs.
    pub fn new(create: &Create) -> Self {
        let lvm = &create.lvm;
        VolumePlan {
            layout: create.layout,
            encryption: create.encryption,
            volume_group: lvm.volume_group.to_string(),
            boot_uuid: random_uuid(),
            root_uuid: random_uuid(),
            luks_uuid: random_uuid(),
            swap_uuid: random_uuid(),
            root_mib: lvm.root_size.map(|s| s.bytes() >> 20),
            swap_mib: lvm.swap_size.map(|s| s.bytes() >> 20),
            volumes: lvm
                .volumes
                .iter()
                .map(|v| PlannedVolume {
                    name: v.name.to_string(),
                    mib: v.size.bytes() >> 20,
                    mount: v.mount.to_string(),
                    uuid: random_uuid(),
                })
                .collect(),
        }
    }

    fn lvm(&self) -> bool {
        self.layout == VolumeLayout::Lvm
    }

    fn luks(&self) -> bool {
        self.encryption == Encryption::Luks
    }

    /// The device of a logical volume, as device-mapper names it.
    fn lv_device(&self, name: &str) -> String {
        format!("/dev/mapper/{}-{name}", self.volume_group)
    }

    /// The root file system's device in the guest.
    pub fn root_device(&self) -> String {
        match (self.lvm(), self.luks()) {
            (true, _) => self.lv_device("root"),
            (false, true) => format!("/dev/mapper/{CRYPT_NAME}"),
            (false, false) => format!("UUID={}", self.root_uuid),
        }
    }

    /// The kernel command line. When encrypted, `cryptopts=` names the
    /// LUKS volume for the initramfs's cryptroot script (as a crypttab
    /// line would): the initramfs made with the system carries cryptsetup
    /// and lvm2 already, but no crypttab, and is used as it is.
    pub fn kernel_cmdline(&self) -> String {
        let mut cmdline = format!("root={} ro {CONSOLE_CMDLINE}", self.root_device());
        if self.luks() {
            cmdline.push_str(&format!(
                " cryptopts=target={CRYPT_NAME},source=UUID={},luks,discard",
                self.luks_uuid
            ));
        }
        cmdline
    }

    /// `/etc/fstab`.
    pub fn fstab(&self, discard: bool) -> String {
        let options = if discard {
            "errors=remount-ro,discard"
        } else {
            "errors=remount-ro"
        };
        let mut fstab = format!(
            "{}\t/\text4\t{options}\t0\t1\nUUID={}\t/boot\text4\tdefaults\t0\t2\n",
            self.root_device(),
            self.boot_uuid
        );
        if self.swap_mib.is_some() && self.lvm() {
            fstab.push_str(&format!("UUID={}\tnone\tswap\tsw\t0\t0\n", self.swap_uuid));
        }
        for volume in &self.volumes {
            fstab.push_str(&format!(
                "UUID={}\t{}\text4\tdefaults\t0\t2\n",
                volume.uuid, volume.mount
            ));
        }
        fstab
    }

    /// `/etc/crypttab`, when encrypted, for the initramfs the guest makes
    /// at kernel updates. `initramfs` makes the initramfs open it whatever
    /// the hook guesses about the root device.
    pub fn crypttab(&self) -> Option<String> {
        self.luks().then(|| {
            format!(
                "{CRYPT_NAME}\tUUID={}\tnone\tluks,discard,initramfs\n",
                self.luks_uuid
            )
        })
    }

    /// GRUB's config on the `/boot` partition: the kernel and initrd
    /// links there, no menu wait.
    pub fn grub_cfg(&self) -> String {
        grub_cfg(&self.boot_uuid, &self.kernel_cmdline())
    }

    /// The script run as root in the builder: partitions, LUKS, LVM, file
    /// systems, the tree and the VM's files unpacked and the kernel links
    /// moved to `/boot`. The passphrase, when
    /// encrypted, is the first line of its standard input: it is never on
    /// a command line or in the environment.
    pub fn script(&self) -> String {
        let q = shell_quote;
        let mut s = String::from(SCRIPT_HEAD);
        let main_type = if self.lvm() && !self.luks() {
            "8e"
        } else {
            "83"
        };
        s.push_str(&format!(
            "say partitioning\n\
             sfdisk --quiet --wipe always \"$disk\" <<EOF\n\
             label: dos\n\
             start=2048, size={}, type=83, bootable\n\
             type={main_type}\n\
             EOF\n\
             udevadm settle\n\
             boot=$disk-part1\n\
             main=$disk-part2\n\
             wait_for \"$boot\"\nwait_for \"$main\"\n",
            BOOT_MIB * 2048
        ));
        if self.luks() {
            s.push_str(&format!(
                "say 'encrypting (LUKS2)'\n\
                 IFS= read -r passphrase\n\
                 # The volume key, in memory only (/run) until the volume is open:\n\
                 # opened with it, the slow key derivation runs once, not twice.\n\
                 (umask 077 && head -c 64 /dev/urandom > /run/kvmx-volume-key)\n\
                 printf '%s' \"$passphrase\" | cryptsetup luksFormat --batch-mode --type luks2 \\\n\
                 \t--uuid {} --pbkdf argon2id --pbkdf-memory 131072 --iter-time 1000 \\\n\
                 \t--key-size 512 --volume-key-file=/run/kvmx-volume-key --key-file=- \"$main\"\n\
                 cryptsetup open --volume-key-file=/run/kvmx-volume-key \"$main\" {CRYPT_NAME}\n\
                 rm -f /run/kvmx-volume-key\n\
                 passphrase=\n\
                 main=/dev/mapper/{CRYPT_NAME}\n",
                q(&self.luks_uuid)
            ));
        }
        let root = if self.lvm() {
            let vg = q(&self.volume_group);
            s.push_str(&format!(
                "say 'making the volume group {vg}'\n\
                 pvcreate --quiet \"$main\"\n\
                 vgcreate --quiet {vg} \"$main\"\n"
            ));
            let fixed = self
                .swap_mib
                .map(|mib| ("swap".to_owned(), mib))
                .into_iter()
                .chain(self.volumes.iter().map(|v| (v.name.clone(), v.mib)));
            for (name, mib) in fixed {
                s.push_str(&format!(
                    "lvcreate --quiet --yes --name {} --size {mib}m {vg}\n",
                    q(&name)
                ));
            }
            let size = match self.root_mib {
                Some(mib) => format!("--size {mib}m"),
                None => "--extents 100%FREE".into(),
            };
            s.push_str(&format!(
                "lvcreate --quiet --yes --name root {size} {vg}\n\
                 udevadm settle\n"
            ));
            self.lv_device("root")
        } else {
            "$main".to_owned()
        };
        s.push_str(&format!(
            "say 'making the file systems'\n\
             mkext4 root {} \"{root}\"\n\
             mkext4 boot {} \"$boot\"\n",
            q(&self.root_uuid),
            q(&self.boot_uuid)
        ));
        if self.lvm() && self.swap_mib.is_some() {
            s.push_str(&format!(
                "mkswap --uuid {} {} >/dev/null\n",
                q(&self.swap_uuid),
                q(&self.lv_device("swap"))
            ));
        }
        for v in &self.volumes {
            s.push_str(&format!(
                "mkext4 {} {} {}\n",
                q(&v.name),
                q(&v.uuid),
                q(&self.lv_device(&v.name))
            ));
        }
        s.push_str(&format!(
            "mkdir -p /target\n\
             mount \"{root}\" /target\n\
             mkdir -p /target/boot\n\
             mount \"$boot\" /target/boot\n"
        ));
        for v in &self.volumes {
            s.push_str(&format!(
                "mkdir -p {target}\nmount {} {target}\n",
                q(&self.lv_device(&v.name)),
                target = q(&format!("/target{}", v.mount))
            ));
        }
        s.push_str(SCRIPT_TAIL);
        if self.lvm() {
            s.push_str(&format!(
                "vgchange --quiet --activate n {}\n",
                q(&self.volume_group)
            ));
        }
        if self.luks() {
            s.push_str(&format!("cryptsetup close {CRYPT_NAME}\n"));
        }
        s.push_str("say done\n");
        s
    }
}

/// The start of the builder script: helpers and the target disk.
const SCRIPT_HEAD: &str = r#"set -eu
start=$(date +%s)
say() { echo "== $* (at $(($(date +%s) - start))s)"; }
wait_for() {
    i=0
    while [ ! -b "$1" ]; do
        i=$((i + 1))
        [ "$i" -le 100 ] || { echo "$1 did not appear" >&2; exit 1; }
        sleep 0.1
    done
}
# GRUB 2.06 cannot read metadata_csum_seed or orphan_file.
mkext4() {
    mkfs.ext4 -q -F -L "$1" -U "$2" -O ^metadata_csum_seed,^orphan_file "$3"
}
disk=/dev/disk/by-id/virtio-kvmx-target
rootfs=/dev/disk/by-id/virtio-kvmx-rootfs
overlay=/dev/disk/by-id/virtio-kvmx-overlay
udevadm settle
wait_for "$disk"
"#;

/// The end of the builder script: the system unpacked, the kernel links
/// put on `/boot`, all synced and unmounted.
const SCRIPT_TAIL: &str = r#"say 'unpacking the system'
# tar works on one CPU and the builder has two: the kernel's modules, over
# half the tree, unpack beside the rest (18 s instead of 22 under TCG). The
# tarball is read twice, so with a large read-ahead (2 s less per read).
blockdev --setra 8192 "$rootfs"
tar -C /target --numeric-owner -xpf "$rootfs" --wildcards './usr/lib/modules/*' &
modules=$!
tar -C /target --numeric-owner -xpf "$rootfs" --exclude './usr/lib/modules/*'
wait "$modules"
tar -C /target --numeric-owner -xpf "$overlay"
# GRUB reads /boot only: the kernel's links live there (kernel-img.conf
# says link_in_boot, so kernel updates move them there too).
for link in vmlinuz initrd.img vmlinuz.old initrd.img.old; do
    if [ -L "/target/$link" ]; then
        ln -sfn "$(basename "$(readlink "/target/$link")")" "/target/boot/$link"
        rm "/target/$link"
    fi
done
sync
umount -R /target
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use kvmx_core::config::Create;

    fn create(text: &str) -> Create {
        toml::from_str(text).unwrap()
    }

    fn fixed(mut plan: VolumePlan) -> VolumePlan {
        plan.boot_uuid = "b0000000-0000-4000-8000-000000000001".into();
        plan.root_uuid = "r0000000-0000-4000-8000-000000000002".into();
        plan.luks_uuid = "c0000000-0000-4000-8000-000000000003".into();
        plan.swap_uuid = "s0000000-0000-4000-8000-000000000004".into();
        for (i, v) in plan.volumes.iter_mut().enumerate() {
            v.uuid = format!("v000000{i}-0000-4000-8000-000000000005");
        }
        plan
    }

    const LVM_LUKS: &str = r#"
        layout = "lvm"
        encryption = "luks"
        [lvm]
        swap_size = "512M"
        volumes = [{ name = "data", size = "1G", mount = "/srv/data" }]
    "#;

    #[test]
    fn lvm_in_luks_names_its_devices() {
        let plan = fixed(VolumePlan::new(&create(LVM_LUKS)));
        assert_eq!(plan.root_device(), "/dev/mapper/kvmx-root");
        insta::assert_snapshot!("lvm_luks_fstab", plan.fstab(true));
        assert_eq!(
            plan.crypttab().unwrap(),
            "kvmx_crypt\tUUID=c0000000-0000-4000-8000-000000000003\tnone\tluks,discard,initramfs\n"
        );
        insta::assert_snapshot!("lvm_luks_grub", plan.grub_cfg());
        insta::assert_snapshot!("lvm_luks_script", plan.script());
    }

    #[test]
    fn luks_without_lvm_roots_on_the_mapping() {
        let plan = fixed(VolumePlan::new(&create("encryption = \"luks\"")));
        assert_eq!(plan.root_device(), "/dev/mapper/kvmx_crypt");
        let script = plan.script();
        assert!(!script.contains("vgcreate"));
        assert!(script.contains("mkext4 root r0000000-0000-4000-8000-000000000002 \"$main\""));
        assert_eq!(
            packages(&create("encryption = \"luks\"")),
            ["cryptsetup", "cryptsetup-initramfs"]
        );
    }

    #[test]
    fn lvm_without_luks_has_no_crypttab_and_a_pv_partition() {
        let plan = fixed(VolumePlan::new(&create("layout = \"lvm\"")));
        assert!(plan.crypttab().is_none());
        let script = plan.script();
        assert!(script.contains("type=8e"));
        assert!(!script.contains("cryptsetup"));
        assert!(!script.contains("read -r"));
        assert!(script.contains("--extents 100%FREE"));
        assert_eq!(packages(&create("layout = \"lvm\"")), ["lvm2"]);
    }

    #[test]
    fn the_passphrase_is_read_from_standard_input_only() {
        let script = VolumePlan::new(&create(LVM_LUKS)).script();
        assert_eq!(script.matches("read -r passphrase").count(), 1);
        // Every use goes through the shell's own printf into a pipe.
        for line in script.lines().filter(|l| l.contains("$passphrase")) {
            assert!(
                line.starts_with("printf '%s' \"$passphrase\" | cryptsetup"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_script_is_valid_sh() {
        let script = VolumePlan::new(&create(LVM_LUKS)).script();
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
