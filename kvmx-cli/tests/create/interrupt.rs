//! SIGTERM in the middle of a build: the build stops its tool and leaves
//! no partial image and no work folder.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

/// The pid of the one child of `parent` (runuser's child is kvmx-create).
fn child_of(parent: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Starts kvmx-create for the VM `vm` of `project`, sends SIGTERM once
/// its create.log shows `sign` (within `patience`), and returns its pid
/// and its stderr after it ended with code 130.
fn interrupt_when_logged(
    home: &Home,
    project: &Utf8Path,
    sign: &str,
    patience: Duration,
) -> (i32, String) {
    let child = home
        .command(kvmx_create(), project)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = home.data("vm").join("create.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains(sign)) {
        assert!(
            start.elapsed() < patience,
            "the build never logged {sign:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child_of(child.id()).expect("kvmx-create runs under runuser");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    (pid, stderr)
}

#[test]
fn sigterm_during_the_build_leaves_nothing() {
    let runtime = runtime();
    let home = runtime.home("interrupt");
    let project = home.project("vm", &config("vm", ""));
    // While the file system is being made (after the bootstrap, which the
    // shared cache serves or which this build makes).
    let (_, stderr) = interrupt_when_logged(&home, &project, "mkfs.ext4", Duration::from_secs(900));
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert_nothing_left(&home.data("vm"));
}

#[test]
fn sigterm_while_the_builder_vm_works_leaves_no_builder_and_no_image() {
    let runtime = runtime();
    let home = runtime.home("interrupt-builder");
    let project = home.project(
        "vm",
        &config("vm", "[create]\nlayout = \"lvm\"\nencryption = \"luks\"\n"),
    );
    // Once the builder's script runs (its first line of output is in the
    // log), after the builder image and the bootstrap are ready.
    let (pid, _) = interrupt_when_logged(
        &home,
        &project,
        "== partitioning",
        Duration::from_secs(1800),
    );
    assert_nothing_left(&home.data("vm"));
    // No builder QEMU of this build left, no run folder of it.
    let ours = format!("kvmx-builder-{pid}-");
    for entry in std::fs::read_dir(runtime.cache.join("builder"))
        .unwrap()
        .flatten()
    {
        let left: Vec<String> = std::fs::read_dir(entry.path().join("runs"))
            .map(|read| {
                read.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with(&ours))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "builder runs left: {left:?}");
    }
    let qemus = std::process::Command::new("pgrep")
        .args(["-f", "--", &format!("-name {ours}")])
        .output()
        .unwrap();
    assert!(
        qemus.stdout.is_empty(),
        "a builder QEMU still runs: {}",
        String::from_utf8_lossy(&qemus.stdout)
    );
}
