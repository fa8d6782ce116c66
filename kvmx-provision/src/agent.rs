//! The host end of kvmx's command channel into a guest (see the
//! `kvmx_agent` crate): commands that start with no login.
//!
//! The agent's virtio-serial port is a unix socket in the VM's runtime
//! folder (mode 0700): only the host user who runs the VM reaches it, as
//! with the QMP socket. QEMU serves one connection at a time, so one
//! command runs at a time per VM: kvmx takes `agent.lock` for the whole
//! command, and a second caller is told the agent is busy (disposables run
//! one command each; other callers use SSH).
//!
//! The guest's `kvmx-agent` comes from the host: the binary beside kvmx
//! (or `KVMX_AGENT`) is copied into a template's first warm disposable
//! before its state is saved (`warm_prepare.sh` starts it), so every
//! restored sibling has it running, whatever image the template has. A
//! state saved without it leaves its disposables on SSH.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use kvmx_agent::frame::{Ended, MAX_PAYLOAD, STDIN_WINDOW};
use kvmx_agent::{Frame, Kind};

use crate::Error;
use crate::files::VmFiles;

pub use kvmx_agent::{PORT, Request, Terminal};

/// Names the agent binary to copy into guests (else the one beside kvmx).
pub const AGENT_VARIABLE: &str = "KVMX_AGENT";

/// The agent binary on the host, if there is one.
pub fn find_binary() -> Option<PathBuf> {
    crate::daemon::find("kvmx-agent", AGENT_VARIABLE).filter(|path| path.is_file())
}

/// A command started through the agent.
#[derive(Debug)]
pub struct AgentSession {
    reader: UnixStream,
    control: Control,
    _lock: nix::fcntl::Flock<File>,
}

/// Sends signals and window sizes to a running command; clones share the
/// connection.
#[derive(Debug, Clone)]
pub struct Control {
    writer: Arc<Mutex<UnixStream>>,
    session: u32,
    /// Stdin bytes sent and not yet taken by the command.
    in_flight: Arc<(Mutex<usize>, Condvar)>,
}

impl Control {
    fn send(&self, kind: Kind, payload: impl Into<Vec<u8>>) -> std::io::Result<()> {
        let frame = Frame::new(kind, self.session, payload);
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        frame.write_to(&mut *writer)
    }

    /// Sends signal `number` to the command (to its terminal's foreground
    /// process group when it has a terminal). A command already gone
    /// ignores it.
    pub fn signal(&self, number: i32) {
        if let Ok(byte) = u8::try_from(number) {
            let _ = self.send(Kind::Signal, [byte]);
        }
    }

    /// Tells the command's terminal its new size.
    pub fn resize(&self, rows: u16, columns: u16) {
        let mut payload = rows.to_be_bytes().to_vec();
        payload.extend_from_slice(&columns.to_be_bytes());
        let _ = self.send(Kind::Resize, payload);
    }
}

/// The agent's socket and lock in the runtime folder `runtime`.
pub(crate) fn socket(runtime: &Utf8Path) -> camino::Utf8PathBuf {
    crate::files::agent_socket(runtime)
}

/// Starts `request` through the agent of the running VM, waiting at most
/// `deadline` for the agent to say it runs; with `set_clock` the agent
/// first sets the guest's clock to the host's (a restored guest's).
pub fn start(
    files: &VmFiles,
    request: &Request,
    deadline: Duration,
    set_clock: bool,
) -> Result<AgentSession, Error> {
    let lock_path = files.paths.runtime.join("agent.lock");
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io("open", &lock_path))?;
    let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| transport("another kvmx command is using the guest's agent (it runs one command at a time per VM)"))?;
    let path = socket(&files.paths.runtime);
    let stream = UnixStream::connect(&path).map_err(Error::io("connect to", &path))?;
    let session = loop {
        let mut bytes = [0u8; 4];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let number = u32::from_be_bytes(bytes);
        if number != 0 {
            break number;
        }
    };
    let control = Control {
        writer: Arc::new(Mutex::new(
            stream.try_clone().map_err(Error::io("clone", &path))?,
        )),
        session,
        in_flight: Arc::default(),
    };
    if set_clock {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut time = (now.as_secs() as i64).to_be_bytes().to_vec();
        time.extend_from_slice(&now.subsec_nanos().to_be_bytes());
        control
            .send(Kind::SetClock, time)
            .map_err(Error::io("write to", &path))?;
    }
    control
        .send(Kind::Start, request.encode())
        .map_err(Error::io("write to", &path))?;
    let mut reader = stream;
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                awaited: "the guest's agent to start the command".into(),
                after: deadline,
            });
        }
        reader
            .set_read_timeout(Some(left))
            .map_err(Error::io("set a timeout on", &path))?;
        let frame = match Frame::read_from(&mut reader) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                return Err(transport(
                    "the guest's agent closed the connection before the command started",
                ));
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(error) => return Err(Error::io("read from", &path)(error)),
        };
        if frame.session != session {
            continue;
        }
        match frame.kind {
            Kind::Started => break,
            Kind::Failed => {
                return Err(transport(&format!(
                    "the guest's agent could not start the command: {}",
                    String::from_utf8_lossy(&frame.payload)
                )));
            }
            _ => {}
        }
    }
    reader
        .set_read_timeout(None)
        .map_err(Error::io("clear the timeout of", &path))?;
    Ok(AgentSession {
        reader,
        control,
        _lock: lock,
    })
}

fn transport(problem: &str) -> Error {
    Error::Transport {
        problem: problem.to_owned(),
        hint: "the VM's QEMU may have exited; `kvmx status` says".into(),
    }
}

impl AgentSession {
    /// What sends the command signals and window sizes.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Streams `stdin` to the command (none: it reads an end at once) and
    /// its stdout and stderr to `stdout` and `stderr` until it ends;
    /// returns its status, 128 + N for a death by signal N, as ssh does.
    pub fn wait(
        mut self,
        stdin: Option<Box<dyn Read + Send>>,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<ExitStatus, Error> {
        match stdin {
            Some(source) => feed(source, self.control.clone()),
            None => {
                let _ = self.control.send(Kind::StdinEnd, Vec::new());
            }
        }
        let lost = || transport("the connection to the guest's agent ended before the command did");
        loop {
            let frame = match Frame::read_from(&mut self.reader) {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => return Err(lost()),
            };
            if frame.session != self.control.session {
                continue;
            }
            match frame.kind {
                Kind::Stdout => {
                    // A reader that went away (a closed pipe) loses the rest.
                    let _ = stdout
                        .write_all(&frame.payload)
                        .and_then(|()| stdout.flush());
                }
                Kind::Stderr => {
                    let _ = stderr
                        .write_all(&frame.payload)
                        .and_then(|()| stderr.flush());
                }
                Kind::StdinTaken => {
                    let taken = frame.as_number().unwrap_or(0) as usize;
                    let (count, changed) = &*self.control.in_flight;
                    let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
                    *count = count.saturating_sub(taken);
                    changed.notify_all();
                }
                Kind::Exit => {
                    let ended = Ended::decode(&frame.payload).ok_or_else(lost)?;
                    return Ok(ExitStatus::from_raw((ended.shell_status() & 0xff) << 8));
                }
                _ => {}
            }
        }
    }
}

/// Sends what `source` gives as stdin, at most [`STDIN_WINDOW`] bytes
/// ahead of what the command took, then its end.
fn feed(mut source: Box<dyn Read + Send>, control: Control) {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; MAX_PAYLOAD];
        loop {
            let count = match source.read(&mut buffer) {
                Ok(count) => count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if count == 0 {
                let _ = control.send(Kind::StdinEnd, Vec::new());
                return;
            }
            {
                let (in_flight, changed) = &*control.in_flight;
                let mut in_flight = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                while *in_flight >= STDIN_WINDOW {
                    in_flight = changed.wait(in_flight).unwrap_or_else(|p| p.into_inner());
                }
                *in_flight += count;
            }
            if control.send(Kind::Stdin, &buffer[..count]).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_guest_script_starts_the_agent_on_this_port() {
        let script = include_str!("warm_prepare.sh");
        assert!(script.contains(&format!("serve /dev/virtio-ports/{}", super::PORT)));
    }
}
