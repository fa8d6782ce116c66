//! Template-based VMs and disposables, end to end with Debian guests built
//! by kvmx itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::guest::{debian_vm, run_err, run_ok};
use crate::{Sandbox, output_text};

/// A registered Debian VM project to serve as a template.
fn template(sandbox: &Sandbox, name: &str, extra: &str) -> PathBuf {
    let project = sandbox.dir(name);
    let init = sandbox.kvmx_in(&project).arg("init").output().unwrap();
    assert!(init.status.success(), "{init:?}");
    debian_vm(sandbox, name, extra)
}

/// The names in one of kvmx's folders (data or run).
fn names_in(sandbox: &Sandbox, folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sandbox.root().join("kvmx").join(folder))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Nothing of any disposable is left in kvmx's data and runtime folders.
fn assert_no_disposables(sandbox: &Sandbox) {
    for folder in ["data", "run"] {
        let names = names_in(sandbox, folder);
        assert!(
            names.iter().all(|name| !name.starts_with("disp-")),
            "disposables left in {folder}: {names:?}"
        );
    }
}

#[test]
fn a_template_based_vm_starts_fresh_and_keeps_its_home() {
    let sandbox = Sandbox::new();
    let tmpl = template(&sandbox, "tmpl", "");
    run_ok(&sandbox, &tmpl, &["up"]);
    run_ok(
        &sandbox,
        &tmpl,
        &["ssh", "--", "sudo touch /etc/template-v1"],
    );
    run_ok(&sandbox, &tmpl, &["stop"]);

    let app = template(
        &sandbox,
        "app",
        "\n[template]\nname = \"tmpl\"\nprivate_size = \"512M\"\n",
    );
    run_ok(&sandbox, &app, &["up"]);
    run_ok(&sandbox, &app, &["ssh", "--", "test -e /etc/template-v1"]);
    run_ok(
        &sandbox,
        &app,
        &["ssh", "--", "sudo touch /scratch && touch ~/kept"],
    );
    // The template cannot start while a VM runs on its image.
    let refused = run_err(&sandbox, &tmpl, &["up"]);
    assert!(refused.contains("app"), "{refused}");
    run_ok(&sandbox, &app, &["stop"]);

    // An update of the template reaches the dependant at its next start.
    run_ok(&sandbox, &tmpl, &["up"]);
    run_ok(
        &sandbox,
        &tmpl,
        &["ssh", "--", "sudo touch /etc/template-v2"],
    );
    let refused = run_err(&sandbox, &app, &["up"]);
    assert!(refused.contains("tmpl is running"), "{refused}");
    run_ok(&sandbox, &tmpl, &["stop"]);

    run_ok(&sandbox, &app, &["up"]);
    let seen = run_ok(
        &sandbox,
        &app,
        &[
            "ssh",
            "--",
            "ls /scratch ~/kept /etc/template-v2 2>&1; findmnt -no SOURCE /home",
        ],
    );
    assert!(seen.contains("cannot access '/scratch'"), "{seen}");
    assert!(seen.contains("/home/user/kept"), "{seen}");
    assert!(seen.contains("/etc/template-v2"), "{seen}");
    assert!(
        seen.contains("/dev/vd"),
        "the private disk is on /home: {seen}"
    );

    let refused = run_err(&sandbox, &tmpl, &["destroy", "--yes"]);
    assert!(refused.contains("app"), "{refused}");
    run_ok(&sandbox, &app, &["stop"]);
    run_ok(&sandbox, &app, &["destroy", "--yes"]);
    assert!(
        sandbox.root().join("kvmx/data/tmpl/box.img").exists(),
        "destroying a dependant keeps its template's image"
    );
}

/// `kvmx disposable tmpl -- COMMAND` started in the background, once its
/// command has printed `ready`.
fn disposable_running(sandbox: &Sandbox, tmpl: &Path, command: &str) -> Child {
    let mut child = sandbox
        .kvmx_process(tmpl)
        .args(["disposable", "tmpl", "--", command])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

/// Whether a process has ended (a zombie that no reaper collected
/// counts).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

/// The pid of the one disposable's QEMU.
fn disposable_qemu(sandbox: &Sandbox) -> i32 {
    let name = names_in(sandbox, "run")
        .into_iter()
        .find(|name| name.starts_with("disp-"))
        .expect("a disposable runs");
    let pid = std::fs::read_to_string(sandbox.root().join("kvmx/run").join(name).join("qemu.pid"))
        .unwrap();
    pid.trim().parse().unwrap()
}

#[test]
fn disposables_run_once_and_leave_nothing_behind() {
    let sandbox = Sandbox::new();
    let tmpl = template(&sandbox, "tmpl", "");
    run_ok(&sandbox, &tmpl, &["up"]);
    run_ok(&sandbox, &tmpl, &["stop"]);

    // The command's status comes back (its words an argv, as they were
    // given); the disposable is gone after.
    let exit = sandbox
        .kvmx_in(&tmpl)
        .args(["disposable", "tmpl", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(exit.status.code(), Some(7), "{exit:?}");
    assert_no_disposables(&sandbox);

    // Ctrl-C to kvmx erases it.
    let mut child = disposable_running(&sandbox, &tmpl, "echo ready; sleep 600");
    let qemu = disposable_qemu(&sandbox);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_no_disposables(&sandbox);
    assert!(gone(qemu), "QEMU is gone");

    // A guest that dies under the command: kvmx says so and erases it.
    let child = disposable_running(&sandbox, &tmpl, "echo ready; sleep 600");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(disposable_qemu(&sandbox)),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert_no_disposables(&sandbox);

    // kvmx itself killed: the next kvmx erases what it left.
    let mut child = disposable_running(&sandbox, &tmpl, "echo ready; sleep 600");
    let qemu = disposable_qemu(&sandbox);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        names_in(&sandbox, "data")
            .iter()
            .any(|n| n.starts_with("disp-"))
    );
    let cleanup = run_ok(&sandbox, &tmpl, &["disposable", "--cleanup", "--json"]);
    assert!(cleanup.contains("disp-"), "{cleanup}");
    assert_no_disposables(&sandbox);
    assert!(gone(qemu), "QEMU is gone");

    // Siblings restored from the warm state that the first disposable saved
    // (a while ago by now) share no random state, and have the host's time.
    let probe = "cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1; date +%s";
    let sibling = || {
        let output = sandbox
            .kvmx_in(&tmpl)
            .args(["disposable", "tmpl", "--", probe])
            .output()
            .unwrap();
        let host_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (stdout, stderr) = output_text(&output);
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("restoring the warm state"), "{stderr}");
        let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
        let guest_now: u64 = lines[2].trim().parse().unwrap();
        assert!(
            host_now.abs_diff(guest_now) <= 5,
            "guest clock {guest_now}, host clock {host_now}"
        );
        (lines[0].clone(), lines[1].clone())
    };
    let (uuid_a, random_a) = sibling();
    let (uuid_b, random_b) = sibling();
    assert_ne!(uuid_a, uuid_b, "restored siblings share their RNG state");
    assert_ne!(
        random_a, random_b,
        "restored siblings share their RNG state"
    );
    assert_no_disposables(&sandbox);

    // Without network the guest cannot reach the host; with it, it can.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "timeout 10 bash -c 'echo > /dev/tcp/10.0.2.2/{port}' 2>/dev/null && echo reached || echo blocked"
    );
    let cut_off = run_ok(
        &sandbox,
        &tmpl,
        &["disposable", "--no-network", "tmpl", "--", &probe],
    );
    assert_eq!(cut_off, "blocked\n");
    let connected = run_ok(&sandbox, &tmpl, &["disposable", "tmpl", "--", &probe]);
    assert_eq!(connected, "reached\n");

    // A script, with a shared folder.
    let shared = sandbox.dir("shared");
    std::fs::write(shared.join("input.txt"), "from the host\n").unwrap();
    let script = sandbox.root().join("script.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat /srv/in/input.txt\necho \"$1\"\nexit 4\n",
    )
    .unwrap();
    let share = format!("{}:/srv/in", shared.display());
    let output = sandbox
        .kvmx_in(&tmpl)
        .args(["disposable-run", "--share", &share, "tmpl"])
        .arg(&script)
        .arg("an argument")
        .output()
        .unwrap();
    let (stdout, _) = output_text(&output);
    assert_eq!(stdout, "from the host\nan argument\n");
    assert_eq!(output.status.code(), Some(4));

    // A named disposable stays up until it is stopped, then is erased.
    run_ok(&sandbox, &tmpl, &["disposable-name", "tmpl", "scratch"]);
    assert_eq!(
        run_ok(&sandbox, &tmpl, &["ssh", "scratch", "--", "hostname"]),
        "tmpl\n"
    );
    run_ok(&sandbox, &tmpl, &["stop", "scratch"]);
    assert!(!sandbox.root().join("kvmx/data/scratch").exists());
    assert_no_disposables(&sandbox);
}

/// `kvmx disposable tmpl -- WORDS` with `stdin`; its output.
fn disposable_with_input(
    sandbox: &Sandbox,
    tmpl: &Path,
    words: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> std::process::Output {
    use std::io::Write;
    let mut child = sandbox
        .kvmx_process(tmpl)
        .args(["disposable", "tmpl", "--"])
        .args(words)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&bytes).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

#[test]
fn a_warm_disposable_runs_its_command_through_the_agent_or_else_ssh() {
    let sandbox = Sandbox::new();
    let tmpl = template(&sandbox, "tmpl", "");
    run_ok(&sandbox, &tmpl, &["up"]);
    run_ok(&sandbox, &tmpl, &["stop"]);
    // The first one boots, installs the agent and saves the state.
    run_ok(&sandbox, &tmpl, &["disposable", "tmpl", "--", "true"]);

    // Binary stdin through and back, stderr apart, the status, and no
    // SSH session around the command.
    let input: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let command = "cat; echo \"err ssh=${SSH_CONNECTION:-none}\" >&2; exit 3";
    let output = disposable_with_input(&sandbox, &tmpl, &[command], &input, &[]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(output.stdout == input, "stdin came back changed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("restoring the warm state"), "{stderr}");
    assert!(
        stderr.contains("err ssh=none"),
        "the command ran over SSH: {stderr}"
    );

    // As the guest user, in their home, with a login's environment.
    let seen = run_ok(
        &sandbox,
        &tmpl,
        &[
            "disposable",
            "tmpl",
            "--",
            "sh",
            "-c",
            "id -un; pwd; echo \"$HOME $USER $LANG\"; echo \"$PATH\"; id -Gn",
        ],
    );
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "user", "{seen}");
    assert_eq!(lines[1], "/home/user", "{seen}");
    assert!(lines[2].starts_with("/home/user user "), "{seen}");
    assert!(lines[3].contains("/usr/bin"), "{seen}");
    assert!(lines[4].contains("sudo"), "the user's groups: {seen}");

    // A death by signal is 128 + N.
    let killed = sandbox
        .kvmx_in(&tmpl)
        .args(["disposable", "tmpl", "--", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), Some(143), "{killed:?}");

    // SIGTERM to kvmx reaches the guest command, which ends as it likes.
    let mut child = sandbox
        .kvmx_process(&tmpl)
        .args(["disposable", "tmpl", "--"])
        .arg("trap 'echo got-term; exit 5' TERM; echo ready; sleep 600 & wait")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert_no_disposables(&sandbox);

    // Without the agent (none on the host), the same over SSH.
    let without = [("KVMX_AGENT", "/nonexistent/kvmx-agent")];
    let output = disposable_with_input(&sandbox, &tmpl, &["true"], b"", &without);
    assert!(output.status.success(), "{output:?}");
    let output = disposable_with_input(&sandbox, &tmpl, &[command], b"over ssh", &without);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert_eq!(output.stdout, b"over ssh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("restoring the warm state"), "{stderr}");
    assert!(
        !stderr.contains("err ssh=none"),
        "SSH carried the command: {stderr}"
    );
    assert_no_disposables(&sandbox);
}
