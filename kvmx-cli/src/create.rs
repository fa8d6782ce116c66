//! `kvmx-create`: builds a VM's image with [`kvmx_image::ImageBuilder`],
//! shows the stages on the terminal, and manages the bootstrap cache.
//!
//! A random password is never printed by a build; it is kept (mode 0600) in
//! the VM's data folder and shown by `kvmx-create password`.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kvmx_core::CancelFlag;
use kvmx_core::Project;
use kvmx_image::BootstrapCache;

use crate::cli::GlobalArgs;
use crate::commands::Context;
use crate::error::{CliError, CommandError};
use crate::output::Output;

/// Build the disk image of a kvmx VM: a bootable Debian guest, without root.
#[derive(Debug, Parser)]
#[command(name = "kvmx-create", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
#[command(
    after_help = "A VM named like a subcommand is given as a folder: kvmx-create ./cache\n\
                  Exit status: 0 success, 1 failure, 2 usage error, 3 config error, 130 interrupted."
)]
pub struct CreateCli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Build options (without a subcommand).
    #[command(flatten)]
    pub build: BuildArgs,
    /// Something else than a build.
    #[command(subcommand)]
    pub command: Option<CreateCommand>,
}

/// `kvmx-create [VM]`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// A registered VM name or a project folder. Default: the project
    /// around the current folder.
    pub vm: Option<String>,
    /// Replace an existing image.
    #[arg(long)]
    pub force: bool,
    /// Bootstrap afresh: neither use nor fill the bootstrap cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// The bootstrap cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print the random password of the VM's first user.
    Password {
        /// A registered VM name or a project folder.
        vm: Option<String>,
    },
}

/// `kvmx-create cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cached bootstrapped systems.
    List,
    /// Remove every cached system.
    Clear,
}

/// Runs `kvmx-create` with the process's arguments.
pub fn main() -> ExitCode {
    crate::run_binary(run, |cli: &CreateCli| &cli.global)
}

fn run(cli: CreateCli, output: &Output) -> Result<(), CommandError> {
    let context = Context::from_env()?;
    match cli.command {
        None => build(&cli.build, &context, output),
        Some(CreateCommand::Cache(CacheCommand::List)) => cache_list(&context, output),
        Some(CreateCommand::Cache(CacheCommand::Clear)) => cache_clear(&context, output),
        Some(CreateCommand::Password { vm }) => password(vm.as_deref(), &context, output),
    }
}

fn build(args: &BuildArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let project = Project::select(args.vm.as_deref(), &context.cwd, &context.layout)?;
    let loaded = project.load(&context.layout)?;
    for warning in &loaded.warnings {
        output.warn(&format!(
            "{}:{}: {}",
            project.file.path(),
            warning.line,
            warning.message
        ));
    }
    let passphrase = crate::passphrase::for_create(&loaded.config)?;
    let report = kvmx_provision::builder::image_builder(
        &context.layout,
        loaded.name,
        loaded.config,
        passphrase,
    )?
    .force(args.force)
    .no_cache(args.no_cache)
    .cancel(CancelFlag::on_signals()?)
    .build(&mut output.stages())?;
    if output.json {
        output.json_result(&report);
        return Ok(());
    }
    let total: f64 = report.stages.iter().map(|s| s.seconds).sum();
    output.result(&format!(
        "built {} for {} in {total:.1} s",
        report.image, report.vm
    ));
    output.detail(&format!("log: {}", report.log));
    if let Some(file) = &report.password_file {
        output.info(&format!(
            "the user's random password is kept in {file}: kvmx-create password {}",
            report.vm
        ));
    }
    if let Some(file) = &report.luks_passphrase_file {
        output.info(&format!(
            "the LUKS passphrase is kept in {file} (mode 0600); `kvmx up` types it at the guest's prompt"
        ));
    }
    Ok(())
}

fn cache_list(context: &Context, output: &Output) -> Result<(), CommandError> {
    let cache = BootstrapCache::new(&context.layout.cache_dir);
    let entries = cache.list()?;
    if output.json {
        output.json_result(&entries);
        return Ok(());
    }
    if entries.is_empty() {
        output.info(&format!("the bootstrap cache in {} is empty", cache.dir()));
        return Ok(());
    }
    output.result(&format!(
        "{:32}  {:10}  {:6}  {:11}  {:>8}  MIRROR",
        "KEY", "SUITE", "ARCH", "METHOD", "SIZE"
    ));
    for entry in &entries {
        let method = kvmx_core::config::spelling(&entry.spec.method);
        output.result(&format!(
            "{:32}  {:10}  {:6}  {:11}  {:>6} M  {}",
            entry.key,
            entry.spec.suite,
            entry.spec.arch,
            method,
            entry.size >> 20,
            entry.spec.mirror
        ));
    }
    Ok(())
}

fn cache_clear(context: &Context, output: &Output) -> Result<(), CommandError> {
    let removed = BootstrapCache::new(&context.layout.cache_dir).clear()?;
    let builders = kvmx_image::builder::BuilderImage::clear(&context.layout.cache_dir)?;
    if output.json {
        output.json_result(&serde_json::json!({ "systems": removed, "builders": builders }));
    } else {
        output.result(&format!(
            "removed {} cached system(s) and {} builder VM image(s)",
            removed.len(),
            builders.len()
        ));
    }
    Ok(())
}

fn password(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let project = Project::select(vm, &context.cwd, &context.layout)?;
    let loaded = project.load(&context.layout)?;
    let file = context.layout.vm(&loaded.name).password_file();
    match std::fs::read_to_string(&file) {
        Ok(password) => {
            output.result(password.trim());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::NoPassword {
            vm: loaded.name.to_string(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}
