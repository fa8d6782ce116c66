//! systemd calendar specs, checked and computed by systemd itself
//! (`systemd-analyze calendar`), so that `run --due` and the timers agree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDateTime;
use kvmx_core::CancelFlag;
use kvmx_core::process::{ProcessError, Runner, Tool};

use crate::Error;

/// `systemd-analyze calendar` answers at once; past this it hangs.
const DEADLINE: Duration = Duration::from_secs(20);

/// The first `count` times after `after` that `spec` names (fewer when it
/// names fewer), in local time as systemd computes it.
pub(super) fn times(spec: &str, after: SystemTime, count: usize) -> Result<Vec<SystemTime>, Error> {
    let fail = |message: String| Error::Schedule {
        schedule: spec.to_owned(),
        message,
    };
    if spec.contains(['\n', '\r']) {
        return Err(fail("a calendar spec is one line".to_owned()));
    }
    let base = after
        .duration_since(UNIX_EPOCH)
        .map_err(|_| fail("cannot compute times before 1970".to_owned()))?
        .as_secs();
    let tool = Tool::new("systemd-analyze", "check the calendar spec")
        .arg("calendar")
        .arg(format!("--iterations={}", count.max(1)))
        .arg(format!("--base-time=@{base}"))
        .arg("--")
        .arg(spec)
        .deadline(DEADLINE);
    let finished = Runner::unlogged(CancelFlag::new())
        .run(&tool)
        .map_err(|error| match error {
            ProcessError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                fail(
                    "systemd-analyze is not installed, and on_calendar is checked and computed \
                     by it: install systemd, or write the schedule as cron"
                        .to_owned(),
                )
            }
            ProcessError::Failed(failed) if failed.status.starts_with("exit") => fail(format!(
                "systemd does not take it as a calendar spec (see `man systemd.time`): {}",
                failed.stderr_tail.join(" ").trim()
            )),
            other => Error::Tool(other),
        })?;
    let stdout = String::from_utf8_lossy(&finished.stdout);
    read_times(&stdout).map_err(|line| {
        fail(format!(
            "cannot read this line of systemd-analyze's answer: {line:?}"
        ))
    })
}

/// The times of `systemd-analyze calendar`'s answer: each `Next elapse:`
/// and `Iter. #n:` line, in UTC (the `(in UTC):` line that follows when
/// local time is not UTC). The line it cannot read is the error.
fn read_times(text: &str) -> Result<Vec<SystemTime>, String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut times = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some((label, value)) = line.split_once(": ") else {
            continue;
        };
        if label != "Next elapse" && !label.starts_with("Iter. #") {
            continue;
        }
        if value.trim() == "never" {
            break;
        }
        let in_utc = lines
            .get(index + 1)
            .and_then(|next| next.strip_prefix("(in UTC): "))
            .unwrap_or(value);
        times.push(utc_time(in_utc).ok_or_else(|| line.to_string())?);
    }
    Ok(times)
}

/// `Fri 2026-01-02 03:00:00 UTC` as a time.
fn utc_time(text: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, date, time, "UTC"] = parts.as_slice() else {
        return None;
    };
    let naive =
        NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y-%m-%d %H:%M:%S").ok()?;
    Some(naive.and_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_local_time_are_read_in_utc() {
        let berlin = "  Original form: *-*-* 04:00:00\n\
                      Normalized form: *-*-* 04:00:00\n\
                          Next elapse: Fri 2026-01-02 04:00:00 CET\n\
                             (in UTC): Fri 2026-01-02 03:00:00 UTC\n\
                             From now: 10 months 27 days ago\n\
                             Iter. #2: Sat 2026-01-03 04:00:00 CET\n\
                             (in UTC): Sat 2026-01-03 03:00:00 UTC\n";
        let times = read_times(berlin).unwrap();
        let seconds: Vec<u64> = times
            .iter()
            .map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
            .collect();
        assert_eq!(seconds, [1_767_322_800, 1_767_409_200]);
    }

    #[test]
    fn never_is_no_time() {
        let answer = "Normalized form: *-02-30 00:00:00\n    Next elapse: never\n";
        assert_eq!(read_times(answer).unwrap(), []);
    }

    #[test]
    fn an_unknown_zone_is_not_guessed() {
        let answer = "    Next elapse: Fri 2026-01-02 04:00:00 CET\n";
        assert!(read_times(answer).is_err());
    }
}
