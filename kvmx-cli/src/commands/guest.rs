//! Work in a running guest: `ssh-config`, `copy`, `rsync-to`,
//! `rsync-from`, `run`, `provision`.

use kvmx_provision::Vm;
use kvmx_provision::ssh::SshTarget;

use super::Context;
use crate::cli::{RunArgs, TransferArgs};
use crate::error::{CliError, CommandError};
use crate::output::{Output, Prefixed};

pub fn ssh_config(
    vm: Option<&str>,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    let block = vm
        .ssh_target()?
        .config_block(&format!("kvmx-{}", vm.name()));
    output.result(block.trim_end());
    Ok(())
}

/// Which transfer a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// scp; the guest side written `:path`.
    Copy,
    /// rsync host → guest.
    RsyncTo,
    /// rsync guest → host.
    RsyncFrom,
}

pub fn transfer(
    args: &TransferArgs,
    kind: Transfer,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let (vm, source, destination) = match args.args.as_slice() {
        [vm, source, destination] => (Some(vm.as_str()), source.as_str(), destination.as_str()),
        [source, destination] => (None, source.as_str(), destination.as_str()),
        _ => unreachable!("clap takes two or three values"),
    };
    let vm = context.load_vm(vm, output)?;
    let guest = vm.guest()?;
    let target = guest.target();
    let mut sink = Prefixed::new("");
    let status = match kind {
        Transfer::Copy => match (source.strip_prefix(':'), destination.strip_prefix(':')) {
            (None, Some(guest)) => copy(target, target.scp_command(source, guest, true), output)?,
            (Some(guest), None) => copy(
                target,
                target.scp_command(destination, guest, false),
                output,
            )?,
            _ => {
                return Err(CliError::CopySides.into());
            }
        },
        Transfer::RsyncTo => {
            guest.rsync_to(source, destination, &progress_option(output), &mut sink)?
        }
        Transfer::RsyncFrom => {
            guest.rsync_from(source, destination, &progress_option(output), &mut sink)?
        }
    };
    if !status.success() {
        return Err(CliError::TransferFailed {
            from: source.to_owned(),
            to: destination.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Runs scp: on a terminal with it, so that its progress meter shows;
/// otherwise with its messages passed on line by line.
fn copy(
    target: &SshTarget,
    mut scp: std::process::Command,
    output: &Output,
) -> Result<std::process::ExitStatus, CommandError> {
    use std::io::IsTerminal;
    if output.is_quiet() || !std::io::stdout().is_terminal() {
        return Ok(target.stream(scp, None, &mut Prefixed::new(""))?);
    }
    let status = scp
        .status()
        .map_err(|source| kvmx_provision::Error::Spawn {
            program: "scp".into(),
            source,
        })?;
    Ok(target.explain(status, "")?)
}

/// rsync's own progress on a terminal.
fn progress_option(output: &Output) -> Vec<String> {
    use std::io::IsTerminal;
    if !output.is_quiet() && std::io::stderr().is_terminal() {
        vec!["--info=progress2".into()]
    } else {
        Vec::new()
    }
}

pub fn run(args: &RunArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    if !args.file.is_file() {
        return Err(CliError::NoScript(args.file.clone()).into());
    }
    let vm = context.load_vm(Some(&args.vm), output)?;
    let status =
        vm.guest()?
            .run_script(&args.file, &args.args, args.root, &mut Prefixed::new(""))?;
    exit_with(status, &format!("{} exited", args.file))
}

/// Succeeds on a zero status; otherwise ends kvmx with the same status.
pub(crate) fn exit_with(status: std::process::ExitStatus, what: &str) -> Result<(), CommandError> {
    match status.code() {
        Some(0) => Ok(()),
        code => Err(CliError::GuestCommand {
            what: what.to_owned(),
            code: code.unwrap_or(1),
        }
        .into()),
    }
}

pub fn provision(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    provision_vm(&vm, output)
}

/// Provisions `vm`, streaming the guest's output behind its name.
pub fn provision_vm(vm: &Vm, output: &Output) -> Result<(), CommandError> {
    output.info(&format!("Provisioning {}", vm.name()));
    vm.provision(&mut Prefixed::new(vm.name().as_str()))?;
    output.info(&format!("{} provisioned", vm.name()));
    Ok(())
}
