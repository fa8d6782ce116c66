//! `kvmx-ci check` and `kvmx-ci trust`.

use std::io::{BufRead, IsTerminal, Write};

use kvmx_core::Layout;
use serde::Serialize;

use super::{exit, print_json};
use crate::job;
use crate::{Error, source};

#[derive(Serialize)]
struct Checked {
    file: String,
    job: Option<String>,
    error: Option<String>,
}

pub(super) fn check(layout: &Layout, names: &[String], json: bool) -> Result<u8, Error> {
    let mut checked = Vec::new();
    if names.is_empty() {
        for (file, loaded) in job::check_all(layout) {
            checked.push(match loaded {
                Ok(job) => Checked {
                    file: file.to_string(),
                    job: Some(job.name),
                    error: None,
                },
                Err(error) => Checked {
                    file: file.to_string(),
                    job: None,
                    error: Some(with_hint(&error)),
                },
            });
        }
    } else {
        for name in names {
            let loaded = job::find(layout, name);
            checked.push(Checked {
                file: loaded
                    .as_ref()
                    .map_or(String::new(), |job| job.file.to_string()),
                job: Some(name.clone()),
                error: loaded.err().map(|error| with_hint(&error)),
            });
        }
    }
    let bad = checked.iter().filter(|c| c.error.is_some()).count();
    if json {
        print_json(&checked);
    } else {
        for entry in &checked {
            match &entry.error {
                None => println!("ok: {}", entry.file),
                Some(error) => eprintln!("error: {error}"),
            }
        }
        if checked.is_empty() {
            eprintln!(
                "no job files in {}: write one per job there (see `kvmx-ci --help`)",
                crate::paths::jobs_dir(layout)
            );
        }
    }
    Ok(if bad == 0 { exit::PASSED } else { exit::USAGE })
}

/// The error and its hint, as `check` prints them.
fn with_hint(error: &Error) -> String {
    match error.hint() {
        Some(hint) => format!("{error}\nhint: {hint}"),
        None => error.to_string(),
    }
}

pub(super) fn trust(layout: &Layout, name: &str, yes: bool, json: bool) -> Result<u8, Error> {
    let job = job::find(layout, name)?;
    let candidate = source::trust_candidate(layout, &job)?;
    let signer = candidate.signer.as_deref().unwrap_or("unverified");
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage(format!(
                "trusting {} of job {name} needs a yes: run `kvmx-ci trust --yes {name}` after checking it",
                candidate.commit
            )));
        }
        eprintln!(
            "{} {}\n  {}\n  signed by {signer}\nTrust this commit as the root of job {name}? [y/N] ",
            candidate.reference, candidate.commit, candidate.subject
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(Error::io("stdin"))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not trusted");
            return Ok(exit::USAGE);
        }
    }
    source::trust(layout, &job, &candidate.commit)?;
    if json {
        print_json(&serde_json::json!({
            "job": name,
            "commit": candidate.commit,
            "signer": candidate.signer,
            "reference": candidate.reference,
        }));
    } else {
        println!(
            "trusted {} ({signer}) as the root of job {name}",
            candidate.commit
        );
    }
    Ok(exit::PASSED)
}
