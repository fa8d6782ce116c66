//! Bad input: each a clear error, exit status 1, and no partial image.

use super::*;

fn fails_with(home: &Home, project: &Utf8Path, vm: &str, expected: &[&str]) -> String {
    let (out, _) = create(home, project, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error: ")), "{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "expected {text:?} in:\n{stderr}");
    }
    assert_nothing_left(&home.data(vm));
    stderr
}

#[test]
fn unknown_suite() {
    let runtime = runtime();
    let home = runtime.home("suite");
    let project = home.project("vm", &config("vm", "[create]\nsuite = \"no-such-suite\"\n"));
    fails_with(
        &home,
        &project,
        "vm",
        &[
            "bootstrap the system with mmdebstrap failed",
            "no-such-suite",
            "hint: the full output is in",
        ],
    );
}

#[test]
fn unreachable_mirror() {
    let runtime = runtime();
    let home = runtime.home("mirror");
    let project = home.project(
        "vm",
        &config("vm", "[create]\nmirror = \"http://127.0.0.1:9/debian\"\n"),
    );
    let log = home.data("vm").join("create.log");
    fails_with(
        &home,
        &project,
        "vm",
        &[
            "bootstrap the system with mmdebstrap failed",
            "127.0.0.1",
            &format!("hint: the full output is in {log}"),
        ],
    );
}

#[test]
fn size_too_small_for_the_system() {
    let runtime = runtime();
    let home = runtime.home("small");
    let project = home.project(
        "vm",
        &config("vm", "").replace("size = \"2G\"", "size = \"300M\""),
    );
    fails_with(
        &home,
        &project,
        "vm",
        &[
            "the image size 300 MiB is too small",
            "hint: set image.size to at least",
        ],
    );
}

#[test]
fn image_already_present() {
    let runtime = runtime();
    let home = runtime.home("present");
    let project = home.project("vm", &config("vm", ""));
    let image = home.data("vm").join("box.img");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, "keep me").unwrap();
    runtime.user.chown(&home.kvmx_home());
    let (out, _) = create(&home, &project, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&image).unwrap(), "keep me");
}

#[test]
fn missing_prerequisites_are_listed_with_their_packages() {
    let runtime = runtime();
    let home = runtime.home("prereq").with_path("/nonexistent");
    let project = home.project("vm", &config("vm", ""));
    let stderr = fails_with(
        &home,
        &project,
        "vm",
        &[
            "error: missing prerequisites:",
            "the program mmdebstrap (package mmdebstrap)",
            "the program qemu-img (package qemu-utils)",
            "hint: apt-get install ",
        ],
    );
    assert!(!stderr.contains("mkfs.ext4"), "found in sbin: {stderr}");
}

/// A 400 MiB tmpfs as the home: the tree does not fit while it is unpacked.
#[test]
fn full_disk_during_the_build() {
    let runtime = runtime();
    let home = runtime.home("full");
    let kvmx_home = home.kvmx_home();
    std::fs::create_dir_all(&kvmx_home).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=400m", "kvmx-test-full"])
        .arg(&kvmx_home)
        .status()
        .unwrap();
    assert!(mounted.success(), "cannot mount a tmpfs");
    struct Unmount(Utf8PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(kvmx_home.clone());
    runtime.user.chown(&kvmx_home);
    let project = home.project(
        "vm",
        &config("vm", "").replace("size = \"2G\"", "size = \"3G\""),
    );
    fails_with(
        &home,
        &project,
        "vm",
        &[
            "make the root file system failed",
            "No space left on device",
        ],
    );
}
