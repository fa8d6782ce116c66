//! Tests of the HTML report, written from real run folders.

use camino::Utf8PathBuf;
use kvmx_core::Layout;
use kvmx_core::observe::Stream;

use super::*;
use crate::paths::JobPaths;
use crate::store::{Owner, RunResult};

/// A folder for the kvmx files and one for the report.
struct Sandbox {
    _temp: tempfile::TempDir,
    layout: Layout,
    report: Utf8PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let temp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::from_path_buf(temp.path().to_owned()).unwrap();
        Sandbox {
            layout: Layout::under(&root.join("home")),
            report: root.join("report"),
            _temp: temp,
        }
    }

    fn runs(&self, job: &str) -> Runs {
        Runs::open(&JobPaths::new(&self.layout, job))
    }

    fn read(&self, page: &str) -> String {
        std::fs::read_to_string(self.report.join(page)).unwrap()
    }
}

/// A run of `runs` that ended with `result`.
fn run(runs: &Runs, result: RunResult, reason: Option<&str>, status: Option<i32>) {
    let mut run = runs.begin(runs.job(), true).unwrap();
    run.record().commit = Some("3f2a9c4e1b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f".into());
    run.record().signer = Some("Alice Example <alice@example.org>".into());
    run.record().reference = Some("main".into());
    run.record().vm = Some("ci-nightly".into());
    let mut step = run.step("build");
    step.line(Stream::Stdout, "make: ok");
    step.end(Some(0), RunResult::Passed);
    run.finish(result, reason.map(str::to_owned), status)
        .unwrap();
}

#[test]
fn escape_covers_markup_ampersands_and_quotes() {
    assert_eq!(
        escape(r#"<script>alert("x") & 'y'</script>"#),
        "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
    );
    assert_eq!(escape("plain text"), "plain text");
}

#[test]
fn a_log_line_with_markup_is_shown_escaped() {
    let sandbox = Sandbox::new();
    let runs = sandbox.runs("nightly");
    let mut run = runs.begin("nightly", true).unwrap();
    run.record().signer = Some("Mallory <script>".into());
    let mut step = run.step("<b>step</b>");
    step.line(Stream::Stdout, "<script>alert(1)</script>");
    step.end(Some(1), RunResult::Failed);
    run.finish(RunResult::Failed, Some("step failed".into()), Some(1))
        .unwrap();

    let written = write(&sandbox.report, &[runs], Foreign::Refuse).unwrap();
    assert_eq!(
        written,
        [
            sandbox.report.join("nightly/1.html"),
            sandbox.report.join("index.html")
        ]
    );
    let page = sandbox.read("nightly/1.html");
    assert!(
        page.contains("[&lt;b&gt;step&lt;/b&gt;] stdout: &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("<td>&lt;b&gt;step&lt;/b&gt;</td>"), "{page}");
    assert!(page.contains("Mallory &lt;script&gt;"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
    assert!(!sandbox.read("index.html").contains("<script>"));
}

#[test]
fn the_index_has_a_coloured_row_per_run_of_each_job() {
    let sandbox = Sandbox::new();
    let nightly = sandbox.runs("nightly");
    run(&nightly, RunResult::Passed, None, None);
    run(
        &nightly,
        RunResult::Failed,
        Some("step test failed"),
        Some(2),
    );
    run(
        &nightly,
        RunResult::Rejected,
        Some("commit 3f2a9c4e is not signed"),
        None,
    );
    run(&nightly, RunResult::Cancelled, Some("SIGTERM"), None);
    let mut interrupted = nightly.begin("nightly", true).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    interrupted.record().owner = Owner {
        pid: child.id(),
        start_time: None,
    };
    child.wait().unwrap();
    interrupted.save().unwrap();
    drop(interrupted);
    let _running = nightly.begin("nightly", true).unwrap();
    let weekly = sandbox.runs("weekly & more");
    let unverified = weekly.begin("weekly & more", false).unwrap();
    unverified.finish(RunResult::Passed, None, None).unwrap();
    let empty = sandbox.runs("empty");

    write(&sandbox.report, &[nightly, weekly, empty], Foreign::Refuse).unwrap();
    let index = sandbox.read("index.html");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(
        r#"<td class="duration">[^<]*</td>"#,
        r#"<td class="duration">[DURATION]</td>"#,
    );
    settings.bind(|| insta::assert_snapshot!(index));
}

#[test]
fn a_folder_that_is_not_a_report_is_refused_unless_allowed() {
    let sandbox = Sandbox::new();
    let runs = sandbox.runs("nightly");
    run(&runs, RunResult::Passed, None, None);
    std::fs::create_dir_all(&sandbox.report).unwrap();
    std::fs::write(sandbox.report.join("index.html"), "<p>mine</p>").unwrap();

    let error = write(
        &sandbox.report,
        std::slice::from_ref(&runs),
        Foreign::Refuse,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("holds no report of kvmx-ci"), "{error}");
    assert_eq!(sandbox.read("index.html"), "<p>mine</p>");

    write(&sandbox.report, &[runs], Foreign::Allow).unwrap();
    assert!(sandbox.read("index.html").contains(GENERATOR));
}

#[test]
fn writing_again_replaces_only_kvmx_ci_pages() {
    let sandbox = Sandbox::new();
    let runs = sandbox.runs("nightly");
    for _ in 0..3 {
        run(&runs, RunResult::Passed, None, None);
    }
    write(
        &sandbox.report,
        std::slice::from_ref(&runs),
        Foreign::Refuse,
    )
    .unwrap();
    std::fs::write(sandbox.report.join("nightly/9.html"), "kept").unwrap();
    std::fs::write(sandbox.report.join("notes.txt"), "kept").unwrap();

    assert_eq!(runs.prune(1).unwrap(), [1, 2]);
    write(&sandbox.report, &[runs], Foreign::Refuse).unwrap();
    assert!(!sandbox.report.join("nightly/1.html").exists());
    assert!(!sandbox.report.join("nightly/2.html").exists());
    assert!(sandbox.report.join("nightly/3.html").exists());
    assert_eq!(sandbox.read("nightly/9.html"), "kept");
    assert_eq!(sandbox.read("notes.txt"), "kept");
    let index = sandbox.read("index.html");
    assert!(index.contains("nightly/3.html") && !index.contains("nightly/1.html"));
}

#[test]
fn a_job_name_that_cannot_be_a_folder_is_refused() {
    let sandbox = Sandbox::new();
    let error = write(&sandbox.report, &[sandbox.runs(".hidden")], Foreign::Refuse)
        .unwrap_err()
        .to_string();
    assert!(error.contains("\".hidden\""), "{error}");
}
