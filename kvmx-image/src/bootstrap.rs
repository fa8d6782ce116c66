//! Making the guest's system: a tarball of a Debian tree with the recipe's
//! packages, owned as the guest sees it.
//!
//! The tarball holds nothing specific to one VM (no host name, user or
//! keys), so the [cache](crate::cache) can share it between VMs; each VM's
//! files are added later by [`crate::guest`]. A method is one
//! implementation of [`Bootstrap`]; other distributions plug in here.

use std::time::Duration;

use camino::Utf8Path;
use kvmx_core::config::Method;
use serde::{Deserialize, Serialize};

use crate::boot_tuning;
use crate::prerequisites::{Requirement, is_root};
use crate::userns::GuestRoot;
use crate::{Error, Result};
use kvmx_core::process::{Runner, Tool};

/// The version of what the bootstrap puts in the tree. Raise it when the
/// base packages, [`SYSTEM_SETUP`] or [`boot_tuning`] change, so that
/// cached trees made the old way are not used.
pub const RECIPE_VERSION: u32 = 2;

/// The packages every guest gets: Debian's generic kernel (the cloud one
/// lacks 9p and vmgenid), systemd with logind (which powers off on the ACPI
/// power button), networkd and resolved, sshd, sudo, rsync and the QEMU
/// guest agent.
pub const BASE_PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "zstd",
    "systemd-sysv",
    "udev",
    "dbus",
    "libpam-systemd",
    "systemd-resolved",
    "openssh-server",
    "sudo",
    "rsync",
    "qemu-guest-agent",
    "iproute2",
    "netbase",
    "procps",
    "less",
];

/// The name every Debian kernel package starts with.
const KERNEL_PREFIX: &str = "linux-image-";

/// Run in the new tree (chrooted) after the packages are in: the parts of
/// the guest setup that are the same for every VM.
pub const SYSTEM_SETUP: &str = "\
systemctl enable systemd-networkd.service systemd-resolved.service serial-getty@ttyS0.service
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
";

/// dpkg options that leave documentation and translations out.
const DPKG_OPTIONS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// How long a bootstrap may take.
const BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(45 * 60);

/// Everything that goes into a bootstrapped tree, and so into its cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapSpec {
    /// Debian suite or codename.
    pub suite: String,
    /// Debian architecture.
    pub arch: String,
    /// Package mirror.
    pub mirror: String,
    /// Every package asked for, base and extra, sorted, each once.
    pub packages: Vec<String>,
    /// The bootstrap method.
    pub method: Method,
    /// More setup run in the tree (chrooted, with the network), after
    /// [`SYSTEM_SETUP`]: what a recipe such as the builder VM's adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_setup: Option<String>,
    /// Host files copied into the tree's `/tmp` before `extra_setup`
    /// (which names and checks them, so the key follows them).
    #[serde(skip)]
    pub extra_files: Vec<camino::Utf8PathBuf>,
}

impl BootstrapSpec {
    /// The spec of `create`: the base packages plus the configured ones. A
    /// configured kernel (`linux-image-*`, e.g. `linux-image-cloud-amd64`)
    /// replaces the generic one instead of sitting beside it.
    pub fn from_config(create: &kvmx_core::config::Create) -> Self {
        let own_kernel = create
            .packages
            .iter()
            .any(|p| p.to_string().starts_with(KERNEL_PREFIX));
        let mut packages: Vec<String> = BASE_PACKAGES
            .iter()
            .filter(|p| !(own_kernel && p.starts_with(KERNEL_PREFIX)))
            .map(|p| p.to_string())
            .chain(create.packages.iter().map(|p| p.to_string()))
            .chain(
                crate::volumes::packages(create)
                    .into_iter()
                    .map(String::from),
            )
            .collect();
        packages.sort();
        packages.dedup();
        BootstrapSpec {
            suite: create.suite.clone(),
            arch: create.arch.clone(),
            mirror: create.mirror.clone(),
            packages,
            method: create.method,
            extra_setup: None,
            extra_files: Vec::new(),
        }
    }

    /// The apt source lines: the suite, and for a Debian release with
    /// point updates its `-updates` and `-security` suites.
    pub fn sources(&self) -> Vec<String> {
        let mirror = self.mirror.trim_end_matches('/');
        let mut lines = vec![format!("deb {mirror} {} main", self.suite)];
        let released = ["bullseye", "bookworm", "trixie", "stable", "oldstable"];
        if released.contains(&self.suite.as_str()) {
            lines.push(format!("deb {mirror} {}-updates main", self.suite));
            if let Some(base) = mirror.strip_suffix("/debian") {
                lines.push(format!(
                    "deb {base}/debian-security {}-security main",
                    self.suite
                ));
            }
        }
        lines
    }
}

/// A way to make the tree.
pub trait Bootstrap {
    /// The method's name, for messages.
    fn name(&self) -> &'static str;
    /// What it needs on the host.
    fn requirements(&self) -> Vec<Requirement>;
    /// Writes the tree as a tarball (numeric owners as in the guest) to
    /// `tarball`. `scratch` is an empty folder it may use.
    fn bootstrap(
        &self,
        spec: &BootstrapSpec,
        tarball: &Utf8Path,
        scratch: &Utf8Path,
        runner: &Runner,
    ) -> Result<()>;
}

/// The implementation of `method` that makes a tree on the host.
/// image-bootstrap writes a whole disk inside the builder VM instead, so
/// its trees come from mmdebstrap's tree of the builder's own recipe.
pub fn for_method(method: Method) -> Box<dyn Bootstrap> {
    match method {
        Method::Mmdebstrap | Method::ImageBootstrap | Method::Install => Box::new(Mmdebstrap),
        Method::Debootstrap => Box::new(Debootstrap),
    }
}

/// `script` run by `sh` with the tree as `$1`, as a hook's shell line.
fn shell_hook(script: &str) -> String {
    format!("sh -c '{}' sh \"$1\"", script.replace('\'', r"'\''"))
}

/// The chroot command of [`SYSTEM_SETUP`] and `extra`, for a shell where
/// `$1` is the tree.
fn setup_hook(extra: Option<&str>) -> String {
    let script = format!("set -e\n{SYSTEM_SETUP}{}", extra.unwrap_or_default());
    format!(
        "chroot \"$1\" /bin/sh -c '{}'",
        script.replace('\'', r"'\''")
    )
}

/// `mmdebstrap`: in unshare mode without root, so no root is needed;
/// writes the tarball directly.
#[derive(Debug, Clone, Copy)]
pub struct Mmdebstrap;

impl Bootstrap for Mmdebstrap {
    fn name(&self) -> &'static str {
        "mmdebstrap"
    }

    fn requirements(&self) -> Vec<Requirement> {
        let mut requirements = vec![Requirement::program("mmdebstrap", "mmdebstrap")];
        requirements.extend(GuestRoot::detect().requirements());
        requirements
    }

    fn bootstrap(
        &self,
        spec: &BootstrapSpec,
        tarball: &Utf8Path,
        _scratch: &Utf8Path,
        runner: &Runner,
    ) -> Result<()> {
        let mode = if is_root() { "root" } else { "unshare" };
        let tool = Tool::new("mmdebstrap", "bootstrap the system with mmdebstrap")
            .deadline(BOOTSTRAP_DEADLINE)
            .arg(format!("--mode={mode}"))
            .arg("--variant=apt")
            .arg("--format=tar")
            .arg(format!("--architectures={}", spec.arch))
            .arg(format!("--include={}", spec.packages.join(",")))
            .args(DPKG_OPTIONS.iter().map(|o| format!("--dpkgopt={o}")))
            // Before the kernel is installed, so its postinst builds the
            // small initramfs once.
            .arg(format!(
                "--essential-hook={}",
                shell_hook(boot_tuning::INITRAMFS_CONFIG)
            ))
            .args(
                spec.extra_files
                    .iter()
                    .map(|file| format!("--customize-hook=copy-in {file} /tmp")),
            )
            .arg(format!(
                "--customize-hook={}",
                setup_hook(spec.extra_setup.as_deref())
            ))
            .arg(&spec.suite)
            .arg(tarball)
            .args(spec.sources());
        runner.run(&tool)?;
        Ok(())
    }
}

/// `debootstrap`: needs root; the tree is made in a folder, then packed.
#[derive(Debug, Clone, Copy)]
pub struct Debootstrap;

impl Bootstrap for Debootstrap {
    fn name(&self) -> &'static str {
        "debootstrap"
    }

    fn requirements(&self) -> Vec<Requirement> {
        vec![
            Requirement::program("debootstrap", "debootstrap"),
            Requirement::program("tar", "tar"),
            Requirement::Root {
                reason: "method = \"debootstrap\" runs as root (use mmdebstrap without root)",
            },
        ]
    }

    fn bootstrap(
        &self,
        spec: &BootstrapSpec,
        tarball: &Utf8Path,
        scratch: &Utf8Path,
        runner: &Runner,
    ) -> Result<()> {
        if !is_root() {
            return Err(Error::Unsupported(
                "method = \"debootstrap\" needs root; use \"mmdebstrap\"".into(),
            ));
        }
        let tree = scratch.join("tree");
        runner.run(
            &Tool::new("debootstrap", "bootstrap the system with debootstrap")
                .deadline(BOOTSTRAP_DEADLINE)
                .arg("--variant=minbase")
                .arg(format!("--arch={}", spec.arch))
                .arg(format!("--include={}", spec.packages.join(",")))
                .arg(&spec.suite)
                .arg(&tree)
                .arg(&spec.mirror),
        )?;
        // debootstrap installs everything at once: the initramfs made by
        // the kernel's postinst is rebuilt with the VM's config.
        runner.run(
            &Tool::new("sh", "configure the initramfs")
                .args(["-c", boot_tuning::INITRAMFS_CONFIG, "sh"])
                .arg(&tree),
        )?;
        runner.run(
            &Tool::new("chroot", "rebuild the initramfs")
                .arg(&tree)
                .args(["update-initramfs", "-u", "-k", "all"]),
        )?;
        for file in &spec.extra_files {
            let name = file.file_name().unwrap_or("file");
            std::fs::copy(file, tree.join("tmp").join(name)).map_err(Error::io("copy", file))?;
        }
        runner.run(
            &Tool::new("sh", "set up the system")
                .args(["-c", &setup_hook(spec.extra_setup.as_deref()), "sh"])
                .arg(&tree),
        )?;
        runner.run(
            &Tool::new("tar", "pack the system")
                .args(["--numeric-owner", "-C"])
                .arg(&tree)
                .args(["-cf"])
                .arg(tarball)
                .arg("."),
        )?;
        GuestRoot::Root.remove_tree(&tree);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(suite: &str, mirror: &str) -> BootstrapSpec {
        let mut create = kvmx_core::config::Create {
            suite: suite.into(),
            mirror: mirror.into(),
            ..Default::default()
        };
        create.packages = vec!["vim".parse().unwrap(), "sudo".parse().unwrap()];
        BootstrapSpec::from_config(&create)
    }

    #[test]
    fn packages_are_sorted_and_unique() {
        let spec = spec("bookworm", "https://deb.debian.org/debian/");
        assert!(spec.packages.windows(2).all(|w| w[0] < w[1]));
        assert!(spec.packages.contains(&"vim".to_string()));
        assert!(spec.packages.contains(&"linux-image-amd64".to_string()));
    }

    #[test]
    fn a_configured_kernel_replaces_the_generic_one() {
        let create = kvmx_core::config::Create {
            packages: vec!["linux-image-cloud-amd64".parse().unwrap()],
            ..Default::default()
        };
        let spec = BootstrapSpec::from_config(&create);
        assert!(
            spec.packages
                .contains(&"linux-image-cloud-amd64".to_string())
        );
        assert!(!spec.packages.contains(&"linux-image-amd64".to_string()));
    }

    #[test]
    fn a_release_gets_updates_and_security() {
        assert_eq!(
            spec("bookworm", "https://deb.debian.org/debian/").sources(),
            [
                "deb https://deb.debian.org/debian bookworm main",
                "deb https://deb.debian.org/debian bookworm-updates main",
                "deb https://deb.debian.org/debian-security bookworm-security main",
            ]
        );
        assert_eq!(
            spec("sid", "http://mirror.example/debian").sources(),
            ["deb http://mirror.example/debian sid main"]
        );
    }

    #[test]
    fn the_setup_hook_quotes_the_script() {
        let hook = setup_hook(None);
        assert!(hook.starts_with("chroot \"$1\" /bin/sh -c 'set -e\nsystemctl enable"));
        assert!(hook.ends_with("machine-id\n'"));
    }
}
