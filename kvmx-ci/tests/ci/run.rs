//! `kvmx-ci run` end to end: a local repository with SSH-signed commits
//! and a kvmx project inside; real image, real QEMU (TCG), real SSH.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::repo::{Repo, SshKey};
use crate::{Sandbox, output_text};

const PROJECT: &str = "[hardware]\nmemory = \"1G\"\ncpus = 2\naccelerator = \"tcg\"\n\n\
[image]\nsize = \"3G\"\n\n[supervise]\nboot_timeout = 900\nshutdown_timeout = 120\n\n\
[provision]\ncommand = \"echo provisioned >> ~/provisioned\"\n";

/// Prints how often the guest was provisioned.
const COUNT_PROVISIONS: &str = "echo \"provisioned $(wc -l < ~/provisioned) times\"\n";

fn job(repo: &Repo, signers: &Path, root: &str, fresh: &str) -> String {
    format!(
        "artifacts = [\"src/out/result.txt\"]\n\n[source]\nurl = \"{}\"\nbranch = \"main\"\nverify = \"ssh\"\n\
         allowed_signers = \"{}\"\ntrust_root = \"{root}\"\n\n\
         [vm]\nproject = \".\"\nfresh = \"{fresh}\"\n\n\
         [[step]]\nname = \"build\"\nrun = \"sh build.sh\"\ntimeout = \"10m\"\n",
        repo.dir.display(),
        signers.display()
    )
}

/// `kvmx-ci ARGS`: its exit code, stdout and stderr.
fn kvmx_ci(sandbox: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let output = sandbox.kvmx_ci().args(args).output().unwrap();
    let (stdout, stderr) = output_text(&output);
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

/// The last run of `demo`, from `status --json`.
fn last_run(sandbox: &Sandbox) -> serde_json::Value {
    let (code, stdout, stderr) = kvmx_ci(sandbox, &["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    status[0]["last"].clone()
}

/// Whether a QEMU of this sandbox runs.
fn qemu_runs(sandbox: &Sandbox) -> bool {
    let root = sandbox.root().to_str().unwrap();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
            let text = String::from_utf8_lossy(&cmdline);
            text.contains("qemu-system") && text.contains(root)
        })
    })
}

/// `kvmx-ci run demo` started in the background, once run `id`'s step
/// has said "sleeping".
fn run_until_sleeping(sandbox: &Sandbox, id: u64) -> std::process::Child {
    let mut running = sandbox
        .kvmx_ci()
        .args(["run", "demo"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = sandbox
        .root()
        .join(format!("kvmx/data/ci/demo/runs/{id}/log"));
    let deadline = Instant::now() + Duration::from_secs(900);
    while !std::fs::read_to_string(&log).is_ok_and(|log| log.contains("sleeping")) {
        assert!(Instant::now() < deadline, "the sleeping step never began");
        assert!(running.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(500));
    }
    running
}

#[test]
fn a_job_runs_signed_commits_and_refuses_the_rest() {
    let sandbox = Sandbox::new();
    let keys = sandbox.dir("keys");
    let alice = SshKey::new(&keys, "alice@example.org");
    let signers = keys.join("allowed_signers");
    std::fs::write(&signers, alice.allowed_signers_line()).unwrap();

    let repo = Repo::new(sandbox.dir("repo"));
    repo.write("kvmx.toml", PROJECT);
    repo.write(
        "build.sh",
        "mkdir -p out\necho \"built $(cat version) as $(id -un)\" > out/result.txt\ncat out/result.txt\n",
    );
    repo.write("version", "v1\n");
    let first = repo.commit("v1", Some(&alice));
    sandbox.write_job("demo", &job(&repo, &signers, &first, "reuse"));

    // A signed commit: built, booted, run, artifact fetched.
    let (code, stdout, stderr) = kvmx_ci(&sandbox, &["run", "demo"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("built v1 as"), "{stdout}");
    let last = last_run(&sandbox);
    assert_eq!(last["result"], "passed", "{last}");
    assert_eq!(last["commit"], first.as_str());
    let signer = last["signer"].as_str().unwrap();
    assert!(signer.starts_with("alice@example.org"), "{signer}");
    let artifact = sandbox
        .root()
        .join("kvmx/data/ci/demo/runs/1/artifacts/result.txt");
    let built = std::fs::read_to_string(&artifact).unwrap();
    assert!(built.starts_with("built v1 as "), "{built}");
    let (_, log, _) = kvmx_ci(&sandbox, &["log", "demo"]);
    assert!(log.contains("[build]") && log.contains("built v1"), "{log}");
    assert!(
        !qemu_runs(&sandbox),
        "the VM started for the run still runs"
    );

    // A signed commit whose step fails: `failed`, with the step's status;
    // `provision` provisions the kept VM again first.
    sandbox.write_job("demo", &job(&repo, &signers, &first, "provision"));
    repo.write(
        "build.sh",
        &format!("{COUNT_PROVISIONS}echo failing on purpose\nexit 3\n"),
    );
    let failing = repo.commit("fail", Some(&alice));
    let (code, stdout, stderr) = kvmx_ci(&sandbox, &["run", "demo"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let last = last_run(&sandbox);
    assert_eq!(last["result"], "failed", "{last}");
    assert_eq!(last["status"], 3);
    assert_eq!(last["commit"], failing.as_str());
    let (_, log, _) = kvmx_ci(&sandbox, &["log", "demo"]);
    assert!(log.contains("provisioned 2 times"), "{log}");

    // SIGTERM during a step: `cancelled`, and nothing left running; a
    // second run meanwhile is refused at once.
    // `recreate` builds a new image, provisioned once.
    sandbox.write_job("demo", &job(&repo, &signers, &first, "recreate"));
    repo.write(
        "build.sh",
        &format!("{COUNT_PROVISIONS}echo sleeping\nsleep 600\n"),
    );
    repo.commit("sleep", Some(&alice));
    let mut running = run_until_sleeping(&sandbox, 3);
    let (code, _, stderr) = kvmx_ci(&sandbox, &["run", "demo"]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("under way"), "{stderr}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = running.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(last_run(&sandbox)["result"], "cancelled");
    let (_, log, _) = kvmx_ci(&sandbox, &["log", "demo"]);
    assert!(log.contains("provisioned 1 times"), "{log}");
    assert!(!qemu_runs(&sandbox), "a cancelled run left its VM running");

    sandbox.write_job("demo", &job(&repo, &signers, &first, "reuse"));
    // kill -9 of kvmx-ci during a step: the next command marks the run
    // `error (interrupted)` and powers off the VM it left.
    let mut killed = run_until_sleeping(&sandbox, 4);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(qemu_runs(&sandbox), "the killed run's VM should still run");
    let last = last_run(&sandbox);
    assert_eq!(last["result"], "error", "{last}");
    assert_eq!(last["reason"], "interrupted", "{last}");
    assert!(!qemu_runs(&sandbox), "the interrupted run's VM still runs");

    // An unsigned commit: rejected before any VM work.
    repo.write("version", "v4\n");
    let unsigned = repo.commit("unsigned", None);
    let (code, stdout, stderr) = kvmx_ci(&sandbox, &["run", "demo"]);
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    let last = last_run(&sandbox);
    assert_eq!(last["result"], "rejected", "{last}");
    assert!(
        last["reason"].as_str().unwrap().contains(&unsigned),
        "{last}"
    );
    assert!(last["vm"].is_null(), "a rejected run touched a VM: {last}");
    assert_eq!(last["steps"].as_array().unwrap().len(), 0);
}

#[test]
fn a_disposable_job_leaves_nothing_and_is_reported_unverified() {
    let home = crate::template::template_home();
    let sandbox = Sandbox::with_kvmx_home(home.join("kvmx").into());
    let repo = Repo::new(sandbox.dir("repo"));
    repo.write(
        "build.sh",
        "mkdir -p out && uname -r > out/kernel && echo built\n",
    );
    let commit = repo.commit("unsigned, and the job says so", None);
    let job = format!(
        "artifacts = [\"src/out/kernel\"]\n\n\
         [source]\nurl = \"{}\"\nverify = \"none\"\n\n\
         [vm]\ntemplate = \"{}\"\nfresh = \"disposable\"\n\n\
         [[step]]\nname = \"build\"\nrun = \"sh build.sh\"\n",
        repo.dir.display(),
        crate::template::TEMPLATE
    );
    // Runs of earlier test runs are kept in the shared home: this job's
    // folder is made fresh.
    let job_dir = sandbox.kvmx_home().join("data/ci/disposable-job");
    let _ = std::fs::remove_dir_all(&job_dir);
    sandbox.write_job("disposable-job", &job);

    let (code, stdout, stderr) = kvmx_ci(&sandbox, &["run", "disposable-job"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job_dir.join("runs/1/run.json")).unwrap())
            .unwrap();
    assert_eq!(record["result"], "passed", "{record}");
    assert_eq!(record["verified"], false);
    assert_eq!(record["commit"], commit.as_str());
    assert!(record["signer"].is_null());
    let kernel = std::fs::read_to_string(job_dir.join("runs/1/artifacts/kernel")).unwrap();
    assert!(!kernel.trim().is_empty());

    // The disposable is gone: no folder, no QEMU.
    let vm = record["vm"].as_str().unwrap();
    assert!(vm.starts_with("disp-"), "{vm}");
    for folder in ["data", "run"] {
        assert!(!sandbox.kvmx_home().join(folder).join(vm).exists());
    }
    let qemu_of_vm = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&format!("/{vm}/")))
    });
    assert!(!qemu_of_vm, "the disposable's QEMU still runs");

    // The report says the source was not verified.
    let report = sandbox.dir("report");
    let (code, _, stderr) = kvmx_ci(&sandbox, &["report", "--html", report.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let index = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(
        index.contains("disposable-job") && index.contains("unverified"),
        "{index}"
    );
}
