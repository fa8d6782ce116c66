//! `kvmx list`: the registered VMs.

use kvmx_core::{Project, Registry};
use serde::Serialize;

use super::Context;
use crate::error::CommandError;
use crate::output::Output;

#[derive(Serialize)]
struct Entry {
    name: String,
    dir: String,
    /// The project file, or null when the folder no longer has one.
    file: Option<String>,
}

pub fn run(context: &Context, output: &Output) -> Result<(), CommandError> {
    let registry = Registry::load(&context.layout)?;
    let entries: Vec<Entry> = registry
        .vms
        .iter()
        .map(|(name, dir)| Entry {
            name: name.clone(),
            dir: dir.to_string(),
            file: Project::in_dir(dir).map(|p| p.file.path().to_string()),
        })
        .collect();
    if output.json {
        output.json_result(&entries);
        return Ok(());
    }
    if entries.is_empty() {
        output.info("No VMs registered; run `kvmx init` in a project folder");
        return Ok(());
    }
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    output.result(&format!("{:width$}  {:9}  FOLDER", "NAME", "FILE"));
    for entry in &entries {
        let file = match &entry.file {
            Some(file) if file.ends_with(".toml") => "kvmx.toml",
            Some(_) => "kvmxfile",
            None => "missing",
        };
        output.result(&format!("{:width$}  {file:9}  {}", entry.name, entry.dir));
    }
    Ok(())
}
