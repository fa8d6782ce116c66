//! Schedules: when a job is due, by a cron expression (croner) or a systemd
//! calendar spec (`systemd-analyze calendar`), in local time as systemd
//! computes it; and the two ways to have jobs run on time without a daemon
//! of kvmx-ci's own: systemd user timers ([`install`]) and a crontab line
//! ([`crontab_lines`]) calling `run --due`.
//!
//! A cron schedule becomes `OnCalendar=` lines ([`on_calendar_lines`]), so
//! the timer fires when cron, and `run --due`, would.

mod calendar;
mod cron;
mod units;

use std::time::SystemTime;

pub use units::{
    Activation, Foreign, Installed, Removed, Units, crontab_lines, has_systemd, install,
    installed_jobs, remove, unit_dir, units,
};

use crate::Error;
use crate::job::Schedule;

/// Checks a schedule: a cron expression that croner reads and a timer can
/// say, or a calendar spec that systemd takes. The message says what is
/// wrong (for a job file's error).
pub fn validate(schedule: &Schedule) -> Result<(), String> {
    match schedule {
        Schedule::Cron(expression) => cron::parse(expression).map(drop),
        Schedule::OnCalendar(spec) => calendar::times(spec, SystemTime::now(), 1)
            .map(drop)
            .map_err(|error| match error {
                Error::Schedule { message, .. } => message,
                other => other.to_string(),
            }),
    }
}

/// The first time after `after` that the schedule names; none when it names
/// no later time.
pub fn next_after(schedule: &Schedule, after: SystemTime) -> Result<Option<SystemTime>, Error> {
    match schedule {
        Schedule::Cron(expression) => {
            cron::next_after(expression, after).map_err(|message| Error::Schedule {
                schedule: expression.clone(),
                message,
            })
        }
        Schedule::OnCalendar(spec) => Ok(calendar::times(spec, after, 1)?.first().copied()),
    }
}

/// Whether the schedule names a time in `(since, now]`: a run is due.
pub fn is_due(schedule: &Schedule, since: SystemTime, now: SystemTime) -> Result<bool, Error> {
    Ok(next_after(schedule, since)?.is_some_and(|next| next <= now))
}

/// The schedule as systemd `OnCalendar=` specs: a cron expression becomes
/// one, or two when it restricts both the day of month and the weekday
/// (cron runs on either day, one systemd spec only on days that are both).
pub fn on_calendar_lines(schedule: &Schedule) -> Result<Vec<String>, Error> {
    match schedule {
        Schedule::Cron(expression) => cron::parse(expression)
            .and_then(|_| cron::on_calendar(expression))
            .map_err(|message| Error::Schedule {
                schedule: expression.clone(),
                message,
            }),
        Schedule::OnCalendar(spec) => Ok(vec![spec.trim().to_owned()]),
    }
}

#[cfg(test)]
mod tests;
