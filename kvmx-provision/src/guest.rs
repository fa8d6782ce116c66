//! Work in a running guest over SSH: commands with their output handed
//! on as bytes or line by line, file copies (scp over SFTP), rsync in both
//! directions, scripts run from a temporary path. [`Guest`] is the way in
//! for programs; the [`SshTarget`] methods here are what it runs on.

mod exec;
pub(crate) mod process;
pub(crate) mod words;

use std::process::{Command, ExitStatus};

use camino::Utf8Path;

pub use exec::{Exec, ExecOutput, Guest};
pub use kvmx_core::CancelFlag;
pub use kvmx_core::observe::Stream;
pub use process::{ByteSink, Discard};
pub use words::{command_line, quote};

use crate::Error;
use crate::ssh::SshTarget;
use process::{Ended, Limits, drive};

/// Receives the output of work in the guest, a line at a time.
pub trait OutputSink {
    /// One line (without its newline).
    fn line(&mut self, stream: Stream, line: &str);
}

/// Cuts byte chunks into lines for an [`OutputSink`]: a line ends at `\n`
/// (a `\r` before it is dropped), bytes that are not UTF-8 are shown as
/// U+FFFD, and a last line without its newline is passed on at the end.
pub struct Lines<'a> {
    inner: &'a mut dyn OutputSink,
    partial: [Vec<u8>; 2],
}

impl<'a> Lines<'a> {
    /// Lines for `inner`.
    pub fn new(inner: &'a mut dyn OutputSink) -> Self {
        Lines {
            inner,
            partial: [Vec::new(), Vec::new()],
        }
    }

    fn emit(inner: &mut dyn OutputSink, stream: Stream, mut line: &[u8]) {
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        inner.line(stream, &String::from_utf8_lossy(line));
    }

    /// Passes on the last lines that had no newline.
    pub fn finish(mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                Self::emit(self.inner, stream, &rest);
            }
        }
    }
}

impl ByteSink for Lines<'_> {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        let partial = &mut self.partial[stream as usize];
        partial.extend_from_slice(bytes);
        let Some(last) = partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = partial.split_off(last + 1);
        let complete = std::mem::replace(partial, rest);
        for line in complete[..last].split(|&b| b == b'\n') {
            Self::emit(self.inner, stream, line);
        }
    }
}

/// Passes chunks on, keeping the end of stderr to explain a failure of ssh.
struct StderrTail<'a> {
    inner: &'a mut dyn ByteSink,
    tail: Vec<u8>,
}

impl StderrTail<'_> {
    const KEPT: usize = 4096;

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }
}

impl ByteSink for StderrTail<'_> {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        if stream == Stream::Stderr {
            self.tail.extend_from_slice(bytes);
            if self.tail.len() > 2 * Self::KEPT {
                self.tail.drain(..self.tail.len() - Self::KEPT);
            }
        }
        self.inner.chunk(stream, bytes);
    }
}

/// Output kept in order, for results and error messages.
#[derive(Debug, Default)]
pub struct Collected {
    /// The lines, each with its stream.
    pub lines: Vec<(Stream, String)>,
}

impl Collected {
    /// The last `count` lines, stdout and stderr interleaved as they came.
    pub fn tail(&self, count: usize) -> String {
        let start = self.lines.len().saturating_sub(count);
        let lines: Vec<&str> = self.lines[start..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect();
        lines.join("\n")
    }
}

impl OutputSink for Collected {
    fn line(&mut self, stream: Stream, line: &str) {
        self.lines.push((stream, line.to_owned()));
    }
}

impl SshTarget {
    /// Runs `command`, an ssh-based tool aimed at this guest, to its end or
    /// until `limits` stop it (then an error saying `what` was stopped);
    /// returns its status and the end of its stderr.
    pub(crate) fn drive(
        &self,
        command: Command,
        input: Option<Vec<u8>>,
        sink: &mut dyn ByteSink,
        limits: &Limits,
        what: &dyn Fn() -> String,
    ) -> Result<(ExitStatus, String), Error> {
        let mut tail = StderrTail {
            inner: sink,
            tail: Vec::new(),
        };
        match drive(command, input, &mut tail, limits)? {
            Ended::Exited(status) => Ok((status, tail.text())),
            Ended::TimedOut(after) => Err(Error::TimedOut {
                what: what(),
                after,
            }),
            Ended::Cancelled => Err(Error::Cancelled { what: what() }),
        }
    }

    /// Runs `command`, an ssh-based tool aimed at this guest, streaming its
    /// output to `sink` line by line; a failure of ssh itself becomes an
    /// error that says why (see [`SshTarget::explain`]).
    pub fn stream(
        &self,
        command: Command,
        input: Option<&str>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut lines = Lines::new(sink);
        let (status, stderr) = self.drive(
            command,
            input.map(|i| i.as_bytes().to_vec()),
            &mut lines,
            &Limits::default(),
            &|| program.clone(),
        )?;
        lines.finish();
        self.explain(status, &stderr)
    }

    /// Runs a wrapped command line (see `ssh::exit`) with `input` on its
    /// stdin; a status of 255 that the guest does not confirm as the
    /// command's own is a transport error.
    pub(crate) fn run_wrapped(
        &self,
        wrapped: &crate::ssh::Wrapped,
        input: Option<Vec<u8>>,
        sink: &mut dyn ByteSink,
        limits: &Limits,
        what: &dyn Fn() -> String,
    ) -> Result<ExitStatus, Error> {
        let mut command = self.command();
        command.arg("--").arg(&wrapped.line);
        let (status, stderr) = self.drive(command, input, sink, limits, what)?;
        self.settle(status, &stderr, wrapped)
    }

    /// Runs a shell command line in the guest, streaming its output.
    pub fn run(&self, command_line: &str, sink: &mut dyn OutputSink) -> Result<ExitStatus, Error> {
        self.run_with_input(command_line, None, sink)
    }

    /// [`SshTarget::run`] with `input` on the command's stdin (for what must
    /// not show on the host's command lines).
    pub fn run_with_input(
        &self,
        command_line: &str,
        input: Option<&str>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        let mut lines = Lines::new(sink);
        let status = self.run_wrapped(
            &self.wrap(command_line, &[]),
            input.map(|i| i.as_bytes().to_vec()),
            &mut lines,
            &Limits::default(),
            &|| format!("the guest command `{command_line}`"),
        )?;
        lines.finish();
        Ok(status)
    }

    /// Copies host `source` to guest `destination` (recursively).
    pub fn upload(
        &self,
        source: &Utf8Path,
        destination: &str,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.stream(
            self.scp_command(source.as_str(), destination, true),
            None,
            sink,
        )
    }

    /// Copies guest `source` to host `destination` (recursively).
    pub fn download(
        &self,
        source: &str,
        destination: &Utf8Path,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        self.stream(
            self.scp_command(destination.as_str(), source, false),
            None,
            sink,
        )
    }

    /// The `scp -r` command that copies host `host` to guest `guest`
    /// (`to_guest`), or guest `guest` to host `host`. scp shows its progress
    /// meter when its stdout is a terminal.
    pub fn scp_command(&self, host: &str, guest: &str, to_guest: bool) -> Command {
        let guest = format!("{}:{guest}", self.destination());
        let (from, to) = if to_guest {
            (host.to_owned(), guest)
        } else {
            (guest, host.to_owned())
        };
        let mut command = self.scp();
        command.arg("-r").arg(from).arg(to);
        command
    }

    /// `rsync -a` from `source` to `destination`, where the guest side is
    /// written `:path`; `options` go before the paths.
    pub fn rsync(
        &self,
        source: &str,
        destination: &str,
        options: &[String],
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        let remote = |path: &str| match path.strip_prefix(':') {
            Some(guest) => format!("{}:{guest}", self.destination()),
            None => path.to_owned(),
        };
        let mut command = Command::new("rsync");
        command
            .args(["-a", "--rsync-path=sudo rsync", "-e"])
            .arg(self.rsync_shell())
            .args(options)
            .arg(remote(source))
            .arg(remote(destination));
        let status = self.stream(command, None, sink)?;
        if !status.success() && !self.run("command -v rsync", &mut Discard)?.success() {
            return Err(Error::MissingInGuest {
                program: "rsync".into(),
                needed_for: "kvmx copies folders with rsync on both sides".into(),
                package: "rsync",
            });
        }
        Ok(status)
    }

    /// Uploads `script` to a temporary path in the guest, runs it with
    /// `args` (as root with `root`), and removes it, whatever its result.
    pub fn run_script(
        &self,
        script: &Utf8Path,
        args: &[String],
        root: bool,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        let remote = self.make_temp(false)?;
        let uploaded = self.upload(script, &remote, sink)?;
        let status = if uploaded.success() {
            let quoted: Vec<String> = args.iter().map(|a| quote(a)).collect();
            let sudo = if root { "sudo " } else { "" };
            self.run(
                &format!("chmod 700 {remote} && {sudo}{remote} {}", quoted.join(" ")),
                sink,
            )?
        } else {
            uploaded
        };
        self.run(&format!("rm -f {remote}"), &mut Discard)?;
        Ok(status)
    }

    /// Makes a new empty file (or, with `directory`, folder) under the
    /// guest's /tmp and returns its path.
    pub fn make_temp(&self, directory: bool) -> Result<String, Error> {
        let option = if directory { "-d " } else { "" };
        let mut said = Collected::default();
        let status = self.run(&format!("mktemp {option}/tmp/kvmx-run.XXXXXXXX"), &mut said)?;
        let remote = said
            .lines
            .iter()
            .find(|(stream, _)| *stream == Stream::Stdout)
            .map(|(_, line)| line.trim().to_owned())
            .unwrap_or_default();
        if !status.success() || !remote.starts_with("/tmp/kvmx-run.") {
            return Err(Error::Tool {
                what: format!("mktemp in the guest failed ({status})"),
                output: said.tail(5),
            });
        }
        Ok(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_bytes_that_are_not_utf8_and_split_chunks() {
        let mut collected = Collected::default();
        let mut lines = Lines::new(&mut collected);
        lines.chunk(Stream::Stdout, b"a\xff b\nsec");
        lines.chunk(Stream::Stderr, b"err\r\n");
        lines.chunk(Stream::Stdout, b"ond\n\nlast");
        lines.finish();
        assert_eq!(
            collected.lines,
            [
                (Stream::Stdout, "a\u{fffd} b".to_owned()),
                (Stream::Stderr, "err".to_owned()),
                (Stream::Stdout, "second".to_owned()),
                (Stream::Stdout, String::new()),
                (Stream::Stdout, "last".to_owned()),
            ]
        );
    }
}
