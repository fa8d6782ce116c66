//! Real guests under QEMU with TCG, for end-to-end tests.
//!
//! At most [`MAX_BOOTS`] guests run at once (the build machines have two
//! cores); [`Guest::boot`] waits for a slot.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

/// Guests running at once, at most.
pub const MAX_BOOTS: usize = 2;

static SLOTS: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// One of the [`MAX_BOOTS`] places for a running guest, held until
/// dropped; for tests that start guests by other means than [`Guest::boot`].
pub struct Slot;

impl Slot {
    /// Waits for a free place and takes it.
    pub fn take() -> Slot {
        let mut used = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= MAX_BOOTS {
            used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

/// What to boot and how to reach it.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// The disk image.
    pub image: Utf8PathBuf,
    /// Its format (`raw` or `qcow2`).
    pub format: String,
    /// Kernel, initrd and command-line file for direct boot.
    pub direct: Option<(Utf8PathBuf, Utf8PathBuf, Utf8PathBuf)>,
    /// The SSH user.
    pub user: String,
    /// Client keys to offer.
    pub keys: Vec<Utf8PathBuf>,
    /// The VM's known_hosts.
    pub known_hosts: Utf8PathBuf,
    /// The host key alias in it.
    pub host_key_alias: String,
}

/// A running guest; QEMU is killed when it is dropped.
pub struct Guest {
    spec: BootSpec,
    qemu: Child,
    port: u16,
    run_dir: tempfile::TempDir,
    _slot: Slot,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Guest {
    /// Starts QEMU (TCG: KVM hangs on the build machines) with the image,
    /// user networking with SSH forwarded, QMP and a serial log.
    pub fn boot(spec: &BootSpec) -> Guest {
        let slot = Slot::take();
        let run_dir = tempfile::tempdir().expect("a run folder");
        let run = Utf8Path::from_path(run_dir.path()).expect("UTF-8");
        let port = free_port();
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-accel", "tcg", "-machine", "pc", "-m", "1024", "-smp", "1"])
            .args(["-display", "none", "-monitor", "none", "-nodefaults"])
            .arg("-serial")
            .arg(format!("file:{}", run.join("serial.log")))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", run.join("qmp.sock")))
            .arg("-drive")
            .arg(format!(
                "file={},format={},if=virtio,discard=unmap",
                spec.image, spec.format
            ))
            .arg("-netdev")
            .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .args(["-device", "virtio-rng-pci"])
            .args(["-device", "virtio-serial-pci", "-chardev"])
            .arg(format!(
                "socket,id=qga0,path={},server=on,wait=off",
                run.join("qga.sock")
            ))
            .args([
                "-device",
                "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
            ]);
        if let Some((kernel, initrd, cmdline)) = &spec.direct {
            let append = std::fs::read_to_string(cmdline).expect("read the command line");
            command
                .arg("-kernel")
                .arg(kernel)
                .arg("-initrd")
                .arg(initrd)
                .arg("-append")
                .arg(append.trim());
        }
        let qemu = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(run.join("qemu.err")).expect("qemu.err"))
            .process_group(0)
            .spawn()
            .expect("start qemu-system-x86_64");
        Guest {
            spec: spec.clone(),
            qemu,
            port,
            run_dir,
            _slot: slot,
        }
    }

    fn run(&self) -> &Utf8Path {
        Utf8Path::from_path(self.run_dir.path()).expect("UTF-8")
    }

    /// The end of the serial console log, for failure messages.
    pub fn serial_tail(&self) -> String {
        let text = std::fs::read_to_string(self.run().join("serial.log")).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }

    fn ssh_command(&self, script: &str) -> Command {
        let mut command = Command::new("ssh");
        command.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ]);
        command.args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5"]);
        command.args(["-o", "LogLevel=ERROR"]);
        command
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.spec.known_hosts));
        command
            .arg("-o")
            .arg(format!("HostKeyAlias={}", self.spec.host_key_alias));
        for key in &self.spec.keys {
            command.arg("-i").arg(key);
        }
        command
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.spec.user))
            .arg(script)
            .stdin(Stdio::null());
        command
    }

    /// Runs `script` in the guest over SSH.
    pub fn ssh(&self, script: &str) -> Output {
        self.ssh_command(script).output().expect("run ssh")
    }

    /// Waits until SSH answers, up to `deadline`; panics with the serial
    /// log and the last SSH error after it.
    pub fn wait_for_ssh(&mut self, deadline: Duration) {
        let start = Instant::now();
        loop {
            let out = self.ssh("true");
            if out.status.success() {
                return;
            }
            if let Ok(Some(status)) = self.qemu.try_wait() {
                panic!(
                    "QEMU exited ({status}) before SSH answered: {}\n{}",
                    std::fs::read_to_string(self.run().join("qemu.err")).unwrap_or_default(),
                    self.serial_tail()
                );
            }
            if start.elapsed() > deadline {
                panic!(
                    "SSH did not answer in {} s; last error: {}\nserial console:\n{}",
                    deadline.as_secs(),
                    String::from_utf8_lossy(&out.stderr),
                    self.serial_tail()
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Sends one QMP command and returns its `return` value.
    pub fn qmp(&self, execute: &str) -> serde_json::Value {
        let stream = UnixStream::connect(self.run().join("qmp.sock")).expect("connect to QMP");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let mut read = || -> serde_json::Value {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read QMP");
            serde_json::from_str(&line).expect("QMP speaks JSON")
        };
        let greeting = read();
        assert!(greeting.get("QMP").is_some(), "no QMP greeting: {greeting}");
        let mut send = |command: &str| -> serde_json::Value {
            writeln!(writer, "{{\"execute\":\"{command}\"}}").expect("write QMP");
            loop {
                let answer = read();
                if let Some(value) = answer.get("return") {
                    return value.clone();
                }
                assert!(answer.get("error").is_none(), "QMP {command}: {answer}");
            }
        };
        send("qmp_capabilities");
        send(execute)
    }

    /// Sends `system_powerdown` over QMP and waits for QEMU to exit; true
    /// if it did within `deadline`.
    pub fn powerdown(&mut self, deadline: Duration) -> bool {
        self.qmp("system_powerdown");
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(_)) = self.qemu.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.qemu.try_wait() {
            let _ = self.qemu.kill();
            let _ = self.qemu.wait();
        }
    }
}
