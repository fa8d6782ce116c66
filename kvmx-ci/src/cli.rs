//! The `kvmx-ci` command line.

use std::process::ExitCode;

use clap::Parser;

/// Scheduled jobs in fresh kvmx VMs, and a GitLab Runner custom executor.
#[derive(Debug, Parser)]
#[command(name = "kvmx-ci", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The GitLab Runner custom-executor driver (config, prepare, run,
    /// cleanup).
    #[command(subcommand)]
    Gitlab(crate::gitlab::GitlabCommand),
}

/// Runs `kvmx-ci` with this process's arguments.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Gitlab(command) => crate::gitlab::run(command),
    }
}
