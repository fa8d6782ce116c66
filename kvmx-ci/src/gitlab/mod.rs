//! The GitLab Runner custom-executor driver: `config`, `prepare`, `run`,
//! `cleanup`.
//!
//! gitlab-runner calls one executable per stage of a CI job; this module is
//! that executable. Each job gets a disposable VM made from a template (a
//! registered kvmx VM with its own image), named after the job's ids so that
//! every stage, and a `cleanup` after a crash, finds the same VM. Any number
//! of hosts, each with gitlab-runner and kvmx, share the load: kvmx-ci keeps
//! no cluster of its own.
//!
//! Exit statuses follow the driver contract: the job script's own failure
//! exits with `$BUILD_FAILURE_EXIT_CODE` (its real status in
//! `$BUILD_EXIT_CODE_FILE`), everything else that goes wrong (boot, SSH, a
//! missing variable, a signal) with `$SYSTEM_FAILURE_EXIT_CODE`.
//!
//! [`driver`] holds the stages as library calls; [`run`] is the front that
//! `kvmx-ci gitlab` calls: it prints, and turns outcomes into exit codes.

pub mod driver;
pub mod env;
mod error;
mod front;

use camino::Utf8PathBuf;

pub use driver::{DriverConfig, DriverInfo, RunOutcome};
pub use env::{ExitCodes, job_vm_name};
pub use error::GitlabError;
pub use front::run;

/// The environment variable naming the template when `--template` is not
/// given.
pub const TEMPLATE_VARIABLE: &str = "KVMX_CI_TEMPLATE";

/// The stages of the custom executor, as gitlab-runner calls them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GitlabCommand {
    /// `config_exec`: prints the job's settings (builds and cache folders,
    /// host name, driver) as JSON.
    Config(TemplateArg),
    /// `prepare_exec`: makes the job's VM from the template, boots it and
    /// waits for SSH.
    Prepare(TemplateArg),
    /// `run_exec`: runs one script of the job in the VM.
    Run {
        /// The template (accepted for symmetry; the VM is found by its name).
        #[command(flatten)]
        template: TemplateArg,
        /// The script gitlab-runner wrote for this stage.
        script: Utf8PathBuf,
        /// The stage's name (every stage is run alike, known or not).
        stage: String,
    },
    /// `cleanup_exec`: erases the job's VM, whatever state it is in.
    Cleanup(TemplateArg),
}

/// The template flag every stage takes.
#[derive(Debug, Clone, clap::Args)]
pub struct TemplateArg {
    /// The kvmx VM the job's VM is made from (registered, with its own
    /// image).
    #[arg(long, value_name = "NAME", env = TEMPLATE_VARIABLE)]
    pub template: Option<String>,
}
