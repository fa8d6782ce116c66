//! kvmx-ci's tests of the real binary, by topic, each in a sealed home.

mod cli;
mod gitlab;
mod repo;
mod run;
mod template;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A hermetic home: its own HOME and KVMX_HOME, the bootstrap cache shared
/// by every test of the run.
pub(crate) struct Sandbox {
    root: tempfile::TempDir,
    kvmx_home: Option<PathBuf>,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        Sandbox {
            root,
            kvmx_home: None,
        }
    }

    /// A sandbox whose kvmx state is the existing `kvmx_home` (one that
    /// holds a template).
    pub(crate) fn with_kvmx_home(kvmx_home: PathBuf) -> Self {
        Sandbox {
            kvmx_home: Some(kvmx_home),
            ..Sandbox::new()
        }
    }

    /// Its `KVMX_HOME`.
    pub(crate) fn kvmx_home(&self) -> PathBuf {
        self.kvmx_home
            .clone()
            .unwrap_or_else(|| self.root.path().join("kvmx"))
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    /// A folder under the sandbox, created.
    pub(crate) fn dir(&self, relative: &str) -> PathBuf {
        let dir = self.root.path().join(relative);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// kvmx's folder of job files.
    pub(crate) fn jobs_dir(&self) -> PathBuf {
        let dir = self.kvmx_home().join("config/ci");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes the job `name`.
    pub(crate) fn write_job(&self, name: &str, toml: &str) -> PathBuf {
        let file = self.jobs_dir().join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        file
    }

    /// `kvmx-ci` in the sandbox.
    pub(crate) fn kvmx_ci(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kvmx-ci"));
        command
            .current_dir(self.root.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.root.path().join("home"))
            .env("KVMX_HOME", self.kvmx_home())
            .env("KVMX_CACHE_DIR", shared_cache());
        command
    }

    /// Replaces the sandbox path in `text` so snapshots are stable.
    pub(crate) fn filter(&self, text: &str) -> String {
        text.replace(self.root.path().to_str().unwrap(), "[SANDBOX]")
    }
}

/// The bootstrap cache shared with kvmx's own tests: the Debian tree is
/// made once per target folder.
pub(crate) fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvmx-cache")
}

/// stdout and stderr of a finished command, as text.
pub(crate) fn output_text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
