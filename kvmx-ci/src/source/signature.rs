//! Signature checks by policy. kvmx-ci reads the signature's kind from the
//! raw object itself (git would accept either kind under any policy), lets
//! hermetic git verify it, and for OpenPGP compares the signer's
//! fingerprint with the job's list itself.

use camino::Utf8PathBuf;

use crate::job::{Job, Policy};

use super::git::Git;
use super::{SourceError, keyring, resolve};

/// The kind of a signature, from its armor line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureKind {
    /// `-----BEGIN SSH SIGNATURE-----`
    Ssh,
    /// `-----BEGIN PGP SIGNATURE-----`
    OpenPgp,
    /// `-----BEGIN SIGNED MESSAGE-----` (X.509), never accepted.
    X509,
}

impl SignatureKind {
    fn from_armor(line: &str) -> Option<SignatureKind> {
        match line.trim_end() {
            "-----BEGIN SSH SIGNATURE-----" => Some(SignatureKind::Ssh),
            "-----BEGIN PGP SIGNATURE-----" | "-----BEGIN PGP MESSAGE-----" => {
                Some(SignatureKind::OpenPgp)
            }
            "-----BEGIN SIGNED MESSAGE-----" => Some(SignatureKind::X509),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            SignatureKind::Ssh => "an SSH signature",
            SignatureKind::OpenPgp => "an OpenPGP signature",
            SignatureKind::X509 => "an X.509 signature",
        }
    }
}

/// The kind of the signature of a raw commit: its `gpgsig` header.
pub(crate) fn commit_signature(raw: &str) -> Option<SignatureKind> {
    raw.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            line.strip_prefix("gpgsig ")
                .or_else(|| line.strip_prefix("gpgsig-sha256 "))
        })
        .and_then(SignatureKind::from_armor)
}

/// The kind of the signature of a raw tag: the first armor line after its
/// header, where git looks.
pub(crate) fn tag_signature(raw: &str) -> Option<SignatureKind> {
    raw.lines()
        .skip_while(|line| !line.is_empty())
        .find_map(SignatureKind::from_armor)
}

/// What is checked, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signed<'a> {
    /// A commit.
    Commit,
    /// A tag, by name.
    Tag(&'a str),
}

impl Signed<'_> {
    fn prefix(&self) -> String {
        match self {
            Signed::Commit => String::new(),
            Signed::Tag(name) => format!("tag {name}: "),
        }
    }
}

/// Checks signatures as a job's policy says.
pub(crate) struct Checker<'a> {
    git: &'a Git,
    policy: Policy,
    allowed_signers: Option<Utf8PathBuf>,
    keyring_file: Option<Utf8PathBuf>,
    signers: Vec<String>,
}

impl<'a> Checker<'a> {
    /// The checker of `job`; for `openpgp`, its keyring is (re)imported
    /// first.
    pub fn new(git: &'a Git, job: &Job) -> Result<Checker<'a>, SourceError> {
        let source = &job.source;
        let config = |message: &str| SourceError::Config {
            job: job.name.clone(),
            message: message.to_owned(),
        };
        let mut checker = Checker {
            git,
            policy: source.verify,
            allowed_signers: None,
            keyring_file: None,
            signers: Vec::new(),
        };
        match source.verify {
            Policy::Ssh => {
                let file = source.allowed_signers.as_ref().ok_or_else(|| {
                    config("verify = \"ssh\" needs source.allowed_signers, an allowed_signers file")
                })?;
                let file = resolve(job, file);
                std::fs::metadata(&file).map_err(SourceError::io(&file))?;
                checker.allowed_signers = Some(file);
            }
            Policy::Openpgp => {
                let file = source.keyring.as_ref().ok_or_else(|| {
                    config(
                        "verify = \"openpgp\" needs source.keyring, a file of armored public keys",
                    )
                })?;
                if source.signers.is_empty() {
                    return Err(config(
                        "verify = \"openpgp\" needs source.signers, the fingerprints allowed to sign",
                    ));
                }
                let file = resolve(job, file);
                keyring::prepare(git, &file)?;
                checker.keyring_file = Some(file);
                checker.signers = source.signers.iter().map(|s| normalize(s)).collect();
            }
            Policy::None => {}
        }
        Ok(checker)
    }

    /// Checks the signature of `commit`; returns the signer.
    pub fn commit(&self, commit: &str) -> Result<Option<String>, SourceError> {
        if self.policy == Policy::None {
            return Ok(None);
        }
        let raw = self.git.raw_object("commit", commit)?;
        self.check(Signed::Commit, commit_signature(&raw), commit, commit)
    }

    /// Checks the signature of the tag `name` whose commit is `commit`;
    /// returns the signer.
    pub fn tag(&self, name: &str, commit: &str) -> Result<Option<String>, SourceError> {
        if self.policy == Policy::None {
            return Ok(None);
        }
        let reference = format!("refs/tags/{name}");
        let object = self
            .git
            .run(
                "resolve a tag",
                &["rev-parse", "--verify", "--end-of-options", &reference],
            )?
            .trim()
            .to_owned();
        if self.git.object_type(&object)? != "tag" {
            return Err(SourceError::rejected(
                commit,
                format!("tag {name} is a lightweight tag: it carries no signature"),
            ));
        }
        let raw = self.git.raw_object("tag", &object)?;
        self.check(Signed::Tag(name), tag_signature(&raw), &object, commit)
    }

    fn check(
        &self,
        signed: Signed<'_>,
        kind: Option<SignatureKind>,
        object: &str,
        commit: &str,
    ) -> Result<Option<String>, SourceError> {
        let prefix = signed.prefix();
        let reject = |reason: String| SourceError::rejected(commit, format!("{prefix}{reason}"));
        let wanted = match self.policy {
            Policy::Ssh => SignatureKind::Ssh,
            Policy::Openpgp => SignatureKind::OpenPgp,
            Policy::None => return Ok(None),
        };
        let policy = match self.policy {
            Policy::Ssh => "ssh",
            _ => "openpgp",
        };
        let Some(kind) = kind else {
            return Err(reject(format!("not signed (the job's policy is {policy})")));
        };
        if kind != wanted {
            return Err(reject(format!(
                "signed with {}, but the job's policy is {policy}, which accepts only {}",
                kind.describe(),
                wanted.describe()
            )));
        }
        let command = match signed {
            Signed::Commit => "verify-commit",
            Signed::Tag(_) => "verify-tag",
        };
        let what = format!("verify the signature of {object}");
        let outcome = self.git.run_status(&what, &[command, "--raw", object])?;
        match self.policy {
            Policy::Ssh => self
                .ssh_verdict(outcome.code, &outcome.output)
                .map_err(reject),
            _ => self
                .openpgp_verdict(outcome.code, &outcome.output)
                .map_err(reject),
        }
        .map(Some)
    }

    fn ssh_verdict(&self, code: i32, output: &str) -> Result<String, String> {
        let file = self
            .allowed_signers
            .as_deref()
            .map(|f| f.as_str())
            .unwrap_or_default();
        let good = output
            .lines()
            .find_map(|line| line.trim().strip_prefix("Good \"git\" signature for "));
        match good {
            Some(rest) if code == 0 => Ok(ssh_signer(rest)),
            _ => Err(format!(
                "its SSH signature is not by a key of the allowed signers file {file} ({})",
                summary(output)
            )),
        }
    }

    fn openpgp_verdict(&self, code: i32, output: &str) -> Result<String, String> {
        let file = self
            .keyring_file
            .as_deref()
            .map(|f| f.as_str())
            .unwrap_or_default();
        let status = |keyword: &str| -> Option<Vec<&str>> {
            output.lines().find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some("[GNUPG:]") && fields.next() == Some(keyword))
                    .then(|| fields.collect())
            })
        };
        if let Some(fields) = status("NO_PUBKEY") {
            let key = fields.first().copied().unwrap_or("?");
            return Err(format!(
                "signed by OpenPGP key {key}, which is not in the job's keyring {file}"
            ));
        }
        let valid = status("VALIDSIG").filter(|_| code == 0 && status("GOODSIG").is_some());
        let Some(fields) = valid else {
            return Err(format!(
                "its OpenPGP signature does not verify ({})",
                summary(output)
            ));
        };
        // VALIDSIG <signing key> <date> <time> <expiry> <version> <reserved>
        // <algo> <hash> <class> <primary key>
        let signing_key = fields.first().copied().unwrap_or_default();
        let primary_key = fields.get(9).copied().unwrap_or(signing_key);
        let allowed = |fpr: &str| self.signers.contains(&normalize(fpr));
        if allowed(primary_key) || allowed(signing_key) {
            return Ok(primary_key.to_owned());
        }
        let subkey = if signing_key == primary_key {
            String::new()
        } else {
            format!(" (signing subkey {signing_key})")
        };
        Err(format!(
            "signed by OpenPGP key {primary_key}{subkey}, which is not one of the job's signers"
        ))
    }
}

/// "alice with ED25519 key SHA256:…" → "alice (ED25519 key SHA256:…)".
fn ssh_signer(rest: &str) -> String {
    let rest = rest.trim();
    match rest.split_once(" with ") {
        Some((principal, key)) => format!("{} ({key})", principal.trim_matches('"')),
        None => rest.to_owned(),
    }
}

/// A fingerprint as gpg prints it: upper case, no spaces, no `0x`.
fn normalize(fingerprint: &str) -> String {
    let upper: String = fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    upper.strip_prefix("0X").map(str::to_owned).unwrap_or(upper)
}

/// The last lines of a verifier's output, on one line.
fn summary(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let start = lines.len().saturating_sub(4);
    let text = lines[start..].join("; ");
    if text.is_empty() {
        "the verifier said nothing".to_owned()
    } else {
        text
    }
}
