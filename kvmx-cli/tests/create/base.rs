//! Base boxes: an overlay backed by another VM's image.

use std::time::Duration;

use kvmx_testkit::Guest;

use super::*;

fn sha256(path: &Utf8Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn overlay_on_a_base_boots_with_the_bases_files_and_writes_to_itself() {
    let runtime = runtime();
    let home = runtime.home("base");
    let base = home.project(
        "basebox",
        &config("basebox", "[create]\nbootloader = \"direct\"\n"),
    );
    create_ok(&home, &base, &[]);
    let registry = home.kvmx_home().join("config");
    std::fs::create_dir_all(&registry).unwrap();
    std::fs::write(
        registry.join("registry.toml"),
        format!("[vms]\nbasebox = \"{base}\"\n"),
    )
    .unwrap();
    runtime.user.chown(&home.kvmx_home());
    let child = home.project(
        "child",
        &config("child", "base = \"basebox\"\nbacking = true\n"),
    );

    // Refused while the base runs (its run lock is held, as by its QEMU).
    let run = home.kvmx_home().join("run").join("basebox");
    std::fs::create_dir_all(&run).unwrap();
    let run_lock = std::fs::File::create(run.join("lock")).unwrap();
    run_lock.lock().unwrap();
    let (out, _) = create(&home, &child, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("it is running"), "{stderr}");
    assert_nothing_left(&home.data("child"));
    drop(run_lock);

    let report = create_ok(&home, &child, &[]);
    assert_eq!(report["backing"], true);
    let base_image = home.data("basebox").join("box.img");
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path(&report["image"]))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename"], base_image.as_str(), "{info}");
    let keys = report["ssh_keys"].as_array().unwrap();
    assert_eq!(
        keys.last().unwrap(),
        home.data("basebox").join("ssh/id_ed25519").as_str()
    );

    let base_sum = sha256(&base_image);
    let child_sum = sha256(&path(&report["image"]));
    let mut guest = Guest::boot(&boot_spec(&report, "dev"));
    guest.wait_for_ssh(Duration::from_secs(300));
    let out = guest.ssh(
        "cat /etc/hostname && echo overlay-data | sudo tee /var/marker >/dev/null && sync && cat /var/marker",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text, "basebox\noverlay-data\n");
    assert!(
        guest.powerdown(Duration::from_secs(90)),
        "{}",
        guest.serial_tail()
    );
    assert_eq!(sha256(&base_image), base_sum, "the base image changed");
    assert_ne!(
        sha256(&path(&report["image"])),
        child_sum,
        "the overlay did not change"
    );
}
