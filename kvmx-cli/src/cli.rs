//! The command-line surface, defined once: parsing, `--help`, completions
//! and the man page all come from these types.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

/// QEMU virtual machines from a file in each project.
#[derive(Debug, Parser)]
#[command(name = "kvmx", version, about, long_about = None)]
#[command(after_help = "Exit status: 0 success, 1 failure, 2 usage error, 3 config error.")]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a project: write a commented kvmx.toml and register the VM.
    Init(InitArgs),
    /// Write a kvmx.toml equivalent to a legacy kvmxfile.
    Import(ImportArgs),
    /// List registered VMs.
    List,
    /// Inspect a VM's config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// `kvmx init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Project folder. Default: the current folder.
    pub dir: Option<Utf8PathBuf>,
    /// VM name. Default: the folder's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing kvmx.toml, and take over a name registered for
    /// another folder.
    #[arg(long)]
    pub force: bool,
}

/// `kvmx import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A kvmxfile, or a folder holding one. Default: the current folder.
    pub path: Option<Utf8PathBuf>,
    /// Replace an existing kvmx.toml.
    #[arg(long)]
    pub force: bool,
}

/// `kvmx config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config, with every default filled in.
    Show(VmArg),
    /// Print the path of the VM's config file.
    Path(VmArg),
}

/// A VM named explicitly, or found from the current folder.
#[derive(Debug, Args)]
pub struct VmArg {
    /// A registered VM name or a project folder. Default: the project
    /// around the current folder.
    pub vm: Option<String>,
}

/// `kvmx completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
