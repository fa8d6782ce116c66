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
    // The image has GRUB, but the copy of its kernel kvmx keeps beside it
    // boots, uncompressed, through its PVH entry.
    let data = sandbox.root().join("kvmx/data/life");
    let pid = status(&sandbox, &project)["pid"].as_i64().unwrap();
    let qemu = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = qemu.split(|&b| b == 0).collect();
    let kernel = args
        .iter()
        .position(|a| *a == b"-kernel")
        .map(|i| args[i + 1]);
    let pvh = data.join("box.img.vmlinuz.pvh");
    assert_eq!(kernel, Some(pvh.to_str().unwrap().as_bytes()));
    assert!(data.join("box.img").exists() && data.join("box.img.initrd").exists());

    run_ok(&sandbox, &project, &["suspend"]);
    assert_eq!(status(&sandbox, &project)["state"], "paused");
    run_ok(&sandbox, &project, &["resume"]);
    assert_eq!(status(&sandbox, &project)["state"], "running");

    assert_eq!(run_ok(&sandbox, &project, &["ssh", "--", "true"]), "");
    assert_eq!(
        run_ok(&sandbox, &project, &["ssh", "--", "hostname"]).trim(),
        "life"
    );
    // The boot tuning holds in a booted guest: the blacklisted modules
    // (networkd's nl80211 lookup used to pull in cfg80211) stay out, a
    // masked unit stays off, and `modprobe` still loads one by hand.
    let tuning = run_ok(
        &sandbox,
        &project,
        &[
            "ssh",
            "--",
            "lsmod | grep -E '^(cfg80211|floppy|pcspkr|kvm_amd|kvm_intel) ' ; \
             systemctl is-enabled apt-daily.timer; \
             sudo modprobe pcspkr && lsmod | grep -c '^pcspkr '",
        ],
    );
    assert_eq!(tuning, "masked\n1\n");
    let exit = sandbox
        .kvmx_in(&project)
        .args(["ssh", "--", "exit", "3"])
        .output()
        .unwrap();
    assert_eq!(exit.status.code(), Some(3));

    // A new initrd in the guest (as a kernel update or update-initramfs
    // makes one; zeros are padding to the kernel's unpacker) is copied
    // beside the image as the guest stops, and the next boot uses it.
    let initrd = run_ok(
        &sandbox,
        &project,
        &[
            "ssh",
            "--",
            "sudo sh -c 'head -c 512 /dev/zero >> \"$(readlink -f /initrd.img)\"' && stat -L -c %s /initrd.img",
        ],
    );
    let initrd_size: u64 = initrd.trim().parse().unwrap();

    // The guest powers off by ACPI.
    let stop: serde_json::Value =
        serde_json::from_str(&run_ok(&sandbox, &project, &["stop", "--json"])).unwrap();
    assert_eq!(stop["stopped_by"], "acpi-powerdown");
    assert_eq!(status(&sandbox, &project)["state"], "stopped");
    let copy = std::fs::metadata(data.join("box.img.initrd")).unwrap();
    assert_eq!(
        copy.len(),
        initrd_size,
        "the copy follows the guest's initrd"
    );

    // The second start boots the same image, with the new initrd.
    let again: serde_json::Value =
        serde_json::from_str(&run_ok(&sandbox, &project, &["up", "--json"])).unwrap();
    assert_eq!(again["started"], true);
    run_ok(&sandbox, &project, &["kill"]);
    assert_eq!(status(&sandbox, &project)["state"], "stopped");
    run_ok(&sandbox, &project, &["destroy", "--yes"]);
    assert!(!sandbox.root().join("kvmx/data/life").exists());
}

#[test]
fn up_after_a_killed_up_waits_until_the_guest_answers_ssh() {
    let sandbox = Sandbox::new();
    let project = debian_vm(&sandbox, "again", "");
    let mut first = sandbox
        .kvmx_process(&project)
        .arg("up")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1200);
    while status(&sandbox, &project)["state"] != "running" {
        assert!(std::time::Instant::now() < deadline, "QEMU never ran");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // kill -9 while the guest boots: QEMU runs on, and the next `up`
    // waits for SSH as a fresh one does, so `ssh` right after it works.
    first.kill().unwrap();
    first.wait().unwrap();
    run_ok(&sandbox, &project, &["up"]);
    assert_eq!(run_ok(&sandbox, &project, &["ssh", "--", "true"]), "");
    run_ok(&sandbox, &project, &["kill"]);
}

#[test]
fn foreach_runs_a_subcommand_on_two_guests_at_once() {
    let sandbox = Sandbox::new();
    for (name, upgrade) in [("fa", "echo upgraded-fa"), ("fb", "exit 3")] {
        run_ok(&sandbox, &sandbox.dir(name), &["init"]);
        debian_vm(
            &sandbox,
            name,
            &format!("\n[provision]\nupgrade_command = \"{upgrade}\"\n"),
        );
    }
    let root = sandbox.root().to_owned();
    let up = run_ok(
        &sandbox,
        &root,
        &["foreach", "--all", "-j", "2", "--", "up"],
    );
    assert!(up.contains("fa") && up.contains("fb"), "{up}");

    // Each line behind its VM's name, words kept as an argv.
    let names = run_ok(
        &sandbox,
        &root,
        &["foreach", "f?", "-j", "2", "--", "ssh", "--", "hostname"],
    );
    assert!(
        names.contains("[fa] fa\n") && names.contains("[fb] fb\n"),
        "{names}"
    );

    // The mass upgrade: one upgrade command fails, and so does foreach.
    let upgrade = sandbox
        .kvmx_in(&root)
        .args(["foreach", "--running", "--", "upgrade"])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&upgrade);
    assert_eq!(upgrade.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("[fa] upgraded-fa"), "{stdout}");
    assert!(stderr.contains("1 of 2 VMs failed: fb"), "{stderr}");
    let row = |vm: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(&format!("{vm} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("fa").contains(" ok "), "{stdout}");
    assert!(row("fb").contains(" failed "), "{stdout}");

    let stop: serde_json::Value = serde_json::from_str(&run_ok(
        &sandbox,
        &root,
        &["foreach", "--all", "--json", "--", "stop"],
    ))
    .unwrap();
    let results: Vec<&str> = stop
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["ok", "ok"], "{stop}");
    for name in ["fa", "fb"] {
        assert_eq!(status(&sandbox, &sandbox.dir(name))["state"], "stopped");
    }
}

#[test]
fn supervise_restarts_a_crashed_guest_and_leaves_a_stopped_one() {
    let sandbox = Sandbox::new();
    for name in ["sa", "sb"] {
        run_ok(&sandbox, &sandbox.dir(name), &["init"]);
        debian_vm(&sandbox, name, "manage = true\n");
    }
    let root = sandbox.root().to_owned();
    let once = run_ok(&sandbox, &root, &["supervise", "--once"]);
    assert!(
        once.contains("sa: started") && once.contains("sb: started"),
        "{once}"
    );
    let listed = run_ok(&sandbox, &root, &["list", "--json"]);
    assert!(listed.contains("\"supervised\": true"), "{listed}");

    let log_path = sandbox.root().join("supervise.log");
    let mut supervisor = sandbox
        .kvmx_process(&root)
        .args(["supervise", "--interval", "1"])
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = |text: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
        while !log().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in:\n{}",
                log()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };
    wait_for("supervising 2 VM(s)");

    // kill -9 of one QEMU: restarted.
    let sa = sandbox.dir("sa");
    let pid = status(&sandbox, &sa)["pid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("sa: crashed");
    wait_for("sa: started");
    assert_eq!(status(&sandbox, &sa)["state"], "running");

    // A deliberate stop: left stopped.
    let sb = sandbox.dir("sb");
    run_ok(&sandbox, &sb, &["stop"]);
    wait_for("sb: stopped on purpose");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(status(&sandbox, &sb)["state"], "stopped");

    // SIGTERM: the rest is powered off, then the supervisor ends.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(supervisor.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(supervisor.wait().unwrap().success(), "{}", log());
    assert!(log().contains("sa: powered off"), "{}", log());
    assert_eq!(status(&sandbox, &sa)["state"], "stopped");
}

#[test]
fn provisioning_hooks_scripts_and_shares_in_a_debian_guest() {
    let sandbox = Sandbox::new();
    let project = debian_vm(
        &sandbox,
        "work",
        "\n[[shares]]\nid = \"code\"\nhost = \"src\"\nguest = \"/srv/code\"\nkind = \"9p\"\n\n\
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

/// Kills the VM when the test ends, also when it fails half-way.
struct KilledAtEnd<'a>(&'a Sandbox, &'a Path);

impl Drop for KilledAtEnd<'_> {
    fn drop(&mut self) {
        let _ = self.0.kvmx_in(self.1).arg("kill").output();
    }
}

/// The running VM of `project`, opened through the libraries as an
/// embedding program would.
fn library_vm(sandbox: &Sandbox, project: &Path) -> kvmx_provision::Vm {
    let utf8 = |path: &Path| camino::Utf8PathBuf::from_path_buf(path.to_owned()).unwrap();
    let layout = kvmx_core::Layout::under(&utf8(&sandbox.root().join("kvmx")));
    let folder = utf8(project);
    kvmx_provision::Vm::find(&layout, Some(folder.as_str()), &folder)
        .unwrap()
        .vm
}

#[test]
fn guest_commands_keep_their_words_bytes_and_statuses() {
    use std::time::{Duration, Instant};

    use kvmx_provision::Error;
    use kvmx_provision::guest::CancelFlag;

    let sandbox = Sandbox::new();
    let project = debian_vm(&sandbox, "words", "");
    run_ok(&sandbox, &project, &["up"]);
    let _killed = KilledAtEnd(&sandbox, &project);

    // Several words after `--` are an argv: each arrives as it is.
    let exit = sandbox
        .kvmx_in(&project)
        .args(["ssh", "--", "sh", "-c", "exit 4"])
        .output()
        .unwrap();
    assert_eq!(exit.status.code(), Some(4), "{exit:?}");
    assert_eq!(
        run_ok(
            &sandbox,
            &project,
            &["ssh", "--", "printf", "%s\\n", "a b", "$HOME", "*", "it's"]
        ),
        "a b\n$HOME\n*\nit's\n"
    );
    // One word is a command line.
    assert_eq!(
        run_ok(&sandbox, &project, &["ssh", "--", "echo a | tr a b"]),
        "b\n"
    );
    // A command's own 255 is its status, not a failure of ssh.
    let own = sandbox
        .kvmx_in(&project)
        .args(["ssh", "--", "exit 255"])
        .output()
        .unwrap();
    assert_eq!(own.status.code(), Some(255), "{own:?}");
    assert_eq!(output_text(&own).1, "");

    let vm = library_vm(&sandbox, &project);
    let guest = vm.guest().unwrap();
    let socket = sandbox.root().join("kvmx/run/words/ssh.sock");
    assert!(socket.exists(), "the master connection's socket");

    // Bytes in and out, whatever they are.
    let input: Vec<u8> = (0..=255u8).chain(*b"\n\xff\xfe end").collect();
    let echoed = guest.exec(&["cat"]).stdin(input.clone()).output().unwrap();
    assert_eq!((echoed.code, &echoed.stdout), (0, &input));
    let mixed = guest
        .exec(&[
            "sh",
            "-c",
            "printf 'a\\377\\n'; printf 'e\\376' >&2; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(mixed.code, 3);
    assert_eq!(mixed.stdout, b"a\xff\n");
    assert_eq!(mixed.stderr, b"e\xfe");
    assert!(!mixed.stdout_truncated && !mixed.stderr_truncated);
    let own = guest.exec(&["sh", "-c", "exit 255"]).output().unwrap();
    assert_eq!(own.code, 255);
    // The cap keeps the start and says the rest was dropped.
    let big = guest
        .exec(&["head", "-c", "100000", "/dev/zero"])
        .output_cap(1000)
        .output()
        .unwrap();
    assert_eq!((big.stdout.len(), big.stdout_truncated), (1000, true));
    let env = guest
        .exec(&["printenv", "GREETING"])
        .env("GREETING", "a 'b' $c")
        .output()
        .unwrap();
    assert_eq!(env.stdout, b"a 'b' $c\n");
    // Streamed, chunk by chunk.
    struct Chunks(Vec<u8>);
    impl kvmx_provision::guest::ByteSink for Chunks {
        fn chunk(&mut self, _: kvmx_provision::guest::Stream, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }
    let mut chunks = Chunks(Vec::new());
    let code = guest.exec(&["seq", "1", "3"]).stream(&mut chunks).unwrap();
    assert_eq!((code, chunks.0.as_slice()), (0, &b"1\n2\n3\n"[..]));

    // A timeout and a cancel flag kill the command.
    let start = Instant::now();
    let timed_out = guest
        .exec(&["sleep", "61"])
        .timeout(Duration::from_secs(2))
        .output();
    assert!(
        matches!(timed_out, Err(Error::TimedOut { after, .. }) if after == Duration::from_secs(2)),
        "{timed_out:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let cancel = CancelFlag::new();
    let setter = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        setter.cancel();
    });
    let cancelled = guest.exec(&["sleep", "62"]).cancel(&cancel).output();
    assert!(
        matches!(cancelled, Err(Error::Cancelled { .. })),
        "{cancelled:?}"
    );
    // Neither command runs on in the guest.
    let left = guest
        .exec(&["for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null | grep -c '^sleep 6[12] $'"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout), "0\n", "{left:?}");
    // The master outlived them.
    assert_eq!(guest.exec(&["true"]).output().unwrap().code, 0);

    // end_master (which stop and kill call) ends it; commands then log in
    // alone, and the next Guest starts a new master.
    let master = master_pid(&sandbox, "words");
    let runtime =
        camino::Utf8PathBuf::from_path_buf(sandbox.root().join("kvmx/run/words")).unwrap();
    kvmx_provision::ssh::end_master(&runtime);
    assert!(!guest.target().master_alive());
    assert!(!socket.exists());
    assert!(ended(master), "the master ssh {master} still runs");
    assert_eq!(guest.exec(&["true"]).output().unwrap().code, 0);
    let guest = vm.guest().unwrap();
    assert!(guest.target().master_alive());

    // QEMU dies under a running command: a transport error, not a status.
    let pid = status(&sandbox, &project)["pid"].as_i64().unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    });
    let dropped = guest.exec(&["sleep", "60"]).output();
    killer.join().unwrap();
    assert!(
        matches!(dropped, Err(Error::Transport { .. })),
        "{dropped:?}"
    );
    let unreachable = guest.exec(&["true"]).output();
    assert!(
        matches!(unreachable, Err(Error::Transport { .. })),
        "{unreachable:?}"
    );

    // `kvmx kill` clears the run and the master's socket.
    run_ok(&sandbox, &project, &["kill"]);
    assert!(!socket.exists(), "the master's socket outlived the VM");
}

/// The pid of the ssh master process whose control socket is the VM's.
fn master_pid(sandbox: &Sandbox, vm: &str) -> u32 {
    let socket = sandbox.root().join(format!("kvmx/run/{vm}/ssh.sock"));
    let socket = socket.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let words: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                words.first().is_some_and(|w| w.ends_with(b"ssh"))
                    && words.contains(&format!("ControlPath={socket}").as_bytes())
                    && words.contains(&&b"ControlMaster=yes"[..])
            })
        })
        .expect("an ssh master for the VM")
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn ended(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        if stat.is_empty() || state.starts_with('Z') {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
