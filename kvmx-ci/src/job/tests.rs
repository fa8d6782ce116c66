//! Job files: a full example, and the message of each error.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::Layout;

use super::*;
use crate::Error;

/// A job that uses every setting.
const FULL: &str = r#"# Builds and tests the project every night, in a fresh disposable.
timeout = "2h"
keep = 5
artifacts = ["src/target/report.html"]

[source]
url = "../repos/project"
branch = "develop"
verify = "openpgp"
keyring = "keys/signers.asc"
signers = ["0123 4567 89ab CDEF 0123  4567 89AB CDEF 0123 4567"]
trust_root = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

[vm]
template = "debian-ci"
fresh = "disposable"
workdir = "/srv/src"

[[step]]
name = "build"
run = "cargo build"

[[step]]
name = "test"
run = "cargo test"
timeout = "45m"

[env]
CARGO_TERM_COLOR = "never"
_DEBUG = "1"

[schedule]
cron = "30 2 * * mon-fri"

[notify]
command = "notify-send \"$KVMX_CI_JOB: $KVMX_CI_RESULT\""
on = "always"
"#;

/// The smallest job: everything else is a default.
const MINIMAL: &str = r#"[source]
url = "https://example.org/project.git"
verify = "none"

[vm]
name = "builder"
fresh = "reuse"

[[step]]
name = "test"
run = "make test"
"#;

fn parse(text: &str) -> Result<Job, Error> {
    Job::parse(text, Utf8Path::new("ci/nightly.toml"))
}

/// The error as a user reads it: the located message, then the hint.
fn message(error: &Error) -> String {
    match error {
        Error::Job(config) => match &config.hint {
            Some(hint) => format!("{config}\nhint: {hint}"),
            None => config.to_string(),
        },
        other => other.to_string(),
    }
}

fn error_of(text: &str) -> String {
    match parse(text) {
        Ok(job) => panic!("accepted:\n{text}\nas {job:#?}"),
        Err(error) => message(&error),
    }
}

/// `MINIMAL` with `from` replaced by `to` (which must be there).
fn minimal_with(from: &str, to: &str) -> String {
    assert!(MINIMAL.contains(from), "{from:?} is not in the minimal job");
    MINIMAL.replacen(from, to, 1)
}

#[test]
fn a_full_job_loads() {
    let job = Job::parse(FULL, Utf8Path::new("config/ci/nightly.toml")).unwrap();
    assert_eq!(job.name, "nightly");
    assert_eq!(job.file, "config/ci/nightly.toml");
    assert_eq!(job.timeout, Duration::from_secs(7200));
    assert_eq!(job.keep, 5);
    assert_eq!(job.source.url, "config/ci/../repos/project");
    assert_eq!(job.source.branch, "develop");
    assert_eq!(job.source.verify, Policy::Openpgp);
    assert_eq!(job.source.mode, Mode::Commits);
    assert_eq!(
        job.source.keyring.as_deref(),
        Some(Utf8Path::new("config/ci/keys/signers.asc"))
    );
    assert_eq!(
        job.source.signers,
        ["0123456789ABCDEF0123456789ABCDEF01234567"]
    );
    assert_eq!(job.vm.template.as_ref().unwrap().as_str(), "debian-ci");
    assert_eq!(job.vm.fresh, Freshness::Disposable);
    assert_eq!(job.vm.workdir, "/srv/src");
    let steps: Vec<(&str, u64)> = job
        .steps
        .iter()
        .map(|step| (step.name.as_str(), step.timeout.as_secs()))
        .collect();
    assert_eq!(steps, [("build", 1800), ("test", 2700)]);
    assert_eq!(job.env.len(), 2);
    assert_eq!(job.artifacts, ["src/target/report.html"]);
    assert_eq!(
        job.schedule,
        Some(Schedule::Cron("30 2 * * mon-fri".to_owned()))
    );
    assert_eq!(job.notify.as_ref().unwrap().on, NotifyOn::Always);
}

#[test]
fn defaults_fill_a_minimal_job() {
    let job = parse(MINIMAL).unwrap();
    assert_eq!(job.source.branch, "main");
    assert_eq!(job.source.url, "https://example.org/project.git");
    assert_eq!(job.vm.workdir, "src");
    assert_eq!(job.timeout, Duration::from_secs(3600));
    assert_eq!(job.steps[0].timeout, Duration::from_secs(1800));
    assert_eq!(job.keep, 20);
    assert_eq!(job.schedule, None);
    assert_eq!(job.notify, None);
}

#[test]
fn ssh_and_tag_jobs_load() {
    let text = minimal_with(
        "verify = \"none\"",
        "verify = \"ssh\"\nallowed_signers = \"/etc/kvmx/allowed_signers\"\nmode = \"tag\"\ntag = \"v*\"",
    );
    let job = parse(&text).unwrap();
    // An absolute path stays as it is.
    assert_eq!(
        job.source.allowed_signers.as_deref(),
        Some(Utf8Path::new("/etc/kvmx/allowed_signers"))
    );
    assert_eq!(job.source.tag.as_deref(), Some("v*"));
    let text = minimal_with(
        "[[step]]",
        "[schedule]\non_calendar = \"Mon..Fri 02:30\"\n\n[[step]]",
    );
    assert!(parse(&text).unwrap().schedule.is_some());
}

macro_rules! error_tests {
    ($($name:ident: $text:expr;)*) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(error_of(&$text));
            }
        )*
    };
}

error_tests! {
    misspelt_key: minimal_with("verify", "brnach = \"main\"\nverify");
    unknown_section: format!("{MINIMAL}\n[cache]\nsize = 1\n");
    unknown_freshness: minimal_with("\"reuse\"", "\"new\"");
    bad_vm_name: minimal_with("\"builder\"", "\"my builder\"");
    bad_duration: minimal_with("run = \"make test\"", "run = \"make test\"\ntimeout = \"10 parsecs\"");
    no_vm: minimal_with("name = \"builder\"\n", "");
    two_vms: minimal_with("name = \"builder\"", "name = \"builder\"\ntemplate = \"debian\"");
    disposable_without_template: minimal_with("\"reuse\"", "\"disposable\"");
    template_not_disposable: minimal_with("name = \"builder\"", "template = \"debian\"");
    ssh_without_allowed_signers: minimal_with("\"none\"", "\"ssh\"");
    openpgp_without_keyring: minimal_with("\"none\"", "\"openpgp\"\nsigners = [\"0123456789ABCDEF0123456789ABCDEF01234567\"]");
    openpgp_without_signers: minimal_with("\"none\"", "\"openpgp\"\nkeyring = \"keys.asc\"");
    bad_fingerprint: minimal_with("\"none\"", "\"openpgp\"\nkeyring = \"keys.asc\"\nsigners = [\n  \"0123456789ABCDEF0123456789ABCDEF01234567\",\n  \"0123 4567 XYZ\",\n]");
    tag_mode_without_tag: minimal_with("\"none\"", "\"none\"\nmode = \"tag\"");
    no_steps: MINIMAL.split("[[step]]").next().unwrap();
    empty_step_name: format!("{MINIMAL}\n[[step]]\nname = \" \"\nrun = \"true\"\n");
    duplicate_step_names: format!("{MINIMAL}\n[[step]]\nname = \"test\"\nrun = \"make check\"\n");
    keep_zero: format!("keep = 0\n{MINIMAL}");
    bad_env_name: format!("{MINIMAL}\n[env]\nPATH = \"/usr/bin\"\n2FA-CODE = \"x\"\n");
    bad_cron: format!("{MINIMAL}\n[schedule]\ncron = \"0 3 * * monday\"\n");
    bad_on_calendar: format!("{MINIMAL}\n[schedule]\non_calendar = \"every night\"\n");
    misspelt_schedule: format!("{MINIMAL}\n[schedule]\ncorn = \"@daily\"\n");
    empty_schedule: format!("schedule = {{}}\n{MINIMAL}");
    two_schedules: format!("{MINIMAL}\n[schedule]\ncron = \"@daily\"\non_calendar = \"daily\"\n");
}

#[test]
fn a_bad_file_name_is_a_bad_job_name() {
    let error = Job::parse(MINIMAL, Utf8Path::new("ci/nightly build.toml")).unwrap_err();
    insta::assert_snapshot!(message(&error));
}

fn layout_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Layout, Utf8PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(temp.path().to_owned()).unwrap();
    let layout = Layout::under(&root);
    let dir = crate::paths::jobs_dir(&layout);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    (temp, layout, dir)
}

#[test]
fn jobs_are_loaded_from_the_jobs_folder() {
    let (_temp, layout, dir) = layout_with(&[
        ("weekly.toml", MINIMAL),
        ("nightly.toml", MINIMAL),
        ("notes.txt", "not a job"),
    ]);
    let names: Vec<String> = load_all(&layout)
        .unwrap()
        .into_iter()
        .map(|job| job.name)
        .collect();
    assert_eq!(names, ["nightly", "weekly"]);
    let found = find(&layout, "weekly").unwrap();
    assert_eq!(found.file, dir.join("weekly.toml"));

    std::fs::write(dir.join("broken.toml"), "keep = 0\n").unwrap();
    let error = load_all(&layout).unwrap_err();
    assert!(message(&error).contains("broken.toml"), "{error}");
    let checked: Vec<(String, bool)> = check_all(&layout)
        .into_iter()
        .map(|(file, job)| (file.file_name().unwrap().to_owned(), job.is_ok()))
        .collect();
    assert_eq!(
        checked,
        [
            ("broken.toml".to_owned(), false),
            ("nightly.toml".to_owned(), true),
            ("weekly.toml".to_owned(), true)
        ]
    );
}

#[test]
fn no_jobs_folder_is_no_jobs() {
    let temp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(temp.path().to_owned()).unwrap();
    let layout = Layout::under(&root);
    assert!(load_all(&layout).unwrap().is_empty());
    assert!(check_all(&layout).is_empty());
    let error = find(&layout, "nightly").unwrap_err();
    insta::assert_snapshot!(message(&error).replace(root.as_str(), "[HOME]"));
}

#[test]
fn an_unknown_job_lists_the_jobs_and_the_closest() {
    let (_temp, layout, dir) = layout_with(&[("nightly.toml", MINIMAL), ("weekly.toml", MINIMAL)]);
    let error = find(&layout, "nigthly").unwrap_err();
    insta::assert_snapshot!(message(&error).replace(dir.as_str(), "[JOBS]"));
    let error = find(&layout, "../nightly").unwrap_err();
    assert!(matches!(error, Error::UnknownJob { .. }), "{error}");
}
