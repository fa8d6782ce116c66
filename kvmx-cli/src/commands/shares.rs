//! `kvmx shares`, `kvmx mount`, `kvmx umount`.

use kvmx_core::config::resolve::absolute_from;

use super::Context;
use super::access::vm_and_last;
use crate::cli::{MountArgs, UmountArgs};
use crate::error::CommandError;
use crate::output::Output;

pub fn list(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    let mounts = vm.mounts();
    if output.json {
        output.json_result(&mounts);
        return Ok(());
    }
    if mounts.is_empty() {
        output.info(&format!("{} shares no folders", vm.name()));
        return Ok(());
    }
    output.result(&format!(
        "{:10}  {:9}  {:8}  {:24}  HOST",
        "ID", "KIND", "WHEN", "GUEST"
    ));
    for m in mounts {
        let ro = if m.read_only { " (read-only)" } else { "" };
        output.result(&format!(
            "{:10}  {:9}  {:8}  {:24}  {}{ro}",
            m.id, m.kind, m.when, m.guest, m.host
        ));
    }
    Ok(())
}

pub fn mount(args: &MountArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (vm, host, guest) = match args.args.as_slice() {
        [vm, host, guest] => (Some(vm.as_str()), host, guest),
        [host, guest] => (None, host, guest),
        _ => unreachable!("clap takes two or three values"),
    };
    let vm = context.load_vm(vm, output)?;
    let host = absolute_from(&context.cwd, host.as_str().into());
    let mount = vm.mount(&host, guest)?;
    output.info(&format!(
        "{} mounted at {} in {} ({}, {})",
        mount.host,
        mount.guest,
        vm.name(),
        mount.kind,
        mount.id
    ));
    Ok(())
}

pub fn umount(args: &UmountArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (vm, guest) = vm_and_last(&args.args);
    let vm = context.load_vm(vm, output)?;
    let mount = vm.umount(guest)?;
    output.info(&format!("{} unmounted from {}", mount.host, mount.guest));
    Ok(())
}
