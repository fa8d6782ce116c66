//! What goes wrong reaching a guest, and how kvmx says it: each error names
//! the value at fault and says what to do. One real Debian guest serves
//! every case that needs one.

use std::path::Path;

use crate::guest::{debian_vm, run_err};
use crate::{Sandbox, output_text};

fn assert_says(text: &str, words: &[&str]) {
    for word in words {
        assert!(text.contains(word), "{word:?} is missing from:\n{text}");
    }
}

#[test]
fn bad_input_is_named_before_any_guest_runs() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("plain");
    std::fs::write(
        project.join("kvmx.toml"),
        "[ssh]\nenabled = false\n\n[[shares]]\nid = \"code\"\nhost = \"missing\"\nguest = \"/srv/code\"\n",
    )
    .unwrap();
    // SSH switched off in the config.
    let stderr = run_err(&sandbox, &project, &["ssh", "--", "true"]);
    assert_says(
        &stderr,
        &[
            "SSH is disabled",
            "ssh.enabled = false",
            "hint:",
            "kvmx restart",
        ],
    );
    // A share's host folder that does not exist: refused before the image
    // is built.
    let stderr = run_err(&sandbox, &project, &["up"]);
    assert_says(
        &stderr,
        &["share code", "missing", "does not exist", "shares.host"],
    );
    assert!(!stderr.contains("building"), "{stderr}");
    // A script that is not there.
    let stderr = run_err(&sandbox, &project, &["run", ".", "no-such-script.sh"]);
    assert_says(
        &stderr,
        &["no-such-script.sh", "hint:", "script on the host"],
    );
}

#[test]
fn guest_side_failures_say_what_happened() {
    let sandbox = Sandbox::new();
    // A mount point that is a file in the guest.
    let project = debian_vm(
        &sandbox,
        "trouble",
        "\n[[shares]]\nid = \"onfile\"\nhost = \"src\"\nguest = \"/etc/hostname\"\n\n\
         [provision]\nrsync = [{ host = \"src/\", guest = \"/srv/src/\" }]\n",
    );
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("src/file.txt"), "data\n").unwrap();
    let stderr = run_err(&sandbox, &project, &["up"]);
    assert_says(
        &stderr,
        &["share onfile", "/etc/hostname", "is a file", "shares.guest"],
    );
    let ssh = |args: &[&str]| {
        let mut all = vec!["ssh", "--"];
        all.extend(args);
        let output = sandbox.kvmx_in(&project).args(&all).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        output_text(&output).0
    };
    assert_eq!(ssh(&["hostname"]), "trouble\n", "the VM runs on");

    // `kvmx copy`: scp's progress meter on a terminal, nothing otherwise.
    let piped = sandbox
        .kvmx_in(&project)
        .args(["copy", "src/file.txt", ":/tmp/"])
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    assert_eq!(output_text(&piped).0, "");
    let kvmx = assert_cmd::cargo::cargo_bin("kvmx");
    let mut script = std::process::Command::new("script");
    script
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} copy src/file.txt :/tmp/again.txt",
            kvmx.display()
        ))
        .arg("/dev/null");
    let shown = sandbox_env(&sandbox, &project, script).output().unwrap();
    assert!(shown.status.success(), "{shown:?}");
    assert_says(&output_text(&shown).0, &["file.txt", "100%"]);

    // rsync missing in the guest.
    ssh(&["sudo mv /usr/bin/rsync /usr/bin/rsync.gone"]);
    for args in [&["rsync-to", "src", "/tmp/src"][..], &["provision"]] {
        let stderr = run_err(&sandbox, &project, args);
        assert_says(
            &stderr,
            &["rsync is not installed in the guest", "apt-get install"],
        );
    }
    ssh(&["sudo mv /usr/bin/rsync.gone /usr/bin/rsync"]);

    // sshd stopped, then back with new host keys: the guest was re-keyed
    // behind kvmx's back.
    ssh(&[
        "sudo systemd-run --on-active=20 sh -c 'rm -f /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl start ssh' >/dev/null 2>&1 && sudo systemctl stop ssh",
    ]);
    // The VM's master connection outlives sshd (and its host keys): end it,
    // so that the next command must log in anew.
    kvmx_provision::ssh::end_master(
        &camino::Utf8PathBuf::from_path_buf(sandbox.root().join("kvmx/run/trouble")).unwrap(),
    );
    let stderr = run_err(&sandbox, &project, &["ssh", "--", "true"]);
    assert_says(&stderr, &["does not answer SSH", "hint:", "kvmx console"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let rekeyed = loop {
        let stderr = run_err(&sandbox, &project, &["ssh", "--", "true"]);
        if !stderr.contains("does not answer SSH") || std::time::Instant::now() > deadline {
            break stderr;
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    };
    assert_says(
        &rekeyed,
        &[
            "host key",
            "differs",
            "known_hosts",
            "hint:",
            "ssh-keyscan",
            "kvmx recycle",
        ],
    );

    // Not running at all.
    let kill = sandbox.kvmx_in(&project).arg("kill").output().unwrap();
    assert!(kill.status.success(), "{kill:?}");
    let stderr = run_err(&sandbox, &project, &["ssh", "--", "true"]);
    assert_says(
        &stderr,
        &["trouble is not running", "hint: start it with `kvmx up`"],
    );
}

/// `command` with the sandbox's environment (as `Sandbox::kvmx_in` sets it).
fn sandbox_env(
    sandbox: &Sandbox,
    project: &Path,
    command: std::process::Command,
) -> std::process::Command {
    let template = sandbox.kvmx_process(project);
    let mut command = command;
    command.current_dir(project).env_clear();
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command
}
