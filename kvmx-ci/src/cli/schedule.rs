//! `kvmx-ci schedule install|remove|show`.

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::Layout;

use super::{ScheduleCommand, exit, print_json};
use crate::Error;
use crate::job;
use crate::schedule::{self, Activation, Foreign};

pub(super) fn schedule(layout: &Layout, command: ScheduleCommand, json: bool) -> Result<u8, Error> {
    let jobs = job::load_all(layout)?;
    let exe = current_exe()?;
    let home = std::env::var("KVMX_HOME").ok().filter(|h| !h.is_empty());
    let home = home.as_deref().map(Utf8Path::new);
    if !schedule::has_systemd() {
        return crontab(&command, &exe, home, json);
    }
    let dir = schedule::unit_dir()?;
    let foreign = |force| {
        if force {
            Foreign::Replace
        } else {
            Foreign::Keep
        }
    };
    match command {
        ScheduleCommand::Install { force } => {
            let installed = schedule::install(&jobs, &exe, home, &dir, foreign(force))?;
            if json {
                print_json(&serde_json::json!({
                    "written": installed.written,
                    "unscheduled": installed.unscheduled,
                    "activation": activation_json(&installed.activation),
                }));
            } else {
                for file in &installed.written {
                    println!("wrote {file}");
                }
                for job in &installed.unscheduled {
                    eprintln!("note: job {job} has no schedule");
                }
                print_activation(&installed.activation, "enabled");
            }
        }
        ScheduleCommand::Remove { force } => {
            let mut names: Vec<String> = jobs.iter().map(|job| job.name.clone()).collect();
            names.extend(schedule::installed_jobs(&dir)?);
            names.sort();
            names.dedup();
            let removed = schedule::remove(&names, &dir, foreign(force))?;
            if json {
                print_json(&serde_json::json!({
                    "removed": removed.files,
                    "activation": activation_json(&removed.activation),
                }));
            } else {
                for file in &removed.files {
                    println!("removed {file}");
                }
                print_activation(&removed.activation, "disabled");
            }
        }
        ScheduleCommand::Show => show(&jobs, &exe, home, &dir, json)?,
    }
    Ok(exit::PASSED)
}

/// Without systemd: the one crontab line that runs due jobs.
fn crontab(
    command: &ScheduleCommand,
    exe: &Utf8Path,
    home: Option<&Utf8Path>,
    json: bool,
) -> Result<u8, Error> {
    let line = schedule::crontab_lines(exe, home);
    if json {
        print_json(&serde_json::json!({ "systemd": false, "crontab": line }));
        return Ok(exit::PASSED);
    }
    match command {
        ScheduleCommand::Remove { .. } => {
            eprintln!("no systemd here: remove this line from your crontab (`crontab -e`):");
        }
        _ => eprintln!(
            "no systemd here: add this line to your crontab (`crontab -e`), or run `kvmx-ci daemon`:"
        ),
    }
    println!("{}", line.trim_end());
    Ok(exit::PASSED)
}

fn show(
    jobs: &[job::Job],
    exe: &Utf8Path,
    home: Option<&Utf8Path>,
    dir: &Utf8Path,
    json: bool,
) -> Result<(), Error> {
    let mut shown = Vec::new();
    for job in jobs.iter().filter(|job| job.schedule.is_some()) {
        let units = schedule::units(job, exe, home)?;
        let installed = dir.join(&units.timer_name).exists();
        if !json {
            let state = if installed {
                "installed"
            } else {
                "not installed"
            };
            println!("# {} ({state})\n{}", units.timer_name, units.timer);
            println!("# {}\n{}", units.service_name, units.service);
        }
        shown.push(serde_json::json!({
            "job": job.name,
            "timer": units.timer_name,
            "service": units.service_name,
            "installed": installed,
        }));
    }
    if json {
        print_json(&shown);
    }
    Ok(())
}

fn activation_json(activation: &Activation) -> serde_json::Value {
    match activation {
        Activation::Done { timers } => serde_json::json!({ "done": true, "timers": timers }),
        Activation::NotDone { why, command } => {
            serde_json::json!({ "done": false, "why": why, "command": command })
        }
    }
}

fn print_activation(activation: &Activation, verb: &str) {
    match activation {
        Activation::Done { timers } => {
            for timer in timers {
                println!("{verb} {timer}");
            }
        }
        Activation::NotDone { why, command } => {
            eprintln!("note: systemd was not told ({why}); run:\n  {command}");
        }
    }
}

fn current_exe() -> Result<Utf8PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::io("the kvmx-ci executable"))?;
    Utf8PathBuf::from_path_buf(exe).map_err(|path| {
        Error::Usage(format!(
            "the path of kvmx-ci is not UTF-8: {}",
            path.display()
        ))
    })
}
