//! Tests of run folders, on real files and real processes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use camino::Utf8PathBuf;
use kvmx_core::Layout;
use kvmx_core::observe::{Event, Observer, Stream};
use kvmx_provision::guest::ByteSink;

use super::*;

/// A job's runs in a folder of their own.
fn job() -> (tempfile::TempDir, Runs) {
    let temp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(temp.path().to_owned()).unwrap();
    let paths = JobPaths::new(&Layout::under(&root), "nightly");
    (temp, Runs::open(&paths))
}

/// The pid of a process that has ended and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A time as the logs write it: `2026-11-29T13:20:01Z`.
fn is_log_time(text: &str) -> bool {
    text.len() == 20
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && humantime::parse_rfc3339(text).is_ok()
}

#[test]
fn runs_begun_at_once_get_distinct_ids() {
    let (_temp, runs) = job();
    let threads = 8;
    let each = 5;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let runs = runs.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..each)
                    .map(|_| runs.begin("nightly", true).unwrap().id())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let distinct: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "ids given twice: {ids:?}");
    assert_eq!(distinct, (1..=(threads * each) as u64).collect());
    assert_eq!(runs.list().unwrap().len(), threads * each);
}

#[test]
fn a_run_whose_process_is_gone_reads_as_interrupted_and_is_handed_out_once() {
    let (_temp, runs) = job();
    let mut run = runs.begin("nightly", true).unwrap();
    run.record().vm = Some("ci-nightly".to_owned());
    run.record().owner = Owner {
        pid: dead_pid(),
        start_time: None,
    };
    {
        let mut step = run.step("build");
        step.line(Stream::Stdout, "compiling");
    }
    run.save().unwrap();
    drop(run);

    let listed = runs.list().unwrap();
    assert_eq!(listed.len(), 1);
    let record = &listed[0];
    assert_eq!(record.result, RunResult::Error);
    assert_eq!(record.outcome(), "error (interrupted)");
    assert!(record.finished.is_some());
    assert_eq!(record.steps[0].result, RunResult::Error);
    // The change is on disk, not only in what list returned.
    let on_disk: RunRecord =
        serde_json::from_slice(&std::fs::read(runs.dir(1).join("run.json")).unwrap()).unwrap();
    assert_eq!(on_disk.result, RunResult::Error);

    let claimed = runs.interrupted().unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].vm.as_deref(), Some("ci-nightly"));
    assert!(runs.interrupted().unwrap().is_empty());
    assert!(runs.clone().interrupted().unwrap().is_empty());
}

#[test]
fn a_run_of_a_live_process_stays_running() {
    let (_temp, runs) = job();
    let _run = runs.begin("nightly", true).unwrap();
    let record = runs.last().unwrap().unwrap();
    assert_eq!(record.result, RunResult::Running);
    assert_eq!(record.owner().pid, std::process::id());
    assert!(runs.interrupted().unwrap().is_empty());
}

#[test]
fn a_pid_reused_by_another_process_does_not_keep_a_run_running() {
    let (_temp, runs) = job();
    let mut run = runs.begin("nightly", true).unwrap();
    let me = Owner::current();
    run.record().owner = Owner {
        start_time: me.start_time.map(|start| start + 1),
        ..me
    };
    run.save().unwrap();
    assert_eq!(runs.get(1).unwrap().outcome(), "error (interrupted)");
}

#[test]
fn prune_keeps_the_newest_and_never_a_running_run_and_ids_are_not_reused() {
    let (_temp, runs) = job();
    let running = runs.begin("nightly", true).unwrap();
    for _ in 2..=6 {
        let run = runs.begin("nightly", true).unwrap();
        run.finish(RunResult::Passed, None, None).unwrap();
    }
    assert_eq!(runs.prune(2).unwrap(), [2, 3, 4]);
    let left: Vec<u64> = runs.list().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(left, [1, 5, 6]);
    assert!(!runs.dir(3).exists());

    running.finish(RunResult::Failed, None, Some(2)).unwrap();
    assert_eq!(runs.prune(0).unwrap(), [1, 5, 6]);
    assert!(runs.list().unwrap().is_empty());
    assert_eq!(runs.begin("nightly", true).unwrap().id(), 7);
}

#[test]
fn the_logs_have_times_and_step_names_and_keep_a_partial_last_line() {
    let (_temp, runs) = job();
    let mut run = runs.begin("nightly", false).unwrap();
    run.note("source verified");
    run.event(Event::StageStarted {
        stage: "starting the VM",
    });
    {
        let mut step = run.step("build");
        step.chunk(Stream::Stdout, b"make: o");
        step.chunk(Stream::Stdout, b"k\r\nsecond line\nno newline");
        step.chunk(Stream::Stderr, b"warning: x\n");
        step.event(Event::Note { text: "a note" });
        step.end(Some(0), RunResult::Passed);
    }
    {
        let mut step = run.step("test / all");
        step.event(Event::GuestOutput {
            vm: "ci",
            stream: Stream::Stderr,
            line: "boom",
        });
        step.chunk(Stream::Stdout, b"cut short");
        // Dropped without end: the run's end closes it.
    }
    let record = run
        .finish(RunResult::Failed, Some("test failed".into()), Some(1))
        .unwrap();
    assert_eq!(record.steps[0].result, RunResult::Passed);
    assert_eq!(record.steps[0].status, Some(0));
    assert_eq!(record.steps[1].result, RunResult::Failed);

    let log = std::fs::read_to_string(runs.log_file(1)).unwrap();
    let lines: Vec<(&str, &str)> = log
        .lines()
        .map(|line| {
            let (time, rest) = line.split_once(' ').unwrap();
            assert!(is_log_time(time), "no time in {line:?}");
            (time, rest)
        })
        .collect();
    // The run's own length is left out: it depends on the machine.
    let texts: Vec<&str> = lines
        .iter()
        .map(|(_, rest)| rest.split(" after ").next().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "[kvmx-ci] source verified",
            "[kvmx-ci] starting the VM",
            "[kvmx-ci] step build started",
            "[build] stdout: make: ok",
            "[build] stdout: second line",
            "[build] stderr: warning: x",
            "[build] kvmx: a note",
            "[build] stdout: no newline",
            "[kvmx-ci] step build ended: passed (exit status 0)",
            "[kvmx-ci] step test / all started",
            "[test / all] stderr: boom",
            "[test / all] stdout: cut short",
            "[kvmx-ci] run 1 ended: failed (test failed)",
        ]
    );

    let build = std::fs::read_to_string(runs.dir(1).join("steps/1-build.log")).unwrap();
    let build: Vec<&str> = build
        .lines()
        .map(|line| {
            let (time, rest) = line.split_once(' ').unwrap();
            assert!(is_log_time(time), "no time in {line:?}");
            rest
        })
        .collect();
    assert_eq!(
        build,
        [
            "stdout: make: ok",
            "stdout: second line",
            "stderr: warning: x",
            "kvmx: a note",
            "stdout: no newline"
        ]
    );
    let test = std::fs::read_to_string(runs.dir(1).join("steps/2-test___all.log")).unwrap();
    assert!(test.ends_with(" stdout: cut short\n"), "{test:?}");
}

#[test]
fn output_without_newlines_is_cut_into_long_lines() {
    let (_temp, runs) = job();
    let mut run = runs.begin("nightly", true).unwrap();
    let long = vec![b'x'; super::log::LONGEST_LINE + 1];
    {
        let mut step = run.step("noise");
        step.chunk(Stream::Stdout, &long);
        step.chunk(Stream::Stdout, b"tail\n");
        step.end(Some(0), RunResult::Passed);
    }
    run.finish(RunResult::Passed, None, None).unwrap();
    let log = std::fs::read_to_string(runs.dir(1).join("steps/1-noise.log")).unwrap();
    let texts: Vec<&str> = log.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0].len(), "stdout: ".len() + long.len());
    assert_eq!(texts[1], "stdout: tail");
}

#[test]
fn run_json_has_snake_case_fields_and_rfc3339_times() {
    let (_temp, runs) = job();
    let mut run = runs.begin("nightly", true).unwrap();
    run.record().commit = Some("0123456789abcdef".into());
    run.record().artifacts.push("out/report.txt".into());
    run.step("build").end(Some(0), RunResult::Passed);
    let record = run.finish(RunResult::Passed, None, None).unwrap();

    let text = std::fs::read_to_string(runs.dir(1).join("run.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["kvmx_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["result"], "passed");
    assert_eq!(json["steps"][0]["result"], "passed");
    assert_eq!(json["owner"]["pid"], std::process::id());
    let started = json["started"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(started).is_ok(), "{started}");
    assert_eq!(runs.get(1).unwrap(), record);
    assert!(record.duration().is_some());
}

#[test]
fn an_unknown_run_names_the_job_and_its_runs() {
    let (_temp, runs) = job();
    let error = runs.get(3).unwrap_err().to_string();
    assert_eq!(error, "job nightly has no run 3; it has no runs yet");
    runs.begin("nightly", true).unwrap();
    runs.begin("nightly", true).unwrap();
    let error = runs.get(3).unwrap_err().to_string();
    assert_eq!(error, "job nightly has no run 3; its runs: 1, 2");
}

#[test]
fn a_damaged_run_json_is_an_error_naming_it() {
    let (_temp, runs) = job();
    runs.begin("nightly", true).unwrap();
    std::fs::write(runs.dir(1).join("run.json"), "{").unwrap();
    let error = runs.list().unwrap_err().to_string();
    assert!(
        error.contains("1/run.json is not a valid run record"),
        "{error}"
    );
}

#[test]
fn follow_prints_everything_and_stops_when_finished() {
    let (_temp, runs) = job();
    let log = runs.log_file(1);
    let finished = Arc::new(AtomicBool::new(false));
    let writer = {
        let runs = runs.clone();
        let finished = finished.clone();
        std::thread::spawn(move || {
            // Follow starts before the log exists.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let mut run = runs.begin("nightly", true).unwrap();
            for n in 0..5 {
                run.note(&format!("line {n}"));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            run.finish(RunResult::Passed, None, None).unwrap();
            finished.store(true, Ordering::SeqCst);
        })
    };
    let mut out = Vec::new();
    follow(&log, &|| finished.load(Ordering::SeqCst), &mut out).unwrap();
    writer.join().unwrap();
    let written = std::fs::read(&log).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(written).unwrap()
    );
}
