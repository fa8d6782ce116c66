//! `kvmx up`, `stop`, `kill`, `suspend`, `resume`, `restart`, `status`,
//! `destroy`, `purge`.

use std::io::{BufRead, IsTerminal, Write};

use kvmx_core::CancelFlag;
use kvmx_core::Registry;
use kvmx_provision::{
    ImagePolicy, State, Status, StopOptions, StopStep, UpOptions, UpTo, Upgraded, Vm,
};

use super::Context;
use crate::cli::{DestroyArgs, StopArgs, UpArgs};
use crate::error::CommandError;
use crate::output::Output;

pub fn up(args: &UpArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(args.vm.as_deref(), output)?;
    output.info(&format!("Starting {}", vm.name()));
    // The console replaces the wait for SSH, the hooks and provisioning.
    let up_to = if args.console {
        UpTo::Started
    } else {
        UpTo::Ready
    };
    let image = if args.no_build {
        ImagePolicy::Fail
    } else {
        ImagePolicy::Build
    };
    // A running VM's disk is unlocked already: nothing to ask.
    let passphrase = if vm.is_running() {
        None
    } else {
        crate::passphrase::for_start(vm.config())?
    };
    let options = UpOptions::new()
        .image(image)
        .up_to(up_to)
        .passphrase(passphrase)
        .cancel(CancelFlag::on_signals()?);
    let outcome = vm.up_with(&options, &mut output.stages())?;
    let report = &outcome.start;
    if output.json {
        output.json_result(&outcome);
    } else if !report.started {
        output.info(&format!("{} is already running", vm.name()));
    } else {
        let ssh = report
            .ssh_port
            .map(|port| format!("; SSH on 127.0.0.1:{port} (`kvmx ssh {}`)", vm.name()))
            .unwrap_or_default();
        let provisioned = if outcome.provisioned {
            ", provisioned"
        } else {
            ""
        };
        output.info(&format!(
            "{} is up after {:.1}s under {}{provisioned}{ssh}",
            vm.name(),
            report.seconds,
            report.accelerator.as_str()
        ));
    }
    if args.console {
        return super::access::attach_console(&vm, output);
    }
    Ok(())
}

pub fn stop(args: &StopArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(args.vm.as_deref(), output)?;
    let mut options = StopOptions::new().force(args.force);
    if let Some(seconds) = args.timeout {
        options = options.timeout(std::time::Duration::from_secs(seconds));
    }
    let step = vm.stop_with(&options, &mut output.stages())?;
    report_stop(&vm, step, output);
    Ok(())
}

fn report_stop(vm: &Vm, step: StopStep, output: &Output) {
    if output.json {
        output.json_result(&serde_json::json!({ "name": vm.name().as_str(), "stopped_by": step }));
        return;
    }
    let how = match step {
        StopStep::AlreadyStopped => return output.info(&format!("{} is not running", vm.name())),
        StopStep::AcpiPowerdown => "the guest powered off (ACPI)",
        StopStep::SshPoweroff => "the guest powered off (poweroff over SSH)",
        StopStep::QmpQuit => "QEMU quit (QMP)",
        StopStep::Sigterm => "QEMU was terminated (SIGTERM)",
        StopStep::Sigkill => "QEMU was killed (SIGKILL)",
    };
    output.info(&format!("{} stopped: {how}", vm.name()));
}

pub fn kill(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    let killed = vm.kill()?;
    output.info(&if killed {
        format!("{} killed", vm.name())
    } else {
        format!("{} is not running", vm.name())
    });
    Ok(())
}

pub fn suspend(
    vm: Option<&str>,
    resume: bool,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    if resume {
        vm.resume()?;
        output.info(&format!("{} resumed", vm.name()));
    } else {
        vm.pause()?;
        output.info(&format!("{} paused", vm.name()));
    }
    Ok(())
}

pub fn restart(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let name = vm.map(str::to_owned);
    stop(
        &StopArgs {
            vm: name.clone(),
            force: false,
            timeout: None,
        },
        context,
        output,
    )?;
    up(
        &UpArgs {
            vm: name,
            console: false,
            no_build: false,
        },
        context,
        output,
    )
}

pub fn status(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    let status = vm.status()?;
    let provisioned = vm.last_provisioned();
    if output.json {
        let mut value = serde_json::to_value(&status).expect("status serializes");
        value["last_provisioned"] = serde_json::to_value(&provisioned).expect("records serialize");
        output.json_result(&value);
        return Ok(());
    }
    let mut text = render_status(&status);
    if let Some(record) = provisioned {
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(record.at);
        text.push_str(&format!(
            "\n  provisioned  {} ago (config {})",
            human_duration(age),
            record.config
        ));
    }
    output.result(&text);
    Ok(())
}

fn render_status(status: &Status) -> String {
    let state = kvmx_core::config::spelling(&status.state);
    let mut lines = vec![format!("{}: {state}", status.name)];
    if status.supervised {
        lines.push(
            "  supervised   yes (supervise.manage; `kvmx supervise` restarts it after a crash)"
                .into(),
        );
    }
    if let Some(pid) = status.pid {
        lines.push(format!("  pid          {pid}"));
    }
    if let Some(uptime) = status.uptime_seconds {
        lines.push(format!("  uptime       {}", human_duration(uptime)));
    }
    if let Some(accel) = status.accelerator {
        lines.push(format!("  accelerator  {}", accel.as_str()));
    }
    for forward in &status.forwards {
        lines.push(format!(
            "  port         {}:{} -> guest {}/{}",
            forward.address, forward.host, forward.guest, forward.protocol
        ));
    }
    let sizes = match (status.image_virtual_size, status.image_disk_usage) {
        (Some(size), Some(used)) => format!(
            " ({} virtual, {} on disk)",
            human_bytes(size),
            human_bytes(used)
        ),
        _ if !status.image.exists() => " (missing)".into(),
        _ => String::new(),
    };
    lines.push(format!("  image        {}{sizes}", status.image));
    if status.state == State::Crashed && !status.last_console.is_empty() {
        lines.push("  last console lines:".into());
        lines.extend(status.last_console.iter().map(|l| format!("    {l}")));
    }
    lines.join("\n")
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn human_bytes(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", units[unit])
}

pub fn upgrade(
    vm_name: Option<&str>,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let vm = context.load_vm(vm_name, output)?;
    output.info(&format!("Upgrading {}", vm.name()));
    match vm.upgrade(&mut output.stages())? {
        Upgraded::Done { started: true } => output.info(&format!(
            "{} upgraded (started for it, and stopped again)",
            vm.name()
        )),
        Upgraded::Done { .. } => output.info(&format!("{} upgraded", vm.name())),
        Upgraded::Skipped { reason } => {
            let hint = if vm.config().provision.upgrade_command.is_none() {
                "; for Debian: upgrade_command = \"sudo apt-get update && sudo apt-get -y dist-upgrade\""
            } else {
                ""
            };
            output.info(&format!("{} not upgraded: {reason}{hint}", vm.name()));
        }
        other => output.info(&format!("{}: {other:?}", vm.name())),
    }
    Ok(())
}

pub fn recycle(args: &DestroyArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(args.vm.as_deref(), output)?;
    if !args.yes {
        confirm(&vm)?;
    }
    stop(
        &StopArgs {
            vm: args.vm.clone(),
            force: false,
            timeout: None,
        },
        context,
        output,
    )?;
    vm.destroy_waiting(wait(args))?;
    output.info(&format!("{} destroyed; building it again", vm.name()));
    // A fresh image is provisioned by `up` at its first start.
    up(
        &UpArgs {
            vm: args.vm.clone(),
            console: false,
            no_build: false,
        },
        context,
        output,
    )
}

pub fn destroy(
    args: &DestroyArgs,
    purge: bool,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let vm = context.load_vm(args.vm.as_deref(), output)?;
    if !args.yes {
        confirm(&vm)?;
    }
    let removed = vm.destroy_waiting(wait(args))?;
    for path in &removed {
        output.detail(&format!("removed {path}"));
    }
    if purge {
        Registry::unregister(&context.layout, vm.name().as_str())?;
    }
    if output.json {
        output.json_result(&serde_json::json!({ "name": vm.name().as_str(), "removed": removed, "unregistered": purge }));
    } else {
        let what = if purge {
            "destroyed and unregistered"
        } else {
            "destroyed"
        };
        output.info(&format!(
            "{} {what} ({} paths removed)",
            vm.name(),
            removed.len()
        ));
    }
    Ok(())
}

/// How long `--wait` lets destroy wait for the VM's lock.
fn wait(args: &DestroyArgs) -> std::time::Duration {
    std::time::Duration::from_secs(args.wait.unwrap_or(0))
}

/// Asks the user to type the VM's name; refuses without a terminal.
fn confirm(vm: &Vm) -> Result<(), CommandError> {
    if !std::io::stdin().is_terminal() {
        return Err(
            CommandError::usage(format!("destroying {} needs confirmation", vm.name()))
                .with_hint("pass --yes to confirm without a terminal"),
        );
    }
    eprint!(
        "This deletes {} and {} for good.\nType the VM name ({}) to confirm: ",
        vm.image(),
        vm.files().paths.data,
        vm.name()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != vm.name().as_str() {
        return Err(CommandError::usage("not confirmed; nothing was deleted"));
    }
    Ok(())
}
