//! `kvmx-ci gitlab` called the way gitlab-runner's custom executor calls
//! it: the documented environment (`CUSTOM_ENV_*` ids, the failure exit
//! codes, `BUILD_EXIT_CODE_FILE`), a hermetic `KVMX_HOME`, and the stages
//! in order, against a real Debian template under QEMU (TCG).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use camino::Utf8PathBuf;
use kvmx_testkit::guest::Slot;

use crate::shared_cache;
use crate::template::{TEMPLATE, template_home};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What the tests tell kvmx-ci a failed job script exits with.
const BUILD_FAILURE: i32 = 7;
/// What the tests tell kvmx-ci any other failure exits with.
const SYSTEM_FAILURE: i32 = 9;

/// One GitLab job as gitlab-runner runs it: its ids, and a folder for its
/// scripts and the exit code file.
struct Job {
    home: Utf8PathBuf,
    ids: [(&'static str, String); 4],
    folder: tempfile::TempDir,
    _slot: Option<Slot>,
}

impl Job {
    /// A job of the template's kvmx home, with its own `job_id`.
    fn new(job_id: u32) -> Job {
        let slot = Slot::take();
        let mut job = Job::in_home(template_home().to_owned(), job_id);
        job._slot = Some(slot);
        job
    }

    /// A job in `home`, which may hold no template at all.
    fn in_home(home: Utf8PathBuf, job_id: u32) -> Job {
        Job {
            home,
            ids: [
                ("CUSTOM_ENV_CI_RUNNER_ID", "41".into()),
                ("CUSTOM_ENV_CI_PROJECT_ID", "7".into()),
                ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0".into()),
                ("CUSTOM_ENV_CI_JOB_ID", job_id.to_string()),
            ],
            folder: tempfile::tempdir().unwrap(),
            _slot: None,
        }
    }

    /// The VM name kvmx-ci derives from the ids.
    fn vm(&self) -> String {
        let ids: Vec<&str> = self.ids.iter().map(|(_, id)| id.as_str()).collect();
        format!("gl-{}", ids.join("-"))
    }

    fn exit_code_file(&self) -> PathBuf {
        self.folder.path().join("build-exit-code")
    }

    /// `kvmx-ci gitlab STAGE ARGS`, with what gitlab-runner sets.
    fn command(&self, stage: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kvmx-ci"));
        command
            .arg("gitlab")
            .arg(stage)
            .args(args)
            .current_dir(self.folder.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.folder.path())
            .env("KVMX_HOME", self.home.join("kvmx"))
            .env("KVMX_CACHE_DIR", shared_cache())
            .env("KVMX_CI_TEMPLATE", TEMPLATE)
            .env("BUILD_FAILURE_EXIT_CODE", BUILD_FAILURE.to_string())
            .env("SYSTEM_FAILURE_EXIT_CODE", SYSTEM_FAILURE.to_string())
            .env("BUILD_EXIT_CODE_FILE", self.exit_code_file())
            .env("CUSTOM_ENV_CI_JOB_NAME", "test")
            .stdin(Stdio::null());
        for (name, value) in &self.ids {
            command.env(name, value);
        }
        command
    }

    fn stage(&self, stage: &str, args: &[&str]) -> Output {
        self.command(stage, args).output().unwrap()
    }

    /// Writes `text` as gitlab-runner's script for a stage; its path.
    fn script(&self, name: &str, text: &str) -> String {
        let path = self.folder.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `run SCRIPT STAGE` with a script of `text`.
    fn run(&self, stage: &str, text: &str) -> Output {
        let script = self.script(stage, text);
        self.stage("run", &[&script, stage])
    }

    /// `run` started in the background; returns once the script printed
    /// `ready`.
    fn run_in_background(&self, stage: &str, text: &str) -> Child {
        let script = self.script(stage, text);
        let mut child = self
            .command("run", &[&script, stage])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the script did not start");
        child
    }

    /// The VM's folders in kvmx's data and runtime folders that exist.
    fn leftovers(&self) -> Vec<PathBuf> {
        ["data", "run"]
            .iter()
            .map(|folder| self.home.join("kvmx").join(folder).join(self.vm()))
            .filter(|path| path.exists())
            .map(PathBuf::from)
            .collect()
    }

    /// The pid of the VM's QEMU.
    fn qemu_pid(&self) -> i32 {
        let file = self.home.join("kvmx/run").join(self.vm()).join("qemu.pid");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// Whether a process has ended (a zombie nobody reaped counts).
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

/// Waits for a killed process to end (a kill takes effect at once; the
/// loop only covers the kernel's bookkeeping).
fn wait_gone(pid: i32) {
    while !gone(pid) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn a_job_runs_its_stages_in_one_vm_and_its_failures_are_told_apart() {
    let job = Job::new(1001);

    let config = job.stage("config", &[]);
    assert_code(&config, 0);
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(config["hostname"], job.vm());
    insta::with_settings!({filters => vec![(r#""version": "[^"]+""#, r#""version": "[VERSION]""#)]}, {
        insta::assert_snapshot!(serde_json::to_string_pretty(&config).unwrap());
    });

    assert_code(&job.stage("prepare", &["--template", TEMPLATE]), 0);

    // A passing script: both streams come back, in bash.
    let passed = job.run(
        "prepare_script",
        "[[ -n \"$BASH_VERSION\" ]] && echo \"in bash\"\necho to-stderr >&2\n\
         mkdir -p ~/builds && echo kept > ~/builds/mark\n",
    );
    assert_code(&passed, 0);
    assert!(text(&passed.stdout).contains("in bash"), "{passed:?}");
    assert!(text(&passed.stderr).contains("to-stderr"), "{passed:?}");
    assert!(!job.exit_code_file().exists());

    // A failing script of a stage kvmx-ci never heard of, in the same VM.
    let failed = job.run("step_lint_the_docs", "cat ~/builds/mark\nexit 3\n");
    assert_code(&failed, BUILD_FAILURE);
    assert_eq!(text(&failed.stdout), "kept\n");
    assert_eq!(
        std::fs::read_to_string(job.exit_code_file())
            .unwrap()
            .trim(),
        "3"
    );

    // The guest dies under a script: SSH drops, a system failure.
    let qemu = job.qemu_pid();
    let running = job.run_in_background("build_script", "echo ready\nsleep 600\n");
    kill(Pid::from_raw(qemu), Signal::SIGKILL).unwrap();
    let dropped = running.wait_with_output().unwrap();
    assert_code(&dropped, SYSTEM_FAILURE);
    // And the next stage finds no VM to run in.
    let after = job.run("after_script", "echo never\n");
    assert_code(&after, SYSTEM_FAILURE);
    assert!(text(&after.stderr).contains(&job.vm()), "{after:?}");

    assert_code(&job.stage("cleanup", &[]), 0);
    assert_eq!(job.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn sigterm_during_run_erases_the_vm() {
    let job = Job::new(1002);
    assert_code(&job.stage("prepare", &[]), 0);
    let qemu = job.qemu_pid();

    let running = job.run_in_background("build_script", "echo ready\nsleep 600\n");
    kill(Pid::from_raw(running.id() as i32), Signal::SIGTERM).unwrap();
    let stopped = running.wait_with_output().unwrap();
    assert_code(&stopped, SYSTEM_FAILURE);
    assert!(gone(qemu), "QEMU still runs");
    assert_eq!(job.leftovers(), Vec::<PathBuf>::new());

    assert_code(&job.stage("cleanup", &[]), 0);
}

impl Job {
    /// Starts `prepare` and kills it with SIGKILL once the VM's QEMU runs;
    /// returns QEMU's pid.
    fn prepare_killed_once_qemu_runs(&self) -> i32 {
        let mut prepare = self
            .command("prepare", &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid_file = self.home.join("kvmx/run").join(self.vm()).join("qemu.pid");
        // Until QEMU runs; a prepare that ends first failed.
        while !pid_file.exists() {
            if let Some(status) = prepare.try_wait().unwrap() {
                let mut said = String::new();
                std::io::Read::read_to_string(prepare.stderr.as_mut().unwrap(), &mut said).unwrap();
                panic!("prepare ended ({status}) before QEMU ran: {said}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        prepare.kill().unwrap();
        prepare.wait().unwrap();
        let qemu = self.qemu_pid();
        assert!(!gone(qemu), "QEMU outlives a killed prepare");
        qemu
    }
}

#[test]
fn a_vm_left_by_a_killed_prepare_is_erased_by_cleanup_or_the_next_prepare() {
    let job = Job::new(1003);
    let qemu = job.prepare_killed_once_qemu_runs();
    assert_code(&job.stage("cleanup", &[]), 0);
    wait_gone(qemu);
    assert_eq!(job.leftovers(), Vec::<PathBuf>::new());
    // Again, with nothing left at all.
    assert_code(&job.stage("cleanup", &[]), 0);

    // A prepare again after a crash of one, or over a VM that is up: the
    // leftover goes first.
    let qemu = job.prepare_killed_once_qemu_runs();
    assert_code(&job.stage("prepare", &[]), 0);
    assert!(gone(qemu), "the leftover's QEMU still runs");
    let qemu = job.qemu_pid();
    assert_code(&job.stage("prepare", &[]), 0);
    assert!(gone(qemu), "the earlier VM's QEMU still runs");
    assert_code(&job.run("build_script", "echo fresh\n"), 0);
    assert_code(&job.stage("cleanup", &[]), 0);
    assert_eq!(job.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn missing_variables_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let home = Utf8PathBuf::from_path_buf(home.path().to_owned()).unwrap();
    let job = Job::in_home(home, 1004);

    // The ids: a system failure naming the variable.
    let output = job
        .command("prepare", &[])
        .env_remove("CUSTOM_ENV_CI_JOB_ID")
        .output()
        .unwrap();
    assert_code(&output, SYSTEM_FAILURE);
    insta::assert_snapshot!(text(&output.stderr));

    // The exit codes themselves: nothing to exit with but 1.
    let output = job
        .command("run", &["script", "build_script"])
        .env_remove("SYSTEM_FAILURE_EXIT_CODE")
        .output()
        .unwrap();
    assert_code(&output, 1);
    assert!(
        text(&output.stderr).contains("SYSTEM_FAILURE_EXIT_CODE"),
        "{output:?}"
    );

    // No template.
    let output = job
        .command("config", &[])
        .env_remove("KVMX_CI_TEMPLATE")
        .output()
        .unwrap();
    assert_code(&output, SYSTEM_FAILURE);
    assert!(text(&output.stderr).contains("--template"), "{output:?}");

    // A template that is not registered.
    let output = job.stage("prepare", &["--template", "nowhere"]);
    assert_code(&output, SYSTEM_FAILURE);
    assert!(text(&output.stderr).contains("nowhere"), "{output:?}");

    // A run without prepare, and a cleanup with nothing to clean.
    let output = job.run("build_script", "echo never\n");
    assert_code(&output, SYSTEM_FAILURE);
    assert!(text(&output.stderr).contains("not running"), "{output:?}");
    assert_code(&job.stage("cleanup", &[]), 0);
}
