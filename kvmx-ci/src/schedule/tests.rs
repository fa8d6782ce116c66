//! Schedules against the real croner and the real systemd-analyze.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::process::{Runner, Tool};

use super::*;
use crate::job::Job;

/// Thu 2026-01-01 00:00:00 UTC.
const BASE: u64 = 1_767_225_600;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A time of January 2026 in local time, as schedules are read.
fn local(day: u32, hour: u32, minute: u32, second: u32) -> SystemTime {
    use chrono::TimeZone;
    chrono::Local
        .with_ymd_and_hms(2026, 1, day, hour, minute, second)
        .single()
        .unwrap()
        .into()
}

fn cron(expression: &str) -> Schedule {
    Schedule::Cron(expression.to_owned())
}

fn calendar_spec(spec: &str) -> Schedule {
    Schedule::OnCalendar(spec.to_owned())
}

/// The next `count` times of a cron expression, by croner.
fn croner_times(expression: &str, count: usize) -> Vec<SystemTime> {
    croner_times_from(expression, at(BASE), count)
}

fn croner_times_from(expression: &str, base: SystemTime, count: usize) -> Vec<SystemTime> {
    let mut times = Vec::new();
    let mut after = base;
    while times.len() < count {
        let next = next_after(&cron(expression), after)
            .unwrap()
            .unwrap_or_else(|| panic!("croner finds no time for {expression}"));
        times.push(next);
        after = next;
    }
    times
}

/// The next `count` times of the expression's `OnCalendar=` specs, by
/// systemd-analyze.
fn systemd_times(expression: &str, count: usize) -> Vec<SystemTime> {
    systemd_times_from(expression, at(BASE), count)
}

fn systemd_times_from(expression: &str, base: SystemTime, count: usize) -> Vec<SystemTime> {
    let mut times: Vec<SystemTime> = on_calendar_lines(&cron(expression))
        .unwrap()
        .iter()
        .flat_map(|spec| {
            calendar::times(spec, base, count)
                .unwrap_or_else(|error| panic!("systemd-analyze is needed here: {error}"))
        })
        .collect();
    times.sort();
    times.dedup();
    times.truncate(count);
    times
}

#[test]
fn timers_fire_when_cron_would() {
    for expression in [
        "*/15 * * * *",
        "5 4 * * *",
        "0 9-17/2 * * mon-fri",
        "30 2 1,15 * *",
        "0 0 1 */3 *",
        "0 3 * jan,jul sun",
        "0 0 * * 5-7",
        "0 12 13 * 5",
        "15 10 1-7 * 1",
        "0 0 */10 * */2",
        "7/20 1,3 * * *",
        "@weekly",
        "@monthly",
    ] {
        assert_eq!(
            systemd_times(expression, 20),
            croner_times(expression, 20),
            "{expression} -> {:?}",
            on_calendar_lines(&cron(expression)).unwrap()
        );
    }
}

/// Expressions compared around daylight saving changes.
const AROUND_DST: [&str; 5] = [
    "30 2 * * *",
    "0 * * * *",
    "15 1-3 * * *",
    "0 2 29 3 *",
    "*/30 2 * * sun",
];

#[test]
fn timers_fire_when_cron_would_across_daylight_saving_changes() {
    // A process's time zone is set when it starts: run the comparison in
    // this test binary again, in Berlin's time zone.
    let exe = std::env::current_exe().unwrap();
    let tool = Tool::new(exe, "compare around daylight saving changes")
        .args([
            "--exact",
            "schedule::tests::cron_and_systemd_agree_in_this_time_zone",
            "--include-ignored",
        ])
        .env("TZ", "Europe/Berlin")
        .deadline(Duration::from_secs(120));
    let output = match Runner::unlogged(CancelFlag::new()).run(&tool) {
        Ok(finished) => String::from_utf8_lossy(&finished.stdout).into_owned(),
        Err(error) => panic!("{error}"),
    };
    assert!(output.contains("1 passed"), "{output}");
}

#[test]
#[ignore = "run by timers_fire_when_cron_would_across_daylight_saving_changes with TZ set"]
fn cron_and_systemd_agree_in_this_time_zone() {
    use chrono::{Offset, TimeZone};
    let offset = |month| {
        chrono::Local
            .with_ymd_and_hms(2026, month, 1, 12, 0, 0)
            .unwrap()
            .offset()
            .fix()
    };
    assert_ne!(
        offset(1),
        offset(7),
        "no daylight saving time here: TZ is {:?} (is tzdata installed?)",
        std::env::var("TZ")
    );
    // Berlin's clocks change on 2026-03-29 and 2026-10-25.
    for base in [local_on(3, 27), local_on(10, 23)] {
        for expression in AROUND_DST {
            assert_eq!(
                systemd_times_from(expression, base, 20),
                croner_times_from(expression, base, 20),
                "{expression} from {base:?}"
            );
        }
    }
}

fn local_on(month: u32, day: u32) -> SystemTime {
    use chrono::TimeZone;
    chrono::Local
        .with_ymd_and_hms(2026, month, day, 0, 0, 0)
        .single()
        .unwrap()
        .into()
}

#[test]
fn calendar_specs_are_computed_by_systemd() {
    let weekly = calendar_spec("weekly");
    // 2026-01-01 is a Thursday: the next Monday is the 5th.
    assert_eq!(
        next_after(&weekly, local(1, 0, 0, 0)).unwrap(),
        Some(local(5, 0, 0, 0))
    );
    assert_eq!(
        next_after(&calendar_spec("*-02-30"), at(BASE)).unwrap(),
        None
    );
}

#[test]
fn a_run_is_due_once_a_scheduled_time_has_passed() {
    for schedule in [cron("0 4 * * *"), calendar_spec("*-*-* 04:00:00")] {
        let midnight = local(1, 0, 0, 0);
        let four = local(1, 4, 0, 0);
        let just_before = local(1, 3, 59, 59);
        assert!(!is_due(&schedule, midnight, just_before).unwrap());
        assert!(is_due(&schedule, midnight, four).unwrap());
        assert!(!is_due(&schedule, four, local(1, 5, 0, 0)).unwrap());
        assert!(is_due(&schedule, just_before, local(2, 12, 0, 0)).unwrap());
        // A fraction of a second past the time does not make it due again.
        let after_four = four + Duration::from_millis(500);
        assert!(!is_due(&schedule, after_four, local(1, 5, 0, 0)).unwrap());
    }
}

#[test]
fn bad_schedules_say_why() {
    insta::assert_snapshot!(
        "bad_schedules",
        [
            calendar_spec("every tuesday"),
            calendar_spec("*-*-* 25:00:00"),
            cron("61 * * * *"),
        ]
        .iter()
        .map(|schedule| format!("{schedule:?}: {}", validate(schedule).unwrap_err()))
        .collect::<Vec<_>>()
        .join("\n")
    );
    assert_eq!(validate(&calendar_spec("Mon..Fri 09:30")), Ok(()));
    assert_eq!(validate(&cron("0 0 31 2 *")), Ok(()));
}

fn job(name: &str, schedule: Option<Schedule>) -> Job {
    let text = "[source]\nurl = \"https://example.org/repo.git\"\nverify = \"none\"\n\
                [vm]\nname = \"builder\"\nfresh = \"reuse\"\n\
                [[step]]\nname = \"test\"\nrun = \"make test\"\n";
    let mut job = Job::parse(text, Utf8Path::new(&format!("ci/{name}.toml"))).unwrap();
    job.schedule = schedule;
    job
}

#[test]
fn units_run_the_job_on_its_schedule() {
    let units = units(
        &job("nightly", Some(cron("0 12 13 * 5"))),
        Utf8Path::new("/opt/kvmx tools/kvmx-ci"),
        Some(Utf8Path::new("/srv/kvmx $HOME 100%")),
    )
    .unwrap();
    assert_eq!(units.timer_name, "kvmx-ci-nightly.timer");
    assert_eq!(units.service_name, "kvmx-ci-nightly.service");
    insta::assert_snapshot!("timer", units.timer);
    insta::assert_snapshot!("service", units.service);
}

fn temp_dir() -> (tempfile::TempDir, Utf8PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(temp.path().to_owned()).unwrap();
    (temp, path)
}

/// `systemd-analyze verify` of unit files, its complaints included: it
/// warns about unknown keys but still exits 0.
fn verify(files: &[Utf8PathBuf]) -> String {
    let tool = Tool::new("sh", "verify the units")
        .args([
            "-c",
            "systemd-analyze verify \"$@\" 2>&1; echo \"exit $?\"",
            "sh",
        ])
        .args(files.iter().map(|f| f.as_str()))
        .deadline(Duration::from_secs(60));
    let finished = Runner::unlogged(CancelFlag::new()).run(&tool).unwrap();
    String::from_utf8_lossy(&finished.stdout).into_owned()
}

#[test]
fn written_units_pass_systemd_analyze_verify() {
    let found = Tool::new("systemd-analyze", "find systemd-analyze").arg("--version");
    if let Err(error) = Runner::unlogged(CancelFlag::new()).run(&found) {
        panic!("this test needs systemd-analyze (Debian: apt-get install systemd): {error}");
    }
    let (_temp, dir) = temp_dir();
    // ExecStart must name a file that exists: the test binary, here in a
    // folder whose name needs quoting and escaping in a unit.
    let tools = dir.join("kvmx tools $USER 100%");
    std::fs::create_dir(&tools).unwrap();
    let exe = tools.join("kvmx-ci");
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &exe).unwrap();
    let jobs = [
        job("nightly", Some(cron("0 12 13 * 5"))),
        job("weekly.docs", Some(calendar_spec("Mon 04:00"))),
    ];
    let installed = install(&jobs, &exe, Some(&dir), &dir, Foreign::Keep).unwrap();
    assert_eq!(installed.written.len(), 4);
    assert_eq!(verify(&installed.written), "exit 0\n");

    // The check can fail: a service whose command is missing does not pass.
    std::fs::remove_file(&exe).unwrap();
    assert_ne!(verify(&installed.written), "exit 0\n");

    // Nor does a unit with a misspelt key.
    let broken = dir.join("kvmx-ci-broken.timer");
    std::fs::write(&broken, "[Timer]\nOnCalendr=daily\n").unwrap();
    assert_ne!(verify(&[broken]), "exit 0\n");
}

#[test]
fn install_writes_ours_and_leaves_others_alone() {
    let (_temp, dir) = temp_dir();
    let exe = Utf8Path::new("/usr/bin/kvmx-ci");
    let jobs = [job("nightly", Some(cron("@daily"))), job("by-hand", None)];
    let installed = install(&jobs, exe, None, &dir, Foreign::Keep).unwrap();
    assert_eq!(
        installed.written,
        [
            dir.join("kvmx-ci-nightly.timer"),
            dir.join("kvmx-ci-nightly.service")
        ]
    );
    assert_eq!(installed.unscheduled, ["by-hand"]);
    // The folder is not systemd's: nothing is enabled, and the command to
    // run is said.
    let Activation::NotDone { why, command } = &installed.activation else {
        panic!("enabled timers in a folder systemd does not read: {installed:?}");
    };
    assert!(why.contains("not in systemd's user folder"), "{why}");
    assert_eq!(
        command,
        "systemctl --user daemon-reload && systemctl --user enable --now kvmx-ci-nightly.timer"
    );
    assert_eq!(installed_jobs(&dir).unwrap(), ["nightly"]);

    // Ours are replaced.
    install(&jobs, exe, None, &dir, Foreign::Keep).unwrap();

    // Someone else's is not, unless asked.
    let theirs = dir.join("kvmx-ci-nightly.service");
    std::fs::write(&theirs, "[Service]\nExecStart=/bin/true\n").unwrap();
    let error = install(&jobs, exe, None, &dir, Foreign::Keep).unwrap_err();
    assert!(
        matches!(&error, Error::ForeignUnit { path } if *path == theirs),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&theirs).unwrap(),
        "[Service]\nExecStart=/bin/true\n"
    );
    let error = remove(["nightly"], &dir, Foreign::Keep).unwrap_err();
    assert!(matches!(error, Error::ForeignUnit { .. }), "{error}");
    install(&jobs, exe, None, &dir, Foreign::Replace).unwrap();
    assert!(
        std::fs::read_to_string(&theirs)
            .unwrap()
            .contains("run nightly")
    );

    let removed = remove(["nightly", "never-installed"], &dir, Foreign::Keep).unwrap();
    assert_eq!(removed.files.len(), 2);
    assert!(matches!(removed.activation, Activation::NotDone { .. }));
    assert_eq!(installed_jobs(&dir).unwrap(), Vec::<String>::new());
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
}

#[test]
fn the_crontab_line_runs_due_jobs() {
    let (_temp, dir) = temp_dir();
    // A stand-in for kvmx-ci, in a folder whose name needs quoting.
    let folder = dir.join("kvmx's tools");
    std::fs::create_dir(&folder).unwrap();
    let exe = folder.join("kvmx-ci");
    std::fs::write(&exe, "#!/bin/sh\necho \"KVMX_HOME=$KVMX_HOME args=$*\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.join("home with space");

    let line = crontab_lines(&exe, Some(&home));
    assert_eq!(line.lines().count(), 1);
    let command = line
        .strip_prefix("* * * * * ")
        .unwrap_or_else(|| panic!("not every minute: {line}"))
        .trim_end();
    let tool = Tool::new("sh", "run the crontab command").args(["-c", command]);
    let finished = Runner::unlogged(CancelFlag::new()).run(&tool).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&finished.stdout),
        format!("KVMX_HOME={home} args=run --due\n")
    );

    assert_eq!(
        crontab_lines(Utf8Path::new("/usr/bin/kvmx-ci"), None),
        "* * * * * /usr/bin/kvmx-ci run --due\n"
    );
    // cron reads a bare `%` as a newline.
    assert_eq!(
        crontab_lines(Utf8Path::new("/opt/100%/kvmx-ci"), None),
        "* * * * * '/opt/100\\%/kvmx-ci' run --due\n"
    );
}
