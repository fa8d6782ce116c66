//! `kvmx-ci schedule install|remove|show`.

use kvmx_core::Layout;

use super::{ScheduleCommand, exit, print_json};
use crate::Error;
use crate::job;
use crate::schedule;

pub(super) fn schedule(layout: &Layout, command: ScheduleCommand, json: bool) -> Result<u8, Error> {
    let jobs: Vec<_> = job::load_all(layout)?
        .into_iter()
        .filter(|job| job.schedule.is_some())
        .collect();
    let exe = current_exe()?;
    let home = std::env::var("KVMX_HOME").ok().filter(|h| !h.is_empty());
    let home = home.as_deref().map(camino::Utf8Path::new);
    if !schedule::has_systemd() {
        let lines = schedule::crontab_lines(&exe, home);
        match command {
            ScheduleCommand::Remove => {
                eprintln!("no systemd here: remove this line from your crontab (`crontab -e`):");
                println!("{lines}");
            }
            _ => {
                eprintln!(
                    "no systemd here: add this line to your crontab (`crontab -e`), or run `kvmx-ci daemon`:"
                );
                println!("{lines}");
            }
        }
        return Ok(exit::PASSED);
    }
    let dir = schedule::unit_dir()?;
    match command {
        ScheduleCommand::Install => {
            let installed = schedule::install(&jobs, &exe, home, &dir)?;
            if json {
                print_json(&installed);
            } else {
                println!("{installed}");
            }
        }
        ScheduleCommand::Remove => {
            let removed = schedule::remove(&jobs, &dir)?;
            if json {
                print_json(&removed);
            } else {
                for file in &removed {
                    println!("removed {file}");
                }
            }
        }
        ScheduleCommand::Show => {
            let mut shown = Vec::new();
            for job in &jobs {
                let units = schedule::units(job, &exe, home)?;
                shown.push(serde_json::json!({
                    "job": job.name,
                    "timer": units.timer_name,
                    "service": units.service_name,
                    "installed": dir.join(&units.timer_name).exists(),
                }));
                if !json {
                    println!(
                        "# {}\n{}\n# {}\n{}",
                        units.timer_name, units.timer, units.service_name, units.service
                    );
                }
            }
            if json {
                print_json(&shown);
            }
        }
    }
    Ok(exit::PASSED)
}

fn current_exe() -> Result<camino::Utf8PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::io("the kvmx-ci executable"))?;
    camino::Utf8PathBuf::from_path_buf(exe).map_err(|path| {
        Error::Usage(format!(
            "the path of kvmx-ci is not UTF-8: {}",
            path.display()
        ))
    })
}
