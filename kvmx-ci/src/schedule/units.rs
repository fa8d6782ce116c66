//! systemd user units (a timer and a oneshot service per scheduled job) and
//! the crontab line, for hosts without systemd.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::process::{Runner, Tool};

use super::on_calendar_lines;
use crate::Error;
use crate::job::Job;

/// The first line of every unit file kvmx-ci writes: files without it are
/// someone else's and are left alone.
const MARKER: &str = "# Written by kvmx-ci";

/// Spreads the runs of many jobs scheduled at the same minute.
const RANDOMIZED_DELAY: Duration = Duration::from_secs(60);

/// The service's own time limit beyond the job's: the run stops itself at
/// the job's timeout, this only catches a run that cannot.
const STOP_MARGIN: Duration = Duration::from_secs(600);

/// `systemctl --user` answers in seconds; past this it hangs.
const SYSTEMCTL_DEADLINE: Duration = Duration::from_secs(60);

/// The two units of a scheduled job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    /// `kvmx-ci-<job>.timer`.
    pub timer_name: String,
    /// The timer unit's text.
    pub timer: String,
    /// `kvmx-ci-<job>.service`.
    pub service_name: String,
    /// The service unit's text.
    pub service: String,
}

/// The timer and service that run `exe run <job>` on the job's schedule;
/// `kvmx_home` is passed on as `KVMX_HOME` when given.
pub fn units(job: &Job, exe: &Utf8Path, kvmx_home: Option<&Utf8Path>) -> Result<Units, Error> {
    let Some(schedule) = &job.schedule else {
        return Err(Error::Usage(format!(
            "the job `{}` has no schedule: add [schedule] with cron or on_calendar to {}",
            job.name, job.file
        )));
    };
    if !exe.is_absolute() {
        return Err(Error::Usage(format!(
            "a unit needs the absolute path of kvmx-ci, not {exe}"
        )));
    }
    let base = unit_base(&job.name)?;
    let timer_name = format!("{base}.timer");
    let service_name = format!("{base}.service");
    let on_calendar: String = on_calendar_lines(schedule)?
        .iter()
        .map(|spec| format!("OnCalendar={}\n", escape_specifiers(spec)))
        .collect();
    let timer = format!(
        "{MARKER} for the job {name}; it replaces and removes it.\n\
         [Unit]\n\
         Description=Schedule of the kvmx-ci job {name}\n\
         \n\
         [Timer]\n\
         {on_calendar}\
         # A run missed while the host was off is made up at the next boot.\n\
         Persistent=true\n\
         RandomizedDelaySec={delay}\n\
         Unit={service_name}\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        name = job.name,
        delay = RANDOMIZED_DELAY.as_secs(),
    );
    let environment = match kvmx_home {
        Some(home) => format!(
            "Environment={}\n",
            environment_word(&format!("KVMX_HOME={home}"))
        ),
        None => String::new(),
    };
    let service = format!(
        "{MARKER} for the job {name}; it replaces and removes it.\n\
         [Unit]\n\
         Description=kvmx-ci job {name}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         {environment}\
         ExecStart={exe} run {job_word}\n\
         TimeoutStartSec={limit}\n",
        name = job.name,
        exe = exec_program(exe.as_str()),
        job_word = exec_argument(&job.name),
        limit = (job.timeout + STOP_MARGIN).as_secs(),
    );
    Ok(Units {
        timer_name,
        timer,
        service_name,
        service,
    })
}

/// `kvmx-ci-<job>`, with what a unit name cannot hold escaped as systemd
/// does (`\xNN`).
fn unit_base(job: &str) -> Result<String, Error> {
    let mut base = String::from("kvmx-ci-");
    for byte in job.bytes() {
        if byte.is_ascii_alphanumeric() || b":_.-".contains(&byte) {
            base.push(char::from(byte));
        } else {
            base.push_str(&format!("\\x{byte:02x}"));
        }
    }
    // systemd's limit is 255 bytes, the suffix included.
    if base.len() + ".service".len() > 255 {
        return Err(Error::Usage(format!(
            "the job name `{job}` is too long for a systemd unit name: shorten it"
        )));
    }
    Ok(base)
}

/// `%` starts a specifier in unit files; `%%` is a plain `%`.
fn escape_specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// The program of `ExecStart=`: plain, or double-quoted with C escapes and
/// `%%` for `%` (systemd expands no `$` in the program).
fn exec_program(text: &str) -> String {
    if is_plain(text) {
        text.to_owned()
    } else {
        quoted(text)
    }
}

/// An argument of `ExecStart=`: as [`exec_program`], and `$$` for `$`,
/// which systemd would expand.
fn exec_argument(text: &str) -> String {
    exec_program(text).replace('$', "$$")
}

fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.:,+=@-".contains(c))
}

/// The value of `Environment=`, double-quoted (no `$` expansion there).
fn environment_word(text: &str) -> String {
    quoted(text)
}

fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// systemd's folder of a user's own units: `$XDG_CONFIG_HOME/systemd/user`
/// or `~/.config/systemd/user`.
pub fn unit_dir() -> Result<Utf8PathBuf, Error> {
    kvmx_core::layout::systemd_user_dir().ok_or_else(|| {
        Error::Usage(
            "neither XDG_CONFIG_HOME nor HOME is set: no folder for systemd user units".to_owned(),
        )
    })
}

/// Whether systemd runs this host (its own test, as `sd_booted` does).
pub fn has_systemd() -> bool {
    Utf8Path::new("/run/systemd/system").is_dir()
}

/// Whether an existing unit file may be replaced or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// Only files kvmx-ci wrote; another file in the way is an error.
    Keep,
    /// Also files kvmx-ci did not write.
    Replace,
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The unit files written.
    pub written: Vec<Utf8PathBuf>,
    /// Jobs left out: they have no schedule.
    pub unscheduled: Vec<String>,
    /// Whether systemd took the timers.
    pub activation: Activation,
}

/// What [`remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The unit files removed.
    pub files: Vec<Utf8PathBuf>,
    /// Whether systemd let go of the timers.
    pub activation: Activation,
}

/// What systemd was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// `systemctl --user` did it (for these timers).
    Done {
        /// The timers enabled and started, or stopped and disabled.
        timers: Vec<String>,
    },
    /// It could not be done here; `command` does it.
    NotDone {
        /// Why not.
        why: String,
        /// The commands to run.
        command: String,
    },
}

/// Writes the timer and service of every scheduled job of `jobs` into
/// `dir` (atomically), then, when `dir` is systemd's user folder and
/// `systemctl --user` works, reloads systemd and enables and starts each
/// timer. A unit file kvmx-ci did not write is an error unless `foreign`
/// allows replacing it; nothing is written then.
pub fn install(
    jobs: &[Job],
    exe: &Utf8Path,
    kvmx_home: Option<&Utf8Path>,
    dir: &Utf8Path,
    foreign: Foreign,
) -> Result<Installed, Error> {
    let mut files = Vec::new();
    let mut timers = Vec::new();
    let mut unscheduled = Vec::new();
    for job in jobs {
        if job.schedule.is_none() {
            unscheduled.push(job.name.clone());
            continue;
        }
        let units = units(job, exe, kvmx_home)?;
        files.push((dir.join(&units.timer_name), units.timer));
        files.push((dir.join(&units.service_name), units.service));
        timers.push(units.timer_name);
    }
    for (path, _) in &files {
        check_ours(path, foreign)?;
    }
    for (path, text) in &files {
        atomic_file::write(path, text.as_bytes(), Overwrite::Yes)?;
    }
    let activation = if timers.is_empty() {
        Activation::Done { timers }
    } else {
        let mut enable = vec!["enable", "--now"];
        enable.extend(timers.iter().map(String::as_str));
        systemctl(dir, &[&["daemon-reload"], &enable], timers.clone())
    };
    Ok(Installed {
        written: files.into_iter().map(|(path, _)| path).collect(),
        unscheduled,
        activation,
    })
}

/// Stops, disables and removes the units of the jobs `names` from `dir`
/// (those that are there); a unit file kvmx-ci did not write is an error
/// unless `foreign` allows removing it, and nothing is removed then.
pub fn remove<I, S>(names: I, dir: &Utf8Path, foreign: Foreign) -> Result<Removed, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut files = Vec::new();
    let mut timers = Vec::new();
    for name in names {
        let base = unit_base(name.as_ref())?;
        let timer = format!("{base}.timer");
        for file in [timer.clone(), format!("{base}.service")] {
            let path = dir.join(file);
            if path.exists() {
                check_ours(&path, foreign)?;
                files.push(path);
            }
        }
        if dir.join(&timer).exists() {
            timers.push(timer);
        }
    }
    let activation = if timers.is_empty() {
        Activation::Done { timers }
    } else {
        let mut disable = vec!["disable", "--now"];
        disable.extend(timers.iter().map(String::as_str));
        // Once the files are gone, disabling by name no longer works; what
        // is left to do by hand then is stopping and reloading.
        let manual = format!(
            "systemctl --user stop {} && systemctl --user daemon-reload",
            timers.join(" ")
        );
        systemctl_or(dir, &[&disable], timers.clone(), manual)
    };
    for path in &files {
        std::fs::remove_file(path).map_err(Error::io(path))?;
    }
    // Units removed from the disk stay loaded until systemd reloads.
    let activation = match activation {
        Activation::Done { timers } if !timers.is_empty() => systemctl_or(
            dir,
            &[&["daemon-reload"]],
            timers,
            "systemctl --user daemon-reload".to_owned(),
        ),
        other => other,
    };
    Ok(Removed { files, activation })
}

/// The jobs whose units kvmx-ci wrote into `dir`, sorted (to find the
/// timers of jobs that are gone).
pub fn installed_jobs(dir: &Utf8Path) -> Result<Vec<String>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(dir)(error)),
    };
    let mut jobs = Vec::new();
    for entry in entries {
        let name = entry.map_err(Error::io(dir))?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(job) = name
            .strip_prefix("kvmx-ci-")
            .and_then(|rest| rest.strip_suffix(".timer"))
        else {
            continue;
        };
        // Escaped names are not kvmx-ci job names; skip them.
        if !job.contains('\\') && is_ours(&dir.join(name)) {
            jobs.push(job.to_owned());
        }
    }
    jobs.sort();
    Ok(jobs)
}

fn is_ours(path: &Utf8Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.starts_with(MARKER))
}

fn check_ours(path: &Utf8Path, foreign: Foreign) -> Result<(), Error> {
    if foreign == Foreign::Keep && path.exists() && !is_ours(path) {
        return Err(Error::ForeignUnit {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Runs `systemctl --user` with each of `calls` in turn, when `dir` is the
/// folder systemd reads and systemd runs here; otherwise, or when one
/// fails, says why and what to run.
fn systemctl(dir: &Utf8Path, calls: &[&[&str]], timers: Vec<String>) -> Activation {
    let command = calls
        .iter()
        .map(|args| format!("systemctl --user {}", args.join(" ")))
        .collect::<Vec<_>>()
        .join(" && ");
    systemctl_or(dir, calls, timers, command)
}

/// [`systemctl`], saying `command` when it cannot be done.
fn systemctl_or(
    dir: &Utf8Path,
    calls: &[&[&str]],
    timers: Vec<String>,
    command: String,
) -> Activation {
    let not_done = |why: String| Activation::NotDone {
        why,
        command: command.clone(),
    };
    match unit_dir() {
        Ok(systemd_dir) if systemd_dir == dir => {}
        Ok(systemd_dir) => {
            return not_done(format!(
                "the units are in {dir}, not in systemd's user folder {systemd_dir}"
            ));
        }
        Err(error) => return not_done(error.to_string()),
    }
    if !has_systemd() {
        return not_done("systemd does not run this host".to_owned());
    }
    let runner = Runner::unlogged(CancelFlag::new());
    for args in calls {
        let tool = Tool::new("systemctl", "tell systemd about the timers")
            .arg("--user")
            .args(args.iter())
            .deadline(SYSTEMCTL_DEADLINE);
        if let Err(error) = runner.run(&tool) {
            return not_done(error.to_string());
        }
    }
    Activation::Done { timers }
}

/// The crontab line for hosts without systemd: every minute, `exe run
/// --due` (with `KVMX_HOME` when given) runs the jobs that are due.
pub fn crontab_lines(exe: &Utf8Path, kvmx_home: Option<&Utf8Path>) -> String {
    let home = kvmx_home
        .map(|home| format!("KVMX_HOME={} ", sh_word(home.as_str())))
        .unwrap_or_default();
    // cron turns a bare `%` into a newline; `\%` is a `%`.
    let command = format!("{home}{} run --due", sh_word(exe.as_str())).replace('%', "\\%");
    format!("* * * * * {command}\n")
}

/// A word for `sh`: plain, or in single quotes.
fn sh_word(text: &str) -> String {
    if is_plain(text) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_words_are_escaped_for_systemd() {
        assert_eq!(
            unit_base("nightly.docs_2-x").unwrap(),
            "kvmx-ci-nightly.docs_2-x"
        );
        assert_eq!(unit_base("a b/c").unwrap(), "kvmx-ci-a\\x20b\\x2fc");
        assert!(unit_base(&"x".repeat(250)).is_err());
        assert_eq!(exec_program("/usr/bin/kvmx-ci"), "/usr/bin/kvmx-ci");
        assert_eq!(
            exec_program("/opt/a \"b\" \\ 100% $X"),
            "\"/opt/a \\\"b\\\" \\\\ 100%% $X\""
        );
        assert_eq!(exec_argument("$X y"), "\"$$X y\"");
        assert_eq!(environment_word("KVMX_HOME=/a $b"), "\"KVMX_HOME=/a $b\"");
    }
}
