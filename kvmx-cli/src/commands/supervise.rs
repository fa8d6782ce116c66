//! `kvmx supervise`: the foreground loop over
//! [`kvmx_provision::supervise::Supervisor`], one log line per event with
//! its time, and `kvmx supervise install`, its systemd user unit.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use camino::Utf8PathBuf;
use kvmx_core::CancelFlag;
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_provision::supervise::{self, Supervisor, SupervisorEvent};

use super::Context;
use crate::cli::{SuperviseArgs, SuperviseCommand};
use crate::error::CommandError;
use crate::output::{Output, Prefixed};

/// The unit's file name.
const UNIT: &str = "kvmx-supervise.service";

pub fn run(args: &SuperviseArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    if let Some(SuperviseCommand::Install { force }) = &args.command {
        return install(*force, output);
    }
    // SIGTERM (systemd's stop) and Ctrl-C end the loop, then the VMs.
    let cancel = CancelFlag::on_signals()?;
    let mut supervisor = Supervisor::new(cancel.clone());
    let mut vms = supervise::managed(&context.layout)?;
    log(
        output,
        &format!(
            "supervising {} VM(s) with supervise.manage = true",
            vms.len()
        ),
    );
    loop {
        for event in supervisor.pass(&vms, Instant::now()) {
            log(output, &describe(&event));
        }
        if args.once {
            return Ok(());
        }
        let next = Instant::now() + Duration::from_secs(args.interval);
        while Instant::now() < next && !cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(100));
        }
        if cancel.is_cancelled() {
            break;
        }
        // VMs registered or changed meanwhile are picked up.
        vms = supervise::managed(&context.layout)?;
    }
    log(output, "stopping: powering the managed VMs off");
    for event in supervisor.stop_all(&vms, &mut Prefixed::new("supervise")) {
        log(output, &describe(&event));
    }
    Ok(())
}

fn describe(event: &SupervisorEvent) -> String {
    match event {
        SupervisorEvent::Started { vm } => format!("{vm}: started"),
        SupervisorEvent::Crashed { vm, restart_in } => format!(
            "{vm}: crashed (QEMU died without a clean stop); restarting in {} s",
            restart_in.as_secs()
        ),
        SupervisorEvent::LeftStopped { vm } => {
            format!("{vm}: stopped on purpose; left stopped")
        }
        SupervisorEvent::GaveUp { vm, crashes } => format!(
            "{vm}: crashed {crashes} times in 10 minutes; no longer restarted (`kvmx up {vm}` resumes it)"
        ),
        SupervisorEvent::Failed { vm, error } => format!("{vm}: failed: {error}"),
        SupervisorEvent::Stopped { vm } => format!("{vm}: powered off"),
        other => format!("{other:?}"),
    }
}

/// One line with the time (UTC), on stdout.
fn log(output: &Output, text: &str) {
    output.result(&format!("{} {text}", utc_now()));
}

/// The time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The calendar date of `days` since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes the systemd user unit that runs this kvmx's `supervise`.
fn install(force: bool, output: &Output) -> Result<(), CommandError> {
    let exe = std::env::current_exe()?;
    let folder = systemd_user_folder()?;
    let unit = folder.join(UNIT);
    let text = format!(
        "[Unit]\n\
         Description=kvmx supervisor: keeps the VMs with supervise.manage = true running\n\
         \n\
         [Service]\n\
         ExecStart={} supervise\n\
         Restart=on-failure\n\
         # SIGTERM powers the VMs off, hooks included: give it time.\n\
         TimeoutStopSec=600\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe.display()
    );
    let overwrite = if force { Overwrite::Yes } else { Overwrite::No };
    atomic_file::write(&unit, text.as_bytes(), overwrite)
        .map_err(|error| CommandError::from(error).with_hint("pass --force to replace it"))?;
    output.result(&format!("wrote {unit}"));
    output.info(
        "enable it with `systemctl --user daemon-reload && systemctl --user enable --now kvmx-supervise`; \
         to run it at boot without a login: `loginctl enable-linger $USER`",
    );
    Ok(())
}

/// `$XDG_CONFIG_HOME/systemd/user`, or `~/.config/systemd/user`.
fn systemd_user_folder() -> Result<Utf8PathBuf, CommandError> {
    kvmx_core::layout::systemd_user_dir().ok_or_else(|| {
        CommandError::usage(
            "neither XDG_CONFIG_HOME nor HOME is set: no place for the systemd unit",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }
}
