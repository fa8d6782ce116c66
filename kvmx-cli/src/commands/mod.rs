//! One module per command; [`run`] dispatches.

mod access;
mod agent_io;
mod clean;
mod config;
mod devices;
mod disposable;
mod foreach;
mod generate;
mod guest;
mod import;
mod init;
mod install;
mod lifecycle;
mod list;
mod shares;
mod supervise;

use camino::Utf8PathBuf;
use kvmx_core::Layout;
use kvmx_provision::clean::Cleaner;

use crate::cli::Command;
use crate::error::CommandError;
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
        command => run_vm_command(command, &Context::from_env()?, output),
    }
}

fn run_vm_command(
    command: Command,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    // Disposables whose kvmx was killed are erased by the next command
    // (`disposable --cleanup` does it itself and reports them).
    if !matches!(&command, Command::Disposable(args) if args.cleanup) {
        for name in kvmx_provision::disposable::sweep(&context.layout) {
            output.detail(&format!(
                "erased {name}, a disposable left behind by a killed kvmx"
            ));
        }
    }
    match command {
        Command::Up(args) => lifecycle::up(&args, context, output),
        Command::Install(args) => install::run(&args, context, output),
        Command::Stop(args) => lifecycle::stop(&args, context, output),
        Command::Kill(args) => lifecycle::kill(args.vm.as_deref(), context, output),
        Command::Suspend(args) => lifecycle::suspend(args.vm.as_deref(), false, context, output),
        Command::Resume(args) => lifecycle::suspend(args.vm.as_deref(), true, context, output),
        Command::Restart(args) => lifecycle::restart(args.vm.as_deref(), context, output),
        Command::Status(args) => lifecycle::status(args.vm.as_deref(), context, output),
        Command::Destroy(args) => lifecycle::destroy(&args, false, context, output),
        Command::Purge(args) => lifecycle::destroy(&args, true, context, output),
        Command::Console(args) => access::console(args.vm.as_deref(), context, output),
        Command::Ssh(args) => access::ssh(&args, context, output),
        Command::Qmp(args) => access::qmp(&args, context, output),
        Command::Monitor(args) => access::monitor(&args, context, output),
        Command::Port(args) => access::port(&args, context, output),
        Command::SshConfig(args) => guest::ssh_config(args.vm.as_deref(), context, output),
        Command::Copy(args) => guest::transfer(&args, guest::Transfer::Copy, context, output),
        Command::RsyncTo(args) => guest::transfer(&args, guest::Transfer::RsyncTo, context, output),
        Command::RsyncFrom(args) => {
            guest::transfer(&args, guest::Transfer::RsyncFrom, context, output)
        }
        Command::Run(args) => guest::run(&args, context, output),
        Command::Provision(args) => guest::provision(args.vm.as_deref(), context, output),
        Command::Upgrade(args) => lifecycle::upgrade(args.vm.as_deref(), context, output),
        Command::Recycle(args) => lifecycle::recycle(&args, context, output),
        Command::Foreach(args) => foreach::run(&args, context, output),
        Command::Supervise(args) => supervise::run(&args, context, output),
        Command::Shares(args) => shares::list(args.vm.as_deref(), context, output),
        Command::Mount(args) => shares::mount(&args, context, output),
        Command::Umount(args) => shares::umount(&args, context, output),
        Command::Display(args) => devices::display(args.vm.as_deref(), context, output),
        Command::Usb(command) => devices::usb(&command, context, output),
        Command::Disposable(args) => disposable::run(&args, context, output),
        Command::DisposableRun(args) => disposable::run_script(&args, context, output),
        Command::DisposableName(args) => disposable::named(&args, context, output),
        Command::Mat(args) => clean::clean(&args, Cleaner::Mat, context, output),
        Command::PdfCleaner(args) => clean::clean(&args, Cleaner::Flatten, context, output),
        Command::Clamav(args) => clean::clamav(&args, context, output),
        _ => unreachable!("handled in run"),
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
        let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(kvmx_core::Error::NotUtf8)?;
        Ok(Context { layout, cwd })
    }

    /// Loads the VM a command names (or the project around the current
    /// folder), printing what its legacy file warned about.
    pub(crate) fn load_vm(
        &self,
        vm: Option<&str>,
        output: &Output,
    ) -> Result<kvmx_provision::Vm, CommandError> {
        let found = kvmx_provision::Vm::find(&self.layout, vm, &self.cwd)?;
        for warning in &found.warnings {
            output.warn(warning);
        }
        Ok(found.vm)
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
