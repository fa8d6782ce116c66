//! The VM lifecycle with real QEMU (TCG) on a guest that has no operating
//! system: a boot sector that halts. It ignores ACPI and has no SSH, which
//! is what the supervision paths need; the end-to-end tests with a Debian
//! guest built by kvmx-create cover the guest side.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{Sandbox, output_text, status, write_halting_disk};

/// A project whose VM boots a halting boot sector, with `extra` TOML.
fn halting_vm(sandbox: &Sandbox, name: &str, extra: &str) -> PathBuf {
    let project = sandbox.dir(name);
    write_halting_disk(&project.join("disk.raw"));
    std::fs::write(
        project.join("kvmx.toml"),
        format!(
            "[hardware]\nmemory = \"64M\"\naccelerator = \"tcg\"\nvirtio_rng = false\n\n\
             [image]\npath = \"disk.raw\"\nformat = \"raw\"\n\n\
             [ssh]\nenabled = false\n\n[supervise]\nshutdown_timeout = 2\n{extra}"
        ),
    )
    .unwrap();
    project
}

fn state(sandbox: &Sandbox, project: &Path) -> String {
    status(sandbox, project)["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether the process exists at all (a zombie's threads may still hold
/// its files, so it counts).
fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// QEMU processes whose command line names this sandbox.
fn qemus_in(sandbox: &Sandbox) -> usize {
    let root = sandbox.root().to_str().unwrap().to_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
        .filter(|cmdline| {
            let text = String::from_utf8_lossy(cmdline);
            text.starts_with("qemu-system-x86_64") && text.contains(&root)
        })
        .count()
}

#[test]
fn up_status_pause_resume_stop() {
    let sandbox = Sandbox::new();
    let project = halting_vm(&sandbox, "plain", "");
    let config = project.join("kvmx.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        toml.replace("shutdown_timeout = 2", "shutdown_timeout = 600"),
    )
    .unwrap();
    assert_eq!(state(&sandbox, &project), "stopped");
    let up = sandbox
        .kvmx_in(&project)
        .args(["up", "--json"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{up:?}");
    let report: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(report["started"], true);
    assert_eq!(report["accelerator"], "tcg");

    let running = status(&sandbox, &project);
    assert_eq!(running["state"], "running");
    let pid = running["pid"].as_i64().unwrap();
    assert!(alive(pid));

    // `up` again: already running, still one QEMU.
    let again = sandbox.kvmx_in(&project).arg("up").output().unwrap();
    assert!(again.status.success());
    assert!(output_text(&again).1.contains("already running"));
    assert_eq!(qemus_in(&sandbox), 1);

    sandbox.kvmx_in(&project).arg("suspend").assert().success();
    assert_eq!(state(&sandbox, &project), "paused");
    sandbox.kvmx_in(&project).arg("resume").assert().success();
    assert_eq!(state(&sandbox, &project), "running");

    // The guest ignores ACPI and has no SSH: stop escalates to QMP quit,
    // after the --timeout given, not the config's ten minutes.
    let stop = sandbox
        .kvmx_in(&project)
        .args(["stop", "--json", "--timeout", "1"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    let stopped: serde_json::Value = serde_json::from_slice(&stop.stdout).unwrap();
    assert_eq!(stopped["stopped_by"], "qmp-quit");
    wait_until(|| !alive(pid));
    assert_eq!(state(&sandbox, &project), "stopped");
}

#[test]
fn two_ups_at_once_start_one_qemu() {
    let sandbox = Sandbox::new();
    let project = halting_vm(&sandbox, "race", "");
    let spawn = || -> Child {
        let mut command = sandbox.kvmx_process(&project);
        command
            .arg("up")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    assert!(outputs.iter().all(|o| o.status.success()), "{outputs:?}");
    let already = outputs
        .iter()
        .filter(|o| output_text(o).1.contains("already running"))
        .count();
    assert_eq!(already, 1, "{outputs:?}");
    assert_eq!(qemus_in(&sandbox), 1);
    sandbox.kvmx_in(&project).arg("kill").assert().success();
    assert_eq!(qemus_in(&sandbox), 0);
}

#[test]
fn up_waits_out_a_status_probe_instead_of_taking_it_for_a_run() {
    use std::os::unix::fs::DirBuilderExt;
    let sandbox = Sandbox::new();
    let project = halting_vm(&sandbox, "probed", "");
    // A probe caught in the act: `status` holds the run lock shared for an
    // instant; here it holds on until `up` is surely waiting.
    let run = sandbox.root().join("kvmx/run/probed");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run)
        .unwrap();
    let probe = std::fs::File::create(run.join("lock")).unwrap();
    probe.lock_shared().unwrap();
    let mut up = sandbox.kvmx_process(&project);
    let up = up
        .args(["up", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(probe);
    let output = up.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["started"], true, "{output:?}");
    assert_eq!(state(&sandbox, &project), "running");
    assert_eq!(qemus_in(&sandbox), 1);
    sandbox.kvmx_in(&project).arg("kill").assert().success();
    assert_eq!(qemus_in(&sandbox), 0);
}

#[test]
fn a_killed_qemu_shows_as_crashed_and_up_recovers() {
    let sandbox = Sandbox::new();
    let project = halting_vm(&sandbox, "crash", "");
    sandbox.kvmx_in(&project).arg("up").assert().success();
    let pid = status(&sandbox, &project)["pid"].as_i64().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_until(|| !alive(pid));
    assert_eq!(state(&sandbox, &project), "crashed");
    let up = sandbox.kvmx_in(&project).arg("up").output().unwrap();
    assert!(up.status.success());
    assert!(
        output_text(&up).1.contains("ended without a clean stop"),
        "{up:?}"
    );
    assert_eq!(state(&sandbox, &project), "running");
    sandbox
        .kvmx_in(&project)
        .args(["stop", "--force"])
        .assert()
        .success();
    assert_eq!(state(&sandbox, &project), "stopped");
}

#[test]
fn killing_kvmx_up_while_it_waits_leaves_a_running_vm() {
    let sandbox = Sandbox::new();
    // SSH enabled: `up` waits for an SSH that never answers.
    let project = halting_vm(&sandbox, "waiting", "boot_timeout = 3\n");
    let toml = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    std::fs::write(
        project.join("kvmx.toml"),
        toml.replace("[ssh]\nenabled = false", "[ssh]\nenabled = true"),
    )
    .unwrap();
    let mut up = sandbox.kvmx_process(&project);
    let mut up = up
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(|| status(&sandbox, &project)["state"] == "running");
    up.kill().unwrap();
    up.wait().unwrap();
    let running = status(&sandbox, &project);
    assert_eq!(running["state"], "running");
    assert!(alive(running["pid"].as_i64().unwrap()));
    // A second `up` waits for SSH like the first, rather than returning
    // before the guest answers; giving up, it says the VM runs on.
    let again = sandbox.kvmx_in(&project).arg("up").output().unwrap();
    let (_, stderr) = output_text(&again);
    assert!(!again.status.success(), "{stderr}");
    assert!(stderr.contains("did not answer SSH within 3 s"), "{stderr}");
    assert!(stderr.contains("waiting is still running"), "{stderr}");
    assert_eq!(state(&sandbox, &project), "running");
    sandbox.kvmx_in(&project).arg("kill").assert().success();
    assert_eq!(state(&sandbox, &project), "stopped");
}

#[test]
fn forwards_listen_on_loopback_and_a_taken_port_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let busy = halting_vm(
        &sandbox,
        "busy",
        &format!("\n[network]\nforwards = [{{ host = {taken_port}, guest = 80 }}]\n"),
    );
    let output = sandbox.kvmx_in(&busy).arg("up").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let (_, stderr) = output_text(&output);
    assert!(
        stderr.contains(&format!("error: host port {taken_port} (tcp forward to guest port 80) is already in use on 127.0.0.1")),
        "{stderr}"
    );
    assert_eq!(state(&sandbox, &busy), "stopped");

    let open = halting_vm(
        &sandbox,
        "open",
        &format!("\n[network]\nforwards = [{{ host = {free_port}, guest = 80 }}]\n"),
    );
    sandbox.kvmx_in(&open).arg("up").assert().success();
    let port = sandbox
        .kvmx_in(&open)
        .args(["port", "80"])
        .output()
        .unwrap();
    assert_eq!(output_text(&port).0.trim(), free_port.to_string());
    let listening = listening_addresses(free_port);
    assert_eq!(
        listening,
        ["127.0.0.1"],
        "QEMU must listen on loopback only"
    );
    sandbox.kvmx_in(&open).arg("kill").assert().success();
}

/// Local addresses with a TCP listener on `port`, from /proc/net/tcp.
fn listening_addresses(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, local_port) = fields[1].split_once(':')?;
            (fields[3] == "0A" && u16::from_str_radix(local_port, 16).ok()? == port).then(|| {
                let raw = u32::from_str_radix(address, 16).unwrap();
                std::net::Ipv4Addr::from(raw.swap_bytes()).to_string()
            })
        })
        .collect()
}

#[test]
fn destroy_refuses_while_running_then_removes_the_data() {
    let sandbox = Sandbox::new();
    let project = halting_vm(&sandbox, "gone", "");
    sandbox.kvmx_in(&project).arg("up").assert().success();
    let refused = sandbox
        .kvmx_in(&project)
        .args(["destroy", "--yes"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(output_text(&refused).1.contains("is in use"));
    let unconfirmed = sandbox.kvmx_in(&project).arg("destroy").output().unwrap();
    assert_eq!(unconfirmed.status.code(), Some(2));
    sandbox.kvmx_in(&project).arg("kill").assert().success();
    let data = sandbox.root().join("kvmx/data/gone");
    assert!(data.join("console.log").exists());
    sandbox
        .kvmx_in(&project)
        .args(["destroy", "--yes"])
        .assert()
        .success();
    assert!(!data.exists());
    assert!(
        !project.join("disk.raw").exists(),
        "the disk is the VM's image and goes too"
    );
    assert!(project.join("kvmx.toml").exists(), "the project file stays");
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn usb_devices_attach_and_detach_through_qmp() {
    let sandbox = Sandbox::new();
    let project = halting_vm(&sandbox, "usb", "\n[display]\nkind = \"none\"\n");
    let toml = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    std::fs::write(
        project.join("kvmx.toml"),
        toml.replace("virtio_rng = false", "virtio_rng = false\nusb = 2"),
    )
    .unwrap();
    sandbox.kvmx_in(&project).arg("up").assert().success();
    let peripherals = || {
        let output = sandbox
            .kvmx_in(&project)
            .args([
                "qmp",
                r#"{"execute":"qom-list","arguments":{"path":"/machine/peripheral"}}"#,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        output_text(&output).0
    };
    // usb-host waits for a device that is not plugged in yet: QEMU takes it.
    sandbox
        .kvmx_in(&project)
        .args(["usb", "attach", "1d6b:0104"])
        .assert()
        .success();
    assert!(peripherals().contains("usb-1d6b-0104"));
    sandbox
        .kvmx_in(&project)
        .args(["usb", "detach", "1d6b:0104"])
        .assert()
        .success();
    wait_until(|| !peripherals().contains("usb-1d6b-0104"));
    let bad = sandbox
        .kvmx_in(&project)
        .args(["usb", "attach", "mouse"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    sandbox.kvmx_in(&project).arg("kill").assert().success();
}

#[test]
fn display_opens_the_configured_client_on_the_vnc_socket() {
    let sandbox = Sandbox::new();
    let seen = sandbox.root().join("client-saw");
    let client = format!("sh -c 'test -S \"$0\" && echo \"$0\" > {}'", seen.display());
    let project = halting_vm(
        &sandbox,
        "screen",
        &format!("\n[display]\nkind = \"vnc\"\nvnc_client = \"\"\"{client}\"\"\"\n"),
    );
    sandbox.kvmx_in(&project).arg("up").assert().success();
    sandbox.kvmx_in(&project).arg("vnc").assert().success();
    wait_until(|| seen.exists());
    let socket = std::fs::read_to_string(&seen).unwrap();
    assert!(
        socket.trim_end().ends_with("/run/screen/vnc.sock"),
        "{socket}"
    );
    sandbox.kvmx_in(&project).arg("kill").assert().success();
}

/// Whether `qemu-io` reads `pattern` bytes at `offset` of a qcow2 image.
fn reads_pattern(image: &Path, pattern: u8, offset: &str) -> bool {
    std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c"])
        .arg(format!("read -P {pattern} {offset} 64k"))
        .arg(image)
        .output()
        .unwrap()
        .stdout
        .starts_with(b"read ")
}

#[test]
fn an_overlay_on_a_base_is_made_afresh_at_every_start() {
    let sandbox = Sandbox::new();
    let base = halting_vm(&sandbox, "base", "");
    let project = halting_vm(&sandbox, "over", "");
    let overlay = project.join("overlay.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base.join("disk.raw"))
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(made.success());
    let config = std::fs::read_to_string(project.join("kvmx.toml")).unwrap().replace(
        "path = \"disk.raw\"\nformat = \"raw\"\n",
        "path = \"overlay.qcow2\"\nformat = \"qcow2\"\nbase = \"base\"\nbacking = true\nrecreate_overlay = true\n",
    );
    std::fs::write(project.join("kvmx.toml"), config).unwrap();
    let written = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 171 512k 64k"])
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(written.status.success(), "{written:?}");
    assert!(reads_pattern(&overlay, 171, "512k"));

    let up = sandbox.kvmx_in(&project).arg("up").output().unwrap();
    assert!(up.status.success(), "{up:?}");
    // The base cannot start while a VM runs on its image.
    let refused = sandbox.kvmx_in(&base).arg("up").output().unwrap();
    let (_, stderr) = output_text(&refused);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("while VMs run on its image: over"),
        "{stderr}"
    );
    let stop = sandbox
        .kvmx_in(&project)
        .args(["stop", "--force"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    assert!(
        reads_pattern(&overlay, 0, "512k"),
        "what was written to the overlay is gone"
    );
}
