//! The `kvmx` command: parses the command line, runs the command through the
//! kvmx libraries, and prints results (text or `--json`) and errors.
//!
//! The binary is a thin shell around [`main`]; tests drive the real binary.
//! [`create::main`] is the same for `kvmx-create`.

mod cli;
mod commands;
pub mod create;
pub mod error;
pub mod output;
mod passphrase;
mod progress;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;
pub use error::{CommandError, Kind};
pub use output::Output;

/// Runs `kvmx` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    run_binary(
        |cli: Cli, output| commands::run(cli.command, output),
        |cli| &cli.global,
    )
}

/// The frame of every kvmx binary: parse the command line (clap prints
/// help and version to stdout with success, usage errors to stderr with
/// code 2), run, print an error once with its chain and hint, and map its
/// kind to the exit code.
pub fn run_binary<P: Parser>(
    run: impl FnOnce(P, &Output) -> Result<(), CommandError>,
    global: impl Fn(&P) -> &cli::GlobalArgs,
) -> ExitCode {
    let parsed = match P::try_parse() {
        Ok(parsed) => parsed,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(error::exit_code(Kind::Usage))
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let output = Output::new(global(&parsed));
    match run(parsed, &output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output.error(&error.render());
            ExitCode::from(error::exit_code(error.kind))
        }
    }
}

/// The clap command, for completions and the man page.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
