//! Real git repositories with commits signed by real SSH keys, made in the
//! test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// An ed25519 key made by `ssh-keygen`, and its allowed_signers line.
pub(crate) struct SshKey {
    pub(crate) private: PathBuf,
    pub(crate) principal: String,
}

impl SshKey {
    pub(crate) fn new(dir: &Path, principal: &str) -> SshKey {
        let private = dir.join(principal.replace('@', "-at-"));
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", principal, "-f"])
            .arg(&private)
            .status()
            .unwrap();
        assert!(status.success());
        SshKey {
            private,
            principal: principal.to_owned(),
        }
    }

    /// `principal namespaces="git" <public key>`.
    pub(crate) fn allowed_signers_line(&self) -> String {
        let public = std::fs::read_to_string(format!("{}.pub", self.private.display())).unwrap();
        let mut words = public.split_whitespace();
        let (kind, key) = (words.next().unwrap(), words.next().unwrap());
        format!("{} namespaces=\"git\" {kind} {key}\n", self.principal)
    }
}

/// A work tree on branch `main`.
pub(crate) struct Repo {
    pub(crate) dir: PathBuf,
}

impl Repo {
    pub(crate) fn new(dir: PathBuf) -> Repo {
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Repo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// git with a fixed identity and no user or system config.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .current_dir(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    pub(crate) fn write(&self, path: &str, text: &str) {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }

    /// Commits everything, signed by `key` (none: unsigned); returns the id.
    pub(crate) fn commit(&self, message: &str, key: Option<&SshKey>) -> String {
        self.git(&["add", "-A"]);
        match key {
            Some(key) => {
                let signing = format!("user.signingkey={}", key.private.display());
                self.git(&[
                    "-c",
                    "gpg.format=ssh",
                    "-c",
                    &signing,
                    "commit",
                    "-q",
                    "-S",
                    "-m",
                    message,
                ]);
            }
            None => {
                self.git(&["commit", "-q", "-m", message]);
            }
        }
        self.git(&["rev-parse", "HEAD"])
    }
}
