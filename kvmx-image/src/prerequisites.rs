//! What a build needs on the host, checked before it starts so that one
//! message lists everything missing and the Debian package providing each.

use camino::{Utf8Path, Utf8PathBuf};

/// Something the build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A program found on the search path.
    Program {
        /// Its name.
        name: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A file.
    File {
        /// Its path.
        path: Utf8PathBuf,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// Subordinate uid and gid ranges for the user (`/etc/subuid`,
    /// `/etc/subgid`), which a user namespace with the guest's users needs.
    SubordinateIds,
    /// Running as root.
    Root {
        /// What needs it.
        reason: &'static str,
    },
}

/// A requirement that is not met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub Requirement);

impl Missing {
    /// One line per missing thing.
    pub fn list(missing: &[Missing]) -> String {
        missing
            .iter()
            .map(|m| format!("  - {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The packages to install, each once.
    pub fn packages(missing: &[Missing]) -> Vec<&'static str> {
        let mut packages: Vec<&'static str> = missing
            .iter()
            .filter_map(|m| match m.0 {
                Requirement::Program { package, .. } | Requirement::File { package, .. } => {
                    Some(package)
                }
                _ => None,
            })
            .collect();
        packages.sort_unstable();
        packages.dedup();
        packages
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Requirement::Program { name, package } => {
                write!(f, "the program {name} (package {package})")
            }
            Requirement::File { path, package } => write!(f, "the file {path} (package {package})"),
            Requirement::SubordinateIds => write!(
                f,
                "subordinate uids and gids for {} in /etc/subuid and /etc/subgid \
                 (as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {0})",
                user_name()
            ),
            Requirement::Root { reason } => write!(f, "root: {reason}"),
        }
    }
}

impl Requirement {
    /// A program from a package.
    pub const fn program(name: &'static str, package: &'static str) -> Self {
        Requirement::Program { name, package }
    }

    fn is_met(&self) -> bool {
        match self {
            Requirement::Program { name, .. } => find_program(name).is_some(),
            Requirement::File { path, .. } => path.exists(),
            Requirement::SubordinateIds => has_subordinate_ids(),
            Requirement::Root { .. } => is_root(),
        }
    }
}

/// Checks every requirement; the error lists those not met.
pub fn check(requirements: &[Requirement]) -> Result<(), Vec<Missing>> {
    let mut missing: Vec<Missing> = Vec::new();
    for requirement in requirements {
        if !requirement.is_met() && !missing.iter().any(|m| &m.0 == requirement) {
            missing.push(Missing(requirement.clone()));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub use kvmx_core::process::search_path;

/// The path of `name` on the search path.
pub fn find_program(name: &str) -> Option<Utf8PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&search_path())
        .filter_map(|dir| Utf8PathBuf::from_path_buf(dir).ok())
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|user| user.name)
        .unwrap_or_else(|| uid.to_string())
}

fn has_subordinate_ids() -> bool {
    let name = user_name();
    let uid = nix::unistd::getuid().to_string();
    let listed = |file: &str| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|line| {
                let owner = line.split(':').next().unwrap_or("");
                owner == name || owner == uid
            })
        })
    };
    listed("/etc/subuid") && listed("/etc/subgid")
}

/// The folder of GRUB's BIOS images and modules (package grub-pc-bin).
pub fn grub_dir() -> &'static Utf8Path {
    Utf8Path::new("/usr/lib/grub/i386-pc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_missing_thing_once_with_its_package() {
        let missing = check(&[
            Requirement::program("sh", "dash"),
            Requirement::program("kvmx-no-such-tool", "kvmx-no-such-package"),
            Requirement::program("kvmx-no-such-tool", "kvmx-no-such-package"),
            Requirement::File {
                path: "/kvmx/no/such/file".into(),
                package: "grub-pc-bin",
            },
        ])
        .unwrap_err();
        assert_eq!(missing.len(), 2);
        assert_eq!(
            Missing::list(&missing),
            "  - the program kvmx-no-such-tool (package kvmx-no-such-package)\n  \
             - the file /kvmx/no/such/file (package grub-pc-bin)"
        );
        assert_eq!(
            Missing::packages(&missing),
            ["grub-pc-bin", "kvmx-no-such-package"]
        );
    }

    #[test]
    fn search_path_ends_with_sbin() {
        let path = search_path();
        let dirs: Vec<_> = std::env::split_paths(&path).collect();
        assert!(dirs.iter().any(|d| d == std::path::Path::new("/usr/sbin")));
    }
}
