//! Stopping a VM: the escalation from the ACPI button to SIGKILL, each step
//! with a deadline; kill, pause, resume, destroy.

use std::process::Stdio;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use kvmx_core::layout::DirectBoot;
use kvmx_core::observe::{Observer, Stages};
use nix::sys::signal::Signal;
use serde::Serialize;

use super::Vm;
use crate::Error;
use crate::host::{signal, wait_exit};
use crate::qmp::{Qmp, QmpError, commands};
use crate::state::{self, Probe, RunLock};

/// How long QMP `quit` and SIGTERM each get before the next step.
const QUIT_DEADLINE: Duration = Duration::from_secs(10);

/// How the VM was stopped: the step of the escalation that worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopStep {
    /// It was not running.
    AlreadyStopped,
    /// ACPI power button (QMP `system_powerdown`).
    AcpiPowerdown,
    /// `poweroff` over SSH.
    SshPoweroff,
    /// QMP `quit`.
    QmpQuit,
    /// SIGTERM to QEMU.
    Sigterm,
    /// SIGKILL to QEMU.
    Sigkill,
}

impl Vm {
    /// Stops the VM, escalating with a deadline at each step: ACPI power
    /// button, SSH `poweroff`, QMP `quit`, SIGTERM, SIGKILL. `force` goes
    /// straight to QMP `quit`.
    pub fn stop(&self, force: bool, observer: &mut dyn Observer) -> Result<StopStep, Error> {
        let patience = Duration::from_secs(self.config.supervise.shutdown_timeout);
        self.stop_within(force, patience, observer)
    }

    /// [`Vm::stop`] with `patience` for each polite step (the ACPI button,
    /// `poweroff` over SSH) instead of `supervise.shutdown_timeout`.
    pub(crate) fn stop_within(
        &self,
        force: bool,
        patience: Duration,
        observer: &mut dyn Observer,
    ) -> Result<StopStep, Error> {
        let mut progress = Stages::new(observer);
        let Some(run) = self.running_state()? else {
            self.cleared();
            return Ok(StopStep::AlreadyStopped);
        };
        // A host mount of a guest folder would hang once the guest is gone.
        self.unmount_ssh_shares();
        let pid = run.pid;
        // One QMP connection for the whole escalation: the guest's
        // SHUTDOWN event ends each wait.
        let mut qmp = self.qmp().ok();
        if !force {
            if self.config.ssh.enabled && self.keeps_kernel_copy() {
                progress.stage("checking the guest's kernel");
                match self.refresh_kernel_copy() {
                    Ok(true) => progress.note("its new kernel boots from the next start"),
                    Ok(false) => {}
                    Err(error) => progress.warn(&format!(
                        "{error}: it boots its previous kernel until a stop copies the new one"
                    )),
                }
            }
            progress.stage("ACPI power-off");
            let pressed = qmp
                .as_mut()
                .is_some_and(|q| q.execute(&commands::SystemPowerdown).is_ok());
            if pressed && wait_shutdown(&mut qmp, pid, patience) {
                return Ok(self.stopped(StopStep::AcpiPowerdown));
            }
            if let (true, Ok(target)) = (self.config.ssh.enabled, self.ssh_target()) {
                progress.stage("poweroff over SSH");
                let mut poweroff = target.command();
                poweroff
                    .args(["-o", "BatchMode=yes", "sudo -n poweroff"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                // The connection drops as the guest goes down; a hung
                // guest must not hang the stop.
                let _ = crate::host::run_within(&mut poweroff, patience);
                if wait_shutdown(&mut qmp, pid, patience) {
                    return Ok(self.stopped(StopStep::SshPoweroff));
                }
            }
        }
        progress.stage("QMP quit");
        let quit = match qmp.as_mut() {
            Some(q) => q.execute(&commands::Quit).map(drop),
            None => self
                .qmp()
                .and_then(|mut q| Ok(q.execute(&commands::Quit).map(drop)?))
                .map_err(|_| QmpError::Closed),
        };
        if quit.is_ok() && wait_exit(pid, QUIT_DEADLINE) {
            return Ok(self.stopped(StopStep::QmpQuit));
        }
        progress.stage("SIGTERM");
        signal(pid, Signal::SIGTERM);
        if wait_exit(pid, QUIT_DEADLINE) {
            return Ok(self.stopped(StopStep::Sigterm));
        }
        progress.stage("SIGKILL");
        signal(pid, Signal::SIGKILL);
        wait_exit(pid, QUIT_DEADLINE);
        Ok(self.stopped(StopStep::Sigkill))
    }

    /// Kills QEMU at once (SIGKILL).
    pub fn kill(&self) -> Result<bool, Error> {
        let Some(run) = self.running_state()? else {
            self.cleared();
            return Ok(false);
        };
        self.unmount_ssh_shares();
        signal(run.pid, Signal::SIGKILL);
        wait_exit(run.pid, QUIT_DEADLINE);
        self.stopped(StopStep::Sigkill);
        Ok(true)
    }

    /// Pauses the guest's CPUs.
    pub fn pause(&self) -> Result<(), Error> {
        self.require_running()?;
        self.qmp()?.execute(&commands::Stop)?;
        Ok(())
    }

    /// Resumes a paused guest.
    pub fn resume(&self) -> Result<(), Error> {
        self.require_running()?;
        self.qmp()?.execute(&commands::Cont)?;
        Ok(())
    }

    /// Deletes the VM's disk image and data folder (keys, logs). Refuses
    /// while it runs; never deletes a block device.
    pub fn destroy(&self) -> Result<Vec<Utf8PathBuf>, Error> {
        self.destroy_waiting(Duration::ZERO)
    }

    /// [`Vm::destroy`], waiting up to `patience` while another command
    /// holds the VM's run lock; a VM still held then is refused as in use.
    pub fn destroy_waiting(&self, patience: Duration) -> Result<Vec<Utf8PathBuf>, Error> {
        // The run lock, held to the end: an `up` that comes meanwhile finds
        // it busy, and a run or a starting `up` (whose QEMU holds it from
        // its first instant) makes this refuse. Never a QEMU on a deleted
        // image, never half a data folder.
        let deadline = Instant::now() + patience;
        let _lock = loop {
            match RunLock::try_take(&self.files)? {
                RunLock::Acquired(lock) => break lock,
                RunLock::Busy if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                RunLock::Busy => {
                    return Err(Error::InUse {
                        vm: self.name.to_string(),
                    });
                }
            }
        };
        let dependants = self.dependants();
        if !dependants.is_empty() {
            return Err(Error::HasDependants {
                vm: self.name.to_string(),
                dependants,
            });
        }
        let mut removed = Vec::new();
        let image = self.image();
        let is_file = std::fs::symlink_metadata(&image).is_ok_and(|m| m.file_type().is_file());
        // A template-based VM's image is its template's (snapshot mode) or
        // lives in its data folder.
        let owns_image = self.template.is_none() && !image.starts_with(&self.files.paths.data);
        if is_file && owns_image {
            // With the copy of its kernel kept beside it.
            let copy = DirectBoot::beside(&image);
            let pvh = crate::qemu::pvh::pvh_file(&copy.kernel);
            for file in [image, copy.kernel, pvh, copy.initrd, copy.cmdline] {
                if file.exists() {
                    std::fs::remove_file(&file).map_err(Error::io("remove", &file))?;
                    removed.push(file);
                }
            }
        }
        for folder in [&self.files.paths.data, &self.files.paths.runtime] {
            if folder.exists() {
                std::fs::remove_dir_all(folder).map_err(Error::io("remove", folder))?;
                removed.push(folder.clone());
            }
        }
        Ok(removed)
    }

    fn stopped(&self, step: StopStep) -> StopStep {
        self.wait_for_lock_release();
        crate::nfs::stop_all(&self.files.paths.runtime);
        crate::ssh::end_master(&self.files.paths.runtime);
        self.cleared();
        step
    }

    /// Quits QEMU at once and forgets the run, keeping every file.
    pub(crate) fn halt(&self) {
        if let Ok(Some(run)) = self.running_state() {
            let _ = self.qmp().and_then(|mut q| Ok(q.execute(&commands::Quit)?));
            if !wait_exit(run.pid, QUIT_DEADLINE) {
                signal(run.pid, Signal::SIGKILL);
                wait_exit(run.pid, QUIT_DEADLINE);
            }
            self.wait_for_lock_release();
        }
        state::clear(&self.files);
    }

    /// Forgets the run; a disposable is erased once it stops.
    fn cleared(&self) {
        state::clear(&self.files);
        let _ = crate::disposable::remove_folders(self);
    }

    /// A killed QEMU's threads may still be exiting after its main thread
    /// is gone; the lock is free once the last one is.
    fn wait_for_lock_release(&self) {
        let deadline = Instant::now() + QUIT_DEADLINE;
        while Instant::now() < deadline {
            if matches!(state::probe(&self.files), Ok(Probe::Free)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Waits up to `patience` for QEMU `pid` to end after a power-off request:
/// for the guest's `SHUTDOWN` event when QMP is connected, then for the
/// process.
fn wait_shutdown(qmp: &mut Option<Qmp>, pid: i32, patience: Duration) -> bool {
    let Some(connection) = qmp else {
        return wait_exit(pid, patience);
    };
    match connection.wait_event("SHUTDOWN", patience, |_| true) {
        Err(QmpError::NoEvent { .. }) => false,
        // The event, or QEMU gone with its socket.
        _ => wait_exit(pid, QUIT_DEADLINE),
    }
}
