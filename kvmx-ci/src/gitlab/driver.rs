//! The four stages as library calls: [`config`], [`prepare`],
//! [`run_script`], [`cleanup`]. Nothing here prints: guest output goes to
//! the sinks the caller passes, progress to its observer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use camino::Utf8Path;
use kvmx_core::config::values::VmName;
use kvmx_core::{CancelFlag, Layout};
use kvmx_provision::disposable::{self, Disposable, DisposableOptions};
use kvmx_provision::guest::{ByteSink, OutputSink};
use kvmx_provision::{Error as VmError, Observer, Vm};
use serde::Serialize;

use super::GitlabError;

/// What `config` prints for gitlab-runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverConfig {
    /// Where jobs are checked out, in the guest.
    pub builds_dir: String,
    /// Where the job's cache lives, in the guest.
    pub cache_dir: String,
    /// Whether other jobs see the same builds folder: never, each job has
    /// its own VM.
    pub builds_dir_is_shared: bool,
    /// The job's VM, shown in the job log.
    pub hostname: String,
    /// This driver.
    pub driver: DriverInfo,
}

/// The driver's name and version, shown in the job log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverInfo {
    /// `kvmx-ci`.
    pub name: String,
    /// kvmx-ci's version.
    pub version: String,
}

/// How a job script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// It exited 0.
    Passed,
    /// It exited with this status (as the guest's shell reports it).
    Failed {
        /// The status.
        code: i32,
    },
}

/// How long the check that SSH works after the boot may take.
const SSH_CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// How often `prepare` looks at its cancel flag during the boot.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// The guest's shell for job scripts: GitLab writes bash scripts when
/// bash is there, POSIX sh ones otherwise. The script comes on stdin.
const SHELL_LINE: &str =
    "if command -v bash >/dev/null 2>&1; then exec bash -s; else exec sh -s; fi";

/// Opens the template VM `name`.
pub fn open_template(layout: &Layout, name: &str) -> Result<Vm, GitlabError> {
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|dir| camino::Utf8PathBuf::from_path_buf(dir).ok())
        .unwrap_or_else(|| "/".into());
    Vm::find(layout, Some(name), &cwd)
        .map(|found| found.vm)
        .map_err(|source| GitlabError::Template {
            name: name.to_owned(),
            source: Box::new(source),
        })
}

/// The `config` stage: the guest folders of the template's user and the
/// job's VM name. Every later stage derives the VM name from the job's ids
/// again, so no `job_env` is needed.
pub fn config(template: &Vm, vm: &VmName) -> DriverConfig {
    let config = template.config();
    let user = config.ssh.user.as_ref().unwrap_or(&config.vm.user).as_str();
    let home = if user == "root" {
        "/root".to_owned()
    } else {
        format!("/home/{user}")
    };
    DriverConfig {
        builds_dir: format!("{home}/builds"),
        cache_dir: format!("{home}/cache"),
        builds_dir_is_shared: false,
        hostname: vm.to_string(),
        driver: DriverInfo {
            name: "kvmx-ci".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    }
}

/// The `prepare` stage: erases what a crashed earlier attempt left, makes
/// the disposable `vm` of `template`, boots it, checks that SSH runs a
/// command and leaves it running for the next stages. When `cancel` is set
/// during the boot, the VM is erased and [`GitlabError::Interrupted`]
/// returned.
pub fn prepare(
    template: &Vm,
    vm: &VmName,
    cancel: &CancelFlag,
    observer: &mut dyn Observer,
    sink: &mut dyn OutputSink,
) -> Result<(), GitlabError> {
    let layout = template.layout();
    erase_job_vm(layout, vm)?;
    let boot_error = |source| GitlabError::Boot {
        vm: vm.to_string(),
        source: Box::new(source),
    };
    let options = DisposableOptions {
        name: Some(vm.clone()),
        ..DisposableOptions::default()
    };
    let session = Disposable::create(layout, template, options).map_err(boot_error)?;
    let booted = {
        let _watch = CancelWatch::start(cancel, session.vm().clone());
        session
            .boot(observer, sink)
            .and_then(|_| check_ssh(session.vm()))
    };
    if cancel.is_cancelled() {
        // The watch killed the VM; whatever the boot said, finish the job.
        session.erase().map_err(|source| GitlabError::Erase {
            vm: vm.to_string(),
            source: Box::new(source),
        })?;
        return Err(GitlabError::Interrupted { vm: vm.to_string() });
    }
    // On error the session is dropped, which erases the VM.
    booted.map_err(boot_error)?;
    session.release().map_err(boot_error)
}

/// Runs `true` in the guest: `boot` waited for SSH, and this proves that
/// a command runs with the VM's key, as every `run` will.
fn check_ssh(vm: &Vm) -> Result<(), VmError> {
    let output = vm
        .guest()?
        .shell("true")
        .timeout(SSH_CHECK_TIMEOUT)
        .output()?;
    if output.success() {
        return Ok(());
    }
    Err(VmError::Transport {
        problem: format!(
            "`true` exited {} in the guest of {}: {}",
            output.code,
            vm.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        hint: "check the template's shell and sshd: `kvmx ssh TEMPLATE`".into(),
    })
}

/// Kills a booting VM once a cancel flag is set (booting takes no flag of
/// its own); stops watching when dropped.
struct CancelWatch {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CancelWatch {
    fn start(cancel: &CancelFlag, vm: Vm) -> CancelWatch {
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if cancel.is_cancelled() {
                        let _ = vm.kill();
                        return;
                    }
                    std::thread::sleep(CANCEL_POLL);
                }
            })
        };
        CancelWatch {
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `run` stage: pipes `script` into the guest's shell in the VM `vm`,
/// its output to `sink` as it comes. When `cancel` is set the command is
/// stopped, the VM erased and [`GitlabError::Interrupted`] returned.
///
/// The command has no deadline of its own: the job's timeout is
/// gitlab-runner's, which ends this stage with SIGTERM.
pub fn run_script(
    layout: &Layout,
    vm: &VmName,
    script: &Utf8Path,
    cancel: &CancelFlag,
    sink: &mut dyn ByteSink,
) -> Result<RunOutcome, GitlabError> {
    let text = std::fs::read(script).map_err(GitlabError::io(script))?;
    let not_running = || GitlabError::NotRunning { vm: vm.to_string() };
    let machine = disposable::find(layout, vm.as_str()).ok_or_else(not_running)?;
    if !machine.is_running() {
        return Err(not_running());
    }
    let ran = machine.guest().and_then(|guest| {
        guest
            .shell(SHELL_LINE)
            .stdin(text)
            .cancel(cancel)
            .stream(sink)
    });
    if cancel.is_cancelled() {
        disposable::erase(&machine).map_err(|source| GitlabError::Erase {
            vm: vm.to_string(),
            source: Box::new(source),
        })?;
        return Err(GitlabError::Interrupted { vm: vm.to_string() });
    }
    match ran {
        Ok(0) => Ok(RunOutcome::Passed),
        Ok(code) => Ok(RunOutcome::Failed { code }),
        Err(source) => Err(GitlabError::Guest {
            vm: vm.to_string(),
            script: script.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// The `cleanup` stage: erases the VM `vm` whatever state it is in (up,
/// half made, already gone).
pub fn cleanup(layout: &Layout, vm: &VmName) -> Result<(), GitlabError> {
    erase_job_vm(layout, vm)
}

/// Erases the job's VM and its folders, if any. A data folder without a
/// disposable's record is removed only when empty (as `Disposable::create`
/// leaves it if killed before it wrote the record); anything else there is
/// not this driver's to delete.
fn erase_job_vm(layout: &Layout, vm: &VmName) -> Result<(), GitlabError> {
    if let Some(machine) = disposable::find(layout, vm.as_str()) {
        return disposable::erase(&machine).map_err(|source| GitlabError::Erase {
            vm: vm.to_string(),
            source: Box::new(source),
        });
    }
    let data = layout.vm(vm).data;
    if data.exists() && std::fs::remove_dir(&data).is_err() {
        return Err(GitlabError::InTheWay {
            vm: vm.to_string(),
            path: data,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_folder_left_by_a_crash_is_removed_and_others_are_kept() {
        let home = tempfile::tempdir().unwrap();
        let layout = Layout::under(Utf8Path::from_path(home.path()).unwrap());
        let vm: VmName = "gl-1-2-0-3".parse().unwrap();
        cleanup(&layout, &vm).unwrap();

        let data = layout.vm(&vm).data;
        std::fs::create_dir_all(&data).unwrap();
        cleanup(&layout, &vm).unwrap();
        assert!(!data.exists());

        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("box.img"), b"").unwrap();
        let error = cleanup(&layout, &vm).unwrap_err();
        assert!(matches!(error, GitlabError::InTheWay { .. }), "{error}");
        assert!(data.join("box.img").exists());
    }
}
