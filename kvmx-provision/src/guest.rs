//! Work in a running guest over SSH: commands with their output streamed
//! line by line, file copies (scp over SFTP), rsync in both directions,
//! scripts run from a temporary path.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use camino::Utf8Path;

use crate::Error;
use crate::ssh::SshTarget;

/// Which stream a line of guest output came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives the output of work in the guest, a line at a time.
pub trait OutputSink {
    /// One line (without its newline).
    fn line(&mut self, stream: Stream, line: &str);
}

/// Output that is thrown away.
pub struct Discard;

impl OutputSink for Discard {
    fn line(&mut self, _: Stream, _: &str) {}
}

/// Passes lines on, keeping the last lines of stderr.
struct StderrTail<'a> {
    inner: &'a mut dyn OutputSink,
    lines: Vec<String>,
}

impl OutputSink for StderrTail<'_> {
    fn line(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Stderr {
            if self.lines.len() == 20 {
                self.lines.remove(0);
            }
            self.lines.push(line.to_owned());
        }
        self.inner.line(stream, line);
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

/// Runs `command` (with its output piped, `input` on its stdin) to the end,
/// handing each line to `sink` as it comes; returns the exit status.
fn stream(
    mut command: Command,
    input: Option<&str>,
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(input.map_or_else(Stdio::null, |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_owned();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    let (sender, receiver) = mpsc::channel();
    let readers = [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        ),
    ];
    for (kind, reader) in readers {
        let Some(reader) = reader else { continue };
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if sender.send((kind, line)).is_err() {
                    break;
                }
            }
        });
    }
    drop(sender);
    for (kind, line) in receiver {
        sink.line(kind, &line);
    }
    child.wait().map_err(|source| Error::Spawn {
        program: "ssh".into(),
        source,
    })
}

impl SshTarget {
    /// Runs `command`, an ssh-based tool aimed at this guest, streaming its
    /// output to `sink`; a failure of ssh itself becomes an error that says
    /// why (see [`SshTarget::explain`]).
    pub fn stream(
        &self,
        command: Command,
        input: Option<&str>,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, Error> {
        let mut tail = StderrTail {
            inner: sink,
            lines: Vec::new(),
        };
        let status = stream(command, input, &mut tail)?;
        self.explain(status, &tail.lines.join("\n"))
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
        let mut command = self.command();
        command.arg("--").arg(self.with_env(command_line));
        self.stream(command, input, sink)
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
        let mut made = self.command();
        made.args(["--", "mktemp"])
            .args(directory.then_some("-d"))
            .arg("/tmp/kvmx-run.XXXXXXXX");
        let output = made
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|source| Error::Spawn {
                program: "ssh".into(),
                source,
            })?;
        let remote = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || !remote.starts_with("/tmp/kvmx-run.") {
            return Err(Error::InGuest {
                what: format!(
                    "making a temporary {}",
                    if directory { "folder" } else { "file" }
                ),
            });
        }
        Ok(remote)
    }
}

/// Quotes a word for the guest's shell.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| word.to_owned(), |q| q.into_owned())
}
