//! End to end with a real Debian guest: `kvmx up` builds the image with
//! kvmx-image (the bootstrap is shared between tests and runs through a
//! cache folder in the target dir), boots it under TCG and reaches it over
//! SSH with the VM's key and its recorded host key.

use std::path::{Path, PathBuf};

use crate::{Sandbox, output_text, status};

/// A Debian VM project; `extra` is appended to its kvmx.toml.
pub(crate) fn debian_vm(sandbox: &Sandbox, name: &str, extra: &str) -> PathBuf {
    let project = sandbox.dir(name);
    std::fs::write(
        project.join("kvmx.toml"),
        format!(
            "[hardware]\nmemory = \"1G\"\ncpus = 2\naccelerator = \"tcg\"\n\n\
             [image]\nsize = \"3G\"\n\n[create]\npackages = [\"sshfs\", \"cifs-utils\", \"nfs-common\"]\n\n[supervise]\nboot_timeout = 900\nshutdown_timeout = 120\n{extra}"
        ),
    )
    .unwrap();
    project
}

/// `kvmx ARGS` that must fail; returns its stderr.
pub(crate) fn run_err(sandbox: &Sandbox, project: &Path, args: &[&str]) -> String {
    let output = sandbox.kvmx_in(project).args(args).output().unwrap();
    let (stdout, stderr) = output_text(&output);
    assert!(
        !output.status.success(),
        "kvmx {args:?} should have failed:\n{stdout}\n{stderr}"
    );
    stderr
}

pub(crate) fn run_ok(sandbox: &Sandbox, project: &Path, args: &[&str]) -> String {
    let output = sandbox.kvmx_in(project).args(args).output().unwrap();
    let (stdout, stderr) = output_text(&output);
    assert!(
        output.status.success(),
        "kvmx {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn a_debian_guest_lives_its_whole_life() {
    let sandbox = Sandbox::new();
    let project = debian_vm(&sandbox, "life", "");
    // The default accelerator, with no KVMX_ACCEL: `auto` must pick what
    // boots here (TCG on a host whose /dev/kvm cannot run stock kernels).
    let config = project.join("kvmx.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("accelerator = \"tcg\"", "accelerator = \"auto\""),
    )
    .unwrap();
    // No image yet: up builds it, boots it and waits for SSH.
    let up: serde_json::Value =
        serde_json::from_str(&run_ok(&sandbox, &project, &["up", "--json"])).unwrap();
    assert_eq!(up["started"], true);
    if up["accelerator"] == "tcg" {
        let note = up["accelerator_note"].as_str().unwrap_or_default();
        assert!(!note.is_empty(), "auto chose TCG without a reason: {up}");
    }
    assert_eq!(status(&sandbox, &project)["state"], "running");

    run_ok(&sandbox, &project, &["suspend"]);
    assert_eq!(status(&sandbox, &project)["state"], "paused");
    run_ok(&sandbox, &project, &["resume"]);
    assert_eq!(status(&sandbox, &project)["state"], "running");

    assert_eq!(run_ok(&sandbox, &project, &["ssh", "--", "true"]), "");
    assert_eq!(
        run_ok(&sandbox, &project, &["ssh", "--", "hostname"]).trim(),
        "life"
    );
    let exit = sandbox
        .kvmx_in(&project)
        .args(["ssh", "--", "exit", "3"])
        .output()
        .unwrap();
    assert_eq!(exit.status.code(), Some(3));

    // The guest powers off by ACPI.
    let stop: serde_json::Value =
        serde_json::from_str(&run_ok(&sandbox, &project, &["stop", "--json"])).unwrap();
    assert_eq!(stop["stopped_by"], "acpi-powerdown");
    assert_eq!(status(&sandbox, &project)["state"], "stopped");

    // The second start boots the same image.
    let again: serde_json::Value =
        serde_json::from_str(&run_ok(&sandbox, &project, &["up", "--json"])).unwrap();
    assert_eq!(again["started"], true);
    run_ok(&sandbox, &project, &["kill"]);
    assert_eq!(status(&sandbox, &project)["state"], "stopped");
    run_ok(&sandbox, &project, &["destroy", "--yes"]);
    assert!(!sandbox.root().join("kvmx/data/life").exists());
}

#[test]
fn provisioning_hooks_scripts_and_shares_in_a_debian_guest() {
    let sandbox = Sandbox::new();
    let project = debian_vm(
        &sandbox,
        "work",
        "\n[[shares]]\nid = \"code\"\nhost = \"src\"\nguest = \"/srv/code\"\n\n\
         [provision]\nrsync = [{ host = \"puppet/\", guest = \"/etc/puppet/\" }]\n\
         command = \"cat /etc/puppet/role && echo provisioned | sudo tee -a /srv/code/provision.log >/dev/null\"\nalways = true\n\n\
         [hooks]\nstartup_command = \"echo started > /tmp/started\"\n\
         pre_poweroff_command = \"mkdir -p /tmp/out && hostname > /tmp/out/name\"\n\
         poweroff_rsync = [{ id = \"out\", host = \"back\", guest = \"/tmp/out\" }]\n\n\
         [ssh]\nenv = { GREETING = \"hi there\" }\n",
    );
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::create_dir_all(project.join("puppet")).unwrap();
    std::fs::write(project.join("puppet/role"), "web\n").unwrap();
    std::fs::write(project.join("src/from-host.txt"), "from the host\n").unwrap();

    // First up: mounts the 9p share, runs the startup command, provisions.
    let up = sandbox.kvmx_in(&project).arg("up").output().unwrap();
    let (stdout, stderr) = output_text(&up);
    assert!(up.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("[work] web"),
        "provision output is prefixed:\n{stdout}"
    );
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/code/from-host.txt"]
        ),
        "from the host\n"
    );
    assert_eq!(
        run_ok(&sandbox, &project, &["ssh", "--", "cat", "/tmp/started"]),
        "started\n"
    );
    // ssh.env reaches commands in the guest.
    assert_eq!(
        run_ok(&sandbox, &project, &["ssh", "--", "echo \"$GREETING\""]),
        "hi there\n"
    );
    // The guest writes through the share.
    assert_eq!(
        std::fs::read_to_string(project.join("src/provision.log")).unwrap(),
        "provisioned\n"
    );
    let status = status(&sandbox, &project);
    assert!(
        status["last_provisioned"]["at"].as_u64().is_some(),
        "{status}"
    );

    // A script with arguments; its exit status comes back.
    let script = sandbox.root().join("script.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$# args: $1|$2\"\nid -un\nexit 4\n",
    )
    .unwrap();
    let run = sandbox
        .kvmx_in(&project)
        .args(["run", "."])
        .arg(&script)
        .args(["one", "two words"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(4), "{run:?}");
    assert_eq!(output_text(&run).0, "2 args: one|two words\nuser\n");
    let as_root = sandbox
        .kvmx_in(&project)
        .args(["run", ".", "--root"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(output_text(&as_root).0.ends_with("root\n"));
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "ls /tmp/kvmx-run.* 2>/dev/null | wc -l"]
        )
        .trim(),
        "0"
    );

    // A failing provision command stops with its exit status.
    let toml = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    std::fs::write(
        project.join("kvmx.toml"),
        toml.replace("&& echo provisioned", "&& exit 5 && echo provisioned"),
    )
    .unwrap();
    let failed = sandbox.kvmx_in(&project).arg("provision").output().unwrap();
    assert_eq!(failed.status.code(), Some(5), "{failed:?}");
    std::fs::write(project.join("kvmx.toml"), &toml).unwrap();

    // Stop: the pre-poweroff command runs and its folder comes back.
    run_ok(&sandbox, &project, &["stop"]);
    assert_eq!(
        std::fs::read_to_string(project.join("back/name")).unwrap(),
        "work\n"
    );

    // provision.always: the next up provisions again.
    run_ok(&sandbox, &project, &["up"]);
    assert_eq!(
        std::fs::read_to_string(project.join("src/provision.log")).unwrap(),
        "provisioned\nprovisioned\n"
    );
    run_ok(&sandbox, &project, &["kill"]);
}

#[test]
fn recycle_builds_a_fresh_vm_and_provisions_it() {
    let sandbox = Sandbox::new();
    let project = debian_vm(
        &sandbox,
        "cycle",
        "\n[provision]\ncommand = \"touch /home/user/provisioned\"\n",
    );
    run_ok(&sandbox, &project, &["up"]);
    run_ok(
        &sandbox,
        &project,
        &["ssh", "--", "touch", "/home/user/old-state"],
    );
    run_ok(&sandbox, &project, &["recycle", "--yes"]);
    assert_eq!(status(&sandbox, &project)["state"], "running");
    let files = run_ok(&sandbox, &project, &["ssh", "--", "ls", "/home/user"]);
    assert_eq!(
        files, "provisioned\n",
        "a recycled VM starts from a fresh image"
    );
    run_ok(&sandbox, &project, &["kill"]);
}

#[test]
fn virtiofs_shares_and_live_mounts() {
    let sandbox = Sandbox::new();
    let project = debian_vm(
        &sandbox,
        "folders",
        "\n[[shares]]\nid = \"fast\"\nhost = \"fast\"\nguest = \"/srv/fast\"\nkind = \"virtiofs\"\n\n\
         [[shares]]\nid = \"rev\"\nhost = \"rev\"\nguest = \"/srv/rev\"\nkind = \"reverse-sshfs\"\n\n\
         [[shares]]\nid = \"etc\"\nhost = \"guest-etc\"\nguest = \"/etc\"\nkind = \"sshfs\"\nread_only = true\n\n\
         [[shares]]\nid = \"win\"\nhost = \"smb\"\nguest = \"/srv/smb\"\nkind = \"smb\"\n\n\
         [[shares]]\nid = \"net\"\nhost = \"nfs\"\nguest = \"/srv/nfs\"\nkind = \"nfs\"\n\n\
         [[shares]]\nid = \"netro\"\nhost = \"nfs-ro\"\nguest = \"/srv/nfs-ro\"\nkind = \"nfs\"\nread_only = true\n",
    );
    std::fs::create_dir_all(project.join("nfs")).unwrap();
    std::fs::write(project.join("nfs/over-nfs.txt"), "nfs\n").unwrap();
    std::fs::create_dir_all(project.join("nfs-ro")).unwrap();
    std::fs::write(project.join("nfs-ro/locked.txt"), "read me\n").unwrap();
    std::fs::create_dir_all(project.join("smb")).unwrap();
    std::fs::write(project.join("smb/over-smb.txt"), "samba\n").unwrap();
    std::fs::create_dir_all(project.join("rev")).unwrap();
    std::fs::write(project.join("rev/over-ssh.txt"), "reverse\n").unwrap();
    std::fs::create_dir_all(project.join("guest-etc")).unwrap();
    std::fs::create_dir_all(project.join("fast")).unwrap();
    std::fs::write(project.join("fast/at-start.txt"), "virtiofs\n").unwrap();
    let live = sandbox.dir("live-folder");
    std::fs::write(live.join("hot.txt"), "plugged\n").unwrap();

    run_ok(&sandbox, &project, &["up"]);
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/fast/at-start.txt"]
        ),
        "virtiofs\n"
    );
    // Writes from the guest land on the host.
    run_ok(
        &sandbox,
        &project,
        &["ssh", "--", "echo back | sudo tee /srv/fast/from-guest.txt"],
    );
    assert_eq!(
        std::fs::read_to_string(project.join("fast/from-guest.txt")).unwrap(),
        "back\n"
    );
    // Over SSH: a host folder in the guest, and a guest folder on the host.
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/rev/over-ssh.txt"]
        ),
        "reverse\n"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("guest-etc/hostname")).unwrap(),
        "folders\n"
    );
    // QEMU's own SMB server.
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/smb/over-smb.txt"]
        ),
        "samba\n"
    );

    // NFS from kvmx-nfsd: both ways, and a read-only share refuses writes.
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/nfs/over-nfs.txt"]
        ),
        "nfs\n"
    );
    run_ok(
        &sandbox,
        &project,
        &[
            "ssh",
            "--",
            "mkdir /srv/nfs/made && echo guest > /srv/nfs/made/from-guest.txt",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(project.join("nfs/made/from-guest.txt")).unwrap(),
        "guest\n"
    );
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/nfs-ro/locked.txt"]
        ),
        "read me\n"
    );
    let refused = sandbox
        .kvmx_in(&project)
        .args(["ssh", "--", "echo no > /srv/nfs-ro/locked.txt"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        output_text(&refused).1.contains("Read-only file system"),
        "{refused:?}"
    );
    // The server refuses too, not only the guest's read-only mount.
    let remounted = sandbox
        .kvmx_in(&project)
        .args([
            "ssh",
            "--",
            "sudo mount -o remount,rw /srv/nfs-ro && echo no > /srv/nfs-ro/locked.txt",
        ])
        .output()
        .unwrap();
    assert!(!remounted.status.success(), "{remounted:?}");
    assert_eq!(
        std::fs::read_to_string(project.join("nfs-ro/locked.txt")).unwrap(),
        "read me\n"
    );

    // A folder appears in the running guest, and goes again.
    run_ok(
        &sandbox,
        &project,
        &["mount", live.to_str().unwrap(), "/srv/live"],
    );
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "cat", "/srv/live/hot.txt"]
        ),
        "plugged\n"
    );
    let shares: serde_json::Value =
        serde_json::from_str(&run_ok(&sandbox, &project, &["shares", "--json"])).unwrap();
    assert_eq!(shares[4]["kind"], "nfs");
    assert_eq!(shares[6]["guest"], "/srv/live");
    assert_eq!(shares[6]["when"], "live");
    run_ok(&sandbox, &project, &["umount", "/srv/live"]);
    assert_eq!(
        run_ok(&sandbox, &project, &["ssh", "--", "ls /srv/live | wc -l"]).trim(),
        "0"
    );
    let nfsd = nfs_server_pid(&sandbox, "folders", "net");
    run_ok(&sandbox, &project, &["stop"]);
    assert!(
        !project.join("guest-etc/hostname").exists(),
        "the host mount ends with the VM"
    );
    // Gone, or a zombie that nobody reaped yet.
    let state = std::fs::read_to_string(format!("/proc/{nfsd}/stat")).unwrap_or_default();
    assert!(
        state.is_empty()
            || state
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        "the NFS server ends with the VM: {state}"
    );
}

/// The pid of the NFS server of share `id`, from the VM's runtime folder.
fn nfs_server_pid(sandbox: &Sandbox, vm: &str, id: &str) -> u64 {
    let record = sandbox
        .root()
        .join("kvmx/run")
        .join(vm)
        .join(format!("nfs-{id}.json"));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    record["pid"].as_u64().unwrap()
}
