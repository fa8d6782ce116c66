//! Hermetic git on the job's mirror: every git (and gpg) invocation goes
//! through [`Git::tool`], which clears the environment, ignores the
//! system's and the user's git config, points `HOME` at the job's folder
//! and `GNUPGHOME` at the job's own keyring, and pins every setting that
//! decides how a signature is checked. Nothing of the user's setup can
//! change a verdict.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::process::{ProcessError, Runner, Tool};

use crate::job::Policy;
use crate::paths::JobPaths;

use super::SourceError;

/// How long a fetch may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(600);
/// How long a local git or gpg command may take.
const LOCAL_DEADLINE: Duration = Duration::from_secs(120);

/// git and gpg for one job.
pub(crate) struct Git {
    root: Utf8PathBuf,
    mirror: Utf8PathBuf,
    keyring: Utf8PathBuf,
    format: &'static str,
    allowed_signers: Option<Utf8PathBuf>,
    runner: Runner,
}

/// How a command run by [`Git::run_status`] ended.
pub(crate) struct Outcome {
    /// Its exit status.
    pub code: i32,
    /// Its stdout and stderr, in the order written.
    pub output: String,
}

impl Git {
    /// git on the mirror of `paths`, checking signatures as `policy` says
    /// (SSH ones against `allowed_signers`).
    pub fn new(paths: &JobPaths, policy: Policy, allowed_signers: Option<Utf8PathBuf>) -> Git {
        Git {
            root: paths.root.clone(),
            mirror: paths.mirror.clone(),
            keyring: paths.keyring.clone(),
            format: match policy {
                Policy::Ssh => "ssh",
                Policy::Openpgp | Policy::None => "openpgp",
            },
            allowed_signers,
            runner: Runner::unlogged(CancelFlag::new()),
        }
    }

    /// The job's environment: nothing of the user's but `PATH`.
    fn hermetic(&self, tool: Tool) -> Tool {
        tool.clean_env()
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", &self.root)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GNUPGHOME", &self.keyring)
            .deadline(LOCAL_DEADLINE)
    }

    /// The one way git runs: on the mirror, hermetic, with every setting
    /// that matters to verification given on the command line (they win
    /// over the mirror's own config).
    pub fn tool(&self, what: impl Into<String>, args: &[&str]) -> Tool {
        let allowed_signers = self
            .allowed_signers
            .as_ref()
            .map_or("/dev/null", |file| file.as_str());
        let pinned = [
            format!("gpg.format={}", self.format),
            "gpg.program=gpg".to_owned(),
            "gpg.openpgp.program=gpg".to_owned(),
            // X.509 signatures are refused before git sees them.
            "gpg.x509.program=false".to_owned(),
            "gpg.ssh.program=ssh-keygen".to_owned(),
            format!("gpg.ssh.allowedSignersFile={allowed_signers}"),
            "gpg.ssh.defaultKeyCommand=false".to_owned(),
            // kvmx-ci compares fingerprints itself; the job's keyring holds
            // no owner trust.
            "gpg.minTrustLevel=undefined".to_owned(),
            "core.hooksPath=/dev/null".to_owned(),
            "core.sshCommand=ssh -o BatchMode=yes".to_owned(),
            "protocol.ext.allow=never".to_owned(),
            "init.defaultBranch=main".to_owned(),
            "gc.auto=0".to_owned(),
        ];
        let mut tool = Tool::new("git", what);
        for setting in &pinned {
            tool = tool.arg("-c").arg(setting);
        }
        self.hermetic(tool)
            .arg(format!("--git-dir={}", self.mirror))
            .args(args)
    }

    /// gpg on the job's keyring, in the same environment.
    pub fn gpg(&self, what: impl Into<String>, args: &[&str]) -> Tool {
        self.hermetic(Tool::new("gpg", what))
            .args(["--batch", "--no-tty", "--homedir", self.keyring.as_str()])
            .args(args)
    }

    /// The bare mirror.
    pub fn mirror(&self) -> &Utf8Path {
        &self.mirror
    }

    /// The job's keyring (a GnuPG home).
    pub fn keyring(&self) -> &Utf8Path {
        &self.keyring
    }

    /// Runs a tool to success and returns its stdout.
    pub fn run_tool(&self, tool: &Tool) -> Result<String, ProcessError> {
        let finished = self.runner.run(tool)?;
        Ok(String::from_utf8_lossy(&finished.stdout).into_owned())
    }

    /// Runs git to success and returns its stdout.
    pub fn run(&self, what: &str, args: &[&str]) -> Result<String, ProcessError> {
        self.run_tool(&self.tool(what, args))
    }

    /// Runs git whatever its exit status and returns that status with its
    /// stdout and stderr together: git prints a signature's verdict on
    /// stderr, and an exit status of 1 is an answer, not a failure.
    pub fn run_status(&self, what: &str, args: &[&str]) -> Result<Outcome, ProcessError> {
        let tool = self
            .tool(what, args)
            .wrapped(
                "sh",
                &[
                    "-c",
                    r#""$0" "$@" 2>&1; status=$?; echo; echo "exit $status""#,
                ],
            )
            .any_status();
        let text = self.run_tool(&tool)?;
        let text = text.trim_end();
        let (output, last) = text.rsplit_once('\n').unwrap_or(("", text));
        let code = last
            .strip_prefix("exit ")
            .and_then(|code| code.parse().ok())
            .unwrap_or(-1);
        Ok(Outcome {
            code,
            output: output.to_owned(),
        })
    }

    /// Creates the bare mirror when missing and fetches every branch and
    /// tag of `url` into it. Forced updates are taken: verification judges
    /// them, not fetch.
    pub fn fetch(&self, url: &str) -> Result<(), SourceError> {
        let fetch_error = |source| SourceError::Fetch {
            url: url.to_owned(),
            mirror: self.mirror.clone(),
            source: Box::new(source),
        };
        if !self.mirror.join("HEAD").is_file() {
            std::fs::create_dir_all(&self.root).map_err(SourceError::io(&self.root))?;
            self.run(
                "create the mirror",
                &["init", "--quiet", "--bare", "--template="],
            )
            .map_err(fetch_error)?;
        }
        let tool = self
            .tool(
                format!("fetch {url}"),
                &[
                    "fetch",
                    "--quiet",
                    "--prune",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--end-of-options",
                    url,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            )
            .deadline(FETCH_DEADLINE);
        self.run_tool(&tool).map_err(fetch_error)?;
        Ok(())
    }

    /// The commit `revision` names, or `None` when there is none.
    pub fn commit_of(&self, revision: &str) -> Result<Option<String>, ProcessError> {
        let peeled = format!("{revision}^{{commit}}");
        let outcome = self.run_status(
            "resolve a commit",
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &peeled,
            ],
        )?;
        let id = outcome.output.trim();
        Ok((outcome.code == 0 && is_object_id(id)).then(|| id.to_owned()))
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool, ProcessError> {
        let what = format!("check that {descendant} descends from {ancestor}");
        let outcome = self.run_status(
            &what,
            &["merge-base", "--is-ancestor", ancestor, descendant],
        )?;
        match outcome.code {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(self.failure(&what, outcome)),
        }
    }

    /// A failure of a command run by [`Git::run_status`].
    pub fn failure(&self, what: &str, outcome: Outcome) -> ProcessError {
        let lines: Vec<String> = outcome.output.lines().map(str::to_owned).collect();
        let tail = lines[lines.len().saturating_sub(15)..].to_vec();
        ProcessError::Failed(kvmx_core::process::ToolError {
            what: what.to_owned(),
            command: format!("git --git-dir={} ...", self.mirror),
            status: format!("exit status {}", outcome.code),
            stderr_tail: tail,
            log: None,
        })
    }

    /// The commits reachable from `tip` but not from `exclude`, oldest
    /// first, merges' every parent included.
    pub fn new_commits(&self, tip: &str, exclude: &str) -> Result<Vec<String>, ProcessError> {
        let range = format!("^{exclude}");
        let out = self.run(
            "list the new commits",
            &["rev-list", "--topo-order", "--reverse", tip, &range, "--"],
        )?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The newest tag matching the git glob `pattern` (by creator date,
    /// ties by version order), if any.
    pub fn newest_tag(&self, pattern: &str) -> Result<Option<String>, ProcessError> {
        let tags = self.tags("list the tags", &[], pattern)?;
        Ok(tags.into_iter().next())
    }

    /// The tags matching `pattern` that point at `commit`.
    pub fn tags_at(&self, pattern: &str, commit: &str) -> Result<Vec<String>, ProcessError> {
        self.tags(
            "list the tags of a commit",
            &["--points-at", commit],
            pattern,
        )
    }

    /// The tags matching `pattern` (and `filter`), newest first.
    fn tags(
        &self,
        what: &str,
        filter: &[&str],
        pattern: &str,
    ) -> Result<Vec<String>, ProcessError> {
        let mut args = vec!["tag", "--list"];
        args.extend_from_slice(filter);
        // The last --sort is the primary key.
        args.extend([
            "--sort=-version:refname",
            "--sort=-creatordate",
            "--format=%(refname:strip=2)",
            "--end-of-options",
            pattern,
        ]);
        let out = self.run(what, &args)?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// The type of the object `revision` names ("commit", "tag", ...).
    pub fn object_type(&self, revision: &str) -> Result<String, ProcessError> {
        Ok(self
            .run(
                "read an object's type",
                &["cat-file", "-t", "--end-of-options", revision],
            )?
            .trim()
            .to_owned())
    }

    /// The raw object `id` of `kind` ("commit" or "tag").
    pub fn raw_object(&self, kind: &str, id: &str) -> Result<String, ProcessError> {
        self.run(&format!("read {kind} {id}"), &["cat-file", kind, id])
    }

    /// The subject line of `commit`.
    pub fn subject(&self, commit: &str) -> Result<String, ProcessError> {
        Ok(self
            .run(
                "read a commit's subject",
                &[
                    "log",
                    "-1",
                    "--no-show-signature",
                    "--format=%s",
                    commit,
                    "--",
                ],
            )?
            .trim()
            .to_owned())
    }

    /// Points `reference` (under `refs/kvmx-ci/`) at `commit`, so that the
    /// commit stays in the mirror whatever the source does.
    pub fn pin(&self, reference: &str, commit: &str) -> Result<(), ProcessError> {
        let name = format!("refs/kvmx-ci/{reference}");
        self.run("pin a verified commit", &["update-ref", &name, commit])?;
        Ok(())
    }
}

/// Whether `text` is a full object id (SHA-1 or SHA-256), not a name.
pub(crate) fn is_object_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64)
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
