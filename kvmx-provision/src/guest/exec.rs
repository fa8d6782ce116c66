//! [`Guest`]: a running VM's guest for programs. Commands run through the
//! VM's master SSH connection, with bytes in and out, a timeout and a
//! cancel flag; copies, rsync and scripts hang off the same value.

use std::process::ExitStatus;
use std::time::Duration;

use camino::Utf8Path;

use kvmx_core::CancelFlag;

use super::process::{ByteSink, Limits};
use super::{OutputSink, Stream, command_line};
use crate::ssh::SshTarget;
use crate::{Error, Vm};

/// How much of each stream [`Exec::output`] keeps unless told otherwise.
pub const DEFAULT_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// The guest of a running VM, reached over SSH.
#[derive(Debug, Clone)]
pub struct Guest {
    target: SshTarget,
}

impl Vm {
    /// The running guest, for commands, copies and scripts. Starts the VM's
    /// master SSH connection unless it runs (ended when the VM stops).
    pub fn guest(&self) -> Result<Guest, Error> {
        Guest::new(self.ssh_target()?)
    }
}

impl Guest {
    /// A guest reached through `target` (its master connection is started
    /// when `target` has a control socket).
    pub fn new(target: SshTarget) -> Result<Guest, Error> {
        target.ensure_master()?;
        Ok(Guest { target })
    }

    /// How ssh reaches it, for tools of one's own.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// A command to run: several words are an argv (each quoted for the
    /// guest's shell, so each arrives as it is), a single word is a shell
    /// command line (see [`command_line`]). No words is an error when it
    /// runs.
    pub fn exec<S: AsRef<str>>(&self, words: &[S]) -> Exec<'_> {
        let line = if words.is_empty() {
            Err(Error::Usage(
                "no command to run in the guest: give at least one word".into(),
            ))
        } else {
            command_line(words)
        };
        Exec {
            guest: self,
            line,
            stdin: None,
            env: Vec::new(),
            limits: Limits::default(),
            cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// A shell command line to run as it is.
    pub fn shell(&self, line: &str) -> Exec<'_> {
        self.exec(&[line])
    }

    /// Runs a shell command line, its output line by line to `sink`;
    /// returns its exit status.
    pub fn run(&self, line: &str, sink: &mut dyn OutputSink) -> Result<ExitStatus, Error> {
        self.target.run(line, sink)
    }

    /// [`Guest::run`] with `input` (if any) on the command's stdin.
    pub fn run_with_input(
        &self,
        line: &str,
        input: Option<&str>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.target.run_with_input(line, input, sink)
    }

    /// Copies host `source` to guest `destination` (recursively, scp).
    pub fn copy_to(
        &self,
        source: &Utf8Path,
        destination: &str,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.target.upload(source, destination, sink)
    }

    /// Copies guest `source` to host `destination` (recursively, scp).
    pub fn copy_from(
        &self,
        source: &str,
        destination: &Utf8Path,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.target.download(source, destination, sink)
    }

    /// `rsync -a` of host `source` to guest `destination`; `options` go
    /// before the paths.
    pub fn rsync_to(
        &self,
        source: &str,
        destination: &str,
        options: &[String],
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.target
            .rsync(source, &format!(":{destination}"), options, sink)
    }

    /// `rsync -a` of guest `source` to host `destination`.
    pub fn rsync_from(
        &self,
        source: &str,
        destination: &str,
        options: &[String],
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.target
            .rsync(&format!(":{source}"), destination, options, sink)
    }

    /// Copies `script` into the guest, runs it with `args` (as root with
    /// `root`) and removes it.
    pub fn run_script(
        &self,
        script: &Utf8Path,
        args: &[String],
        root: bool,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.target.run_script(script, args, root, sink)
    }

    /// Makes a new empty file (or folder) under the guest's /tmp.
    pub fn make_temp(&self, directory: bool) -> Result<String, Error> {
        self.target.make_temp(directory)
    }
}

/// A command about to run in the guest; see [`Guest::exec`].
#[must_use = "a command runs only with `output` or `stream`"]
pub struct Exec<'g> {
    guest: &'g Guest,
    line: Result<String, Error>,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    limits: Limits,
    cap: usize,
}

impl Exec<'_> {
    /// Bytes for the command's stdin (otherwise it reads an empty stdin).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// An environment variable for the command, set after the VM's
    /// `ssh.env`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Kills the command's ssh (and its process group) when it runs longer
    /// than `timeout`, then the command's process group in the guest (with
    /// a second, short ssh; a guest that does not answer keeps it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = Some(timeout);
        self
    }

    /// Kills the command's ssh (and its process group) once `cancel` is
    /// set, as [`Exec::timeout`] does.
    pub fn cancel(mut self, cancel: &CancelFlag) -> Self {
        self.limits.cancel = Some(cancel.clone());
        self
    }

    /// How many bytes of each stream [`Exec::output`] keeps (the default
    /// is [`DEFAULT_OUTPUT_CAP`]); the rest is read and dropped.
    pub fn output_cap(mut self, bytes: usize) -> Self {
        self.cap = bytes;
        self
    }

    /// Runs the command to its end and returns its status and output.
    pub fn output(self) -> Result<ExecOutput, Error> {
        let mut output = ExecOutput {
            code: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
        };
        let cap = self.cap;
        output.code = self.run(&mut Capture {
            output: &mut output,
            cap,
        })?;
        Ok(output)
    }

    /// Runs the command to its end, handing its output to `sink` as it
    /// comes; returns its exit code.
    pub fn stream(self, sink: &mut dyn ByteSink) -> Result<i32, Error> {
        self.run(sink)
    }

    fn run(self, sink: &mut dyn ByteSink) -> Result<i32, Error> {
        let line = self.line?;
        if let Some((name, _)) = self.env.iter().find(|(name, _)| !is_variable_name(name)) {
            return Err(Error::Usage(format!(
                "{name:?} is not an environment variable name (letters, digits and `_`, not starting with a digit)"
            )));
        }
        let target = &self.guest.target;
        let what = || format!("the guest command `{}`", short(&line));
        let stoppable = self.limits.timeout.is_some() || self.limits.cancel.is_some();
        let wrapped = if stoppable {
            target.wrap_killable(&line, &self.env)
        } else {
            target.wrap(&line, &self.env)
        };
        let status = target
            .run_wrapped(&wrapped, self.stdin, sink, &self.limits, &what)
            .inspect_err(|error| {
                if matches!(error, Error::TimedOut { .. } | Error::Cancelled { .. }) {
                    target.kill_remote(&wrapped);
                }
            })?;
        status.code().ok_or_else(|| Error::Transport {
            problem: format!("ssh running {} was killed ({status})", what()),
            hint: "something on the host killed ssh; run the command again".into(),
        })
    }
}

/// A command's exit code and output, each stream up to the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code (a signal that killed it shows as 128 + its
    /// number, as the guest's shell reports it).
    pub code: i32,
    /// Its standard output, up to the cap.
    pub stdout: Vec<u8>,
    /// Its standard error, up to the cap.
    pub stderr: Vec<u8>,
    /// Whether stdout went past the cap (the rest was dropped).
    pub stdout_truncated: bool,
    /// Whether stderr went past the cap (the rest was dropped).
    pub stderr_truncated: bool,
}

impl ExecOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Keeps each stream up to a cap.
struct Capture<'a> {
    output: &'a mut ExecOutput,
    cap: usize,
}

impl ByteSink for Capture<'_> {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        let (kept, truncated) = match stream {
            Stream::Stdout => (&mut self.output.stdout, &mut self.output.stdout_truncated),
            Stream::Stderr => (&mut self.output.stderr, &mut self.output.stderr_truncated),
        };
        let room = self.cap.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
        *truncated |= bytes.len() > room;
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A command line cut for messages.
fn short(line: &str) -> String {
    const MAX: usize = 80;
    match line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_up_to_the_cap() {
        let mut output = ExecOutput {
            code: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
        };
        let mut capture = Capture {
            output: &mut output,
            cap: 5,
        };
        capture.chunk(Stream::Stdout, b"abc");
        capture.chunk(Stream::Stdout, b"defg");
        capture.chunk(Stream::Stderr, b"12345");
        assert_eq!(output.stdout, b"abcde");
        assert!(output.stdout_truncated);
        assert_eq!(output.stderr, b"12345");
        assert!(!output.stderr_truncated);
    }

    #[test]
    fn variable_names_are_checked() {
        assert!(is_variable_name("_A1"));
        assert!(!is_variable_name("1A"));
        assert!(!is_variable_name("A-B"));
        assert!(!is_variable_name(""));
    }
}
