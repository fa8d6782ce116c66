//! The job's VM, as fresh as the job asks: a disposable of a template, or
//! a kept VM (a registered one, or the project inside the repository)
//! recreated, provisioned again or reused.
//!
//! A project's VM is named `ci-<job>`, whatever its file says, so a job
//! never touches the developer's own VM of the same project.

use camino::Utf8Path;
use kvmx_core::config::values::VmName;
use kvmx_core::observe::Observer;
use kvmx_core::{Layout, Project};
use kvmx_provision::disposable::{self, Disposable, DisposableOptions};
use kvmx_provision::guest::Discard;
use kvmx_provision::{ImagePolicy, State, StopOptions, UpOptions, Vm};

use super::Attempt;
use super::observe::RunObserver;
use crate::Error;
use crate::job::{Freshness, Job};
use crate::paths::JobPaths;
use crate::store::RunRecord;

/// The VM a run works in.
pub(super) enum JobVm {
    /// Erased when the run ends.
    Disposable(Disposable),
    /// Stopped when the run ends if the run started it.
    Kept { vm: Vm, started_here: bool },
}

impl JobVm {
    pub(super) fn vm(&self) -> &Vm {
        match self {
            JobVm::Disposable(disposable) => disposable.vm(),
            JobVm::Kept { vm, .. } => vm,
        }
    }

    /// Ends the VM's part in the run.
    pub(super) fn finish(self, log: &mut RunObserver<'_, '_>) -> Result<(), Error> {
        match self {
            JobVm::Disposable(disposable) => {
                log.stage("erasing the disposable VM");
                disposable.erase()?;
            }
            JobVm::Kept {
                vm,
                started_here: true,
            } => {
                log.end_stage();
                log.note(&format!("stopping {}", vm.name()));
                vm.stop_with(&StopOptions::new(), log)?;
            }
            JobVm::Kept { .. } => {}
        }
        Ok(())
    }
}

/// Brings the job's VM up, ready for SSH.
pub(super) fn bring_up(
    attempt: &Attempt<'_>,
    checkout: &Utf8Path,
    log: &mut RunObserver<'_, '_>,
) -> Result<JobVm, Error> {
    let spec = &attempt.job.vm;
    if let Some(template) = &spec.template {
        log.note(&format!("starting a disposable VM of {template}"));
        let template = Vm::find(attempt.layout, Some(template.as_str()), checkout)?.vm;
        let disposable =
            Disposable::create(attempt.layout, &template, DisposableOptions::default())?;
        // The template's start hooks' output: its own lines are not the job's.
        disposable.boot(log, &mut Discard)?;
        return Ok(JobVm::Disposable(disposable));
    }
    let vm = kept_vm(attempt.layout, attempt.job, checkout)?;
    let was_running = vm.status()?.state != State::Stopped;
    if spec.fresh == Freshness::Recreate {
        log.note(&format!(
            "recreating {}: its image is removed and built again",
            vm.name()
        ));
        if was_running {
            vm.stop_with(&StopOptions::new().force(true), log)?;
        }
        vm.destroy()?;
    }
    let options = UpOptions::new()
        .image(ImagePolicy::Build)
        .timeout(attempt.remaining())
        .cancel(attempt.cancel.clone());
    let outcome = vm.up_with(&options, log)?;
    let kept = JobVm::Kept {
        started_here: outcome.start.started,
        vm,
    };
    if spec.fresh == Freshness::Provision && !outcome.provisioned {
        log.stage(&format!("provisioning {}", kept.vm().name()));
        let provisioned = kept.vm().provision(&mut log.lines());
        if let Err(error) = provisioned {
            let _ = kept.finish(log);
            return Err(error.into());
        }
    }
    Ok(kept)
}

/// The registered VM the job names, or the VM of its project in the
/// exported source at `checkout`.
fn kept_vm(layout: &Layout, job: &Job, checkout: &Utf8Path) -> Result<Vm, Error> {
    match (&job.vm.name, &job.vm.project) {
        (Some(name), _) => Ok(Vm::find(layout, Some(name.as_str()), checkout)?.vm),
        (None, Some(project)) => project_vm(layout, job, &checkout.join(project)),
        (None, None) => Err(Error::Usage(format!(
            "{}: the job names no kept VM (vm.project or vm.name)",
            job.file
        ))),
    }
}

/// The VM of the project at `dir` in the exported source, named
/// `ci-<job>`.
fn project_vm(layout: &Layout, job: &Job, dir: &Utf8Path) -> Result<Vm, Error> {
    let project = Project::in_dir(dir).ok_or_else(|| {
        Error::Usage(format!(
            "{}: vm.project has no kvmx.toml or kvmxfile at {dir} in the verified commit",
            job.file
        ))
    })?;
    let loaded = project.load(layout).map_err(kvmx_provision::Error::from)?;
    let name = ci_vm_name(&job.name)?;
    let mut config = loaded.unresolved;
    config.vm.name = Some(name.clone());
    let config = kvmx_core::config::resolve(config, dir, name.clone(), layout);
    Ok(Vm::open(layout, name, config)?)
}

/// `ci-<job>`.
fn ci_vm_name(job: &str) -> Result<VmName, Error> {
    format!("ci-{job}")
        .parse()
        .map_err(|problem: String| Error::Usage(format!("job {job}: {problem}")))
}

/// The VM of a run that a killed kvmx-ci left: a disposable is erased by
/// kvmx's own sweep (its owner is gone); a kept VM is powered off.
pub(super) fn cleanup_interrupted(
    layout: &Layout,
    job: &Job,
    run: &RunRecord,
    observer: &mut dyn Observer,
) {
    disposable::sweep(layout);
    if run.vm.is_none() || job.vm.template.is_some() {
        return;
    }
    let checkout = JobPaths::new(layout, &job.name).checkout;
    let Ok(vm) = kept_vm(layout, job, &checkout) else {
        return;
    };
    if vm
        .status()
        .is_ok_and(|status| status.state != State::Stopped)
    {
        let _ = vm.stop_with(&StopOptions::new().force(true), observer);
    }
}
