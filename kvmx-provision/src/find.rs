//! The one way to open a VM as a user names it: a registered name, a
//! project folder, or a disposable's name; nothing names the project
//! around the current folder.

use camino::Utf8Path;
use kvmx_core::{Layout, Project};

use crate::{Error, Vm};

/// A VM found by [`Vm::find`], with what its file warned about.
#[derive(Debug, Clone)]
pub struct Found {
    /// The VM, its template loaded when it is template-based.
    pub vm: Vm,
    /// Settings of a legacy `kvmxfile` that were not mapped, each as
    /// `FILE:LINE: message`.
    pub warnings: Vec<String>,
}

impl Vm {
    /// Opens the VM that `selector` names (a registered VM, a project
    /// folder, a disposable), or with `None` the project around `cwd`.
    pub fn find(layout: &Layout, selector: Option<&str>, cwd: &Utf8Path) -> Result<Found, Error> {
        let project = match Project::select(selector, cwd, layout) {
            Ok(project) => project,
            // A disposable has no project: its record in kvmx's data says all.
            Err(error @ kvmx_core::Error::UnknownVm { .. }) => {
                let vm = selector.and_then(|name| crate::disposable::find(layout, name));
                return vm
                    .map(|vm| Found {
                        vm,
                        warnings: Vec::new(),
                    })
                    .ok_or_else(|| error.into());
            }
            Err(error) => return Err(error.into()),
        };
        let loaded = project.load(layout)?;
        let file = project.file.path();
        let warnings = loaded
            .warnings
            .iter()
            .map(|warning| format!("{file}:{}: {}", warning.line, warning.message))
            .collect();
        Ok(Found {
            vm: Vm::open(layout, loaded.name, loaded.config)?,
            warnings,
        })
    }
}
