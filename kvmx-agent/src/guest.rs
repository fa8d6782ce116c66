//! The agent in the guest: waits for its host on the virtio-serial port,
//! runs the command each [`Kind::Start`] asks for, and streams it.
//!
//! The port's driver tells the agent little about its host: while no host
//! is connected a read returns end-of-file at once and a write blocks. So
//! the agent waits for a host by writing [`Kind::Hello`], and takes an
//! end-of-file as the host gone, which ends the command it ran for it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::frame::{Ended, Frame, Kind, MAX_PAYLOAD};
use crate::request::Request;

/// The writing end of the port, shared by the threads of a command.
type Port = Arc<Mutex<File>>;

/// Serves the port at `path` until it fails (it never ends otherwise).
pub fn serve(path: &Path) -> io::Result<()> {
    let mut reader = File::options().read(true).write(true).open(path)?;
    let port: Port = Arc::new(Mutex::new(reader.try_clone()?));
    let mut command: Option<Running> = None;
    loop {
        // Blocks until a host connects.
        send(&port, &Frame::new(Kind::Hello, 0, Vec::new()))?;
        // Until the host leaves (or sends garbage): its command goes then.
        while let Ok(Some(frame)) = Frame::read_from(&mut reader) {
            handle(frame, &port, &mut command);
        }
        if let Some(running) = command.take() {
            running.end();
        }
    }
}

fn handle(frame: Frame, port: &Port, command: &mut Option<Running>) {
    if frame.kind == Kind::SetClock {
        set_clock(&frame.payload);
        return;
    }
    if frame.kind == Kind::Start {
        if let Some(running) = command.take() {
            running.end();
        }
        let started = Request::decode(&frame.payload)
            .and_then(|request| Running::start(&request, frame.session, port));
        match started {
            Ok(running) => *command = Some(running),
            Err(problem) => {
                let mut message = problem.into_bytes();
                message.truncate(MAX_PAYLOAD);
                let _ = send(port, &Frame::new(Kind::Failed, frame.session, message));
            }
        }
        return;
    }
    let Some(running) = command.as_mut().filter(|r| r.session == frame.session) else {
        return;
    };
    match frame.kind {
        Kind::Stdin => {
            if let Some(stdin) = &running.stdin {
                let _ = stdin.send(frame.payload);
            }
        }
        // A terminal has no end of input of its own.
        Kind::StdinEnd if running.terminal.is_none() => running.stdin = None,
        Kind::Signal => {
            if let Some(signal) = frame
                .payload
                .first()
                .and_then(|&number| Signal::try_from(i32::from(number)).ok())
            {
                running.signal(signal);
            }
        }
        Kind::Resize => {
            if let (Some(terminal), [r0, r1, c0, c1]) = (&running.terminal, &frame.payload[..]) {
                let _ = set_size(
                    terminal,
                    u16::from_be_bytes([*r0, *r1]),
                    u16::from_be_bytes([*c0, *c1]),
                );
            }
        }
        _ => {}
    }
}

/// Sets the clock to the time in a [`Kind::SetClock`] payload.
fn set_clock(payload: &[u8]) {
    let (Some(seconds), Some(nanoseconds)) = (
        payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes),
        payload
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes),
    ) else {
        return;
    };
    let _ = rustix::time::clock_settime(
        rustix::time::ClockId::Realtime,
        rustix::time::Timespec {
            tv_sec: seconds,
            tv_nsec: nanoseconds.into(),
        },
    );
}

/// Writes a frame; the lock keeps each frame whole.
fn send(port: &Port, frame: &Frame) -> io::Result<()> {
    let mut file = port.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    frame.write_to(&mut *file)
}

/// A command that runs, and the threads that stream it.
struct Running {
    session: u32,
    /// Its pid, also its process group's and session's.
    pid: Pid,
    /// Chunks for its stdin; dropped at the end of the host's stdin.
    stdin: Option<Sender<Vec<u8>>>,
    /// The pseudo-terminal's master, when it has one.
    terminal: Option<OwnedFd>,
}

impl Running {
    fn start(request: &Request, session: u32, port: &Port) -> Result<Running, String> {
        let account = crate::launch::Account::find(&request.user)?;
        let mut command = crate::launch::command(request, &account)?;
        let terminal = match &request.terminal {
            Some(size) => Some(open_terminal(&mut command, size.rows, size.columns)?),
            None => {
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                None
            }
        };
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start the command: {error}"))?;
        // The terminal's slave ends were the child's; only it holds them now.
        drop(command);
        let pid = Pid::from_raw(child.id() as i32);
        let (to_stdin, stdin_chunks) = channel();
        let mut readers = Vec::new();
        let stdin_writer: Box<dyn Write + Send> = match &terminal {
            Some(master) => {
                let clone = || master.try_clone().map_err(|e| e.to_string());
                readers.push(stream(File::from(clone()?), Kind::Stdout, session, port));
                Box::new(File::from(clone()?))
            }
            None => {
                let stdout = child.stdout.take().expect("stdout is piped");
                let stderr = child.stderr.take().expect("stderr is piped");
                readers.push(stream(stdout, Kind::Stdout, session, port));
                readers.push(stream(stderr, Kind::Stderr, session, port));
                Box::new(child.stdin.take().expect("stdin is piped"))
            }
        };
        feed(stdin_writer, stdin_chunks, session, port.clone());
        report_end(child, readers, session, port.clone());
        send(
            port,
            &Frame::number(Kind::Started, session, pid.as_raw() as u32),
        )
        .map_err(|e| e.to_string())?;
        Ok(Running {
            session,
            pid,
            stdin: Some(to_stdin),
            terminal,
        })
    }

    /// Sends `signal` to the command: to the terminal's foreground process
    /// group when it has a terminal, else to its own group.
    fn signal(&self, signal: Signal) {
        let group = self
            .terminal
            .as_ref()
            .and_then(|master| rustix::termios::tcgetpgrp(master).ok())
            .map_or(self.pid, |pgrp| Pid::from_raw(pgrp.as_raw_nonzero().get()));
        let _ = killpg(group, signal);
    }

    /// Ends the command whose host left: a hang-up, then a kill of its
    /// process group (whatever it left running in it goes too).
    fn end(self) {
        self.signal(Signal::SIGHUP);
        let _ = killpg(self.pid, Signal::SIGHUP);
        let _ = killpg(self.pid, Signal::SIGKILL);
    }
}

/// A pseudo-terminal of `rows` × `columns` for `command`'s stdio; returns
/// its master.
fn open_terminal(command: &mut Command, rows: u16, columns: u16) -> Result<OwnedFd, String> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let problem = |error: rustix::io::Errno| format!("cannot make a terminal: {error}");
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).map_err(problem)?;
    grantpt(&master).map_err(problem)?;
    unlockpt(&master).map_err(problem)?;
    let name = ptsname(&master, Vec::new()).map_err(problem)?;
    set_size(&master, rows, columns).map_err(problem)?;
    let slave = File::options()
        .read(true)
        .write(true)
        .open(name.to_str().map_err(|_| "a terminal name is not UTF-8")?)
        .map_err(|error| format!("cannot open the terminal {name:?}: {error}"))?;
    let clone = |file: &File| file.try_clone().map_err(|e| e.to_string());
    command
        .stdin(clone(&slave)?)
        .stdout(clone(&slave)?)
        .stderr(slave);
    Ok(master)
}

fn set_size(terminal: &impl AsFd, rows: u16, columns: u16) -> rustix::io::Result<()> {
    rustix::termios::tcsetwinsize(
        terminal,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
}

/// Copies what `source` gives into frames of `kind`, until its end (a
/// terminal's master says EIO once the command and its children closed it).
fn stream(
    mut source: impl Read + Send + 'static,
    kind: Kind,
    session: u32,
    port: &Port,
) -> JoinHandle<()> {
    let port = port.clone();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; MAX_PAYLOAD];
        loop {
            match source.read(&mut buffer) {
                Ok(0) => return,
                Ok(count) => {
                    if send(&port, &Frame::new(kind, session, &buffer[..count])).is_err() {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}

/// Writes the host's stdin chunks to the command, acknowledging each, and
/// closes its stdin when the host's ends.
fn feed(mut stdin: Box<dyn Write + Send>, chunks: Receiver<Vec<u8>>, session: u32, port: Port) {
    std::thread::spawn(move || {
        for chunk in chunks {
            if stdin.write_all(&chunk).is_err() {
                // The command closed its stdin: the rest is dropped, but
                // acknowledged so that the host does not wait for it.
            }
            let _ = send(
                &port,
                &Frame::number(Kind::StdinTaken, session, chunk.len() as u32),
            );
        }
    });
}

/// Waits for the command and its output, then sends how it ended.
fn report_end(mut child: Child, readers: Vec<JoinHandle<()>>, session: u32, port: Port) {
    std::thread::spawn(move || {
        use std::os::unix::process::ExitStatusExt;
        let ended = match child.wait() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Ended::Code(code),
                (None, Some(signal)) => Ended::Signal(signal),
                (None, None) => Ended::Code(255),
            },
            Err(_) => Ended::Code(255),
        };
        for reader in readers {
            let _ = reader.join();
        }
        let _ = send(&port, &Frame::new(Kind::Exit, session, ended.encode()));
    });
}
