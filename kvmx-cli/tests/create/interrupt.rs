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

#[test]
fn sigterm_during_the_build_leaves_nothing() {
    let runtime = runtime();
    let home = runtime.home("interrupt");
    let project = home.project("vm", &config("vm", ""));
    let child = home
        .command(kvmx_create(), &project)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the file system is being made (after the bootstrap, which
    // the shared cache serves or which this build makes).
    let log = home.data("vm").join("create.log");
    let start = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("mkfs.ext4")) {
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "the build never got to mkfs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child_of(child.id()).expect("kvmx-create runs under runuser");
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert_nothing_left(&home.data("vm"));
}
