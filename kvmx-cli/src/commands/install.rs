//! `kvmx install`: the VM's image made by an installer, through
//! [`kvmx_provision::Vm::install_with`].

use kvmx_core::CancelFlag;
use kvmx_provision::InstallOptions;

use super::Context;
use crate::cli::InstallArgs;
use crate::error::CommandError;
use crate::output::Output;

pub fn run(args: &InstallArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(args.vm.as_deref(), output)?;
    let how = match &vm.config().install.iso {
        Some(iso) => format!("from {iso} (interactive: `kvmx console {}`)", vm.name()),
        None => "with Debian's installer".into(),
    };
    output.info(&format!("Installing {} {how}", vm.name()));
    let options = InstallOptions::new()
        .force(args.force)
        .passphrase(crate::passphrase::for_create(vm.config())?)
        .cancel(CancelFlag::on_signals()?);
    let report = vm.install_with(&options, &mut output.stages())?;
    if output.json {
        output.json_result(&report);
    } else {
        let seconds: f64 = report.stages.iter().map(|s| s.seconds).sum();
        output.info(&format!(
            "{} installed in {seconds:.0}s: {} (installer log: {}); `kvmx up {}` starts it",
            vm.name(),
            report.image,
            report.log,
            vm.name()
        ));
    }
    Ok(())
}
