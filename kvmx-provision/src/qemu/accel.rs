//! Choosing the accelerator. `auto` must not hang where `/dev/kvm` exists
//! but KVM cannot run the guests kvmx builds: under PVM (`kvm_pvm`), for
//! one, SeaBIOS and real-mode code run, and a stock kernel then hangs. So
//! `auto` looks at which module provides KVM and at the CPU's flags, then
//! boots a probe that enters 64-bit long mode and computes something
//! (`accel_probe.S`), with a deadline. The verdict is kept per host boot.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use camino::Utf8Path;
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::config::Accelerator;
use serde::{Deserialize, Serialize};

use super::cmdline::Accel;
use crate::Error;

/// The environment variable that overrides `hardware.accelerator`.
pub const ACCEL_VARIABLE: &str = "KVMX_ACCEL";

/// How long the probe gets to print its verdict.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The probe's boot sector, built from `accel_probe.S`.
const PROBE_SECTOR: &[u8; 512] = include_bytes!("accel_probe.bin");

/// The file, in kvmx's cache folder, that keeps the verdict of this boot.
const VERDICT_FILE: &str = "accel-verdict.json";

/// The accelerator chosen, and a note for the user when `auto` fell back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Why TCG was chosen for `auto`, if it was.
    pub fallback_reason: Option<String>,
}

/// Decides the accelerator from the config and `KVMX_ACCEL`, probing KVM
/// for `auto`. `qemu` is the QEMU binary; the verdict of a probe is kept in
/// `cache_dir` until the host reboots.
pub fn choose(
    configured: Accelerator,
    qemu: &str,
    cache_dir: &Utf8Path,
) -> Result<AccelChoice, Error> {
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
        Accelerator::Auto => match kvm_unusable_reason(qemu, cache_dir) {
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

/// Why KVM cannot be used, or `None` when it runs the probe.
fn kvm_unusable_reason(qemu: &str, cache_dir: &Utf8Path) -> Option<String> {
    // Permission to open the device can change within a boot (a group
    // added, a login seat): checked every time, never cached.
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Some(format!("/dev/kvm is not usable ({error})"));
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned());
    let file = cache_dir.join(VERDICT_FILE);
    if let Some(verdict) = boot_id
        .as_deref()
        .and_then(|boot| Verdict::read(&file, boot, qemu))
    {
        return verdict.kvm_unusable;
    }
    let reason = host_reason(&kvm_modules(), &cpu_flags()).or_else(|| probe_reason(qemu));
    if let Some(boot_id) = boot_id {
        let verdict = Verdict {
            boot_id,
            qemu: qemu.to_owned(),
            kvm_unusable: reason.clone(),
        };
        // A verdict that cannot be kept is probed again next time.
        let _ = verdict.write(&file);
    }
    reason
}

/// The verdict of one host boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    /// The kernel's boot id when it was made.
    boot_id: String,
    /// The QEMU binary probed.
    qemu: String,
    /// Why KVM is unusable, or `None` when it is usable.
    kvm_unusable: Option<String>,
}

impl Verdict {
    /// The verdict in `file`, when it was made in boot `boot_id` for `qemu`.
    fn read(file: &Utf8Path, boot_id: &str, qemu: &str) -> Option<Verdict> {
        let text = std::fs::read(file).ok()?;
        let verdict: Verdict = serde_json::from_slice(&text).ok()?;
        (verdict.boot_id == boot_id && verdict.qemu == qemu).then_some(verdict)
    }

    fn write(&self, file: &Utf8Path) -> Result<(), kvmx_core::Error> {
        let json = serde_json::to_vec(self).expect("a verdict serializes");
        atomic_file::write(file, &json, Overwrite::Yes)
    }
}

/// The loaded modules among those that provide `/dev/kvm`.
fn kvm_modules() -> Vec<&'static str> {
    ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .filter(|module| std::path::Path::new("/sys/module").join(module).exists())
        .collect()
}

/// The flags of the host's first CPU.
fn cpu_flags() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, flags)| flags.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Why the host's KVM cannot run stock guests, judged from its modules and
/// CPU flags; `None` when they look right (the probe then decides).
fn host_reason(modules: &[&str], flags: &[String]) -> Option<String> {
    let hardware = modules
        .iter()
        .any(|m| matches!(*m, "kvm_intel" | "kvm_amd"));
    if !hardware && modules.contains(&"kvm_pvm") {
        return Some(
            "/dev/kvm is provided by kvm_pvm (PVM), which cannot boot the stock kernels kvmx's guests run"
                .into(),
        );
    }
    let has_flag = |name: &str| flags.iter().any(|flag| flag == name);
    if !flags.is_empty() && !has_flag("vmx") && !has_flag("svm") {
        return Some("the CPU has no vmx or svm flag, so KVM has no hardware support here".into());
    }
    None
}

/// Why KVM failed the probe, or `None` when it passed.
fn probe_reason(qemu: &str) -> Option<String> {
    match probe(qemu, Accel::Kvm) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "KVM did not run a 64-bit test guest within {} s",
            PROBE_DEADLINE.as_secs()
        )),
        Err(error) => Some(format!("the KVM probe failed: {error}")),
    }
}

/// Boots the probe sector under `accel`; true when it printed its `L`
/// within the deadline.
fn probe(qemu: &str, accel: Accel) -> Result<bool, String> {
    let image = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(image.path(), PROBE_SECTOR).map_err(|e| e.to_string())?;
    let mut child = Command::new(qemu)
        .args(["-accel", accel.as_str(), "-machine", "pc"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-m", "16"])
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
        let answered = stdout.read_exact(&mut byte).is_ok() && byte[0] == b'L';
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

    fn flags(list: &str) -> Vec<String> {
        list.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn pvm_alone_is_refused() {
        let reason = host_reason(&["kvm_pvm"], &flags("fpu sse2 lm")).unwrap();
        assert!(reason.contains("kvm_pvm"), "{reason}");
    }

    #[test]
    fn a_cpu_without_virtualization_flags_is_refused() {
        let reason = host_reason(&[], &flags("fpu sse2 lm")).unwrap();
        assert!(reason.contains("vmx or svm"), "{reason}");
    }

    #[test]
    fn hardware_kvm_goes_on_to_the_probe() {
        assert_eq!(host_reason(&["kvm_intel"], &flags("fpu vmx lm")), None);
        assert_eq!(host_reason(&["kvm_amd", "kvm_pvm"], &flags("svm")), None);
    }

    #[test]
    fn a_verdict_holds_for_its_boot_and_qemu_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = Utf8Path::from_path(dir.path()).unwrap().join(VERDICT_FILE);
        let verdict = Verdict {
            boot_id: "boot-a".into(),
            qemu: "qemu-system-x86_64".into(),
            kvm_unusable: Some("no".into()),
        };
        verdict.write(&file).unwrap();
        assert_eq!(
            Verdict::read(&file, "boot-a", "qemu-system-x86_64"),
            Some(verdict)
        );
        assert_eq!(Verdict::read(&file, "boot-b", "qemu-system-x86_64"), None);
        assert_eq!(Verdict::read(&file, "boot-a", "/opt/qemu"), None);
    }

    #[test]
    fn the_probe_sector_ends_with_the_boot_signature() {
        assert_eq!(&PROBE_SECTOR[510..], &[0x55, 0xAA]);
    }

    /// The probe itself must pass where the CPU is emulated; else `auto`
    /// would refuse a working KVM too.
    #[test]
    fn the_probe_reaches_long_mode_under_tcg() {
        assert_eq!(probe(super::super::QEMU, Accel::Tcg), Ok(true));
    }

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
