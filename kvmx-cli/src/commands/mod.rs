//! One module per command; [`run`] dispatches.

mod config;
mod generate;
mod import;
mod init;
mod list;

use camino::Utf8PathBuf;
use kvmx_core::Layout;

use crate::cli::Command;
use crate::error::{CommandError, Kind};
use crate::output::Output;

/// Runs one command.
pub fn run(command: Command, output: &Output) -> Result<(), CommandError> {
    match command {
        Command::Init(args) => init::run(&args, &Context::from_env()?, output),
        Command::Import(args) => import::run(&args, &Context::from_env()?, output),
        Command::List => list::run(&Context::from_env()?, output),
        Command::Config(args) => config::run(&args, &Context::from_env()?, output),
        Command::Completions(args) => generate::completions(args.shell),
        Command::Man => generate::man(),
    }
}

/// What most commands need: kvmx's folders and where the user stands.
pub struct Context {
    /// kvmx's folders.
    pub layout: Layout,
    /// The current folder.
    pub cwd: Utf8PathBuf,
}

impl Context {
    pub(crate) fn from_env() -> Result<Context, CommandError> {
        let layout = Layout::from_env().map_err(kvmx_core::Error::from)?;
        let cwd = std::env::current_dir()?;
        let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(|path| CommandError {
            kind: Kind::Failure,
            error: Box::new(kvmx_core::Error::NotUtf8(path)),
            hint: None,
        })?;
        Ok(Context { layout, cwd })
    }
}

/// Prints the warnings of reading a legacy kvmxfile.
fn print_legacy_warnings(
    loaded: &kvmx_core::project::Loaded,
    file: &camino::Utf8Path,
    output: &Output,
) {
    for warning in &loaded.warnings {
        output.warn(&format!("{file}:{}: {}", warning.line, warning.message));
    }
}
