//! Reaching a running VM: `console`, `ssh`, `qmp`, `monitor`, `port`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use kvmx_provision::Vm;
use kvmx_provision::ssh::{SshTarget, Wrapped};

use super::Context;
use crate::cli::{MonitorArgs, PortArgs, QmpArgs, SshArgs};
use crate::error::{CliError, CommandError};
use crate::output::Output;

/// Ctrl-]: detaches from the console, as in telnet.
const DETACH: u8 = 0x1d;

pub fn console(vm: Option<&str>, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(vm, output)?;
    attach_console(&vm, output)
}

/// Connects the terminal to the VM's serial console until Ctrl-] or until
/// the VM stops.
pub fn attach_console(vm: &Vm, output: &Output) -> Result<(), CommandError> {
    let socket = vm.files().serial_socket();
    let stream = UnixStream::connect(&socket).map_err(|e| {
        CommandError::from(kvmx_core::Error::io_doing("connect to", &socket)(e))
            .with_hint("is the VM running? see `kvmx status`")
    })?;
    output.info(&format!(
        "Connected to the console of {}; Ctrl-] detaches",
        vm.name()
    ));
    let _raw = RawTerminal::enter();
    let mut from_guest = stream.try_clone()?;
    std::thread::spawn(move || {
        let mut stdout = std::io::stdout();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = from_guest.read(&mut buffer) {
            if n == 0
                || stdout
                    .write_all(&buffer[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
        // The VM went away: end the session.
        std::process::exit(0);
    });
    let mut to_guest = stream;
    let mut stdin = std::io::stdin();
    let mut buffer = [0u8; 1024];
    loop {
        let n = stdin.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        if let Some(end) = buffer[..n].iter().position(|b| *b == DETACH) {
            to_guest.write_all(&buffer[..end])?;
            break;
        }
        to_guest.write_all(&buffer[..n])?;
    }
    Ok(())
}

/// Puts a terminal stdin in raw mode until dropped; does nothing when
/// stdin is not a terminal.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

pub fn ssh(args: &SshArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let vm = context.load_vm(args.vm.as_deref(), output)?;
    let guest = vm.guest()?;
    let status = run_ssh(guest.target(), &args.command)?;
    match status.code() {
        Some(0) => Ok(()),
        code => std::process::exit(code.unwrap_or(1)),
    }
}

/// Runs `words` in the guest (a login shell when there are none) with the
/// terminal, and returns the status: the command's own, or an error when
/// ssh itself failed.
pub fn run_ssh(
    target: &SshTarget,
    words: &[String],
) -> Result<std::process::ExitStatus, CommandError> {
    let (mut command, wrapped) = ssh_command(target, words)?;
    // The terminal is ssh's; its stderr passes through here so that a
    // failure of ssh itself can be explained.
    let spawn_error = |source| kvmx_provision::Error::Spawn {
        program: "ssh".into(),
        source,
    };
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let mut from_ssh = child.stderr.take().expect("stderr is piped");
    let copier = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buffer = [0u8; 4096];
        let mut stderr = std::io::stderr();
        while let Ok(n @ 1..) = from_ssh.read(&mut buffer) {
            let _ = stderr.write_all(&buffer[..n]);
            tail.extend_from_slice(&buffer[..n]);
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    let status = child.wait().map_err(spawn_error)?;
    let said = copier.join().unwrap_or_default();
    Ok(match wrapped {
        Some(wrapped) => target.settle(status, &said, &wrapped)?,
        None => target.explain(status, &said)?,
    })
}

/// The ssh command that runs `words` in the guest (see
/// [`kvmx_provision::guest::command_line`]: several words are an argv, one
/// word a command line), wrapped so that its own status 255 is told from a
/// failure of ssh; or a login shell when there are no words.
fn ssh_command(
    target: &SshTarget,
    words: &[String],
) -> Result<(std::process::Command, Option<Wrapped>), CommandError> {
    let mut command = target.command();
    if words.is_empty() && target.env.is_empty() {
        command.arg("-t");
        return Ok((command, None));
    }
    if words.is_empty() {
        // A login shell, with ssh.env exported first.
        command.arg("-t").arg(target.with_env("exec \"$SHELL\" -l"));
        return Ok((command, None));
    }
    let wrapped = target.wrap(&kvmx_provision::guest::command_line(words)?, &[]);
    command.arg("--").arg(&wrapped.line);
    Ok((command, Some(wrapped)))
}

/// Splits `[VM] LAST` arguments.
pub fn vm_and_last(args: &[String]) -> (Option<&str>, &str) {
    match args {
        [vm, last] => (Some(vm.as_str()), last.as_str()),
        [last] => (None, last.as_str()),
        _ => (None, ""),
    }
}

pub fn qmp(args: &QmpArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (vm, json) = vm_and_last(&args.args);
    let message: serde_json::Value = serde_json::from_str(json).map_err(CliError::NotJson)?;
    let vm = context.load_vm(vm, output)?;
    let reply = vm
        .qmp()?
        .send(&message)
        .map_err(kvmx_provision::Error::from)?;
    output.json_result(&reply);
    Ok(())
}

pub fn monitor(args: &MonitorArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (vm, command) = vm_and_last(&args.args);
    let vm = context.load_vm(vm, output)?;
    let text = vm
        .qmp()?
        .human_command(command)
        .map_err(kvmx_provision::Error::from)?;
    output.result(text.trim_end());
    Ok(())
}

pub fn port(args: &PortArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (vm, guest_port) = match args.args.as_slice() {
        [vm, port] => (Some(vm.as_str()), Some(port.as_str())),
        [one] if one.parse::<u16>().is_ok() => (None, Some(one.as_str())),
        [vm] => (Some(vm.as_str()), None),
        _ => (None, None),
    };
    let vm = context.load_vm(vm, output)?;
    let status = vm.status()?;
    if status.forwards.is_empty() {
        return Err(CliError::NoForwards {
            vm: vm.name().to_string(),
        }
        .into());
    }
    let forwards: Vec<_> = match guest_port {
        Some(port) => {
            let port: u16 = port.parse().map_err(|_| CliError::NotAPort {
                text: port.to_owned(),
            })?;
            status
                .forwards
                .into_iter()
                .filter(|f| f.guest == port)
                .collect()
        }
        None => status.forwards,
    };
    if forwards.is_empty() {
        return Err(CliError::NoForwardTo {
            port: guest_port.unwrap_or("").to_owned(),
        }
        .into());
    }
    if output.json {
        output.json_result(&forwards);
    } else if guest_port.is_some() {
        output.result(&forwards[0].host.to_string());
    } else {
        for f in forwards {
            output.result(&format!(
                "{}/{} -> {}:{}",
                f.guest, f.protocol, f.address, f.host
            ));
        }
    }
    Ok(())
}
