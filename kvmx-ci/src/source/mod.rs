//! Source integrity: a bare mirror kvmx-ci owns, hermetic git, signature
//! policies, the trust root, rollback protection, and the export of a
//! verified commit by its id.
//!
//! No unverified byte reaches a VM: [`verify`] fetches the source into the
//! job's mirror, checks every new commit (or the newest matching tag) as
//! the job's policy says, refuses a tip that does not descend from the last
//! verified commit, and records the result; [`export`] then writes the tree
//! of that commit, by its id, into a folder of kvmx-ci's own.
//!
//! The chain starts at a trust root: `source.trust_root` in the job file,
//! else the commit recorded by `kvmx-ci trust` ([`trust_candidate`] shows
//! it, [`trust`] records it). The `none` policy is explicit: it needs no
//! trust root, checks nothing and records no signer.

mod error;
mod export;
mod git;
mod keyring;
mod record;
mod signature;
#[cfg(test)]
mod tests;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::Layout;
use serde::{Deserialize, Serialize};

pub use error::SourceError;

use crate::job::{Job, Mode, Policy};
use crate::paths::JobPaths;
use git::{Git, is_object_id};
use record::TrustRecord;
use signature::Checker;

/// A verified commit, as recorded in the job's `verified.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The full commit id: what is exported.
    pub commit: String,
    /// Who signed it (the tip commit, or the tag in tag mode); `None` under
    /// the `none` policy.
    pub signer: Option<String>,
    /// The policy it was checked by.
    pub policy: Policy,
    /// The branch or tag name it was found on.
    pub reference: String,
}

/// What `kvmx-ci trust` shows before recording a trust root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustCandidate {
    /// The full commit id: the branch's tip, or the newest tag's commit.
    pub commit: String,
    /// Who signed it (or its tag); `None` under the `none` policy.
    pub signer: Option<String>,
    /// The commit's subject line.
    pub subject: String,
    /// The branch or tag name.
    pub reference: String,
}

/// Fetches the job's source, verifies it as the job's policy and mode say,
/// and records the verified commit. A failed check is a
/// [`SourceError::Rejected`].
pub fn verify(layout: &Layout, job: &Job) -> Result<Verified, SourceError> {
    let source = Source::open(layout, job);
    source.fetch()?;
    let checker = Checker::new(&source.git, job)?;
    let (reference, tip) = source.target()?;
    let verified = if job.source.verify == Policy::None {
        Verified {
            commit: tip,
            signer: None,
            policy: Policy::None,
            reference,
        }
    } else {
        source.verify_chain(&checker, reference, tip)?
    };
    source.git.pin("verified", &verified.commit)?;
    record::write(&source.paths.verified, &verified)?;
    Ok(verified)
}

/// Writes the tree of `commit` (a full id: the last verified commit or one
/// of its ancestors) into `dest`, a new or empty folder.
pub fn export(
    layout: &Layout,
    job: &Job,
    commit: &str,
    dest: &Utf8Path,
) -> Result<(), SourceError> {
    let source = Source::open(layout, job);
    if !is_object_id(commit) {
        return Err(SourceError::Config {
            job: job.name.clone(),
            message: format!("export takes a full commit id, not {commit:?}"),
        });
    }
    let not_verified = |last: &str| SourceError::NotVerified {
        job: job.name.clone(),
        commit: commit.to_owned(),
        last: last.to_owned(),
    };
    let last = last_verified(layout, job).ok_or_else(|| not_verified("none"))?;
    if source.git.commit_of(commit)?.as_deref() != Some(commit)
        || !source.git.is_ancestor(commit, &last.commit)?
    {
        return Err(not_verified(&last.commit));
    }
    export::archive(&source.git, &source.paths.root, commit, dest)
}

/// Fetches the job's source and shows the commit `kvmx-ci trust` would
/// record: the branch's tip (or the newest matching tag's commit), with its
/// signature checked by the job's policy.
pub fn trust_candidate(layout: &Layout, job: &Job) -> Result<TrustCandidate, SourceError> {
    let source = Source::open(layout, job);
    source.fetch()?;
    let checker = Checker::new(&source.git, job)?;
    let (reference, commit) = source.target()?;
    let signer = match job.source.mode {
        Mode::Commits => checker.commit(&commit)?,
        Mode::Tag => checker.tag(&reference, &commit)?,
    };
    Ok(TrustCandidate {
        subject: source.git.subject(&commit)?,
        commit,
        signer,
        reference,
    })
}

/// Records `commit` as the job's trust root, once its signature (or, in tag
/// mode, that of a matching tag at it) passes the job's policy.
pub fn trust(layout: &Layout, job: &Job, commit: &str) -> Result<(), SourceError> {
    let source = Source::open(layout, job);
    if let Some(root) = &job.source.trust_root {
        return Err(SourceError::Config {
            job: job.name.clone(),
            message: format!(
                "the job file sets source.trust_root = {root:?}; change it there instead"
            ),
        });
    }
    source.fetch()?;
    let checker = Checker::new(&source.git, job)?;
    let commit = source.resolve_commit(commit)?;
    let (signer, reference) = source.check_root(&checker, &commit)?;
    source.git.pin("trust-root", &commit)?;
    record::write(
        &source.paths.trust,
        &TrustRecord {
            commit,
            signer,
            reference,
        },
    )
}

/// The job's last verified commit, if one is recorded (and readable).
pub fn last_verified(layout: &Layout, job: &Job) -> Option<Verified> {
    let paths = JobPaths::new(layout, &job.name);
    record::read(&job.name, &paths.verified).ok().flatten()
}

/// A path of the job file, relative to the job file's folder.
pub(crate) fn resolve(job: &Job, path: &Utf8Path) -> Utf8PathBuf {
    match job.file.parent() {
        Some(folder) if path.is_relative() => folder.join(path),
        _ => path.to_owned(),
    }
}

/// The job's source URL; a relative local path is taken from the job
/// file's folder.
fn source_url(job: &Job) -> String {
    let url = &job.source.url;
    // git's own rule: a colon before any slash makes `host:path`.
    let scp_like = url
        .find(':')
        .is_some_and(|colon| !url[..colon].contains('/'));
    if url.contains("://") || scp_like {
        url.clone()
    } else {
        resolve(job, Utf8Path::new(url)).into_string()
    }
}

/// One job's source: its paths, its mirror and its URL.
struct Source<'a> {
    job: &'a Job,
    paths: JobPaths,
    git: Git,
    url: String,
}

impl<'a> Source<'a> {
    fn open(layout: &Layout, job: &'a Job) -> Source<'a> {
        let paths = JobPaths::new(layout, &job.name);
        let allowed_signers = match job.source.verify {
            Policy::Ssh => job
                .source
                .allowed_signers
                .as_deref()
                .map(|file| resolve(job, file)),
            _ => None,
        };
        Source {
            git: Git::new(&paths, job.source.verify, allowed_signers),
            url: source_url(job),
            paths,
            job,
        }
    }

    fn fetch(&self) -> Result<(), SourceError> {
        self.git.fetch(&self.url)
    }

    fn not_found(&self, what: String) -> SourceError {
        SourceError::NotFound {
            what,
            url: self.url.clone(),
        }
    }

    fn resolve_commit(&self, revision: &str) -> Result<String, SourceError> {
        self.git
            .commit_of(revision)?
            .ok_or_else(|| self.not_found(format!("commit {revision}")))
    }

    fn tag_pattern(&self) -> Result<&'a str, SourceError> {
        self.job
            .source
            .tag
            .as_deref()
            .ok_or_else(|| SourceError::Config {
                job: self.job.name.clone(),
                message: "mode = \"tag\" needs source.tag, a tag pattern such as \"v*\"".into(),
            })
    }

    /// The reference followed and its commit: the branch's tip, or the
    /// newest matching tag.
    fn target(&self) -> Result<(String, String), SourceError> {
        match self.job.source.mode {
            Mode::Commits => {
                let branch = &self.job.source.branch;
                let commit = self
                    .git
                    .commit_of(&format!("refs/heads/{branch}"))?
                    .ok_or_else(|| self.not_found(format!("branch {branch}")))?;
                Ok((branch.clone(), commit))
            }
            Mode::Tag => {
                let pattern = self.tag_pattern()?;
                let tag = self
                    .git
                    .newest_tag(pattern)?
                    .ok_or_else(|| self.not_found(format!("a tag matching {pattern:?}")))?;
                let commit = self.resolve_commit(&format!("refs/tags/{tag}"))?;
                Ok((tag, commit))
            }
        }
    }

    /// The trust root's full id: the job file's, else `kvmx-ci trust`'s.
    fn trust_root(&self) -> Result<String, SourceError> {
        let root = match &self.job.source.trust_root {
            Some(root) => root.clone(),
            None => {
                let recorded: Option<TrustRecord> =
                    record::read(&self.job.name, &self.paths.trust)?;
                recorded
                    .ok_or_else(|| SourceError::NoTrustRoot {
                        job: self.job.name.clone(),
                    })?
                    .commit
            }
        };
        self.git
            .commit_of(&root)?
            .ok_or_else(|| self.not_found(format!("the trust root {root}")))
    }

    /// Checks the trust root's own signature; returns its signer and the
    /// reference that carries it.
    fn check_root(
        &self,
        checker: &Checker<'_>,
        root: &str,
    ) -> Result<(Option<String>, String), SourceError> {
        let as_root = |error: SourceError| match error {
            SourceError::Rejected { commit, reason } => SourceError::Rejected {
                commit,
                reason: format!("the trust root is refused: {reason}"),
            },
            other => other,
        };
        match self.job.source.mode {
            Mode::Commits => {
                let signer = checker.commit(root).map_err(as_root)?;
                Ok((signer, self.job.source.branch.clone()))
            }
            Mode::Tag => {
                let pattern = self.tag_pattern()?;
                let mut refused = None;
                for tag in self.git.tags_at(pattern, root)? {
                    match checker.tag(&tag, root) {
                        Ok(signer) => return Ok((signer, tag)),
                        Err(error) if error.is_rejection() => refused = Some(error),
                        Err(error) => return Err(error),
                    }
                }
                Err(as_root(refused.unwrap_or_else(|| {
                    SourceError::rejected(
                        root,
                        format!("no tag matching {pattern:?} points at it, so nothing signs it"),
                    )
                })))
            }
        }
    }

    /// Checks everything between the last verified commit (or the trust
    /// root, inclusive) and `tip`.
    fn verify_chain(
        &self,
        checker: &Checker<'_>,
        reference: String,
        tip: String,
    ) -> Result<Verified, SourceError> {
        let root = self.trust_root()?;
        let last = record::read::<Verified>(&self.job.name, &self.paths.verified)?;
        // A re-recorded trust root that the last verified commit does not
        // descend from starts a new chain, and so does a policy change.
        let last = match last {
            // A commit recorded under another policy (`none` above all) was
            // not checked as this one asks.
            Some(last) if last.policy != self.job.source.verify => None,
            Some(last) if self.git.commit_of(&last.commit)?.is_none() => {
                // Pinned in the mirror, so gone only with the mirror: the
                // tip cannot descend from it.
                return Err(rollback(&tip, &last.commit));
            }
            Some(last) if self.git.is_ancestor(&root, &last.commit)? => Some(last.commit),
            _ => None,
        };
        let start = match &last {
            Some(last) => {
                if !self.git.is_ancestor(last, &tip)? {
                    return Err(rollback(&tip, last));
                }
                last.clone()
            }
            None => {
                if !self.git.is_ancestor(&root, &tip)? {
                    return Err(SourceError::rejected(
                        &tip,
                        format!("does not descend from the trust root {root}"),
                    ));
                }
                self.check_root(checker, &root)?;
                root.clone()
            }
        };
        let signer = match self.job.source.mode {
            Mode::Commits => {
                let mut signer = None;
                for commit in self.git.new_commits(&tip, &start)? {
                    signer = checker.commit(&commit)?;
                }
                if tip == start {
                    signer = checker.commit(&tip)?;
                }
                signer
            }
            Mode::Tag => checker.tag(&reference, &tip)?,
        };
        Ok(Verified {
            commit: tip,
            signer,
            policy: self.job.source.verify,
            reference,
        })
    }
}

fn rollback(commit: &str, last: &str) -> SourceError {
    SourceError::rejected(
        commit,
        format!(
            "does not descend from the last verified commit {last} (a force-push or a rollback)"
        ),
    )
}
