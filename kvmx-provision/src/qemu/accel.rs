//! Choosing the accelerator. `auto` must not hang where `/dev/kvm` exists
//! but KVM does not run guests: SeaBIOS starts under such a KVM, so the
//! probe boots a one-sector disk whose code writes a byte to the debug
//! port, and gives KVM a deadline to do it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kvmx_core::config::Accelerator;

use super::cmdline::Accel;
use crate::Error;

/// The environment variable that overrides `hardware.accelerator`.
pub const ACCEL_VARIABLE: &str = "KVMX_ACCEL";

/// How long KVM gets to run the probe's first instruction.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The accelerator chosen, and a note for the user when `auto` fell back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Why TCG was chosen for `auto`, if it was.
    pub fallback_reason: Option<String>,
}

/// Decides the accelerator from the config and `KVMX_ACCEL`, probing KVM
/// for `auto`. `qemu` is the QEMU binary.
pub fn choose(configured: Accelerator, qemu: &str) -> Result<AccelChoice, Error> {
    let requested = match std::env::var(ACCEL_VARIABLE) {
        Ok(value) if !value.is_empty() => parse_override(&value)?,
        _ => configured,
    };
    let fixed = |accel| AccelChoice {
        accel,
        fallback_reason: None,
    };
    Ok(match requested {
        Accelerator::Kvm => fixed(Accel::Kvm),
        Accelerator::Tcg => fixed(Accel::Tcg),
        Accelerator::Auto => match kvm_unusable_reason(qemu) {
            None => fixed(Accel::Kvm),
            Some(reason) => AccelChoice {
                accel: Accel::Tcg,
                fallback_reason: Some(reason),
            },
        },
    })
}

fn parse_override(value: &str) -> Result<Accelerator, Error> {
    match value {
        "auto" => Ok(Accelerator::Auto),
        "kvm" => Ok(Accelerator::Kvm),
        "tcg" => Ok(Accelerator::Tcg),
        other => Err(Error::BadVariable {
            variable: ACCEL_VARIABLE,
            problem: format!("\"{other}\" is not an accelerator: use auto, kvm or tcg"),
        }),
    }
}

/// Why KVM cannot be used, or `None` when it runs guest code.
fn kvm_unusable_reason(qemu: &str) -> Option<String> {
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Some(format!("/dev/kvm is not usable ({error})"));
    }
    match probe(qemu) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "KVM did not run a test guest within {} s",
            PROBE_DEADLINE.as_secs()
        )),
        Err(error) => Some(format!("the KVM probe failed: {error}")),
    }
}

/// A boot sector: `mov al,'K'; out 0xe9,al; hlt; jmp $-1`, then the boot
/// signature.
fn probe_sector() -> [u8; 512] {
    let mut sector = [0u8; 512];
    sector[..7].copy_from_slice(&[0xB0, b'K', 0xE6, 0xE9, 0xF4, 0xEB, 0xFD]);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

fn probe(qemu: &str) -> Result<bool, String> {
    let image = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(image.path(), probe_sector()).map_err(|e| e.to_string())?;
    let mut child = Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-m", "16"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=floppy",
            image.path().display()
        ))
        .args([
            "-chardev",
            "stdio,id=probe",
            "-device",
            "isa-debugcon,iobase=0xe9,chardev=probe",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {qemu}: {e}"))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let answered = stdout.read_exact(&mut byte).is_ok() && byte[0] == b'K';
        let _ = sender.send(answered);
    });
    let answered = receiver.recv_timeout(PROBE_DEADLINE).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_accelerator_variable_is_a_usage_error_naming_it() {
        assert!(matches!(parse_override("tcg"), Ok(Accelerator::Tcg)));
        let error = parse_override("fast").unwrap_err();
        assert_eq!(error.kind(), kvmx_core::ErrorKind::Usage);
        assert_eq!(
            error.to_string(),
            "KVMX_ACCEL: \"fast\" is not an accelerator: use auto, kvm or tcg"
        );
    }
}
