//! The one display of long work, for every library's events: each stage
//! with its elapsed time (on a terminal, a spinner counts while it runs),
//! notes and warnings on stderr, and guest output behind the VM's name.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kvmx_core::observe::{Event, Observer, Stream};

/// Renders events on the terminal; `--quiet` keeps guest output alone.
pub struct StageDisplay {
    quiet: bool,
    /// Guest stdout goes to stderr when stdout carries a JSON result.
    json: bool,
    spinner: Option<ProgressBar>,
}

impl StageDisplay {
    /// A display; `quiet` silences all but guest output.
    pub fn new(quiet: bool, json: bool) -> Self {
        StageDisplay {
            quiet,
            json,
            spinner: None,
        }
    }

    /// Prints a line without tearing the spinner.
    fn print(&self, to_stdout: bool, text: &str) {
        let write = || {
            let _ = if to_stdout {
                writeln!(std::io::stdout().lock(), "{text}")
            } else {
                writeln!(std::io::stderr().lock(), "{text}")
            };
        };
        match &self.spinner {
            Some(spinner) => spinner.suspend(write),
            None => write(),
        }
    }

    fn start(&mut self, stage: &str) {
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("  {spinner} {msg} {elapsed}").expect("valid template"),
        );
        spinner.set_message(stage.to_owned());
        spinner.enable_steady_tick(Duration::from_millis(120));
        self.spinner = Some(spinner);
    }

    fn finish(&mut self, stage: &str, elapsed: Duration, note: Option<&str>) {
        let spinner = self.spinner.take();
        if self.quiet {
            return;
        }
        let note = note.map(|n| format!(", {n}")).unwrap_or_default();
        let line = format!("  {stage} ({:.1}s{note})", elapsed.as_secs_f64());
        match spinner {
            Some(spinner) => {
                spinner.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
                spinner.finish_with_message(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for StageDisplay {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::StageStarted { stage } => self.start(stage),
            Event::StageFinished {
                stage,
                elapsed,
                note,
            } => self.finish(stage, elapsed, note),
            Event::Note { text } if !self.quiet => self.print(false, &format!("note: {text}")),
            Event::Warning { text } if !self.quiet => {
                self.print(false, &format!("warning: {text}"))
            }
            Event::GuestOutput { vm, stream, line } => {
                let to_stdout = stream == Stream::Stdout && !self.json;
                self.print(to_stdout, &format!("[{vm}] {line}"));
            }
            _ => {}
        }
    }
}

impl Drop for StageDisplay {
    fn drop(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.abandon();
        }
    }
}
