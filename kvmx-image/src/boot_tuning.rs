//! What makes a kvmx guest boot fast, kept in the guest's own `/etc` so
//! that `apt upgrade` (kernel updates included) keeps it: an initramfs with
//! only the drivers of the VM's root disk (set up by [`crate::bootstrap`]),
//! and no units a headless VM does not need at boot (written by
//! [`crate::guest`]).
//!
//! Each choice was judged by `bench/boot.sh`; the generic kernel stays
//! (vmgenid is built in, 9p and virtiofs load from the root file system).

/// Written before the packages are installed (`$1` is the tree), so the
/// kernel's own postinst builds the small initramfs once. `MODULES=list`
/// takes only the modules named by `/etc/initramfs-tools/modules` and by
/// hooks; ours is a hook in the admin's folder, so the package's conffile
/// stays untouched. `MODULES=dep` cannot be used: it looks at the hardware
/// of the machine running mkinitramfs, here the bootstrap on the host.
pub const INITRAMFS_CONFIG: &str = r#"set -e
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
cat > "$1/etc/initramfs-tools/conf.d/kvmx" <<'EOF'
# A VM's initramfs needs only the drivers of its root disk (the hook
# kvmx-disk names them); there is no swap to resume from.
MODULES=list
RESUME=none
EOF
cat > "$1/etc/initramfs-tools/hooks/kvmx-disk" <<'EOF'
#!/bin/sh
# The drivers of a QEMU VM's root disk (virtio, SCSI or IDE) and of its
# file system, for MODULES=list.
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk virtio_scsi sd_mod ata_piix ahci ext4 crc32c_generic
EOF
chmod 0755 "$1/etc/initramfs-tools/hooks/kvmx-disk"
"#;

/// Units a headless QEMU VM does not need at boot, masked in the image
/// (links to `/dev/null` in `/etc/systemd/system`, which `systemctl
/// unmask` removes). Under TCG with one CPU every unit started costs boot
/// time, parallel or not.
pub const MASKED_UNITS: &[&str] = &[
    // No EFI pstore on a BIOS VM.
    "systemd-pstore.service",
    "modprobe@efi_pstore.service",
    // Early module loads that udev, dmsetup or a mount do on demand.
    "modprobe@drm.service",
    "modprobe@dm_mod.service",
    "modprobe@loop.service",
    "modprobe@fuse.service",
    "modprobe@configfs.service",
    // Debug file systems, mountable by hand.
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    // Network config from `ip=` on the kernel command line: kvmx writes
    // networkd's files itself.
    "systemd-network-generator.service",
    // Persistent timers that run apt soon after a boot that missed their
    // time, taking the CPU of a just-booted guest; `kvmx upgrade` upgrades.
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
];

/// Modules the kernel would load at boot for devices and CPU features a
/// kvmx VM has but does not use, written to `/etc/modprobe.d`. `blacklist`
/// stops only the automatic load by alias (udev's coldplug, networkd's
/// nl80211 lookup), so `modprobe NAME` still loads one by hand. Under TCG
/// their loading and init took about 5 s of the boot to SSH: networkd
/// waited on cfg80211's certificates and regulatory lookup, and `-cpu max`
/// shows SVM, which pulls in kvm_amd, kvm and ccp (nested guests under
/// emulation are not worth their boot cost).
pub const MODPROBE_BLACKLIST: &str = "\
# Written by kvmx: devices a VM has but does not use. `modprobe NAME` still
# loads one of these by hand.
blacklist cfg80211
blacklist floppy
blacklist pcspkr
blacklist i2c_piix4
blacklist kvm_amd
blacklist kvm_intel
";

/// A drop-in for `ssh.service`: no `sshd -t` config check before the
/// start (one sshd run less on the way to the first login; a bad config
/// still fails the start).
pub const SSH_DROP_IN: &str = "[Service]\nExecStartPre=\n";
