//! The whole `up` and `stop`, as every caller gets them: the `kvmx`
//! command, kvmx-ci, the supervisor and programs that embed kvmx all call
//! [`Vm::up_with`] and [`Vm::stop_with`].
//!
//! `up_with`: the image (built when missing), the share checks, start,
//! SSH, shares mounted, start hooks, provisioning. `stop_with`: the
//! power-off hooks, then the escalation of [`Vm::stop`].

use std::time::Duration;

use kvmx_core::CancelFlag;
use kvmx_core::observe::{Event, Observer, Stages, Stream};
use serde::Serialize;

use crate::guest::OutputSink;
use crate::state;
use crate::vm::{Patience, State, StopStep, UpReport};
use crate::{Error, Vm};
use kvmx_image::volumes::Passphrase;

/// What `up` does when the VM has no image yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ImagePolicy {
    /// Build it with kvmx-image, as `kvmx-create` does.
    #[default]
    Build,
    /// Fail with [`Error::NoImage`].
    Fail,
}

/// How far `up` goes before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UpTo {
    /// The guest answers SSH, its shares are mounted, the start hooks and
    /// provisioning have run.
    #[default]
    Ready,
    /// QEMU runs; for a caller that follows the serial console instead.
    /// No hooks, no provisioning.
    Started,
}

/// Options of [`Vm::up_with`].
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    image: ImagePolicy,
    up_to: UpTo,
    patience: Patience,
}

impl UpOptions {
    /// What `kvmx up` does: build a missing image, wait until ready.
    pub fn new() -> Self {
        UpOptions::default()
    }

    /// What to do when the image is missing.
    pub fn image(mut self, policy: ImagePolicy) -> Self {
        self.image = policy;
        self
    }

    /// How far to go before returning.
    pub fn up_to(mut self, up_to: UpTo) -> Self {
        self.up_to = up_to;
        self
    }

    /// How long the guest may take to answer SSH (default: the VM's
    /// `supervise.boot_timeout`). QEMU keeps running when it is reached.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.patience.limit = Some(timeout);
        self
    }

    /// A flag that stops the build or the wait when set.
    pub fn cancel(mut self, cancel: CancelFlag) -> Self {
        self.patience.cancel = cancel;
        self
    }

    /// The LUKS passphrase of an encrypted image whose config says
    /// `passphrase = "ask"` (one kept in a file is read from it).
    pub fn passphrase(mut self, passphrase: Option<Passphrase>) -> Self {
        self.patience.passphrase = passphrase;
        self
    }
}

/// Options of [`Vm::stop_with`].
#[derive(Debug, Clone, Default)]
pub struct StopOptions {
    force: bool,
    skip_hooks: bool,
    timeout: Option<Duration>,
    cancel: CancelFlag,
}

impl StopOptions {
    /// What `kvmx stop` does: hooks, then the whole escalation.
    pub fn new() -> Self {
        StopOptions::default()
    }

    /// Skip the hooks and the polite steps: start at QMP `quit`.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Power off without running the power-off hooks.
    pub fn skip_hooks(mut self, skip: bool) -> Self {
        self.skip_hooks = skip;
        self
    }

    /// How long the guest gets at each polite step (the ACPI button, then
    /// `poweroff` over SSH) before the next; default: the VM's
    /// `supervise.shutdown_timeout`. QMP `quit` and the signals that follow
    /// have their own short deadlines.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A flag that, when set, cuts the escalation short (QMP `quit`, then
    /// signals).
    pub fn cancel(mut self, cancel: CancelFlag) -> Self {
        self.cancel = cancel;
        self
    }
}

/// What [`Vm::up_with`] did.
#[derive(Debug, Clone, Serialize)]
pub struct UpOutcome {
    /// The start itself.
    #[serde(flatten)]
    pub start: UpReport,
    /// Whether the image was built first.
    pub built_image: bool,
    /// Whether the start hooks ran.
    pub ran_start_hooks: bool,
    /// Whether the guest was provisioned.
    pub provisioned: bool,
}

/// Guest output of hooks and provisioning, as observer events.
pub(crate) struct ObserverSink<'a, 'o> {
    vm: &'a str,
    stages: &'a mut Stages<'o>,
}

impl OutputSink for ObserverSink<'_, '_> {
    fn line(&mut self, stream: Stream, line: &str) {
        self.stages.observer().event(Event::GuestOutput {
            vm: self.vm,
            stream,
            line,
        });
    }
}

impl Vm {
    /// Everything `kvmx up` does, in order: the image (built when missing,
    /// unless `options` say to fail), the share checks, start, the wait
    /// for SSH, shares mounted, start hooks, then provisioning at the first
    /// boot (or every boot with `provision.always`). A VM that already runs
    /// is waited for until it answers SSH. A failing start hook leaves
    /// the VM running and says so ([`Error::StartHook`]).
    pub fn up_with(
        &self,
        options: &UpOptions,
        observer: &mut dyn Observer,
    ) -> Result<UpOutcome, Error> {
        let mut stages = Stages::new(observer);
        // Before a build that takes minutes.
        self.check_shares()?;
        let built_image = self.build_missing_image(options, &mut stages)?;
        let ready = options.up_to == UpTo::Ready;
        let start = self.start(ready, None, &options.patience, &mut stages)?;
        let mut outcome = UpOutcome {
            start,
            built_image,
            ran_start_hooks: false,
            provisioned: false,
        };
        if !ready || outcome.start.ssh_port.is_none() {
            return Ok(outcome);
        }
        if !outcome.start.started {
            // Another kvmx started it, perhaps moments ago.
            if let Some(run) = state::read(&self.files) {
                stages.stage("waiting for SSH");
                self.wait_for_ssh(run.pid, &options.patience)?;
            }
            return Ok(outcome);
        }
        stages.stage("start hooks");
        let vm = self.name.to_string();
        self.startup_hooks(&mut ObserverSink {
            vm: &vm,
            stages: &mut stages,
        })
        .map_err(|source| Error::StartHook {
            vm: vm.clone(),
            source: Box::new(source),
        })?;
        outcome.ran_start_hooks = true;
        if self.wants_provision() {
            stages.stage("provisioning");
            self.provision(&mut ObserverSink {
                vm: &vm,
                stages: &mut stages,
            })?;
            outcome.provisioned = true;
        }
        Ok(outcome)
    }

    /// Builds the image when it is missing and `options` allow; true when
    /// it built one. A template-based VM's root comes from its template.
    fn build_missing_image(
        &self,
        options: &UpOptions,
        stages: &mut Stages<'_>,
    ) -> Result<bool, Error> {
        let image = self.image();
        if self.template.is_some() || image.exists() {
            return Ok(false);
        }
        if options.image == ImagePolicy::Fail {
            return Err(Error::NoImage { path: image });
        }
        let builder = crate::builder::image_builder(
            &self.layout,
            self.name.clone(),
            self.config.clone(),
            options.patience.passphrase.clone(),
        )?
        .cancel(options.patience.cancel.clone());
        let how = if builder.installs() {
            "installing it"
        } else {
            "building it"
        };
        stages.note(&format!("{} has no image yet; {how}", self.name));
        builder.build(stages.observer())?;
        Ok(true)
    }

    /// Everything `kvmx stop` does: the power-off hooks (a failing hook is
    /// reported as a warning and the VM is powered off anyway), then the
    /// escalation of [`Vm::stop`].
    pub fn stop_with(
        &self,
        options: &StopOptions,
        observer: &mut dyn Observer,
    ) -> Result<StopStep, Error> {
        let mut stages = Stages::new(observer);
        let hooks = !options.force && !options.skip_hooks && self.has_poweroff_hooks();
        if hooks && self.status()?.state == State::Running {
            stages.stage("power-off hooks");
            let vm = self.name.to_string();
            let ran = self.poweroff_hooks(&mut ObserverSink {
                vm: &vm,
                stages: &mut stages,
            });
            if let Err(error) = ran {
                stages.warn(&format!("power-off hook: {error}; powering off anyway"));
            }
        }
        let force = options.force || options.cancel.is_cancelled();
        let patience = options
            .timeout
            .unwrap_or(Duration::from_secs(self.config.supervise.shutdown_timeout));
        self.stop_within(force, patience, stages.observer())
    }
}

/// What [`Vm::upgrade`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Upgraded {
    /// The upgrade command ran and succeeded; `started` when the VM was
    /// started for it (and stopped again after).
    Done {
        /// Whether it was started for the upgrade.
        started: bool,
    },
    /// Nothing was done, for this reason.
    Skipped {
        /// Why.
        reason: String,
    },
}

impl Vm {
    /// Runs `provision.upgrade_command` in the guest. A VM that is not
    /// running is started for it ([`Vm::up_with`]) and stopped after
    /// ([`Vm::stop_with`]). A template-based VM, or one whose image is an
    /// overlay on a base, is skipped: its upgrades belong to its template
    /// or base. A failing command is [`Error::Step`] with its status.
    pub fn upgrade(&self, observer: &mut dyn Observer) -> Result<Upgraded, Error> {
        let skip = |reason: String| Ok(Upgraded::Skipped { reason });
        if let Some(template) = self.template() {
            return skip(format!(
                "it runs on template {}: upgrade that",
                template.name()
            ));
        }
        if let (Some(base), true) = (&self.config.image.base, self.config.image.backing) {
            return skip(format!("its image is an overlay on {base}: upgrade that"));
        }
        let Some(command) = self.config.provision.upgrade_command.clone() else {
            return skip("it has no provision.upgrade_command".into());
        };
        let started = !self.is_running();
        if started {
            self.up_with(&UpOptions::new(), &mut *observer)?;
        }
        let vm = self.name.to_string();
        let mut stages = Stages::new(&mut *observer);
        stages.stage("upgrading");
        let status = self.guest()?.run(
            &command,
            &mut ObserverSink {
                vm: &vm,
                stages: &mut stages,
            },
        )?;
        drop(stages);
        if started {
            self.stop_with(&StopOptions::new(), observer)?;
        }
        if !status.success() {
            return Err(Error::Step(crate::provision::StepFailed {
                step: format!("the upgrade command `{command}`"),
                code: status.code().unwrap_or(-1),
            }));
        }
        Ok(Upgraded::Done { started })
    }
}
