//! Source verification against real git repositories, real SSH keys made by
//! `ssh-keygen` and real OpenPGP keys made by `gpg`, each test in its own
//! folder with its own keys.

use std::collections::BTreeMap;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::process::{Runner, Tool};
use kvmx_core::{CancelFlag, Layout};

use super::*;
use crate::job::{Freshness, Job, Mode, Policy, Source as JobSource, VmSpec};

/// An SSH signing key.
struct SshKey {
    private: Utf8PathBuf,
    public: String,
}

/// An OpenPGP key in its own GnuPG home (its "user's" keyring).
struct GpgKey {
    home: Utf8PathBuf,
    fingerprint: String,
    subkey: Option<String>,
}

/// How a test commit or tag is signed.
enum Signing<'a> {
    Unsigned,
    Ssh(&'a SshKey),
    Pgp(&'a GpgKey),
}

/// A test's folder: an upstream repository, keys, and a kvmx home.
struct World {
    _dir: tempfile::TempDir,
    root: Utf8PathBuf,
    layout: Layout,
    upstream: Utf8PathBuf,
    gnupg_homes: Vec<Utf8PathBuf>,
    runner: Runner,
}

impl Drop for World {
    fn drop(&mut self) {
        // gpg starts an agent per home for signing; stop each.
        let job_keyring = JobPaths::new(&self.layout, "demo").keyring;
        for home in self.gnupg_homes.iter().chain([&job_keyring]) {
            let tool = self.tool("gpgconf", "stop the agent").args([
                "--homedir",
                home.as_str(),
                "--kill",
                "all",
            ]);
            let _ = self.runner.run(&tool);
        }
    }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        let upstream = root.join("upstream");
        std::fs::create_dir(root.join("jobs")).unwrap();
        let mut world = World {
            layout: Layout::under(&root.join("kvmx")),
            upstream: upstream.clone(),
            root,
            _dir: dir,
            gnupg_homes: Vec::new(),
            runner: Runner::unlogged(CancelFlag::new()),
        };
        world.run(
            world
                .tool("git", "init")
                .args(["init", "-q", "-b", "main", upstream.as_str()]),
        );
        world.gnupg_homes.clear();
        world
    }

    /// A tool in an environment of the test's own.
    fn tool(&self, program: &str, what: &str) -> Tool {
        Tool::new(program, what)
            .clean_env()
            .env("HOME", &self.root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GNUPGHOME", self.root.join("no-gnupg"))
            .deadline(Duration::from_secs(120))
    }

    fn run(&self, tool: Tool) -> String {
        let out = self.runner.run(&tool).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out.stdout).unwrap()
    }

    /// git in the upstream repository, signing as `signing` says.
    fn git(&self, signing: &Signing<'_>, args: &[&str]) -> String {
        let mut tool = self
            .tool("git", "git")
            .args(["-C", self.upstream.as_str()])
            .args([
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.invalid",
            ]);
        match signing {
            Signing::Unsigned => {}
            Signing::Ssh(key) => {
                tool = tool
                    .args(["-c", "gpg.format=ssh", "-c"])
                    .arg(format!("user.signingkey={}", key.private));
            }
            Signing::Pgp(key) => {
                tool = tool
                    .args(["-c", "gpg.format=openpgp", "-c", "gpg.program=gpg", "-c"])
                    .arg(format!("user.signingkey={}", key.fingerprint))
                    .env("GNUPGHOME", &key.home);
            }
        }
        self.run(tool.args(args)).trim().to_owned()
    }

    /// A commit on the current branch writing `content` into content.txt.
    fn commit(&self, content: &str, signing: Signing<'_>) -> String {
        std::fs::write(self.upstream.join("content.txt"), content).unwrap();
        self.git(&Signing::Unsigned, &["add", "content.txt"]);
        let sign = if matches!(signing, Signing::Unsigned) {
            "--no-gpg-sign"
        } else {
            "-S"
        };
        self.git(&signing, &["commit", "-q", sign, "-m", content]);
        self.git(&Signing::Unsigned, &["rev-parse", "HEAD"])
    }

    /// An annotated tag at HEAD, signed as `signing` says.
    fn tag(&self, name: &str, signing: Signing<'_>) {
        let sign = if matches!(signing, Signing::Unsigned) {
            "-a"
        } else {
            "-s"
        };
        self.git(&signing, &["tag", sign, "-m", name, name]);
    }

    fn ssh_key(&self, name: &str) -> SshKey {
        let private = self.root.join(format!("ssh-{name}"));
        self.run(self.tool("ssh-keygen", "make a key").args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            private.as_str(),
        ]));
        let public = std::fs::read_to_string(format!("{private}.pub")).unwrap();
        SshKey {
            private,
            public: public.trim().to_owned(),
        }
    }

    /// An allowed_signers file naming `keys` (by their comment).
    fn allowed_signers(&self, keys: &[&SshKey]) -> Utf8PathBuf {
        let path = self.root.join("allowed_signers");
        let lines: String = keys
            .iter()
            .map(|key| {
                let name = key.public.rsplit(' ').next().unwrap();
                format!("{name}@example.invalid {}\n", key.public)
            })
            .collect();
        std::fs::write(&path, lines).unwrap();
        path
    }

    /// An ed25519 OpenPGP key, with a signing subkey when `subkey`.
    fn gpg_key(&mut self, name: &str, subkey: bool) -> GpgKey {
        let home = self.root.join(format!("gnupg-{name}"));
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        self.gnupg_homes.push(home.clone());
        let gpg = |args: &[&str]| {
            self.run(
                self.tool("gpg", "gpg")
                    .env("GNUPGHOME", &home)
                    .args(["--batch", "--passphrase", ""])
                    .args(args),
            )
        };
        let user = format!("{name} <{name}@example.invalid>");
        gpg(&["--quick-gen-key", &user, "ed25519", "sign", "never"]);
        let listing = gpg(&["--with-colons", "--list-keys", &user]);
        let fingerprint = listing
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .unwrap()
            .to_owned();
        let subkey = subkey.then(|| {
            gpg(&["--quick-add-key", &fingerprint, "ed25519", "sign", "never"]);
            let listing = gpg(&["--with-colons", "--list-keys", &fingerprint]);
            let mut fingerprints = listing.lines().filter_map(|line| line.strip_prefix("fpr:"));
            let last = fingerprints.next_back().unwrap();
            last.split(':').nth(8).unwrap().to_owned()
        });
        GpgKey {
            home,
            fingerprint,
            subkey,
        }
    }

    /// A file of the armored public keys of `keys`.
    fn keyring_file(&self, keys: &[&GpgKey]) -> Utf8PathBuf {
        let path = self.root.join("keys.asc");
        let armored: String = keys
            .iter()
            .map(|key| {
                self.run(
                    self.tool("gpg", "export a key")
                        .env("GNUPGHOME", &key.home)
                        .args(["--batch", "--armor", "--export", &key.fingerprint]),
                )
            })
            .collect();
        std::fs::write(&path, armored).unwrap();
        path
    }

    /// A job following the upstream's main branch under `policy`; its
    /// source URL is relative to the job file's folder.
    fn job(&self, policy: Policy) -> Job {
        Job {
            name: "demo".into(),
            file: self.root.join("jobs/demo.toml"),
            source: JobSource {
                url: "../upstream".into(),
                branch: "main".into(),
                tag: None,
                verify: policy,
                mode: Mode::Commits,
                allowed_signers: None,
                keyring: None,
                signers: Vec::new(),
                trust_root: None,
            },
            vm: VmSpec {
                project: None,
                name: None,
                template: None,
                fresh: Freshness::Reuse,
                workdir: "src".into(),
            },
            steps: Vec::new(),
            timeout: Duration::from_secs(60),
            env: BTreeMap::new(),
            artifacts: Vec::new(),
            schedule: None,
            keep: 20,
            notify: None,
        }
    }

    fn ssh_job(&self, signers: Utf8PathBuf, trust_root: &str) -> Job {
        let mut job = self.job(Policy::Ssh);
        job.source.allowed_signers = Some(signers);
        job.source.trust_root = Some(trust_root.to_owned());
        job
    }

    fn openpgp_job(&self, keyring: Utf8PathBuf, signers: &[&GpgKey], trust_root: &str) -> Job {
        let mut job = self.job(Policy::Openpgp);
        job.source.keyring = Some(keyring);
        job.source.signers = signers.iter().map(|key| key.fingerprint.clone()).collect();
        job.source.trust_root = Some(trust_root.to_owned());
        job
    }
}

/// Asserts a rejection of `commit` whose message says `why`.
#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(result: Result<T, SourceError>, commit: &str, why: &str) {
    let error = result.expect_err("the source should be rejected");
    assert!(error.is_rejection(), "not a rejection: {error}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("commit {commit}: ")),
        "{message}"
    );
    assert!(message.contains(why), "{message:?} does not say {why:?}");
}

#[test]
fn ssh_signed_fast_forward_passes() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice));
    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);

    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(verified.commit, first);
    assert_eq!(verified.reference, "main");
    assert_eq!(verified.policy, Policy::Ssh);
    let signer = verified.signer.unwrap();
    assert!(
        signer.starts_with("alice@example.invalid (ED25519 key SHA256:"),
        "{signer}"
    );

    let second = world.commit("two", Signing::Ssh(&alice));
    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(verified.commit, second);
    assert_eq!(last_verified(&world.layout, &job), Some(verified));
}

#[test]
fn unsigned_commit_is_rejected() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice));
    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    verify(&world.layout, &job).unwrap();

    let unsigned = world.commit("two", Signing::Unsigned);
    world.commit("three", Signing::Ssh(&alice));
    assert_rejected(verify(&world.layout, &job), &unsigned, "not signed");
    assert_eq!(last_verified(&world.layout, &job).unwrap().commit, first);
}

#[test]
fn ssh_key_not_in_allowed_signers_is_rejected() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let mallory = world.ssh_key("mallory");
    let first = world.commit("one", Signing::Ssh(&alice));
    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    verify(&world.layout, &job).unwrap();

    let forged = world.commit("two", Signing::Ssh(&mallory));
    assert_rejected(
        verify(&world.layout, &job),
        &forged,
        "its SSH signature is not by a key of the allowed signers file",
    );
}

#[test]
fn every_parent_of_a_merge_is_checked() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice));
    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    verify(&world.layout, &job).unwrap();

    world.git(&Signing::Unsigned, &["checkout", "-q", "-b", "side"]);
    let side = world.commit("side", Signing::Unsigned);
    world.git(&Signing::Unsigned, &["checkout", "-q", "main"]);
    world.commit("two", Signing::Ssh(&alice));
    world.git(
        &Signing::Ssh(&alice),
        &[
            "merge",
            "-q",
            "-S",
            "-X",
            "theirs",
            "-m",
            "merge side",
            "side",
        ],
    );
    assert_rejected(verify(&world.layout, &job), &side, "not signed");
}

#[test]
fn force_pushed_rollback_is_rejected() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice));
    let second = world.commit("two", Signing::Ssh(&alice));
    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    assert_eq!(verify(&world.layout, &job).unwrap().commit, second);

    // Back to an older commit that was itself signed and verified.
    world.git(&Signing::Unsigned, &["reset", "-q", "--hard", &first]);
    let expected = format!(
        "does not descend from the last verified commit {second} (a force-push or a rollback)"
    );
    assert_rejected(verify(&world.layout, &job), &first, &expected);

    // A signed commit on another line from there is refused too.
    let diverged = world.commit("other", Signing::Ssh(&alice));
    assert_rejected(verify(&world.layout, &job), &diverged, &expected);
    assert_eq!(last_verified(&world.layout, &job).unwrap().commit, second);
}

#[test]
fn openpgp_signed_fast_forward_passes_by_subkey_or_primary() {
    let mut world = World::new();
    let alice = world.gpg_key("alice", true);
    let first = world.commit("one", Signing::Pgp(&alice));
    let mut job = world.openpgp_job(world.keyring_file(&[&alice]), &[&alice], &first);

    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(verified.signer.as_deref(), Some(alice.fingerprint.as_str()));
    let second = world.commit("two", Signing::Pgp(&alice));
    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(verified.commit, second);
    assert_eq!(verified.policy, Policy::Openpgp);

    // gpg signs with the subkey; listing only the subkey works as well,
    // and the primary key is still what is recorded.
    let subkey = alice.subkey.clone().unwrap();
    assert_ne!(subkey, alice.fingerprint);
    job.source.signers = vec![subkey.to_lowercase()];
    let third = world.commit("three", Signing::Pgp(&alice));
    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(verified.commit, third);
    assert_eq!(verified.signer.as_deref(), Some(alice.fingerprint.as_str()));
}

#[test]
fn openpgp_key_not_among_signers_is_rejected() {
    let mut world = World::new();
    let alice = world.gpg_key("alice", false);
    let bob = world.gpg_key("bob", false);
    let first = world.commit("one", Signing::Pgp(&alice));
    // Bob's key is in the job's keyring but not among its signers.
    let job = world.openpgp_job(world.keyring_file(&[&alice, &bob]), &[&alice], &first);
    verify(&world.layout, &job).unwrap();

    let by_bob = world.commit("two", Signing::Pgp(&bob));
    let expected = format!("signed by OpenPGP key {}", bob.fingerprint);
    assert_rejected(verify(&world.layout, &job), &by_bob, &expected);
    assert_rejected(
        verify(&world.layout, &job),
        &by_bob,
        "not one of the job's signers",
    );
}

#[test]
fn openpgp_key_only_in_the_users_keyring_is_rejected() {
    let mut world = World::new();
    let alice = world.gpg_key("alice", false);
    // Carol's key lives only in the user's own keyring, the one that signs.
    let carol = world.gpg_key("carol", false);
    let first = world.commit("one", Signing::Pgp(&alice));
    let job = world.openpgp_job(world.keyring_file(&[&alice]), &[&alice, &carol], &first);
    verify(&world.layout, &job).unwrap();

    let by_carol = world.commit("two", Signing::Pgp(&carol));
    assert_rejected(
        verify(&world.layout, &job),
        &by_carol,
        "which is not in the job's keyring",
    );
}

#[test]
fn keyring_is_rebuilt_when_its_file_changes() {
    let mut world = World::new();
    let alice = world.gpg_key("alice", false);
    let bob = world.gpg_key("bob", false);
    let first = world.commit("one", Signing::Pgp(&alice));
    let job = world.openpgp_job(world.keyring_file(&[&alice, &bob]), &[&alice, &bob], &first);
    world.commit("two", Signing::Pgp(&bob));
    verify(&world.layout, &job).unwrap();

    // Bob's key leaves the file: the job's keyring must forget it.
    world.keyring_file(&[&alice]);
    let third = world.commit("three", Signing::Pgp(&bob));
    assert_rejected(
        verify(&world.layout, &job),
        &third,
        "not in the job's keyring",
    );
}

#[test]
fn ssh_signature_under_openpgp_is_rejected() {
    let mut world = World::new();
    let alice = world.gpg_key("alice", false);
    let alice_ssh = world.ssh_key("alice");
    let first = world.commit("one", Signing::Pgp(&alice));
    let job = world.openpgp_job(world.keyring_file(&[&alice]), &[&alice], &first);
    verify(&world.layout, &job).unwrap();

    let ssh_signed = world.commit("two", Signing::Ssh(&alice_ssh));
    assert_rejected(
        verify(&world.layout, &job),
        &ssh_signed,
        "signed with an SSH signature, but the job's policy is openpgp",
    );
}

#[test]
fn openpgp_signature_under_ssh_is_rejected() {
    let mut world = World::new();
    let alice = world.gpg_key("alice", false);
    let alice_ssh = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice_ssh));
    let job = world.ssh_job(world.allowed_signers(&[&alice_ssh]), &first);
    verify(&world.layout, &job).unwrap();

    let pgp_signed = world.commit("two", Signing::Pgp(&alice));
    assert_rejected(
        verify(&world.layout, &job),
        &pgp_signed,
        "signed with an OpenPGP signature, but the job's policy is ssh",
    );
}

#[test]
fn tag_mode_takes_the_newest_signed_tag_and_refuses_an_unsigned_newer_one() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    // In tag mode only the tags are signed.
    let first = world.commit("one", Signing::Unsigned);
    world.tag("v1.0", Signing::Ssh(&alice));
    let mut job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    job.source.mode = Mode::Tag;
    job.source.tag = Some("v*".into());

    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(
        (verified.commit.as_str(), verified.reference.as_str()),
        (first.as_str(), "v1.0")
    );
    assert!(
        verified
            .signer
            .unwrap()
            .starts_with("alice@example.invalid")
    );

    let second = world.commit("two", Signing::Unsigned);
    world.tag("v1.1", Signing::Unsigned);
    assert_rejected(verify(&world.layout, &job), &second, "tag v1.1: not signed");

    world.tag("v1.2", Signing::Ssh(&alice));
    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(
        (verified.commit.as_str(), verified.reference.as_str()),
        (second.as_str(), "v1.2")
    );
}

#[test]
fn none_policy_passes_without_a_signer_or_trust_root() {
    let world = World::new();
    world.commit("one", Signing::Unsigned);
    let tip = world.commit("two", Signing::Unsigned);
    let job = world.job(Policy::None);

    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(verified.commit, tip);
    assert_eq!(verified.signer, None);
    assert_eq!(verified.policy, Policy::None);
}

#[test]
fn export_writes_the_verified_commit_not_a_newer_one() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    // The commit's own export attributes change nothing.
    std::fs::write(
        world.upstream.join(".gitattributes"),
        "content.txt export-subst\n.gitattributes export-ignore\n",
    )
    .unwrap();
    world.git(&Signing::Unsigned, &["add", ".gitattributes"]);
    let first = world.commit("one $Format:%H$", Signing::Ssh(&alice));
    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    verify(&world.layout, &job).unwrap();
    // A newer signed commit reaches the mirror but is not verified yet.
    let second = world.commit("two", Signing::Ssh(&alice));
    assert_eq!(trust_candidate(&world.layout, &job).unwrap().commit, second);

    let dest = world.root.join("export");
    export(&world.layout, &job, &first, &dest).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".gitattributes", "content.txt"]);
    assert_eq!(
        std::fs::read_to_string(dest.join("content.txt")).unwrap(),
        "one $Format:%H$"
    );

    let error = export(&world.layout, &job, &second, &world.root.join("newer")).unwrap_err();
    assert!(matches!(error, SourceError::NotVerified { .. }), "{error}");
    assert!(!world.root.join("newer").exists());
}

#[test]
fn no_trust_root_says_to_run_trust() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    world.commit("one", Signing::Ssh(&alice));
    let mut job = world.job(Policy::Ssh);
    job.source.allowed_signers = Some(world.allowed_signers(&[&alice]));

    let error = verify(&world.layout, &job).unwrap_err();
    assert!(matches!(error, SourceError::NoTrustRoot { .. }), "{error}");
    assert!(!error.is_rejection());
    assert!(
        error.to_string().contains("run `kvmx-ci trust demo`"),
        "{error}"
    );
}

#[test]
fn trust_then_verify_passes() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice));
    let mut job = world.job(Policy::Ssh);
    job.source.allowed_signers = Some(world.allowed_signers(&[&alice]));

    let candidate = trust_candidate(&world.layout, &job).unwrap();
    assert_eq!(candidate.commit, first);
    assert_eq!(candidate.subject, "one");
    assert_eq!(candidate.reference, "main");
    assert!(
        candidate
            .signer
            .unwrap()
            .starts_with("alice@example.invalid")
    );
    trust(&world.layout, &job, &candidate.commit).unwrap();

    let second = world.commit("two", Signing::Ssh(&alice));
    assert_eq!(verify(&world.layout, &job).unwrap().commit, second);
}

#[test]
fn an_unsigned_trust_root_is_refused() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let unsigned = world.commit("one", Signing::Unsigned);
    let mut job = world.job(Policy::Ssh);
    job.source.allowed_signers = Some(world.allowed_signers(&[&alice]));
    assert_rejected(
        trust(&world.layout, &job, &unsigned),
        &unsigned,
        "the trust root is refused: not signed",
    );
    assert!(!JobPaths::new(&world.layout, "demo").trust.exists());

    // Set in the job file, it is refused by verify the same way.
    job.source.trust_root = Some(unsigned.clone());
    assert_rejected(
        verify(&world.layout, &job),
        &unsigned,
        "the trust root is refused",
    );
}

#[test]
fn export_refuses_a_path_through_a_symlink_out_of_the_folder() {
    let world = World::new();
    let outside = world.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A tree no `git add` makes: a symlink out of the folder and a folder
    // of the same name, so that `link/evil` would land in `outside`.
    let git = |input: &str, args: &[&str]| {
        let script = format!(
            "printf '{input}' | git -C {} {}",
            world.upstream,
            args.join(" ")
        );
        world
            .run(world.tool("sh", "git").args(["-c", &script]))
            .trim()
            .to_owned()
    };
    let evil = git("evil", &["hash-object", "-w", "--stdin"]);
    let link = git(outside.as_str(), &["hash-object", "-w", "--stdin"]);
    let inner = git(&format!("100644 blob {evil}\\tevil\\n"), &["mktree"]);
    let tree = git(
        &format!("120000 blob {link}\\tlink\\n040000 tree {inner}\\tlink\\n"),
        &["mktree"],
    );
    let commit = git(
        "",
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@e",
            "commit-tree",
            "-m",
            "x",
            &tree,
        ],
    );
    world.git(
        &Signing::Unsigned,
        &["update-ref", "refs/heads/main", &commit],
    );
    let job = world.job(Policy::None);
    assert_eq!(verify(&world.layout, &job).unwrap().commit, commit);

    let dest = world.root.join("export");
    let error = export(&world.layout, &job, &commit, &dest).unwrap_err();
    assert!(matches!(error, SourceError::UnsafePath { .. }), "{error}");
    assert!(!outside.join("evil").exists(), "{error}");
    assert!(!dest.exists(), "{error}");
}

#[test]
fn tag_mode_trust_then_verify_passes() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Unsigned);
    world.tag("v1", Signing::Ssh(&alice));
    let mut job = world.job(Policy::Ssh);
    job.source.allowed_signers = Some(world.allowed_signers(&[&alice]));
    job.source.mode = Mode::Tag;
    job.source.tag = Some("v*".into());

    let candidate = trust_candidate(&world.layout, &job).unwrap();
    assert_eq!(
        (candidate.commit.as_str(), candidate.reference.as_str()),
        (first.as_str(), "v1")
    );
    trust(&world.layout, &job, &candidate.commit).unwrap();
    let verified = verify(&world.layout, &job).unwrap();
    assert_eq!(
        (verified.commit.as_str(), verified.reference.as_str()),
        (first.as_str(), "v1")
    );
}

#[test]
fn a_commit_recorded_under_none_does_not_skip_checks_under_ssh() {
    let world = World::new();
    let alice = world.ssh_key("alice");
    let first = world.commit("one", Signing::Ssh(&alice));
    let unsigned = world.commit("two", Signing::Unsigned);
    verify(&world.layout, &world.job(Policy::None)).unwrap();
    world.commit("three", Signing::Ssh(&alice));

    let job = world.ssh_job(world.allowed_signers(&[&alice]), &first);
    assert_rejected(verify(&world.layout, &job), &unsigned, "not signed");
}
