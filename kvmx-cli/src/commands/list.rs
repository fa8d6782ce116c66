//! `kvmx list`: the registered VMs.

use kvmx_core::{Project, Registry};
use kvmx_provision::Vm;
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
    /// running, paused, starting, stopped, crashed; or unknown when the
    /// config cannot be read.
    state: String,
    /// Whether `kvmx supervise` keeps it running.
    supervised: bool,
}

/// The state of the VM in `project`, as `status` names it, and whether it
/// is supervised.
fn state_of(project: Option<&Project>, context: &Context) -> (String, bool) {
    let Some(project) = project else {
        return ("unknown".into(), false);
    };
    let status = project
        .load(&context.layout)
        .map_err(kvmx_provision::Error::from)
        .and_then(|loaded| Vm::open(&context.layout, loaded.name, loaded.config)?.status());
    match status {
        Ok(status) => (
            kvmx_core::config::spelling(&status.state),
            status.supervised,
        ),
        Err(_) => ("unknown".into(), false),
    }
}

pub fn run(context: &Context, output: &Output) -> Result<(), CommandError> {
    let registry = Registry::load(&context.layout)?;
    let entries: Vec<Entry> = registry
        .vms
        .iter()
        .map(|(name, dir)| {
            let project = Project::in_dir(dir);
            let (state, supervised) = state_of(project.as_ref(), context);
            Entry {
                name: name.clone(),
                dir: dir.to_string(),
                file: project.as_ref().map(|p| p.file.path().to_string()),
                state,
                supervised,
            }
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
    output.result(&format!(
        "{:width$}  {:8}  {:10}  {:9}  FOLDER",
        "NAME", "STATE", "SUPERVISED", "FILE"
    ));
    for entry in &entries {
        let file = match &entry.file {
            Some(file) if file.ends_with(".toml") => "kvmx.toml",
            Some(_) => "kvmxfile",
            None => "missing",
        };
        let supervised = if entry.supervised { "yes" } else { "no" };
        output.result(&format!(
            "{:width$}  {:8}  {supervised:10}  {file:9}  {}",
            entry.name, entry.state, entry.dir
        ));
    }
    Ok(())
}
