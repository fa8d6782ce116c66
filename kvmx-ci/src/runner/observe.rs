//! A run's progress goes two ways: everything into the run's log, and the
//! same events to the caller's observer (the terminal of `kvmx-ci run`).

use std::time::Instant;

use kvmx_core::observe::{Event, Observer, Stream};
use kvmx_provision::guest::{ByteSink, Guest, OutputSink};

use crate::source::Verified;
use crate::store::{Run, StepLog};

/// The run under way and the caller's observer, with the current stage.
pub(super) struct RunObserver<'r, 'o> {
    run: &'r mut Run,
    outer: &'o mut dyn Observer,
    current: Option<(String, Instant)>,
}

impl<'r, 'o> RunObserver<'r, 'o> {
    pub(super) fn new(run: &'r mut Run, outer: &'o mut dyn Observer) -> Self {
        RunObserver {
            run,
            outer,
            current: None,
        }
    }

    pub(super) fn run_id(&self) -> u64 {
        self.run.id()
    }

    /// Ends the current stage and begins `stage`.
    pub(super) fn stage(&mut self, stage: &str) {
        self.end_stage();
        self.event(Event::StageStarted { stage });
        self.current = Some((stage.to_owned(), Instant::now()));
    }

    /// Ends the current stage, if any.
    pub(super) fn end_stage(&mut self) {
        if let Some((stage, since)) = self.current.take() {
            self.event(Event::StageFinished {
                stage: &stage,
                elapsed: since.elapsed(),
                note: None,
            });
        }
    }

    pub(super) fn note(&mut self, text: &str) {
        self.event(Event::Note { text });
    }

    pub(super) fn warn(&mut self, text: &str) {
        self.event(Event::Warning { text });
    }

    pub(super) fn record_source(&mut self, verified: &Verified) {
        let signer = verified.signer.as_deref().unwrap_or("unverified");
        self.note(&format!(
            "{} at {} (signed by {signer})",
            verified.reference, verified.commit
        ));
        let record = self.run.record();
        record.commit = Some(verified.commit.clone());
        record.signer = verified.signer.clone();
        record.reference = Some(verified.reference.clone());
        self.save();
    }

    pub(super) fn record_vm(&mut self, name: &str) {
        self.run.record().vm = Some(name.to_owned());
        self.save();
    }

    fn save(&mut self) {
        if let Err(error) = self.run.save() {
            let text = format!("cannot save the run's record: {error}");
            self.warn(&text);
        }
    }

    /// A sink for the lines of the runner's own work in the guest (rsync).
    pub(super) fn lines(&mut self) -> impl OutputSink + '_ {
        NoteLines(self)
    }

    /// Begins step `name`: its log (the step's own and the run's), and
    /// the caller's observer for its lines.
    pub(super) fn step(&mut self, name: &str) -> (StepLog<'_>, ObserverLines<'_>) {
        let stage = format!("step {name}");
        self.stage(&stage);
        (self.run.step(name), ObserverLines(&mut *self.outer))
    }

    /// Copies each artifact into the run's folder; the first that fails is
    /// the error (the others are still tried).
    pub(super) fn copy_artifacts(&mut self, guest: &Guest, paths: &[String]) -> Result<(), String> {
        let into = self.run.artifacts_dir();
        if let Err(error) = std::fs::create_dir_all(&into) {
            return Err(format!("cannot create {into}: {error}"));
        }
        let mut first_failure = None;
        for path in paths {
            let copied = guest.rsync_from(path, into.as_str(), &[], &mut self.lines());
            match copied {
                Ok(status) if status.success() => self.run.record().artifacts.push(path.clone()),
                Ok(status) => {
                    let text = format!("artifact {path} was not copied back ({status})");
                    self.warn(&text);
                    first_failure.get_or_insert(text);
                }
                Err(error) => {
                    let text = format!("artifact {path} was not copied back: {error}");
                    self.warn(&text);
                    first_failure.get_or_insert(text);
                }
            }
        }
        self.save();
        first_failure.map_or(Ok(()), Err)
    }
}

impl Observer for RunObserver<'_, '_> {
    fn event(&mut self, event: Event<'_>) {
        self.run.event(event.clone());
        self.outer.event(event);
    }
}

impl Drop for RunObserver<'_, '_> {
    fn drop(&mut self) {
        self.end_stage();
    }
}

/// Lines of the runner's own guest work, as notes in the run's log.
struct NoteLines<'a, 'r, 'o>(&'a mut RunObserver<'r, 'o>);

impl OutputSink for NoteLines<'_, '_, '_> {
    fn line(&mut self, _: Stream, line: &str) {
        self.0.run.note(line);
    }
}

/// Lines of guest output, as events for the caller's observer.
pub(super) struct ObserverLines<'o>(&'o mut dyn Observer);

impl OutputSink for ObserverLines<'_> {
    fn line(&mut self, stream: Stream, line: &str) {
        self.0.event(Event::GuestOutput {
            vm: "guest",
            stream,
            line,
        });
    }
}

/// Hands every chunk to two sinks.
pub(super) struct Both<'a>(pub &'a mut dyn ByteSink, pub &'a mut dyn ByteSink);

impl ByteSink for Both<'_> {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        self.0.chunk(stream, bytes);
        self.1.chunk(stream, bytes);
    }
}
