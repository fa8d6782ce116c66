//! kvmx-ci: scheduled jobs in fresh kvmx VMs.
//!
//! A job (one TOML file per job under `<config>/ci/`) names a git source,
//! how its signatures are verified, the VM it runs in and how fresh that VM
//! must be, the steps, and a schedule. A run verifies the source before any
//! VM work ([`source`]), exports the verified commit by its id, brings the VM
//! up through `kvmx-provision` ([`runner`]), runs the steps over the Guest
//! API, copies artifacts back, and records everything in a run folder
//! ([`store`]) that `status`, `log` and the HTML [`report`] read.
//!
//! [`gitlab`] is the GitLab Runner custom-executor driver: each CI job of
//! GitLab gets a disposable VM, so any number of hosts can share the load.
//!
//! The `kvmx-ci` binary is a thin caller of [`cli::main`].

pub mod cli;
mod error;
pub mod gitlab;
pub mod job;
mod lock;
pub mod paths;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod source;
pub mod store;

pub use error::Error;
