//! Keeping managed VMs running (`supervise.manage = true`), as systemd's
//! `Restart=on-failure` does for services: a VM is started when the
//! supervisor starts; one whose QEMU died without a clean stop is started
//! again after a growing delay, until it has crashed too often; one stopped
//! on purpose (`kvmx stop`, which leaves no run state behind) stays
//! stopped. Every decision is reported as one [`SupervisorEvent`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kvmx_core::CancelFlag;
use kvmx_core::observe::{Observer, Silent};

use crate::vm::State;
use crate::{Error, StopOptions, UpOptions, Vm};

/// How many crashes within [`CRASH_WINDOW`] make the supervisor give up.
const MAX_CRASHES: usize = 5;
/// The window in which crashes are counted.
const CRASH_WINDOW: Duration = Duration::from_secs(600);
/// The first delay before a restart; it doubles with each crash in the
/// window, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Something the supervisor did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// The VM was started (at the supervisor's start, or after a crash).
    Started {
        /// The VM.
        vm: String,
    },
    /// The VM's QEMU died without a clean stop.
    Crashed {
        /// The VM.
        vm: String,
        /// When it will be started again.
        restart_in: Duration,
    },
    /// The VM was stopped on purpose and is left stopped.
    LeftStopped {
        /// The VM.
        vm: String,
    },
    /// The VM crashed too often and is no longer restarted.
    GaveUp {
        /// The VM.
        vm: String,
        /// How many crashes, in how long.
        crashes: usize,
    },
    /// Starting or stopping the VM failed.
    Failed {
        /// The VM.
        vm: String,
        /// What failed.
        error: String,
    },
    /// The VM was powered off as the supervisor ended.
    Stopped {
        /// The VM.
        vm: String,
    },
}

/// What the supervisor knows of one VM.
#[derive(Debug, Default)]
struct Watch {
    /// Whether it ran at the last pass (started or seen running).
    running: bool,
    /// When it crashed, within the window.
    crashes: Vec<Instant>,
    /// Not before this instant is it started again.
    restart_at: Option<Instant>,
    /// Left alone: stopped on purpose, or crashed too often.
    left_alone: bool,
}

/// The supervisor of a set of VMs.
#[derive(Debug, Default)]
pub struct Supervisor {
    watches: BTreeMap<String, Watch>,
    cancel: CancelFlag,
}

impl Supervisor {
    /// A supervisor that has seen nothing yet; `cancel` also ends a start
    /// it is waiting on.
    pub fn new(cancel: CancelFlag) -> Self {
        Supervisor {
            watches: BTreeMap::new(),
            cancel,
        }
    }

    /// One pass over `vms`: starts those due to run, notes crashes and
    /// deliberate stops. Returns what it did.
    pub fn pass(&mut self, vms: &[Vm], now: Instant) -> Vec<SupervisorEvent> {
        let mut events = Vec::new();
        for vm in vms {
            let name = vm.name().to_string();
            let first_sight = !self.watches.contains_key(&name);
            let watch = self.watches.entry(name.clone()).or_default();
            let state = vm.status().map(|status| status.state);
            match state {
                Ok(State::Running | State::Paused | State::Starting) => {
                    // Running again (perhaps started by hand): watched again.
                    watch.running = true;
                    watch.left_alone = false;
                    continue;
                }
                Ok(State::Crashed) if watch.restart_at.is_none() && !watch.left_alone => {
                    watch
                        .crashes
                        .retain(|at| now.duration_since(*at) < CRASH_WINDOW);
                    watch.crashes.push(now);
                    if watch.crashes.len() >= MAX_CRASHES {
                        watch.left_alone = true;
                        events.push(SupervisorEvent::GaveUp {
                            vm: name,
                            crashes: watch.crashes.len(),
                        });
                        continue;
                    }
                    let doublings = u32::try_from(watch.crashes.len() - 1).unwrap_or(u32::MAX);
                    let delay = FIRST_DELAY
                        .saturating_mul(2u32.saturating_pow(doublings))
                        .min(MAX_DELAY);
                    watch.restart_at = Some(now + delay);
                    events.push(SupervisorEvent::Crashed {
                        vm: name.clone(),
                        restart_in: delay,
                    });
                }
                Ok(State::Stopped) if watch.running => {
                    // A clean stop that was not ours: someone wants it off.
                    watch.running = false;
                    watch.left_alone = true;
                    events.push(SupervisorEvent::LeftStopped { vm: name });
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    events.push(SupervisorEvent::Failed {
                        vm: name,
                        error: error.to_string(),
                    });
                    continue;
                }
            }
            let due = watch.restart_at.is_none_or(|at| at <= now);
            if watch.left_alone || !due || !(first_sight || watch.restart_at.is_some()) {
                continue;
            }
            watch.restart_at = None;
            let options = UpOptions::new().cancel(self.cancel.clone());
            match vm.up_with(&options, &mut Silent) {
                Ok(_) => {
                    watch.running = true;
                    events.push(SupervisorEvent::Started { vm: name });
                }
                Err(error) => events.push(SupervisorEvent::Failed {
                    vm: name,
                    error: error.to_string(),
                }),
            }
        }
        events
    }

    /// Powers off every VM of `vms` that runs, power-off hooks included.
    pub fn stop_all(&mut self, vms: &[Vm], observer: &mut dyn Observer) -> Vec<SupervisorEvent> {
        let mut events = Vec::new();
        for vm in vms.iter().filter(|vm| vm.is_running()) {
            let name = vm.name().to_string();
            events.push(match vm.stop_with(&StopOptions::new(), &mut *observer) {
                Ok(_) => SupervisorEvent::Stopped { vm: name },
                Err(error) => SupervisorEvent::Failed {
                    vm: name,
                    error: error.to_string(),
                },
            });
        }
        events
    }
}

/// The registered VMs with `supervise.manage = true`, opened.
pub fn managed(layout: &kvmx_core::Layout) -> Result<Vec<Vm>, Error> {
    let registry = kvmx_core::Registry::load(layout)?;
    let mut vms = Vec::new();
    for (name, folder) in &registry.vms {
        let found = Vm::find(layout, Some(name), folder)?;
        if found.vm.config().supervise.manage {
            vms.push(found.vm);
        }
    }
    Ok(vms)
}
