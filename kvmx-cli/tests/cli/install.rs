//! `create.method = "install"` and `kvmx install`: Debian's netboot
//! installer (package debian-installer-12-netboot-amd64) booted by QEMU
//! under TCG with a preseed made from kvmx.toml, run as the unprivileged
//! test user.
//!
//! The netboot installer loads most of itself (partitioner, base system
//! installer, GRUB installer) as `.udeb` files from the mirror. The mirror
//! this project's CI host reaches serves `.deb` files but answers 404 for
//! every `.udeb`, so a whole install cannot finish there: the test that
//! goes to the end is ignored by default and runs with `--ignored` (and
//! `KVMX_TEST_DEBIAN_MIRROR` naming a mirror that serves the installer's
//! components), as does `bench/install.sh`. What runs in CI is the real
//! installer with the real preseed up to its first use of the mirror,
//! which is made to fail: every question before it must have been
//! answered by the preseed, and the failure must be reported with its
//! step, the VM killed and no image left.

use std::process::Output;
use std::time::Instant;

use camino::Utf8Path;
use kvmx_testkit::guest::Slot;
use kvmx_testkit::{Home, Runtime};

use crate::as_user::{KillOnDrop, kvmx, text};

/// `kvmx up` in `project`, timed, the time printed with `what`.
fn timed_up(home: &Home, project: &Utf8Path, what: &str) -> Output {
    let started = Instant::now();
    let up = home.run(kvmx(), project, &["up"]);
    eprintln!(
        "kvmx up, {what}, took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    up
}

/// A VM installed by Debian's installer from `mirror`.
fn install_toml(mirror: &str, timeout: u64) -> String {
    format!(
        "[vm]\nuser = \"dev\"\npassword = \"random\"\n\n\
         [hardware]\nmemory = \"1G\"\ncpus = 2\naccelerator = \"tcg\"\n\n\
         [image]\nsize = \"4G\"\n\n\
         [create]\nmethod = \"install\"\nmirror = \"{mirror}\"\n\n\
         [install]\ntimeout = {timeout}\n\n\
         [supervise]\nboot_timeout = 900\nshutdown_timeout = 120\n"
    )
}

#[test]
fn install_refuses_an_existing_image_without_force() {
    let home = Runtime::get().home("install-exists");
    let project = home.project("exists", &install_toml("http://deb.debian.org/debian/", 60));
    let image = home.data("exists").join("box.img");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, b"not empty").unwrap();
    Runtime::get().user.chown(&home.kvmx_home());
    let install = home.run(kvmx(), &project, &["install"]);
    assert_eq!(install.status.code(), Some(1), "{}", text(&install));
    assert!(
        text(&install).contains("already exists"),
        "{}",
        text(&install)
    );
    assert_eq!(std::fs::read(&image).unwrap(), b"not empty");
}

#[test]
fn the_installer_takes_the_preseed_and_a_failed_install_leaves_nothing() {
    let home = Runtime::get().home("install-fails");
    // The guest's own loopback: the installer's mirror check fails at once.
    let project = home.project("netboot", &install_toml("http://127.0.0.1:9/debian/", 1200));
    let _slot = Slot::take();
    let _kill = KillOnDrop {
        home: &home,
        project: &project,
    };
    let up = timed_up(&home, &project, "an install that fails at the mirror");
    let output = text(&up);
    assert_eq!(up.status.code(), Some(1), "{output}");
    assert!(
        output.contains("has no image yet; installing it"),
        "{output}"
    );
    // The steps before the mirror ran without a question: the preseed
    // answered the language, keyboard, network and host name.
    for step in [
        "installer: Detecting network hardware",
        "installer: Configuring the network with DHCP",
    ] {
        assert!(output.contains(step), "no stage {step:?} in:\n{output}");
    }
    assert!(
        output.contains("the installer asks a question the preseed does not answer"),
        "{output}"
    );
    assert!(
        output.contains("during \"Checking the Debian archive mirror\""),
        "{output}"
    );
    assert!(output.contains("the last console lines"), "{output}");
    assert!(output.contains("Bad archive mirror"), "{output}");
    let data = home.data("netboot");
    // No half image, no work folder, no QEMU; the installer's log kept.
    let left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!left.iter().any(|n| n == "box.img"), "{left:?}");
    assert!(
        !left.iter().any(|n| n.starts_with(".kvmx-create-")),
        "{left:?}"
    );
    let log = std::fs::read_to_string(data.join("install.log")).unwrap();
    assert!(log.contains("Detecting network hardware"), "{log}");
    let status = home.run(kvmx(), &project, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
}

/// The whole install, then the installed system over SSH with the host
/// key kvmx made and recorded. See the module's note for why it is not
/// run by default here.
#[test]
#[ignore = "needs a Debian mirror that serves the installer's .udeb files (KVMX_TEST_DEBIAN_MIRROR); the CI host's answers 404"]
fn a_preseeded_bookworm_install_answers_ssh() {
    let mirror = std::env::var("KVMX_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian/".into());
    let home = Runtime::get().home("install");
    let project = home.project("bookworm", &install_toml(&mirror, 7200));
    let _slot = Slot::take();
    let _kill = KillOnDrop {
        home: &home,
        project: &project,
    };
    let up = timed_up(&home, &project, "a whole install and first boot");
    assert!(up.status.success(), "kvmx up failed:\n{}", text(&up));
    let output = text(&up);
    for step in [
        "installer: Installing the base system",
        "installer: Installing GRUB",
    ] {
        assert!(output.contains(step), "no stage {step:?} in:\n{output}");
    }
    let data = home.data("bookworm");
    let known_hosts = std::fs::read_to_string(data.join("ssh/known_hosts")).unwrap();
    assert!(
        known_hosts.starts_with("kvmx-bookworm ssh-ed25519 "),
        "{known_hosts}"
    );
    // Strict host key checking with the recorded key.
    let ssh = home.run(kvmx(), &project, &["ssh", "--", "true"]);
    assert!(ssh.status.success(), "kvmx ssh failed:\n{}", text(&ssh));
    let sudo = home.run(kvmx(), &project, &["ssh", "--", "sudo -n true && hostname"]);
    assert_eq!(
        String::from_utf8_lossy(&sudo.stdout),
        "bookworm\n",
        "{}",
        text(&sudo)
    );
    assert!(data.join("install.log").is_file());
}
