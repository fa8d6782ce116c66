//! Running external tools, for every library: each tool runs in its own
//! process group (so a Ctrl-C on the terminal reaches kvmx alone, which
//! then stops the whole group), with a deadline and the caller's cancel
//! flag, its stdout and stderr read on their own threads (and appended to a
//! log when there is one), and a failure carries the command and the tail
//! of what the tool said on stderr. Nothing reaches the terminal.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::CancelFlag;

/// How many lines of stderr a failure carries.
const TAIL_LINES: usize = 15;
/// How long a stopped tool gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The most of a tool's stdout kept in memory for the caller.
const STDOUT_LIMIT: usize = 1 << 20;

/// Why a tool did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// It ran and failed, or ran past its deadline.
    #[error(transparent)]
    Failed(#[from] ToolError),
    /// The caller's cancel flag was set; the tool was stopped.
    #[error("interrupted")]
    Interrupted,
    /// It could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The result of running a tool.
pub type Result<T> = std::result::Result<T, ProcessError>;

/// A tool failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed ({status}): `{command}`{}", tail_text(.stderr_tail))]
pub struct ToolError {
    /// What the build was doing ("bootstrap the system", ...).
    pub what: String,
    /// The command line.
    pub command: String,
    /// How it ended.
    pub status: String,
    /// The last lines it wrote to stderr.
    pub stderr_tail: Vec<String>,
    /// The log with its whole output, when there is one.
    pub log: Option<Utf8PathBuf>,
}

/// [`ProcessError::Interrupted`] once `cancel` is set.
pub fn check_cancel(cancel: &CancelFlag) -> Result<()> {
    if cancel.is_cancelled() {
        Err(ProcessError::Interrupted)
    } else {
        Ok(())
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n  its last error output:");
    for line in tail {
        text.push_str("\n  | ");
        text.push_str(line);
    }
    text
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct Tool {
    program: OsString,
    args: Vec<OsString>,
    what: String,
    deadline: Duration,
    envs: Vec<(OsString, OsString)>,
    clean_env: bool,
    any_status: bool,
}

impl Tool {
    /// `program` (a path or a name found on `PATH`), described by `what`
    /// in errors. The default deadline is ten minutes.
    pub fn new(program: impl Into<OsString>, what: impl Into<String>) -> Self {
        Tool {
            program: program.into(),
            args: Vec::new(),
            what: what.into(),
            deadline: Duration::from_secs(600),
            envs: Vec::new(),
            clean_env: false,
            any_status: false,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the tool.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// Starts the tool with no environment but `PATH`, `LC_ALL` and the
    /// variables set with [`Tool::env`].
    pub fn clean_env(mut self) -> Self {
        self.clean_env = true;
        self
    }

    /// Takes its output whatever its exit status (a deadline or a cancel
    /// still fails).
    pub fn any_status(mut self) -> Self {
        self.any_status = true;
        self
    }

    /// How long the tool may run.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The command line, quoted for a shell, for logs and errors.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|part| {
                let text = part.to_string_lossy();
                shell_quote(&text)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Prepends `program` and `args`: runs this tool through a wrapper
    /// such as `unshare`.
    pub fn wrapped(mut self, program: impl Into<OsString>, args: &[&str]) -> Self {
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.push(std::mem::take(&mut self.program));
        all.append(&mut self.args);
        self.program = program.into();
        self.args = all;
        self
    }
}

/// Quotes a word for a POSIX shell: as it is when it holds only
/// characters no shell treats specially, otherwise in single quotes (a
/// quote inside written `'\''`). An empty word is `''`.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%^".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Folders searched after `PATH`: a plain user's `PATH` on Debian has no
/// `sbin`, where `mkfs.ext4` lives.
const SBIN: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// `PATH` with the `sbin` folders appended when missing: the search path of
/// the tools.
pub fn search_path() -> OsString {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    for sbin in SBIN {
        if !dirs.iter().any(|d| d.as_os_str() == sbin) {
            dirs.push(sbin.into());
        }
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Runs tools for one piece of work (a build, a start): appends their
/// output to its log, if it has one, and stops them when it is cancelled.
#[derive(Debug, Clone)]
pub struct Runner {
    log: Arc<Mutex<Option<File>>>,
    log_path: Option<Utf8PathBuf>,
    cancel: CancelFlag,
    path: OsString,
}

/// What a tool printed on stdout (up to 1 MiB).
#[derive(Debug, Clone)]
pub struct Finished {
    /// Its standard output.
    pub stdout: Vec<u8>,
}

impl Runner {
    /// Appends to `log_path` (created with its folder if needed; a log that
    /// cannot be written, on a full disk for example, is skipped rather than
    /// failing the build).
    pub fn new(log_path: &Utf8Path, cancel: CancelFlag) -> Self {
        let file = log_path
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .ok()
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_path)
                    .ok()
            });
        Runner {
            log: Arc::new(Mutex::new(file)),
            log_path: Some(log_path.to_owned()),
            cancel,
            path: search_path(),
        }
    }

    /// Keeps no log: a failure still carries the tail of stderr.
    pub fn unlogged(cancel: CancelFlag) -> Self {
        Runner {
            log: Arc::new(Mutex::new(None)),
            log_path: None,
            cancel,
            path: search_path(),
        }
    }

    /// The log, if there is one.
    pub fn log_path(&self) -> Option<&Utf8Path> {
        self.log_path.as_deref()
    }

    /// The cancel flag of the work.
    pub fn cancel_flag(&self) -> &CancelFlag {
        &self.cancel
    }

    /// Writes a line to the log.
    pub fn note(&self, line: &str) {
        write_log(&self.log, line);
    }

    /// Runs `tool` to its end; an exit status other than 0 is an error.
    pub fn run(&self, tool: &Tool) -> Result<Finished> {
        check_cancel(&self.cancel)?;
        let command_line = tool.command_line();
        self.note(&format!("$ {command_line}"));
        let mut command = Command::new(&tool.program);
        if tool.clean_env {
            command.env_clear();
        }
        command
            .args(&tool.args)
            .env("PATH", &self.path)
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (name, value) in &tool.envs {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: tool.program.to_string_lossy().into_owned(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let out_log = self.log.clone();
        let stdout_thread = std::thread::spawn(move || read_stdout(stdout, &out_log));
        let err_log = self.log.clone();
        let stderr_thread = std::thread::spawn(move || read_stderr(stderr, &err_log));

        let ended = self.wait(&mut child, tool.deadline);
        let stdout = join(stdout_thread);
        let stderr_tail: Vec<String> = join(stderr_thread).into();
        let failure = |status: String, stderr_tail: Vec<String>| ToolError {
            what: tool.what.clone(),
            command: command_line.clone(),
            status,
            stderr_tail,
            log: self.log_path.clone(),
        };
        match ended {
            Ended::Exited(status) if status.success() || tool.any_status => Ok(Finished { stdout }),
            Ended::Exited(status) => {
                let status = describe(status);
                self.note(&format!("# {status}"));
                Err(failure(status, stderr_tail).into())
            }
            Ended::TimedOut => {
                let status = format!("no result after {} s", tool.deadline.as_secs());
                self.note(&format!("# {status}"));
                Err(failure(status, stderr_tail).into())
            }
            Ended::Cancelled => {
                self.note("# stopped: the work was interrupted");
                Err(ProcessError::Interrupted)
            }
        }
    }

    fn wait(&self, child: &mut Child, deadline: Duration) -> Ended {
        let start = Instant::now();
        // Short tools (qemu-img create: a few ms) are seen ending at once;
        // long ones are looked at every 50 ms.
        let mut pause = Duration::from_millis(2);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ended::Exited(status),
                Ok(None) => {}
                Err(_) => return Ended::Exited(ExitStatus::from_raw(1 << 8)),
            }
            if self.cancel.is_cancelled() {
                stop(child);
                return Ended::Cancelled;
            }
            if start.elapsed() > deadline {
                stop(child);
                return Ended::TimedOut;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// SIGTERM to the tool's process group, SIGKILL if it is still there after
/// [`STOP_GRACE`].
fn stop(child: &mut Child) {
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; make sure the rest of its group is too.
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

fn join<T: Default>(thread: JoinHandle<T>) -> T {
    thread.join().unwrap_or_default()
}

fn write_log(log: &Mutex<Option<File>>, line: &str) {
    if let Ok(mut guard) = log.lock()
        && let Some(file) = guard.as_mut()
        && writeln!(file, "{line}").is_err()
    {
        // A full disk: stop logging rather than failing the build on it.
        *guard = None;
    }
}

fn read_stdout(stdout: impl Read, log: &Mutex<Option<File>>) -> Vec<u8> {
    let mut kept = Vec::new();
    for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
        write_log(log, &String::from_utf8_lossy(&line));
        if kept.len() + line.len() < STDOUT_LIMIT {
            kept.extend_from_slice(&line);
            kept.push(b'\n');
        }
    }
    kept
}

fn read_stderr(stderr: impl Read, log: &Mutex<Option<File>>) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(stderr).split(b'\n').map_while(|l| l.ok()) {
        let line = String::from_utf8_lossy(&line).into_owned();
        write_log(log, &line);
        if line.trim().is_empty() {
            continue;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(dir: &tempfile::TempDir) -> Runner {
        let log = Utf8Path::from_path(dir.path()).unwrap().join("build.log");
        Runner::new(&log, CancelFlag::new())
    }

    #[test]
    fn failure_carries_command_and_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let runner = runner(&dir);
        let tool = Tool::new("sh", "test the runner").args([
            "-c",
            "echo out; for i in $(seq 30); do echo line $i >&2; done; exit 3",
        ]);
        let Err(ProcessError::Failed(error)) = runner.run(&tool) else {
            panic!("expected a tool error");
        };
        assert_eq!(error.status, "exit status 3");
        assert_eq!(error.stderr_tail.len(), TAIL_LINES);
        assert_eq!(error.stderr_tail.last().unwrap(), "line 30");
        assert!(error.command.starts_with("sh -c 'echo out;"));
        let log = std::fs::read_to_string(runner.log_path().unwrap()).unwrap();
        assert!(log.contains("out\n") && log.contains("line 1\n") && log.contains("exit status 3"));
    }

    #[test]
    fn cancel_stops_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let runner = runner(&dir);
        let flag = runner.cancel_flag().clone();
        let start = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.cancel();
        });
        let tool = Tool::new("sh", "sleep").args(["-c", "sleep 30 & sleep 30; wait"]);
        assert!(matches!(runner.run(&tool), Err(ProcessError::Interrupted)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deadline_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let tool = Tool::new("sleep", "wait")
            .arg("10")
            .deadline(Duration::from_millis(200));
        let Err(ProcessError::Failed(error)) = runner(&dir).run(&tool) else {
            panic!("expected a tool error");
        };
        assert!(error.status.contains("no result"), "{}", error.status);
    }

    #[test]
    fn quoting() {
        let tool = Tool::new("echo", "x").args(["a b", "c", "it's"]);
        assert_eq!(tool.command_line(), r"echo 'a b' c 'it'\''s'");
    }
}
