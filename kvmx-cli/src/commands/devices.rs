//! `kvmx display` and `kvmx usb`: what a user sees and plugs in.

use std::process::{Command, Stdio};

use kvmx_core::config::DisplayKind;
use kvmx_provision::qmp::commands;
use serde_json::json;

use super::Context;
use super::access::vm_and_last;
use crate::cli::UsbCommand;
use crate::error::{CliError, CommandError};
use crate::output::Output;

pub fn display(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    if vm.status()?.state != kvmx_provision::State::Running {
        return Err(kvmx_provision::Error::NotRunning {
            vm: vm.name().to_string(),
        }
        .into());
    }
    let display = &vm.config().display;
    let (client, target) = match display.kind {
        DisplayKind::Spice => (
            &display.spice_client,
            format!("spice+unix://{}", vm.files().spice_socket()),
        ),
        DisplayKind::Vnc => (&display.vnc_client, vnc_target(&display.vnc_client, &vm)),
        DisplayKind::Gtk | DisplayKind::Sdl => {
            output.info(&format!(
                "{} shows its display in its own window",
                vm.name()
            ));
            return Ok(());
        }
        DisplayKind::None => {
            return Err(CliError::NoDisplay {
                vm: vm.name().to_string(),
            }
            .into());
        }
    };
    let words = client_words(client)?;
    Command::new(&words[0])
        .args(&words[1..])
        .arg(&target)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| kvmx_provision::Error::Spawn {
            program: words[0].clone(),
            source,
        })?;
    output.info(&format!("Opened {} on {target}", words[0]));
    Ok(())
}

/// virt-viewer's family takes a URI; other VNC viewers take the socket.
fn vnc_target(client: &str, vm: &kvmx_provision::Vm) -> String {
    let socket = vm.files().vnc_socket();
    if client.contains("viewer") && (client.contains("remote") || client.contains("virt")) {
        format!("vnc+unix://{socket}")
    } else {
        socket.to_string()
    }
}

/// The client command as words (it may carry options, quoted as in sh).
fn client_words(command: &str) -> Result<Vec<String>, CommandError> {
    match shlex::split(command) {
        Some(words) if !words.is_empty() => Ok(words),
        _ => Err(CliError::NotACommand {
            client: command.to_owned(),
        }
        .into()),
    }
}

pub fn usb(command: &UsbCommand, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (args, attach) = match command {
        UsbCommand::Attach(args) => (args, true),
        UsbCommand::Detach(args) => (args, false),
    };
    let (vm, device) = vm_and_last(&args.args);
    let (vendor, product) = parse_usb_id(device)?;
    let vm = context.load_vm(vm, output)?;
    if vm.config().hardware.usb == 0 {
        return Err(CliError::NoUsbController {
            vm: vm.name().to_string(),
        }
        .into());
    }
    let id = format!("usb-{vendor:04x}-{product:04x}");
    let mut qmp = vm.qmp()?;
    let result = if attach {
        qmp.execute(&commands::DeviceAdd(
            json!({ "driver": "usb-host", "id": id, "vendorid": vendor, "productid": product }),
        ))
    } else {
        qmp.execute(&commands::DeviceDel { id: id.clone() })
    };
    result.map_err(kvmx_provision::Error::from)?;
    let done = if attach {
        "attached to"
    } else {
        "detached from"
    };
    output.info(&format!(
        "USB device {vendor:04x}:{product:04x} {done} {}",
        vm.name()
    ));
    Ok(())
}

fn parse_usb_id(device: &str) -> Result<(u16, u16), CommandError> {
    let invalid = || CliError::NotAUsbId {
        text: device.to_owned(),
    };
    let (vendor, product) = device.split_once(':').ok_or_else(invalid)?;
    let parse = |hex: &str| u16::from_str_radix(hex, 16).map_err(|_| invalid());
    Ok((parse(vendor)?, parse(product)?))
}
