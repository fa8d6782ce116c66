//! The rules of a job file that a single value's type cannot check, each
//! reported at the key it is about.

use std::collections::BTreeSet;

use kvmx_core::config::Problem;

use super::{Freshness, Job, Mode, Policy, Schedule};

/// Every broken rule of `job`, in file order of its sections.
pub(super) fn problems(job: &Job) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_source(job, &mut problems);
    check_vm(job, &mut problems);
    check_steps(job, &mut problems);
    check_rest(job, &mut problems);
    problems
}

/// Writes the values the checks accepted in their one spelling:
/// fingerprints without spaces, in capitals as GnuPG prints them.
pub(super) fn normalize(job: &mut Job) {
    for signer in &mut job.source.signers {
        *signer = fingerprint(signer);
    }
}

fn problem(path: &[&str], message: impl Into<String>) -> Problem {
    Problem {
        path: path.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
        hint: None,
    }
}

fn hinted(path: &[&str], message: impl Into<String>, hint: impl Into<String>) -> Problem {
    Problem {
        hint: Some(hint.into()),
        ..problem(path, message)
    }
}

fn fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

fn check_source(job: &Job, problems: &mut Vec<Problem>) {
    let source = &job.source;
    let verify = ["source", "verify"];
    match source.verify {
        Policy::Ssh if source.allowed_signers.is_none() => problems.push(hinted(
            &verify,
            "verify = \"ssh\" needs source.allowed_signers",
            "add allowed_signers = \"<file>\" (git's allowed signers format, relative to this file)",
        )),
        Policy::Openpgp if source.keyring.is_none() => problems.push(hinted(
            &verify,
            "verify = \"openpgp\" needs source.keyring",
            "add keyring = \"<file>\": the armored public keys of the signers, relative to this file",
        )),
        Policy::Openpgp if source.signers.is_empty() => problems.push(hinted(
            &verify,
            "verify = \"openpgp\" needs source.signers",
            "add signers = [\"<40 hex digit fingerprint>\", ...]: the keys allowed to sign",
        )),
        _ => {}
    }
    for (index, signer) in source.signers.iter().enumerate() {
        let cleaned = fingerprint(signer);
        if cleaned.len() != 40 || !cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
            problems.push(hinted(
                &["source", "signers", &index.to_string()],
                format!("invalid fingerprint \"{signer}\": expected 40 hex digits"),
                "`gpg --fingerprint <key>` prints it (spaces are allowed)",
            ));
        }
    }
    if source.mode == Mode::Tag && source.tag.is_none() {
        problems.push(hinted(
            &["source", "mode"],
            "mode = \"tag\" needs source.tag",
            "add tag = \"v*\": the pattern (a git glob) of the tags followed",
        ));
    }
}

fn check_vm(job: &Job, problems: &mut Vec<Problem>) {
    let vm = &job.vm;
    let given: Vec<&str> = [
        ("vm.project", vm.project.is_some()),
        ("vm.name", vm.name.is_some()),
        ("vm.template", vm.template.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    if given.len() != 1 {
        let found = if given.is_empty() {
            "none is given".to_owned()
        } else {
            format!("{} are given", given.join(" and "))
        };
        problems.push(hinted(
            &["vm"],
            format!("give exactly one of vm.project, vm.name and vm.template: {found}"),
            "project: a kvmx project in the repository; name: a registered VM; \
             template: disposables of a template",
        ));
    }
    let fresh = ["vm", "fresh"];
    match (vm.fresh, &vm.template) {
        (Freshness::Disposable, None) => problems.push(hinted(
            &fresh,
            "fresh = \"disposable\" needs vm.template",
            "disposables are made from a template: add template = \"<VM>\"",
        )),
        (other, Some(_)) if other != Freshness::Disposable => problems.push(hinted(
            &fresh,
            format!(
                "vm.template runs in disposables, not with fresh = \"{}\"",
                kvmx_core::config::spelling(&other)
            ),
            "write fresh = \"disposable\", or use vm.name for a VM that is kept",
        )),
        _ => {}
    }
}

fn check_steps(job: &Job, problems: &mut Vec<Problem>) {
    if job.steps.is_empty() {
        problems.push(hinted(
            &[],
            "a job needs at least one [[step]]",
            "add [[step]] with name = \"...\" and run = \"...\"",
        ));
    }
    let mut seen = BTreeSet::new();
    for (index, step) in job.steps.iter().enumerate() {
        let path = ["step", &index.to_string(), "name"];
        if step.name.trim().is_empty() {
            problems.push(problem(&path, "a step needs a name"));
        } else if !seen.insert(step.name.as_str()) {
            problems.push(problem(
                &path,
                format!(
                    "two steps are called \"{}\": step names are unique",
                    step.name
                ),
            ));
        }
    }
}

fn check_rest(job: &Job, problems: &mut Vec<Problem>) {
    if job.keep == 0 {
        problems.push(hinted(
            &["keep"],
            "keep = 0 would remove every run, the one just made too",
            "keep at least 1",
        ));
    }
    for name in job.env.keys() {
        if !is_shell_name(name) {
            problems.push(problem(
                &["env", name],
                format!(
                    "invalid variable name \"{name}\": use letters, digits and `_`, \
                     not starting with a digit"
                ),
            ));
        }
    }
    if let Some(schedule) = &job.schedule {
        let key = match schedule {
            Schedule::Cron(_) => "cron",
            Schedule::OnCalendar(_) => "on_calendar",
        };
        if let Err(message) = crate::schedule::validate(schedule) {
            problems.push(problem(&["schedule", key], message));
        }
    }
}

/// A name a POSIX shell takes as a variable.
fn is_shell_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `[schedule]` holds one of `cron` and `on_calendar`. Checked on the text
/// before serde reads it: serde's words for a wrong enum table ("wanted
/// exactly 1 element") would not help.
pub(super) fn schedule_shape(text: &str) -> Option<Problem> {
    let table: toml::Table = text.parse().ok()?;
    let schedule = table.get("schedule")?.as_table()?;
    let usage = "write cron = \"minute hour day month weekday\" or on_calendar = \"<systemd calendar spec>\"";
    if let Some(unknown) = schedule
        .keys()
        .find(|key| !["cron", "on_calendar"].contains(&key.as_str()))
    {
        return Some(hinted(
            &["schedule", unknown],
            format!("unknown key `{unknown}` in [schedule]"),
            usage,
        ));
    }
    match schedule.len() {
        0 => Some(hinted(&["schedule"], "[schedule] is empty", usage)),
        1 => None,
        _ => Some(hinted(
            &["schedule", "on_calendar"],
            "a schedule is either cron or on_calendar, not both",
            "keep one of them",
        )),
    }
}
