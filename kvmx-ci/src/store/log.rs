//! A run's logs: the combined `log`, one line per line of output behind a
//! UTC time and the step's name (`kvmx-ci` for the runner's own lines), and
//! one `steps/<n>-<name>.log` per step. [`StepLog`] takes a step's output
//! as bytes ([`ByteSink`]) or as kvmx's progress events ([`Observer`]);
//! [`follow`] prints a log as it grows.

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::observe::{Event, Observer, Stream};
use kvmx_provision::guest::ByteSink;

use super::record::{RunResult, Timestamp};
use super::{Run, StoreError};
use crate::Error;

/// The name runner lines carry in the combined log.
pub(crate) const RUNNER: &str = "kvmx-ci";

/// A line longer than this is cut, so output without newlines cannot
/// fill the memory.
pub(crate) const LONGEST_LINE: usize = 64 * 1024;

/// How often [`follow`] looks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// A log file written a line at a time, remembering its first failure.
pub(crate) struct LogFile {
    path: Utf8PathBuf,
    file: Option<File>,
}

impl LogFile {
    /// Opens `path` for appending, creating it.
    pub(crate) fn open(path: Utf8PathBuf) -> Result<LogFile, Error> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        Ok(LogFile {
            path,
            file: Some(file),
        })
    }

    /// Appends one line (a newline is added) in one write, so that a
    /// reader following the file sees whole lines.
    pub(crate) fn line(&mut self, line: &str) -> Result<(), StoreError> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(|source| {
                // One failure is enough: stop writing to a full disk.
                self.file = None;
                StoreError::Log {
                    path: self.path.clone(),
                    source,
                }
            })
    }
}

/// The word a stream has in the logs.
fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// A progress event of kvmx as one log line, or none for events that say
/// nothing new.
pub(crate) fn event_text(event: &Event<'_>) -> Option<String> {
    match event {
        Event::StageStarted { stage } => Some(stage.to_string()),
        Event::StageFinished {
            stage,
            elapsed,
            note,
        } => {
            let elapsed = format!("{:.1}s", elapsed.as_secs_f64());
            Some(match note {
                Some(note) => format!("{stage}: done in {elapsed} ({note})"),
                None => format!("{stage}: done in {elapsed}"),
            })
        }
        Event::Note { text } => Some(text.to_string()),
        Event::Warning { text } => Some(format!("warning: {text}")),
        Event::GuestOutput { vm, stream, line } => {
            Some(format!("{vm} {}: {line}", stream_name(*stream)))
        }
        _ => None,
    }
}

/// A step's name as a file name: what is not a letter, digit, `.`, `_` or
/// `-` becomes `_` (the number before it keeps names apart).
pub(crate) fn file_name(step: &str) -> String {
    step.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The log of the step under way: its output lines go to its own log and,
/// behind its name, to the combined log. Dropping it without
/// [`StepLog::end`] keeps what was written and leaves the step's result to
/// [`Run::finish`].
pub struct StepLog<'a> {
    run: &'a mut Run,
    /// Its place in the record's steps.
    index: usize,
    file: Option<LogFile>,
    /// Bytes of a line not yet ended, per stream.
    partial: [Vec<u8>; 2],
}

impl<'a> StepLog<'a> {
    pub(crate) fn new(run: &'a mut Run, index: usize, file: Option<LogFile>) -> Self {
        StepLog {
            run,
            index,
            file,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.run.record.steps[self.index].name
    }

    /// One line of the step's output (without its newline).
    pub fn line(&mut self, stream: Stream, line: &str) {
        self.write(&format!("{}: {line}", stream_name(stream)));
    }

    /// Writes `text` behind the time to the step's log, and behind the
    /// time and the step's name to the combined log.
    fn write(&mut self, text: &str) {
        let now = Timestamp::now();
        if let Some(file) = &mut self.file {
            let written = file.line(&format!("{now} {text}"));
            self.run.keep_error(written);
        }
        let name = &self.run.record.steps[self.index].name;
        let line = format!("{now} [{name}] {text}");
        let written = self.run.log.line(&line);
        self.run.keep_error(written);
    }

    /// Writes the lines that had no newline yet.
    fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.line(stream, &decode(&rest));
            }
        }
    }

    /// Ends the step: its last partial lines are written and its record
    /// gets its end, exit status and result.
    pub fn end(mut self, status: Option<i32>, result: RunResult) {
        self.flush();
        let step = &mut self.run.record.steps[self.index];
        step.finished = Some(Timestamp::now());
        step.status = status;
        step.result = result;
        let text = match status {
            Some(status) => format!("step {} ended: {result} (exit status {status})", step.name),
            None => format!("step {} ended: {result}", step.name),
        };
        self.run.note(&text);
    }
}

impl Drop for StepLog<'_> {
    fn drop(&mut self) {
        self.flush();
        let step = &mut self.run.record.steps[self.index];
        if step.finished.is_none() {
            step.finished = Some(Timestamp::now());
        }
    }
}

/// A line's bytes as text: a `\r` before the newline is dropped, bytes that
/// are not UTF-8 become U+FFFD (as `kvmx_provision::guest::Lines` does).
fn decode(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

impl ByteSink for StepLog<'_> {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        let partial = &mut self.partial[stream as usize];
        partial.extend_from_slice(bytes);
        let complete = match partial.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let rest = partial.split_off(last + 1);
                let mut complete = std::mem::replace(partial, rest);
                complete.truncate(last);
                Some(complete)
            }
            None => None,
        };
        let overlong = (partial.len() > LONGEST_LINE).then(|| std::mem::take(partial));
        for line in complete.iter().flat_map(|c| c.split(|&b| b == b'\n')) {
            self.line(stream, &decode(line));
        }
        if let Some(overlong) = overlong {
            self.line(stream, &decode(&overlong));
        }
    }
}

impl Observer for StepLog<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::GuestOutput { stream, line, .. } => self.line(stream, line),
            other => {
                if let Some(text) = event_text(&other) {
                    self.write(&format!("kvmx: {text}"));
                }
            }
        }
    }
}

/// Copies `log` to `out` as it grows, like `tail -f`, until `finished`
/// says the writer is done; then copies what is left and returns. A log
/// that does not exist yet is waited for.
pub fn follow(
    log: &Utf8Path,
    finished: &dyn Fn() -> bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let mut file: Option<File> = None;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        // Asked before reading: whatever was written before the writer
        // finished is read in this round.
        let done = finished();
        if file.is_none() {
            file = match File::open(log) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(log)(e)),
            };
        }
        if let Some(file) = &mut file {
            loop {
                let read = file.read(&mut buffer).map_err(Error::io(log))?;
                if read == 0 {
                    break;
                }
                out.write_all(&buffer[..read])
                    .map_err(Error::io("output"))?;
            }
            out.flush().map_err(Error::io("output"))?;
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}
