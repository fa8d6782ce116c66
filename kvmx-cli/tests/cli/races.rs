//! Commands that race for one VM, as a plain user (uid not 1000): a
//! `destroy` while `up` starts the VM ends either with the VM running on
//! its image or fully destroyed, never with QEMU on a deleted image or
//! half a data folder.

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_testkit::{Home, Runtime};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn kvmx() -> &'static Utf8Path {
    Utf8Path::new(env!("CARGO_BIN_EXE_kvmx"))
}

/// A VM whose disk only halts (no SSH), owned by the test user.
fn halting_vm(home: &Home, name: &str) -> Utf8PathBuf {
    let toml = "[hardware]\nmemory = \"64M\"\naccelerator = \"tcg\"\nvirtio_rng = false\n\n\
                [image]\npath = \"disk.raw\"\nformat = \"raw\"\n\n[ssh]\nenabled = false\n";
    let folder = home.root.join("projects").join(name);
    std::fs::create_dir_all(&folder).unwrap();
    write_disk(&folder);
    home.project(name, toml)
}

fn write_disk(project: &Utf8Path) {
    crate::write_halting_disk(project.join("disk.raw").as_std_path());
}

fn spawn(home: &Home, project: &Utf8Path, args: &[&str]) -> Child {
    home.command(kvmx(), project)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The first child of `parent`, if it has one.
fn child_of(parent: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The first process named `name` among `root` and its first children.
fn descendant_named(root: i32, name: &str) -> Option<i32> {
    let mut pid = root;
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() == name {
            return Some(pid);
        }
        pid = child_of(pid)?;
    }
}

fn state(home: &Home, project: &Utf8Path) -> serde_json::Value {
    let output = home.run(kvmx(), project, &["status", "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The VM runs on its image, or nothing of it is left.
fn assert_whole(home: &Home, project: &Utf8Path, name: &str) -> bool {
    let status = state(home, project);
    let image = project.join("disk.raw");
    let data = home.data(name);
    match status["state"].as_str() {
        Some("running") => {
            assert!(image.exists(), "QEMU runs on a deleted image: {status}");
            assert!(data.exists(), "the data folder of a running VM is gone");
            true
        }
        Some("stopped") => {
            assert!(!image.exists(), "neither running nor destroyed: {status}");
            assert!(!data.exists(), "half a data folder left: {data}");
            false
        }
        other => panic!("{name} is {other:?} after the race: {status}"),
    }
}

#[test]
fn destroy_refuses_a_vm_whose_up_is_still_starting() {
    let home = Runtime::get().home("starting");
    let project = halting_vm(&home, "starting");
    let up = spawn(&home, &project, &["up", "--no-build"]);
    // Stop kvmx (under runuser) as soon as its QEMU exists, before it has
    // written the run's state.
    let started = Instant::now();
    let kvmx_pid = loop {
        let kvmx = descendant_named(up.id() as i32, "kvmx");
        if let Some(kvmx) = kvmx.filter(|kvmx| child_of(*kvmx).is_some()) {
            break kvmx;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no QEMU");
        std::thread::sleep(Duration::from_millis(1));
    };
    kill(Pid::from_raw(kvmx_pid), Signal::SIGSTOP).unwrap();
    let destroy = home.run(kvmx(), &project, &["destroy", "--yes"]);
    // runuser stops itself when its child stops: both go on.
    for pid in [kvmx_pid, up.id() as i32] {
        let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
    }
    assert_eq!(destroy.status.code(), Some(1), "{}", text(&destroy));
    assert!(text(&destroy).contains("is in use"), "{}", text(&destroy));
    let up = up.wait_with_output().unwrap();
    assert!(up.status.success(), "{}", text(&up));
    assert!(assert_whole(&home, &project, "starting"));
    assert!(home.run(kvmx(), &project, &["kill"]).status.success());
}

#[test]
fn up_and_destroy_racing_leave_a_whole_vm_or_none() {
    let home = Runtime::get().home("race");
    let project = halting_vm(&home, "race");
    let mut outcomes = [0, 0];
    for delay_ms in [0, 2, 5, 10, 20, 50] {
        let up = spawn(&home, &project, &["up", "--no-build"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let destroy = home.run(kvmx(), &project, &["destroy", "--yes"]);
        let up = up.wait_with_output().unwrap();
        assert!(up.status.signal().is_none(), "{}", text(&up));
        let running = assert_whole(&home, &project, "race");
        // Each command says what it did: the one that lost fails.
        assert_eq!(up.status.success(), running, "up: {}", text(&up));
        assert_eq!(
            destroy.status.success(),
            !running,
            "destroy: {}",
            text(&destroy)
        );
        outcomes[usize::from(running)] += 1;
        if running {
            assert!(home.run(kvmx(), &project, &["kill"]).status.success());
        } else {
            write_disk(&project);
            std::process::Command::new("chown")
                .arg("--reference")
                .arg(project.join("kvmx.toml"))
                .arg(project.join("disk.raw"))
                .status()
                .unwrap();
        }
    }
    eprintln!(
        "running {} times, destroyed {} times",
        outcomes[1], outcomes[0]
    );
}

#[test]
fn destroy_with_wait_goes_on_once_the_other_command_lets_go() {
    let home = Runtime::get().home("held");
    let project = halting_vm(&home, "held");
    // Hold the run lock as a starting `up` does.
    let run = home.kvmx_home().join("run").join("held");
    std::fs::create_dir_all(&run).unwrap();
    let lock_file = std::fs::File::create(run.join("lock")).unwrap();
    let lock_path = run.join("lock");
    for path in [
        &home.kvmx_home(),
        &home.kvmx_home().join("run"),
        &run,
        &lock_path,
    ] {
        std::process::Command::new("chown")
            .arg("--reference")
            .arg(project.join("kvmx.toml"))
            .arg(path)
            .status()
            .unwrap();
    }
    lock_file.lock().unwrap();
    let refused = home.run(kvmx(), &project, &["destroy", "--yes"]);
    assert!(text(&refused).contains("is in use"), "{}", text(&refused));
    let mut waiting = spawn(&home, &project, &["destroy", "--yes", "--wait", "60"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "destroy did not wait"
    );
    drop(lock_file);
    let destroyed = waiting.wait_with_output().unwrap();
    assert!(destroyed.status.success(), "{}", text(&destroyed));
    assert!(!project.join("disk.raw").exists());
    assert!(!home.data("held").exists());
}
