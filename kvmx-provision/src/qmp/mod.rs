//! A QMP client: JSON lines over the VM's unix socket.
//!
//! Commands are typed ([`commands`]); the transport reads raw JSON lines,
//! so an event or field that a newer QEMU sends is kept or skipped instead
//! of failing the parse. Events that arrive between replies are queued, and
//! waits (`SHUTDOWN`, `MIGRATION`, `DEVICE_DELETED`) read them on the same
//! connection instead of polling. QEMU serves one QMP client at a time;
//! every read and write has a timeout so a wedged QEMU cannot hang kvmx.

pub mod commands;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};

use commands::Command;

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QmpError {
    /// The socket could not be reached.
    #[error("cannot connect to QMP at {path}")]
    Connect {
        /// The socket.
        path: Utf8PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed (or timed out).
    #[error("QMP connection failed")]
    Io(#[from] std::io::Error),
    /// QEMU closed the connection.
    #[error("QEMU closed the QMP connection")]
    Closed,
    /// QEMU sent something that is not QMP.
    #[error("unexpected QMP message: {0}")]
    Protocol(String),
    /// An awaited event did not come in time.
    #[error("QEMU sent no {event} event within {} s", .after.as_secs())]
    NoEvent {
        /// The event.
        event: String,
        /// How long it was awaited.
        after: Duration,
    },
    /// A reply did not have the expected shape.
    #[error("unexpected reply to `{command}`: {reply}")]
    Reply {
        /// The command.
        command: String,
        /// What came back.
        reply: String,
    },
    /// QEMU refused the command.
    #[error("QEMU refused `{command}`: {description}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's message.
        description: String,
    },
}

/// An event QEMU sent.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Its name (`SHUTDOWN`, `MIGRATION`...).
    pub name: String,
    /// Its `data`, `null` when it has none.
    pub data: Value,
}

/// A connected, negotiated QMP session.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// The read timeout of every exchange.
    timeout: Duration,
    /// Events read while waiting for replies, oldest first.
    events: VecDeque<QmpEvent>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves negotiation mode.
    pub fn connect(socket: &Utf8Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(socket).map_err(|source| QmpError::Connect {
            path: socket.to_owned(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            timeout,
            events: VecDeque::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute(&commands::Capabilities)?;
        Ok(qmp)
    }

    /// Runs a typed command and returns its reply.
    pub fn execute<C: Command>(&mut self, command: &C) -> Result<C::Reply, QmpError> {
        let mut message = json!({ "execute": C::NAME });
        let arguments = serde_json::to_value(command).expect("QMP arguments serialize");
        if !arguments.is_null() {
            message["arguments"] = arguments;
        }
        let reply = self.send(&message)?;
        serde_json::from_value(reply.clone()).map_err(|_| QmpError::Reply {
            command: C::NAME.into(),
            reply: reply.to_string(),
        })
    }

    /// Sends a message as given (for `kvmx qmp`) and returns the reply's
    /// `return` value; events read meanwhile are queued.
    pub fn send(&mut self, message: &Value) -> Result<Value, QmpError> {
        let command = message
            .get("execute")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let mut line = serde_json::to_vec(message).expect("JSON values serialize");
        line.push(b'\n');
        self.writer.write_all(&line)?;
        loop {
            let reply = self.read_message()?;
            if let Some(event) = as_event(&reply) {
                self.events.push_back(event);
                continue;
            }
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                let text = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                return Err(QmpError::Command {
                    command,
                    class: text("class"),
                    description: text("desc"),
                });
            }
            return Err(QmpError::Protocol(reply.to_string()));
        }
    }

    /// Waits up to `timeout` for the first event that `wanted` accepts,
    /// queued or new; the events it passes over are dropped.
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        wanted: impl Fn(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, QmpError> {
        let matches = |event: &QmpEvent| event.name == name && wanted(event);
        while let Some(event) = self.events.pop_front() {
            if matches(&event) {
                return Ok(event);
            }
        }
        let deadline = Instant::now() + timeout;
        let no_event = || QmpError::NoEvent {
            event: name.to_owned(),
            after: timeout,
        };
        let result = loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break Err(no_event());
            };
            self.reader
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.read_message() {
                Ok(message) => match as_event(&message) {
                    Some(event) if matches(&event) => break Ok(event),
                    _ => {}
                },
                Err(QmpError::Io(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break Err(no_event());
                }
                Err(error) => break Err(error),
            }
        };
        self.reader.get_ref().set_read_timeout(Some(self.timeout))?;
        result
    }

    /// The guest's run state as QEMU names it (`running`, `paused`, ...).
    pub fn run_state(&mut self) -> Result<String, QmpError> {
        Ok(self.execute(&commands::QueryStatus)?.status)
    }

    /// Runs a human monitor command and returns its output.
    pub fn human_command(&mut self, command: &str) -> Result<String, QmpError> {
        self.execute(&commands::HumanMonitorCommand {
            command_line: command.to_owned(),
        })
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol(line.trim().to_owned()))
    }
}

fn as_event(message: &Value) -> Option<QmpEvent> {
    Some(QmpEvent {
        name: message.get("event")?.as_str()?.to_owned(),
        data: message.get("data").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests;
