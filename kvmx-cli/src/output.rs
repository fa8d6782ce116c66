//! Where results and messages go: results to stdout (as text or JSON),
//! messages and warnings to stderr, errors always.

use std::io::Write;

use kvmx_core::observe::{Event, Observer};
use kvmx_provision::guest::{OutputSink, Stream};

use crate::cli::GlobalArgs;

/// How and what to print, from the global flags.
#[derive(Debug, Clone)]
pub struct Output {
    /// Print results as JSON.
    pub json: bool,
    quiet: bool,
    verbose: u8,
}

impl Output {
    /// From the global flags.
    pub fn new(args: &GlobalArgs) -> Self {
        Output {
            json: args.json,
            quiet: args.quiet,
            verbose: args.verbose,
        }
    }

    /// Whether `--quiet` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The display of long work's events.
    pub fn stages(&self) -> crate::progress::StageDisplay {
        crate::progress::StageDisplay::new(self.quiet, self.json)
    }

    /// A result line on stdout.
    pub fn result(&self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    /// A JSON result on stdout.
    pub fn json_result(&self, value: &impl serde::Serialize) {
        let text = serde_json::to_string_pretty(value).expect("results always serialize");
        self.result(&text);
    }

    /// A message about progress, unless `--quiet`.
    pub fn info(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Detail shown with `-v`.
    pub fn detail(&self, text: &str) {
        if self.verbose > 0 {
            eprintln!("{text}");
        }
    }

    /// A warning, unless `--quiet`.
    pub fn warn(&self, text: &str) {
        if !self.quiet {
            eprintln!("warning: {text}");
        }
    }

    /// An error, always (already formatted).
    pub fn error(&self, text: &str) {
        eprint!("{text}");
    }
}

/// Guest output on our stdout and stderr, each line behind a prefix; as an
/// observer, also the stages, notes and warnings of the work, one line
/// each, so that several VMs' lines can interleave and stay readable.
pub struct Prefixed {
    prefix: String,
    /// Guest stdout goes to stderr (stdout carries a JSON result).
    stdout_to_stderr: bool,
}

impl Prefixed {
    /// Lines shown as `[prefix] line`; an empty prefix shows them as they are.
    pub fn new(prefix: &str) -> Self {
        Prefixed {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("[{prefix}] ")
            },
            stdout_to_stderr: false,
        }
    }

    /// Sends guest stdout to stderr too, when `json` results use stdout.
    pub fn keep_stdout_for_json(mut self, json: bool) -> Self {
        self.stdout_to_stderr = json;
        self
    }

    fn write(&self, stream: Stream, line: &str) {
        let text = format!("{}{line}\n", self.prefix);
        let _ = match stream {
            Stream::Stdout if !self.stdout_to_stderr => {
                std::io::stdout().lock().write_all(text.as_bytes())
            }
            _ => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

impl OutputSink for Prefixed {
    fn line(&mut self, stream: Stream, line: &str) {
        self.write(stream, line);
    }
}

impl Observer for Prefixed {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::StageFinished { stage, elapsed, .. } => self.write(
                Stream::Stderr,
                &format!("{stage} ({:.1}s)", elapsed.as_secs_f64()),
            ),
            Event::Note { text } => self.write(Stream::Stderr, &format!("note: {text}")),
            Event::Warning { text } => self.write(Stream::Stderr, &format!("warning: {text}")),
            Event::GuestOutput { stream, line, .. } => self.write(stream, line),
            _ => {}
        }
    }
}
