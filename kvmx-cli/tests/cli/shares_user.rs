//! Shares as a plain user whose uid is not 1000 (the test user): the image
//! gives the guest user the host user's uid and gid, so the guest user
//! writes into every kind of share that allows writing, and the host sees
//! the files owned by the host user.

use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_testkit::guest::Slot;
use kvmx_testkit::{Home, Runtime};

use crate::as_user::{KillOnDrop, kvmx, text};

/// `kvmx ARGS` as the test user, which must succeed; returns its stdout.
fn run_ok(home: &Home, project: &Utf8Path, args: &[&str]) -> String {
    let output = home.run(kvmx(), project, args);
    assert!(
        output.status.success(),
        "kvmx {args:?} failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Share ids and kinds written into from the guest; `None` is the default
/// kind (virtiofs here, where virtiofsd is installed).
const GUEST_WRITES: [(&str, Option<&str>); 6] = [
    ("p9", Some("9p")),
    ("vfs", Some("virtiofs")),
    ("default", None),
    ("net", Some("nfs")),
    ("win", Some("smb")),
    ("rev", Some("reverse-sshfs")),
];

/// The config of a Debian VM with `shares` (TOML tables) appended.
fn debian_toml(shares: &str) -> String {
    format!(
        "[hardware]\nmemory = \"1G\"\ncpus = 2\naccelerator = \"tcg\"\n\n\
         [image]\nsize = \"3G\"\n\n\
         [create]\npackages = [\"sshfs\", \"cifs-utils\", \"nfs-common\"]\n\n\
         [supervise]\nboot_timeout = 900\nshutdown_timeout = 120\n{shares}"
    )
}

/// Makes the project `name` with `folders` in it, all owned by the test
/// user, and brings its VM up as that user.
fn up_as_the_user(home: &Home, name: &str, toml: &str, folders: &[String]) -> Utf8PathBuf {
    let project_dir = home.root.join("projects").join(name);
    for folder in folders {
        std::fs::create_dir_all(project_dir.join(folder)).unwrap();
    }
    // Writes the config and gives the whole project to the test user.
    let project = home.project(name, toml);
    let up = home.run(kvmx(), &project, &["up"]);
    if !up.status.success() {
        let _ = home.run(kvmx(), &project, &["kill"]);
        panic!("kvmx up failed:\n{}", text(&up));
    }
    project
}

#[test]
fn the_guest_user_writes_into_every_writable_share_as_the_host_user() {
    let runtime = Runtime::get();
    let user = &runtime.user;
    assert_ne!(user.uid, 1000, "the test needs a host uid that is not 1000");
    let home = runtime.home("shares-user");
    let mut shares = String::new();
    for (id, kind) in GUEST_WRITES {
        shares.push_str(&format!(
            "\n[[shares]]\nid = \"{id}\"\nhost = \"host-{id}\"\nguest = \"/srv/{id}\"\n"
        ));
        if let Some(kind) = kind {
            shares.push_str(&format!("kind = \"{kind}\"\n"));
        }
    }
    let folders: Vec<String> = GUEST_WRITES
        .iter()
        .map(|(id, _)| format!("host-{id}"))
        .collect();
    let _slot = Slot::take();
    let project = up_as_the_user(&home, "owners", &debian_toml(&shares), &folders);
    let _kill = KillOnDrop {
        home: &home,
        project: &project,
    };

    let ids = run_ok(&home, &project, &["ssh", "--", "id -u; id -g"]);
    assert_eq!(ids, format!("{}\n{}\n", user.uid, user.gid));
    let shares: serde_json::Value =
        serde_json::from_str(&run_ok(&home, &project, &["shares", "--json"])).unwrap();
    let default = shares
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "default")
        .unwrap();
    assert_eq!(default["kind"], "virtiofs", "{shares}");

    // Every kind is tried before the test fails, so a failure names them all.
    let mut problems = Vec::new();
    for (id, kind) in GUEST_WRITES {
        let kind = kind.unwrap_or("default-kind");
        let written = home.run(
            kvmx(),
            &project,
            &[
                "ssh",
                "--",
                &format!("echo from {id} > /srv/{id}/from-guest"),
            ],
        );
        if !written.status.success() {
            problems.push(format!(
                "{kind}: the guest user cannot write: {}",
                text(&written)
            ));
            continue;
        }
        let file = project.join(format!("host-{id}/from-guest"));
        let contents = std::fs::read_to_string(&file).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        if contents != format!("from {id}\n") || (meta.uid(), meta.gid()) != (user.uid, user.gid) {
            problems.push(format!(
                "{kind}: the host has {contents:?} owned by {}:{}",
                meta.uid(),
                meta.gid()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    run_ok(&home, &project, &["stop"]);
}

#[test]
#[ignore = "a plain user's sshfs needs /dev/fuse open to all (mode 0666, as Debian's udev makes it); the build machines have it 0600"]
fn the_host_user_writes_into_the_guest_users_home_through_sshfs() {
    let runtime = Runtime::get();
    let user = &runtime.user;
    let home = runtime.home("sshfs-user");
    let shares = "\n[[shares]]\nid = \"back\"\nhost = \"guest-home\"\nguest = \"/home/user\"\nkind = \"sshfs\"\n";
    let _slot = Slot::take();
    let project = up_as_the_user(&home, "back", &debian_toml(shares), &["guest-home".into()]);
    let _kill = KillOnDrop {
        home: &home,
        project: &project,
    };
    // As the test user: a FUSE mount is its owner's alone.
    let written = home.run(
        Utf8Path::new("/bin/sh"),
        &project,
        &["-c", "echo from the host > guest-home/from-host"],
    );
    assert!(
        written.status.success(),
        "the host user cannot write through sshfs:\n{}",
        text(&written)
    );
    let owner = run_ok(
        &home,
        &project,
        &["ssh", "--", "stat -c '%u %g' ~/from-host; cat ~/from-host"],
    );
    assert_eq!(owner, format!("{} {}\nfrom the host\n", user.uid, user.gid));
    run_ok(&home, &project, &["stop"]);
}
