//! A QMP client: JSON lines over the VM's unix socket.
//!
//! Written against the wire protocol rather than a generated schema, so an
//! event or field that a newer QEMU sends is skipped instead of failing the
//! parse. QEMU serves one QMP client at a time; every read and write has a
//! timeout so a wedged QEMU cannot hang kvmx.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};

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

/// A connected, negotiated QMP session.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
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
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut message = json!({ "execute": command });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        self.send(&message)
    }

    /// Sends a message as given (for `kvmx qmp`) and returns the reply's
    /// `return` value.
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
            if reply.get("event").is_some() {
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

    /// The guest's run state as QEMU names it (`running`, `paused`, ...).
    pub fn run_state(&mut self) -> Result<String, QmpError> {
        let status = self.execute("query-status", None)?;
        status
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| QmpError::Protocol(status.to_string()))
    }

    /// Runs a human monitor command and returns its output.
    pub fn human_command(&mut self, command: &str) -> Result<String, QmpError> {
        let output = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command })),
        )?;
        Ok(output.as_str().unwrap_or_default().to_owned())
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|_| QmpError::Protocol(line.trim().to_owned()))
    }
}
