//! Running an ssh-based tool (ssh, scp, rsync) to its end: its stdin fed
//! from bytes, its output handed on in byte chunks as it comes, and, when
//! asked, a deadline and a cancel flag that kill it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use kvmx_core::CancelFlag;

use crate::Error;
use kvmx_core::observe::Stream;

/// How often a running tool is checked against its deadline and cancel
/// flag.
const TICK: Duration = Duration::from_millis(20);

/// Output that is thrown away.
pub struct Discard;

impl super::OutputSink for Discard {
    fn line(&mut self, _: Stream, _: &str) {}
}

impl ByteSink for Discard {
    fn chunk(&mut self, _: Stream, _: &[u8]) {}
}

/// Receives the output of work in the guest as raw bytes, in chunks of
/// any size, each from one stream.
pub trait ByteSink {
    /// The next bytes of `stream`.
    fn chunk(&mut self, stream: Stream, bytes: &[u8]);
}

/// When to give up on a running tool.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    /// The longest it may run.
    pub timeout: Option<Duration>,
    /// Stops it when set.
    pub cancel: Option<CancelFlag>,
}

impl Limits {
    fn any(&self) -> bool {
        self.timeout.is_some() || self.cancel.is_some()
    }
}

/// How a tool ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// It ran past its timeout and was killed.
    TimedOut(Duration),
    /// Its cancel flag was set and it was killed.
    Cancelled,
}

/// Runs `command` with `input` on its stdin (or nothing), handing its
/// output to `sink`, until it exits or `limits` stop it.
///
/// With limits the tool runs in a process group of its own, so that
/// killing it also kills what it started (rsync and scp start ssh).
/// Without, it stays in the caller's group, so a terminal's Ctrl-C still
/// reaches it as it reaches the caller.
pub(crate) fn drive(
    mut command: Command,
    input: Option<Vec<u8>>,
    sink: &mut dyn ByteSink,
    limits: &Limits,
) -> Result<Ended, Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    if limits.any() {
        command.process_group(0);
    }
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // A tool that exits without reading all of it closes the pipe: the
        // write then fails, and that is its business.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let (sender, receiver) = mpsc::channel();
    let readers: [(Stream, Option<Box<dyn Read + Send>>); 2] = [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ),
    ];
    for (stream, reader) in readers {
        let Some(mut reader) = reader else { continue };
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        if sender.send((stream, buffer[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    }
    drop(sender);
    let started = Instant::now();
    let stop_reason = || -> Option<Ended> {
        if limits.cancel.as_ref().is_some_and(CancelFlag::is_cancelled) {
            return Some(Ended::Cancelled);
        }
        limits
            .timeout
            .filter(|timeout| started.elapsed() >= *timeout)
            .map(Ended::TimedOut)
    };
    // Output first: the pipes close when the tool and everything it
    // started have exited.
    loop {
        match receiver.recv_timeout(TICK) {
            Ok((stream, bytes)) => sink.chunk(stream, &bytes),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(reason) = stop_reason() {
            return kill(&mut child, &program, reason);
        }
    }
    loop {
        let exited = child.try_wait().map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
        if let Some(status) = exited {
            return Ok(Ended::Exited(status));
        }
        if let Some(reason) = stop_reason() {
            return kill(&mut child, &program, reason);
        }
        std::thread::sleep(TICK);
    }
}

/// Kills the tool's process group and reaps it.
fn kill(child: &mut Child, program: &str, reason: Ended) -> Result<Ended, Error> {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = killpg(pid, Signal::SIGKILL);
    child.wait().map_err(|source| Error::Spawn {
        program: program.to_owned(),
        source,
    })?;
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Bytes(Vec<u8>, Vec<u8>);

    impl ByteSink for Bytes {
        fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
            match stream {
                Stream::Stdout => self.0.extend_from_slice(bytes),
                Stream::Stderr => self.1.extend_from_slice(bytes),
            }
        }
    }

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script);
        command
    }

    #[test]
    fn bytes_go_in_and_come_out_unchanged() {
        let mut sink = Bytes::default();
        let input = b"\xff\xfe binary\0\nline".to_vec();
        let ended = drive(
            sh("cat; printf '\\377 err' >&2; exit 5"),
            Some(input.clone()),
            &mut sink,
            &Limits::default(),
        )
        .unwrap();
        assert!(matches!(ended, Ended::Exited(s) if s.code() == Some(5)));
        assert_eq!(sink.0, input);
        assert_eq!(sink.1, b"\xff err");
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let mut sink = Bytes::default();
        let start = Instant::now();
        // The background sleep holds stdout open: only killing the group
        // ends it.
        let ended = drive(
            sh("sleep 30 & sleep 30"),
            None,
            &mut sink,
            &Limits {
                timeout: Some(Duration::from_millis(300)),
                cancel: None,
            },
        )
        .unwrap();
        assert!(matches!(ended, Ended::TimedOut(_)), "{ended:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_cancel_flag_stops_it() {
        let cancel = CancelFlag::new();
        let setter = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            setter.cancel();
        });
        let ended = drive(
            sh("sleep 30"),
            None,
            &mut Bytes::default(),
            &Limits {
                timeout: None,
                cancel: Some(cancel),
            },
        )
        .unwrap();
        assert!(matches!(ended, Ended::Cancelled), "{ended:?}");
    }
}
