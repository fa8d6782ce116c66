//! Running kvmx VMs: the QEMU command line, starting QEMU detached and
//! supervising it through files that survive crashes, QMP control, and SSH
//! into the guest.
//!
//! The public surface is [`Vm`]: `find`, `up_with`, `stop_with`, `status`,
//! `stop`, `kill`, `pause`, `resume`, `destroy`; [`Vm::guest`] for
//! commands, copies and scripts in the running guest; [`Vm::qmp`] and
//! [`Vm::ssh_target`] for raw access. Nothing here prints; long operations
//! report through an [`Observer`].

pub mod agent;
pub mod builder;
pub mod clean;
mod clock;
mod daemon;
pub mod disposable;
mod error;
pub mod files;
mod find;
pub mod guest;
mod host;
pub mod install;
mod lifecycle;
pub mod live;
pub mod nfs;
pub mod provision;
pub mod qemu;
pub mod qmp;
pub mod ssh;
mod sshfs;
pub mod state;
pub mod supervise;
mod template;
pub mod unlock;
pub mod virtiofs;
mod vm;
pub mod warm;

pub use error::{DaemonEnd, Error, Provider, ShareProblem};
pub use find::Found;
pub use install::InstallOptions;
pub use kvmx_core::observe::{Event, Observer, Silent};
pub use lifecycle::{ImagePolicy, StopOptions, UpOptions, UpOutcome, UpTo, Upgraded};
pub use vm::{State, Status, StopStep, UpReport, Vm};
