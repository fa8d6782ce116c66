//! The `kvmx-ci` command line: argument parsing, text or JSON output,
//! errors printed once, exit codes. Everything it does is a library call.

mod jobs;
mod progress;
mod run;
mod schedule;
mod status;

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use kvmx_core::{ErrorKind, Layout};

use crate::Error;
use crate::store::RunResult;

/// Scheduled jobs in fresh kvmx VMs, from verified sources.
#[derive(Debug, Parser)]
#[command(name = "kvmx-ci", version, about, long_about = None)]
pub struct Cli {
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check job files (all, or the named jobs).
    Check {
        /// Jobs to check; all by default.
        jobs: Vec<String>,
    },
    /// Run a job now, or every job that is due.
    Run(RunArgs),
    /// Show each job's last run and when it is next due.
    Status,
    /// Print a run's log (the last run by default).
    Log {
        /// The job.
        job: String,
        /// The run's number; the last run by default.
        run: Option<u64>,
        /// Keep printing while the run goes on.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Write a static HTML report of every job's runs.
    Report {
        /// The folder to write it to.
        #[arg(long, value_name = "DIR")]
        html: camino::Utf8PathBuf,
        /// Write into a folder that holds files of something else.
        #[arg(long)]
        force: bool,
    },
    /// Record the source's current tip (or newest tag) as the job's trust
    /// root, after showing its id and signer.
    Trust {
        /// The job.
        job: String,
        /// Trust without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Systemd user timers (or crontab lines) that run the jobs.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Run due jobs in a loop, for hosts without systemd or cron.
    Daemon {
        /// Seconds between checks.
        #[arg(long, default_value_t = 60)]
        interval: u64,
    },
    /// The GitLab Runner custom-executor driver.
    #[command(subcommand)]
    Gitlab(crate::gitlab::GitlabCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page.
    Man,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The job to run.
    #[arg(required_unless_present = "due", conflicts_with = "due")]
    job: Option<String>,
    /// Run every job whose schedule has come.
    #[arg(long)]
    due: bool,
    /// Wait for a run of the same job that is under way, instead of failing.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// Write and enable a timer per scheduled job (or print crontab lines
    /// where there is no systemd).
    Install {
        /// Replace unit files of the same name that kvmx-ci did not write.
        #[arg(long)]
        force: bool,
    },
    /// Disable and remove the timers (also those of jobs removed since).
    Remove {
        /// Remove unit files of the same name that kvmx-ci did not write.
        #[arg(long)]
        force: bool,
    },
    /// Print the units (or crontab lines) and when each job is next due.
    Show,
}

/// Exit codes of `kvmx-ci`, by what happened.
pub mod exit {
    /// The run passed (or the command succeeded).
    pub const PASSED: u8 = 0;
    /// A step failed.
    pub const FAILED: u8 = 1;
    /// Wrong use or a bad job file.
    pub const USAGE: u8 = 2;
    /// Infrastructure: fetch, boot, SSH, image.
    pub const ERROR: u8 = 3;
    /// The source was refused.
    pub const REJECTED: u8 = 4;
    /// Another run of the job is under way.
    pub const BUSY: u8 = 5;
    /// Stopped by SIGINT or SIGTERM.
    pub const CANCELLED: u8 = 130;
}

/// The exit code of a run's result.
pub fn result_code(result: RunResult) -> u8 {
    match result {
        RunResult::Passed => exit::PASSED,
        RunResult::Failed => exit::FAILED,
        RunResult::Rejected => exit::REJECTED,
        RunResult::Cancelled => exit::CANCELLED,
        RunResult::Error | RunResult::Running => exit::ERROR,
    }
}

/// Runs `kvmx-ci` with this process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // The driver speaks GitLab's exit-code contract itself.
        Command::Gitlab(command) => return crate::gitlab::run(command),
        command => command,
    };
    match dispatch(command, cli.json) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            print_error(&error);
            ExitCode::from(error_code(&error))
        }
    }
}

fn error_code(error: &Error) -> u8 {
    match error {
        Error::Busy { .. } => exit::BUSY,
        Error::Source(source) if source.is_rejection() => exit::REJECTED,
        _ => match error.kind() {
            ErrorKind::Usage | ErrorKind::Config => exit::USAGE,
            ErrorKind::Interrupted => exit::CANCELLED,
            _ => exit::ERROR,
        },
    }
}

/// Prints `error` once, its causes on the same line, then its hint.
fn print_error(error: &Error) {
    eprintln!("error: {}", crate::runner::chain(error));
    if let Some(hint) = error.hint() {
        eprintln!("hint: {hint}");
    }
}

fn dispatch(command: Command, json: bool) -> Result<u8, Error> {
    let layout = Layout::from_env()?;
    match command {
        Command::Check { jobs } => jobs::check(&layout, &jobs, json),
        Command::Run(args) if args.due => run::due(&layout, args.wait, json),
        Command::Run(args) => run::one(&layout, args.job.as_deref().unwrap_or(""), args.wait, json),
        Command::Status => status::status(&layout, json),
        Command::Log { job, run, follow } => status::log(&layout, &job, run, follow, json),
        Command::Report { html, force } => status::report(&layout, &html, force, json),
        Command::Trust { job, yes } => jobs::trust(&layout, &job, yes, json),
        Command::Schedule(command) => schedule::schedule(&layout, command, json),
        Command::Daemon { interval } => run::daemon(&layout, interval),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kvmx-ci",
                &mut std::io::stdout(),
            );
            Ok(exit::PASSED)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(Error::io("stdout"))?;
            Ok(exit::PASSED)
        }
        Command::Gitlab(_) => unreachable!("dispatched above"),
    }
}

/// Prints `value` as pretty JSON.
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("results serialize")
    );
}
