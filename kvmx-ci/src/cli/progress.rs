//! Progress of a run on the terminal: one line per stage with its time,
//! notes and warnings on stderr, the guest's output on stdout (stderr with
//! `--json`, whose stdout is the result alone).

use std::io::Write;

use kvmx_core::observe::{Event, Observer, Stream};

/// Writes events as plain lines.
pub(super) struct Lines {
    pub(super) json: bool,
}

impl Observer for Lines {
    fn event(&mut self, event: Event<'_>) {
        let mut stderr = std::io::stderr().lock();
        let _ = match event {
            Event::StageStarted { stage } => writeln!(stderr, "==> {stage}"),
            Event::StageFinished {
                stage,
                elapsed,
                note,
            } => match note {
                Some(note) => writeln!(
                    stderr,
                    "    {stage}: {:.1} s ({note})",
                    elapsed.as_secs_f64()
                ),
                None => writeln!(stderr, "    {stage}: {:.1} s", elapsed.as_secs_f64()),
            },
            Event::Note { text } => writeln!(stderr, "note: {text}"),
            Event::Warning { text } => writeln!(stderr, "warning: {text}"),
            Event::GuestOutput { line, stream, .. } => {
                if self.json || stream == Stream::Stderr {
                    writeln!(stderr, "{line}")
                } else {
                    writeln!(std::io::stdout().lock(), "{line}")
                }
            }
            _ => Ok(()),
        };
    }
}
