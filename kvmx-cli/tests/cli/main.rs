//! Tests of the real `kvmx` binary in a sealed home: its own HOME,
//! KVMX_HOME and XDG folders, fixed columns, no inherited kvmx settings.

mod as_user;
mod clean;
mod completions;
mod config;
mod disposable;
mod guest;
mod guest_errors;
mod import;
mod init;
mod install;
mod lifecycle;
mod list;
mod races;
mod shares_user;
mod supervise;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A sealed home for one test: kvmx's state and the projects live in it.
pub(crate) struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        Sandbox { root }
    }

    /// The sandbox root (for filters and paths).
    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// A folder under the sandbox, created.
    pub(crate) fn dir(&self, relative: &str) -> PathBuf {
        let dir = self.root.path().join(relative);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `kvmx` run in `cwd`.
    pub(crate) fn kvmx_in(&self, cwd: &Path) -> Command {
        Command::from_std(self.kvmx_process(cwd))
    }

    /// `kvmx` run in `cwd`, as a plain process to spawn and signal.
    pub(crate) fn kvmx_process(&self, cwd: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("kvmx"));
        command
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.root.path().join("home"))
            .env("KVMX_HOME", self.root.path().join("kvmx"))
            .env("COLUMNS", "100")
            .env("KVMX_CACHE_DIR", shared_cache());
        command
    }

    /// `kvmx` run in the sandbox root.
    pub(crate) fn kvmx(&self) -> Command {
        self.kvmx_in(self.root.path())
    }

    /// Replaces the sandbox path in `text` so snapshots are stable.
    pub(crate) fn filter(&self, text: &str) -> String {
        text.replace(self.root.path().to_str().unwrap(), "[SANDBOX]")
    }
}

/// stdout and stderr of a finished command, as text.
pub(crate) fn output_text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8(output.stdout.clone()).unwrap(),
        String::from_utf8(output.stderr.clone()).unwrap(),
    )
}

/// The real user files, shipped with kvmx-core's tests.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kvmx-core/tests/fixtures/kvmxfiles")
        .join(name)
}

/// The bootstrap cache shared by every test of a run: the Debian tree is
/// made once and reused (kvmx-image keys it by everything that goes in).
pub(crate) fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvmx-cache")
}

/// `kvmx status --json` of the VM in `project`.
pub(crate) fn status(sandbox: &Sandbox, project: &Path) -> serde_json::Value {
    let output = sandbox
        .kvmx_in(project)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A 1 MiB raw disk whose boot sector only halts: a VM that boots at once
/// and never answers SSH or ACPI.
pub(crate) fn write_halting_disk(path: &Path) {
    let mut sector = vec![0u8; 512];
    sector[..3].copy_from_slice(&[0xF4, 0xEB, 0xFD]); // hlt; jmp $-1
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector.resize(1024 * 1024, 0);
    std::fs::write(path, sector).unwrap();
}
