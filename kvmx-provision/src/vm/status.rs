//! What state a VM is in, and the facts of its run.

use camino::Utf8PathBuf;
use serde::Serialize;

use super::Vm;
use crate::Error;
use crate::host::now;
use crate::qemu::Accel;
use crate::state::{self, PortForward, Probe, RunState};

/// The state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// QEMU runs and the guest runs.
    Running,
    /// QEMU runs and the guest is paused.
    Paused,
    /// Another `kvmx up` is starting it.
    Starting,
    /// Not running.
    Stopped,
    /// QEMU died without a clean stop.
    Crashed,
}

/// What `status` tells.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The VM's name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// QEMU's pid while it runs.
    pub pid: Option<i32>,
    /// Seconds since QEMU started.
    pub uptime_seconds: Option<u64>,
    /// The accelerator of the run.
    pub accelerator: Option<Accel>,
    /// Forwarded ports, SSH first.
    pub forwards: Vec<PortForward>,
    /// The disk image.
    pub image: Utf8PathBuf,
    /// The image's virtual size in bytes, when it exists.
    pub image_virtual_size: Option<u64>,
    /// Bytes the image takes on the host's disk.
    pub image_disk_usage: Option<u64>,
    /// The last console lines of a crashed VM.
    pub last_console: Vec<String>,
    /// Whether `kvmx supervise` keeps it running (`supervise.manage`).
    pub supervised: bool,
}

impl Vm {
    /// The current state and facts of the VM.
    pub fn status(&self) -> Result<Status, Error> {
        let image = self.image();
        let mut status = Status {
            name: self.name.to_string(),
            state: State::Stopped,
            pid: None,
            uptime_seconds: None,
            accelerator: None,
            forwards: Vec::new(),
            image_virtual_size: kvmx_core::image_size::virtual_size(&image),
            image_disk_usage: disk_usage(&image),
            image,
            last_console: Vec::new(),
            supervised: self.config.supervise.manage,
        };
        let run = state::read(&self.files);
        match state::probe(&self.files)? {
            Probe::Free => {
                if run.is_some() {
                    status.state = State::Crashed;
                    status.last_console = state::console_tail(&self.files, 15);
                }
            }
            Probe::Held => match run {
                None => status.state = State::Starting,
                Some(run) => {
                    status.state = match self.qmp().and_then(|mut q| Ok(q.run_state()?)) {
                        Ok(qemu_state) if qemu_state == "paused" => State::Paused,
                        _ => State::Running,
                    };
                    status.pid = Some(run.pid);
                    status.uptime_seconds = Some(now().saturating_sub(run.started_at));
                    status.accelerator = Some(run.accelerator);
                    status.forwards = run.forwards;
                }
            },
        }
        Ok(status)
    }

    /// Whether its QEMU runs (paused or not); cheaper than [`Vm::status`].
    pub fn is_running(&self) -> bool {
        matches!(self.running_state(), Ok(Some(_)))
    }

    /// The state of the current run, `None` when QEMU does not run.
    pub(crate) fn running_state(&self) -> Result<Option<RunState>, Error> {
        match state::probe(&self.files)? {
            Probe::Free => Ok(None),
            Probe::Held => Ok(state::read(&self.files)),
        }
    }

    pub(crate) fn require_running(&self) -> Result<RunState, Error> {
        self.running_state()?.ok_or_else(|| Error::NotRunning {
            vm: self.name.to_string(),
        })
    }
}

fn disk_usage(image: &camino::Utf8Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(image).ok().map(|m| m.blocks() * 512)
}
