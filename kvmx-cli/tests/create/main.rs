//! End-to-end tests of `kvmx-create`: real images built as an unprivileged
//! user, booted under QEMU (TCG), reached over SSH with strict host-key
//! checking.
//!
//! They need root (to make the test user) and network access to a Debian
//! mirror; without root they fail. The bootstrap cache is shared by all
//! tests (and kept between runs), so the system is bootstrapped once.

mod bad_input;
mod base;
mod boot;
mod cache;
mod interrupt;
mod volumes;

use std::process::Output;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_testkit::{BootSpec, Home, Runtime};

/// The binary under test.
fn kvmx_create() -> &'static Utf8Path {
    Utf8Path::new(env!("CARGO_BIN_EXE_kvmx-create"))
}

/// The shared runtime (the tests need root).
fn runtime() -> &'static Runtime {
    Runtime::get()
}

/// A small VM config: the same bootstrap inputs in every test, so the cache
/// serves them all.
fn config(name: &str, extra: &str) -> String {
    format!("[vm]\nname = \"{name}\"\nuser = \"dev\"\n[image]\nsize = \"2G\"\n{extra}")
}

/// Runs kvmx-create in `project` with `args` (plus `--json`).
fn create(home: &Home, project: &Utf8Path, args: &[&str]) -> (Output, Option<serde_json::Value>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = home.run(kvmx_create(), project, &all);
    let json = serde_json::from_slice(&out.stdout).ok();
    (out, json)
}

/// Runs kvmx-create and requires success; returns its JSON report.
fn create_ok(home: &Home, project: &Utf8Path, args: &[&str]) -> serde_json::Value {
    let (out, json) = create(home, project, args);
    assert!(
        out.status.success(),
        "kvmx-create failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    json.expect("a JSON report")
}

fn path(value: &serde_json::Value) -> Utf8PathBuf {
    Utf8PathBuf::from(value.as_str().expect("a path"))
}

/// How to boot and reach the image a report describes.
fn boot_spec(report: &serde_json::Value, user: &str) -> BootSpec {
    // A GRUB image is booted through GRUB here, though it has a copy of its
    // kernel beside it too (which `kvmx up` boots).
    let direct = report["direct_boot"]
        .as_object()
        .filter(|_| report["bootloader"] == "direct")
        .map(|d| (path(&d["kernel"]), path(&d["initrd"]), path(&d["cmdline"])));
    BootSpec {
        image: path(&report["image"]),
        format: report["format"].as_str().expect("format").into(),
        direct,
        user: user.into(),
        keys: report["ssh_keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(path)
            .collect(),
        known_hosts: path(&report["known_hosts"]),
        host_key_alias: report["host_key_alias"].as_str().expect("alias").into(),
    }
}

/// The names in a folder, hidden ones too.
fn names_in(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|read| {
            read.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Asserts that a failed build left no image and no work files in `dir`.
fn assert_nothing_left(dir: &Utf8Path) {
    // The build log stays (the error names it); no image, no partial
    // file, no work folder, no key.
    let names = names_in(dir);
    assert!(
        names.iter().all(|n| n == "create.log"),
        "left behind in {dir}: {names:?}"
    );
}
