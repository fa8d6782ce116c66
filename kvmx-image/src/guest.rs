//! The files that make a bootstrapped tree one VM's system: host name,
//! `/etc/hosts`, fstab, network and DNS, the first user with sudo, its
//! password and keys, sshd with the host key made on the host, and GRUB's
//! config and modules.

use std::net::Ipv4Addr;

use camino::Utf8Path;
use kvmx_core::config::values::Dns;
use kvmx_core::config::{Bootloader, Network, NetworkMode};

use crate::accounts::{Accounts, AddedUser, NewUser};
use crate::boot_tuning;
use crate::keys::HostKey;
use crate::overlay::Overlay;
use crate::rootfs::Rootfs;
use crate::volumes::VolumePlan;
use crate::{Error, Result};

/// Everything that is particular to one VM's guest.
#[derive(Debug, Clone)]
pub struct GuestSetup {
    /// Host name.
    pub hostname: String,
    /// DNS domain.
    pub domain: Option<String>,
    /// The first user.
    pub user: String,
    /// The uid and gid to give it when the guest can: the host user's, so
    /// that it may write into the host user's shared folders.
    pub user_ids: Option<(u32, u32)>,
    /// Its password hash (`None`: locked).
    pub password_hash: Option<String>,
    /// Public keys authorized for the user.
    pub authorized_keys: Vec<String>,
    /// The guest's SSH host key.
    pub host_key: HostKey,
    /// UUID of the root file system.
    pub root_uuid: String,
    /// Mount the root file system with online discard.
    pub discard: bool,
    /// How the image boots.
    pub bootloader: Bootloader,
    /// Its network settings.
    pub network: GuestNetwork,
    /// LVM or LUKS volumes (made in the builder VM), or one root partition.
    pub volumes: Option<VolumePlan>,
}

/// The guest's network settings that are written into its image.
#[derive(Debug, Clone)]
pub struct GuestNetwork {
    /// Network mode.
    pub mode: NetworkMode,
    /// Static address (tap).
    pub address: Option<Ipv4Addr>,
    /// Its netmask.
    pub netmask: Option<Ipv4Addr>,
    /// Its gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Name servers.
    pub dns: Option<Dns>,
}

impl From<&Network> for GuestNetwork {
    fn from(network: &Network) -> Self {
        Self {
            mode: network.mode,
            address: network.address,
            netmask: network.netmask,
            gateway: network.gateway,
            dns: network.dns.clone(),
        }
    }
}

/// systemd-networkd's file for the guest's network card (DHCP, or the
/// static address in tap mode) and its name servers: resolved's drop-in,
/// or the host's `/etc/resolv.conf`.
pub(crate) fn network_files(overlay: &mut Overlay, net: &GuestNetwork) -> Result<()> {
    let mut network = String::from("[Match]\nType=ether\n\n[Network]\n");
    match (net.mode, net.address) {
        (NetworkMode::Tap, Some(address)) => {
            let netmask = net.netmask.unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
            let prefix = u32::from(netmask).leading_ones();
            network.push_str(&format!("Address={address}/{prefix}\n"));
            if let Some(gateway) = net.gateway {
                network.push_str(&format!("Gateway={gateway}\n"));
            }
        }
        _ => network.push_str("DHCP=yes\n"),
    }
    overlay.file("etc/systemd/network/80-kvmx.network", 0o644, network);
    match &net.dns {
        None => {}
        Some(Dns::Servers(servers)) => {
            let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
            overlay.dir("etc/systemd/resolved.conf.d", 0o755, 0, 0);
            overlay.file(
                "etc/systemd/resolved.conf.d/kvmx.conf",
                0o644,
                format!("[Resolve]\nDNS={}\n", list.join(" ")),
            );
        }
        Some(Dns::Host) => {
            let text =
                std::fs::read("/etc/resolv.conf").map_err(Error::io("read", "/etc/resolv.conf"))?;
            overlay.file("etc/resolv.conf", 0o644, text);
        }
    }
    Ok(())
}

/// The modules a VM does not load at boot ([`boot_tuning::MODPROBE_BLACKLIST`]).
pub(crate) fn module_blacklist(overlay: &mut Overlay) {
    overlay.file(
        "etc/modprobe.d/kvmx-vm.conf",
        0o644,
        boot_tuning::MODPROBE_BLACKLIST,
    );
}

/// The kernel command line: root by UUID, console on the serial port.
pub fn kernel_cmdline(root_uuid: &str) -> String {
    format!("root=UUID={root_uuid} ro {CONSOLE_CMDLINE}")
}

/// GRUB's config: one entry, no menu wait, GRUB's terminal on the serial
/// port too; the kernel and initrd are the links at the top of the file
/// system `uuid`.
pub fn grub_cfg(uuid: &str, cmdline: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout=0\n\
         set default=0\n\
         menuentry 'Debian GNU/Linux (kvmx)' {{\n\
         \tsearch --no-floppy --fs-uuid --set=root {uuid}\n\
         \tlinux /vmlinuz {cmdline}\n\
         \tinitrd /initrd.img\n\
         }}\n"
    )
}

/// The consoles: the serial port last, so that it is `/dev/console`, where
/// the initramfs asks for a LUKS passphrase.
pub const CONSOLE_CMDLINE: &str = "console=tty0 console=ttyS0,115200n8";

impl GuestSetup {
    /// The files to add to `rootfs`, and the ids the user got. `grub_dir`
    /// holds GRUB's modules, copied for `bootloader = "grub"`.
    pub fn overlay(&self, rootfs: &Rootfs, grub_dir: &Utf8Path) -> Result<(Overlay, AddedUser)> {
        let mut overlay = Overlay::new();
        self.identity(&mut overlay);
        network_files(&mut overlay, &self.network)?;
        let user = self.user(&mut overlay, rootfs)?;
        self.sshd(&mut overlay);
        Self::boot_units(&mut overlay);
        if self.bootloader == Bootloader::Grub {
            self.grub(&mut overlay, grub_dir)?;
        }
        Ok((overlay, user))
    }

    fn identity(&self, overlay: &mut Overlay) {
        let host = &self.hostname;
        let names = match &self.domain {
            Some(domain) => format!("{host}.{domain}\t{host}"),
            None => host.clone(),
        };
        overlay.file("etc/hostname", 0o644, format!("{host}\n"));
        overlay.file(
            "etc/hosts",
            0o644,
            format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{names}\n\n\
                 ::1\tlocalhost ip6-localhost ip6-loopback\n\
                 ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
            ),
        );
        let options = if self.discard {
            "errors=remount-ro,discard"
        } else {
            "errors=remount-ro"
        };
        let fstab = match &self.volumes {
            Some(plan) => plan.fstab(self.discard),
            None => format!("UUID={}\t/\text4\t{options}\t0\t1\n", self.root_uuid),
        };
        overlay.file("etc/fstab", 0o644, fstab);
        if let Some(plan) = &self.volumes {
            Self::volumes(plan, overlay);
        }
    }

    /// What a guest on LVM or LUKS needs beyond fstab: crypttab, the
    /// device-mapper modules in its initramfs, and the kernel's links on
    /// `/boot`, where GRUB looks.
    fn volumes(plan: &VolumePlan, overlay: &mut Overlay) {
        if let Some(crypttab) = plan.crypttab() {
            overlay.file("etc/crypttab", 0o600, crypttab);
        }
        overlay.file(
            "etc/initramfs-tools/modules",
            0o644,
            "# Root on device-mapper (kvmx: LVM or LUKS).\ndm_mod\ndm_crypt\n",
        );
        overlay.file(
            "etc/kernel-img.conf",
            0o644,
            "# GRUB reads only /boot: keep the kernel links there.\ndo_symlinks = yes\nlink_in_boot = yes\n",
        );
    }

    fn user(&self, overlay: &mut Overlay, rootfs: &Rootfs) -> Result<AddedUser> {
        let mut accounts = Accounts {
            passwd: rootfs.passwd.clone(),
            group: rootfs.group.clone(),
            shadow: rootfs.shadow.clone(),
            gshadow: rootfs.gshadow.clone(),
        };
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86400);
        let name = &self.user;
        let added = accounts
            .add_user(&NewUser {
                name,
                password_hash: self.password_hash.as_deref(),
                today,
                groups: &["sudo"],
                shell: "/bin/bash",
                wanted_ids: self.user_ids,
            })
            .map_err(|problem| Error::User { problem })?;
        let (uid, gid) = (added.uid, added.gid);
        // `shadow` group for the two secret files, as Debian has them.
        let shadow_gid = group_id(&accounts.group, "shadow").unwrap_or(0);
        overlay
            .file("etc/passwd", 0o644, accounts.passwd)
            .file("etc/group", 0o644, accounts.group)
            .owned_file("etc/shadow", 0o640, 0, shadow_gid, accounts.shadow)
            .owned_file("etc/gshadow", 0o640, 0, shadow_gid, accounts.gshadow)
            .file(
                "etc/sudoers.d/90-kvmx",
                0o440,
                format!("{name} ALL=(ALL) NOPASSWD:ALL\n"),
            );
        let home = format!("home/{name}");
        overlay.dir(&home, 0o700, uid, gid);
        for skel in &rootfs.skel {
            let path = format!("{home}/{}", skel.name);
            if skel.is_dir {
                overlay.dir(&path, skel.mode, uid, gid);
            } else {
                overlay.owned_file(&path, skel.mode, uid, gid, skel.contents.clone());
            }
        }
        // The user's systemd instance runs from boot instead of starting at
        // each SSH login and stopping after it: every kvmx command logs in.
        overlay.dir("var/lib/systemd/linger", 0o755, 0, 0).file(
            &format!("var/lib/systemd/linger/{name}"),
            0o644,
            "",
        );
        let mut keys = self.authorized_keys.join("\n");
        keys.push('\n');
        overlay
            .dir(&format!("{home}/.ssh"), 0o700, uid, gid)
            .owned_file(
                &format!("{home}/.ssh/authorized_keys"),
                0o600,
                uid,
                gid,
                keys,
            );
        Ok(added)
    }

    fn sshd(&self, overlay: &mut Overlay) {
        overlay
            .file(
                "etc/ssh/ssh_host_ed25519_key",
                0o600,
                self.host_key.private.clone(),
            )
            .file(
                "etc/ssh/ssh_host_ed25519_key.pub",
                0o644,
                format!("{}\n", self.host_key.public),
            )
            .file(
                "etc/ssh/sshd_config.d/kvmx.conf",
                0o644,
                "HostKey /etc/ssh/ssh_host_ed25519_key\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin no\n",
            );
    }

    /// The units and modules a headless VM does without, and sshd's start
    /// trimmed ([`boot_tuning`]).
    fn boot_units(overlay: &mut Overlay) {
        module_blacklist(overlay);
        for unit in boot_tuning::MASKED_UNITS {
            overlay.symlink(&format!("etc/systemd/system/{unit}"), "/dev/null");
        }
        overlay.dir("etc/systemd/system/ssh.service.d", 0o755, 0, 0);
        overlay.file(
            "etc/systemd/system/ssh.service.d/kvmx-boot.conf",
            0o644,
            boot_tuning::SSH_DROP_IN,
        );
    }

    fn grub(&self, overlay: &mut Overlay, grub_dir: &Utf8Path) -> Result<()> {
        let uuid = &self.root_uuid;
        overlay.dir("boot/grub", 0o755, 0, 0);
        // No menu wait: there is one entry and nobody at the console. The
        // guest has no GRUB package, so no update-grub rewrites this file;
        // it boots the `/vmlinuz` and `/initrd.img` links that kernel
        // updates move.
        let config = match &self.volumes {
            Some(plan) => plan.grub_cfg(),
            None => grub_cfg(uuid, &kernel_cmdline(uuid)),
        };
        overlay.file("boot/grub/grub.cfg", 0o644, config);
        // Modules for GRUB's prefix folder: from the same GRUB build as the
        // core.img written to the disk.
        overlay.dir("boot/grub/i386-pc", 0o755, 0, 0);
        let mut names: Vec<_> = std::fs::read_dir(grub_dir)
            .map_err(Error::io("read", grub_dir))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let name = name.to_string_lossy();
            let path = grub_dir.join(&*name);
            let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
            overlay.file(&format!("boot/grub/i386-pc/{name}"), 0o644, bytes);
        }
        Ok(())
    }
}

fn group_id(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name))
            .then(|| fields.nth(1).and_then(|id| id.parse().ok()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::Content;
    use crate::rootfs::SkelFile;

    fn setup() -> GuestSetup {
        GuestSetup {
            hostname: "web".into(),
            domain: Some("example.org".into()),
            user: "dev".into(),
            user_ids: None,
            password_hash: Some("$6$s$h".into()),
            authorized_keys: vec!["ssh-ed25519 AAAA one".into(), "ssh-ed25519 AAAA two".into()],
            host_key: HostKey {
                private: "PRIVATE".into(),
                public: "ssh-ed25519 AAAA root@web".into(),
            },
            root_uuid: "11111111-2222-3333-4444-555555555555".into(),
            discard: true,
            bootloader: Bootloader::Direct,
            network: GuestNetwork {
                mode: NetworkMode::User,
                address: None,
                netmask: None,
                gateway: None,
                dns: None,
            },
            volumes: None,
        }
    }

    fn rootfs() -> Rootfs {
        Rootfs {
            passwd: "root:x:0:0:root:/root:/bin/bash\n".into(),
            group: "root:x:0:\nshadow:x:42:\nsudo:x:27:\n".into(),
            shadow: "root:*:1:0:99999:7:::\n".into(),
            gshadow: "sudo:*::\n".into(),
            skel: vec![SkelFile {
                name: ".bashrc".into(),
                contents: b"# bashrc\n".to_vec(),
                mode: 0o644,
                is_dir: false,
            }],
            used_bytes: 0,
            entries: 0,
        }
    }

    fn text(overlay: &Overlay, path: &str) -> String {
        match &overlay.get(path).unwrap().content {
            Content::File(bytes) => String::from_utf8(bytes.clone()).unwrap(),
            other => panic!("{path} is {other:?}"),
        }
    }

    #[test]
    fn identity_and_fstab() {
        let overlay = setup().overlay(&rootfs(), "/nonexistent".into()).unwrap().0;
        assert_eq!(text(&overlay, "etc/hostname"), "web\n");
        assert!(text(&overlay, "etc/hosts").contains("127.0.1.1\tweb.example.org\tweb\n"));
        assert_eq!(
            text(&overlay, "etc/fstab"),
            "UUID=11111111-2222-3333-4444-555555555555\t/\text4\terrors=remount-ro,discard\t0\t1\n"
        );
        assert!(text(&overlay, "etc/systemd/network/80-kvmx.network").contains("DHCP=yes"));
        assert!(overlay.get("boot/grub/grub.cfg").is_none());
    }

    #[test]
    fn units_a_headless_vm_does_without_are_masked() {
        let overlay = setup().overlay(&rootfs(), "/nonexistent".into()).unwrap().0;
        match &overlay
            .get("etc/systemd/system/apt-daily.timer")
            .unwrap()
            .content
        {
            Content::Symlink(target) => assert_eq!(target, "/dev/null"),
            other => panic!("apt-daily.timer is {other:?}"),
        }
        assert_eq!(
            text(&overlay, "etc/systemd/system/ssh.service.d/kvmx-boot.conf"),
            "[Service]\nExecStartPre=\n"
        );
        assert!(text(&overlay, "etc/modprobe.d/kvmx-vm.conf").contains("\nblacklist cfg80211\n"));
    }

    #[test]
    fn the_user_has_the_host_users_ids_and_owns_its_home_with_them() {
        let mut setup = setup();
        setup.user_ids = Some((1001, 1001));
        let (overlay, added) = setup.overlay(&rootfs(), "/nonexistent".into()).unwrap();
        assert_eq!((added.uid, added.gid, added.refused), (1001, 1001, None));
        assert!(text(&overlay, "etc/passwd").contains("dev:x:1001:1001::/home/dev:/bin/bash"));
        assert!(text(&overlay, "etc/group").contains("dev:x:1001:"));
        for path in [
            "home/dev",
            "home/dev/.bashrc",
            "home/dev/.ssh/authorized_keys",
        ] {
            let entry = overlay.get(path).unwrap();
            assert_eq!((entry.uid, entry.gid), (1001, 1001), "{path}");
        }
    }

    #[test]
    fn user_with_sudo_keys_and_home() {
        let overlay = setup().overlay(&rootfs(), "/nonexistent".into()).unwrap().0;
        assert!(text(&overlay, "etc/passwd").contains("dev:x:1000:1000::/home/dev:/bin/bash"));
        let shadow = overlay.get("etc/shadow").unwrap();
        assert_eq!((shadow.mode, shadow.gid), (0o640, 42));
        assert!(text(&overlay, "etc/shadow").contains("dev:$6$s$h:"));
        assert_eq!(overlay.get("etc/sudoers.d/90-kvmx").unwrap().mode, 0o440);
        let keys = overlay.get("home/dev/.ssh/authorized_keys").unwrap();
        assert_eq!((keys.mode, keys.uid, keys.gid), (0o600, 1000, 1000));
        assert_eq!(
            text(&overlay, "home/dev/.ssh/authorized_keys"),
            "ssh-ed25519 AAAA one\nssh-ed25519 AAAA two\n"
        );
        assert_eq!(overlay.get("home/dev/.bashrc").unwrap().uid, 1000);
        assert_eq!(
            overlay.get("etc/ssh/ssh_host_ed25519_key").unwrap().mode,
            0o600
        );
    }

    #[test]
    fn static_address_and_dns_servers() {
        let mut setup = setup();
        setup.network.mode = NetworkMode::Tap;
        setup.network.address = Some("10.0.0.5".parse().unwrap());
        setup.network.netmask = Some("255.255.0.0".parse().unwrap());
        setup.network.gateway = Some("10.0.0.1".parse().unwrap());
        setup.network.dns = Some("1.1.1.1,9.9.9.9".parse().unwrap());
        let overlay = setup.overlay(&rootfs(), "/nonexistent".into()).unwrap().0;
        let network = text(&overlay, "etc/systemd/network/80-kvmx.network");
        assert!(
            network.contains("Address=10.0.0.5/16\nGateway=10.0.0.1\n"),
            "{network}"
        );
        assert_eq!(
            text(&overlay, "etc/systemd/resolved.conf.d/kvmx.conf"),
            "[Resolve]\nDNS=1.1.1.1 9.9.9.9\n"
        );
    }

    #[test]
    fn grub_config_boots_root_by_uuid_on_the_serial_console() {
        let mut setup = setup();
        setup.bootloader = Bootloader::Grub;
        let grub = tempfile::tempdir().unwrap();
        std::fs::write(grub.path().join("normal.mod"), "mod").unwrap();
        let grub_dir = Utf8Path::from_path(grub.path()).unwrap();
        let overlay = setup.overlay(&rootfs(), grub_dir).unwrap().0;
        let cfg = text(&overlay, "boot/grub/grub.cfg");
        assert!(cfg.contains("search --no-floppy --fs-uuid --set=root 11111111-"));
        assert!(cfg.contains("console=ttyS0,115200n8"));
        assert!(cfg.contains("set timeout=0\n"));
        assert!(overlay.get("boot/grub/i386-pc/normal.mod").is_some());
    }
}
