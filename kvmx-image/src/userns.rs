//! Acting as the guest's root without being root.
//!
//! Unpacking the system and `mkfs.ext4 -d` must record the guest's owners
//! (root, the first user) and keep setuid bits. A plain user gets that in a
//! user namespace that maps its subordinate uid range: namespace root is the
//! user, namespace uids 1..65536 are its subordinate ids. Root runs the same
//! commands directly.

use std::process::{Command, Stdio};

use camino::Utf8Path;

use crate::prerequisites::{Requirement, is_root};
use kvmx_core::process::Tool;

/// How commands that act as the guest's root run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestRoot {
    /// Running as root: directly.
    Root,
    /// Through `unshare --map-auto --map-root-user`.
    Namespace,
}

const UNSHARE_ARGS: [&str; 3] = ["--map-auto", "--map-root-user", "--"];

impl GuestRoot {
    /// The way for this process.
    pub fn detect() -> Self {
        if is_root() {
            GuestRoot::Root
        } else {
            GuestRoot::Namespace
        }
    }

    /// What this way needs on the host.
    pub fn requirements(self) -> Vec<Requirement> {
        match self {
            GuestRoot::Root => Vec::new(),
            GuestRoot::Namespace => vec![
                Requirement::program("unshare", "util-linux"),
                Requirement::program("newuidmap", "uidmap"),
                Requirement::program("newgidmap", "uidmap"),
                Requirement::SubordinateIds,
            ],
        }
    }

    /// `tool`, run as the guest's root.
    pub fn tool(self, tool: Tool) -> Tool {
        match self {
            GuestRoot::Root => tool,
            GuestRoot::Namespace => tool.wrapped("unshare", &UNSHARE_ARGS),
        }
    }

    /// Removes a tree that may hold files of the guest's users. Errors are
    /// ignored: this runs while cleaning up.
    pub fn remove_tree(self, path: &Utf8Path) {
        if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
            return;
        }
        let mut command = match self {
            GuestRoot::Root => Command::new("rm"),
            GuestRoot::Namespace => {
                let mut command = Command::new("unshare");
                command.args(UNSHARE_ARGS).arg("rm");
                command
            }
        };
        let _ = command
            .args(["-rf", "--"])
            .arg(path)
            .env("PATH", kvmx_core::process::search_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
