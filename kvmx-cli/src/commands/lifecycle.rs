//! `kvmx up`, `stop`, `kill`, `suspend`, `resume`, `restart`, `status`,
//! `destroy`, `purge`.

use std::io::{BufRead, IsTerminal, Write};

use kvmx_core::{Project, Registry};
use kvmx_provision::{State, Status, StopStep, Vm};

use super::guest::Prefixed;
use super::{Context, print_legacy_warnings};
use crate::cli::{DestroyArgs, StopArgs, UpArgs};
use crate::error::CommandError;
use crate::output::Output;

/// Loads the VM a command names (or the project around the current folder).
pub fn load_vm(vm: Option<&str>, context: &Context, output: &Output) -> Result<Vm, CommandError> {
    let project = match Project::select(vm, &context.cwd, &context.layout) {
        Ok(project) => project,
        // A disposable has no project: its record in kvmx's data says all.
        Err(error @ kvmx_core::Error::UnknownVm { .. }) => {
            return vm
                .and_then(|name| kvmx_provision::disposable::find(&context.layout, name))
                .ok_or_else(|| error.into());
        }
        Err(error) => return Err(error.into()),
    };
    let loaded = project.load(&context.layout)?;
    print_legacy_warnings(&loaded, project.file.path(), output);
    Ok(Vm::open(&context.layout, loaded.name, loaded.config)?)
}

pub fn up(args: &UpArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = load_vm(args.vm.as_deref(), context, output)?;
    // Before a build that takes minutes.
    vm.check_shares()?;
    // A template-based VM's root is made from its template's image.
    if vm.template.is_none() && !vm.image().exists() {
        output.info(&format!("{} has no image yet; building it", vm.name));
        let report = crate::create::build_image(
            &vm.name,
            &vm.config,
            context,
            false,
            false,
            output.is_quiet(),
        )?;
        output.info(&format!("Built {}", report.image));
    }
    output.info(&format!("Starting {}", vm.name));
    let mut stages = output.stages();
    // The console replaces the wait for SSH.
    let report = vm.up(!args.console, &mut stages)?;
    stages.finish();
    drop(stages);
    if output.json {
        output.json_result(&report);
    } else if !report.started {
        output.info(&format!("{} is already running", vm.name));
    } else {
        let ssh = report
            .ssh_port
            .map(|port| format!("; SSH on 127.0.0.1:{port} (`kvmx ssh {}`)", vm.name))
            .unwrap_or_default();
        output.info(&format!(
            "{} is up after {:.1}s under {}{ssh}",
            vm.name,
            report.seconds,
            report.accelerator.as_str()
        ));
    }
    if args.console {
        return super::access::attach_console(&vm, output);
    }
    if report.started && report.ssh_port.is_some() {
        // A failing hook leaves the VM running, and says so.
        vm.startup_hooks(&mut Prefixed::new(vm.name.as_str()))
            .map_err(|e| {
                let error = CommandError::from(e);
                let fix = error.hint.clone().unwrap_or_else(|| "fix the hook".into());
                error.with_hint(format!(
                    "{fix}; {} is running: run `kvmx restart` once fixed",
                    vm.name
                ))
            })?;
        if vm.wants_provision() {
            super::guest::provision_vm(&vm, output)?;
        }
    }
    Ok(())
}

pub fn stop(args: &StopArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = load_vm(args.vm.as_deref(), context, output)?;
    if !args.force && vm.has_poweroff_hooks() && vm.status()?.state == State::Running {
        // A failing hook must not leave the VM half-stopped: warn and go on.
        if let Err(error) = vm.poweroff_hooks(&mut Prefixed::new(vm.name.as_str())) {
            output.warn(&format!("power-off hook: {error}; powering off anyway"));
        }
    }
    let step = {
        let mut stages = output.stages();
        vm.stop(args.force, &mut stages)?
    };
    report_stop(&vm, step, output);
    Ok(())
}

fn report_stop(vm: &Vm, step: StopStep, output: &Output) {
    if output.json {
        output.json_result(&serde_json::json!({ "name": vm.name.as_str(), "stopped_by": step }));
        return;
    }
    let how = match step {
        StopStep::AlreadyStopped => return output.info(&format!("{} is not running", vm.name)),
        StopStep::AcpiPowerdown => "the guest powered off (ACPI)",
        StopStep::SshPoweroff => "the guest powered off (poweroff over SSH)",
        StopStep::QmpQuit => "QEMU quit (QMP)",
        StopStep::Sigterm => "QEMU was terminated (SIGTERM)",
        StopStep::Sigkill => "QEMU was killed (SIGKILL)",
    };
    output.info(&format!("{} stopped: {how}", vm.name));
}

pub fn kill(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = load_vm(vm, context, output)?;
    let killed = vm.kill()?;
    output.info(&if killed {
        format!("{} killed", vm.name)
    } else {
        format!("{} is not running", vm.name)
    });
    Ok(())
}

pub fn suspend(
    vm: Option<&str>,
    resume: bool,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let vm = load_vm(vm, context, output)?;
    if resume {
        vm.resume()?;
        output.info(&format!("{} resumed", vm.name));
    } else {
        vm.pause()?;
        output.info(&format!("{} paused", vm.name));
    }
    Ok(())
}

pub fn restart(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let name = vm.map(str::to_owned);
    stop(
        &StopArgs {
            vm: name.clone(),
            force: false,
        },
        context,
        output,
    )?;
    up(
        &UpArgs {
            vm: name,
            console: false,
        },
        context,
        output,
    )
}

pub fn status(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = load_vm(vm, context, output)?;
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
    let vm = load_vm(vm_name, context, output)?;
    let Some(command) = vm.config.provision.upgrade_command.clone() else {
        output.info(&format!(
            "{} has no provision.upgrade_command; nothing to do. For Debian: \
             upgrade_command = \"sudo apt-get update && sudo apt-get -y dist-upgrade\"",
            vm.name
        ));
        return Ok(());
    };
    if vm.status()?.state != State::Running {
        up(
            &UpArgs {
                vm: vm_name.map(str::to_owned),
                console: false,
            },
            context,
            output,
        )?;
    }
    output.info(&format!("Upgrading {}", vm.name));
    let status = vm
        .guest()?
        .run(&command, &mut Prefixed::new(vm.name.as_str()))?;
    if !status.success() {
        return Err(
            kvmx_provision::Error::Step(kvmx_provision::provision::StepFailed {
                step: format!("the upgrade command `{command}`"),
                code: status.code().unwrap_or(-1),
            })
            .into(),
        );
    }
    output.info(&format!("{} upgraded", vm.name));
    Ok(())
}

pub fn recycle(args: &DestroyArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = load_vm(args.vm.as_deref(), context, output)?;
    if !args.yes {
        confirm(&vm)?;
    }
    stop(
        &StopArgs {
            vm: args.vm.clone(),
            force: false,
        },
        context,
        output,
    )?;
    vm.destroy()?;
    output.info(&format!("{} destroyed; building it again", vm.name));
    // A fresh image is provisioned by `up` at its first start.
    up(
        &UpArgs {
            vm: args.vm.clone(),
            console: false,
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
    let vm = load_vm(args.vm.as_deref(), context, output)?;
    if !args.yes {
        confirm(&vm)?;
    }
    let removed = vm.destroy()?;
    for path in &removed {
        output.detail(&format!("removed {path}"));
    }
    if purge {
        Registry::unregister(&context.layout, vm.name.as_str())?;
    }
    if output.json {
        output.json_result(&serde_json::json!({ "name": vm.name.as_str(), "removed": removed, "unregistered": purge }));
    } else {
        let what = if purge {
            "destroyed and unregistered"
        } else {
            "destroyed"
        };
        output.info(&format!(
            "{} {what} ({} paths removed)",
            vm.name,
            removed.len()
        ));
    }
    Ok(())
}

/// Asks the user to type the VM's name; refuses without a terminal.
fn confirm(vm: &Vm) -> Result<(), CommandError> {
    if !std::io::stdin().is_terminal() {
        return Err(
            CommandError::usage(format!("destroying {} needs confirmation", vm.name))
                .with_hint("pass --yes to confirm without a terminal"),
        );
    }
    eprint!(
        "This deletes {} and {} for good.\nType the VM name ({}) to confirm: ",
        vm.image(),
        vm.files.paths.data,
        vm.name
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != vm.name.as_str() {
        return Err(CommandError::usage("not confirmed; nothing was deleted"));
    }
    Ok(())
}
