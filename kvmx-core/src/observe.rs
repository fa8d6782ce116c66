//! Progress of long work, as typed events. Every library reports to one
//! [`Observer`] that its caller supplies: the binaries render the events as
//! one stage display, an embedder logs them or ignores them ([`Silent`]).
//! No library prints.

use std::time::{Duration, Instant};

/// Which stream a line of guest output came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Something that happened during long work.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A stage begins ("building the image", "waiting for SSH").
    StageStarted {
        /// What the stage does.
        stage: &'a str,
    },
    /// The stage that began last ended.
    StageFinished {
        /// What the stage did.
        stage: &'a str,
        /// How long it took.
        elapsed: Duration,
        /// More about how it went ("from the cache").
        note: Option<&'a str>,
    },
    /// Something worth telling (why TCG was chosen, a crashed last run).
    Note {
        /// The text.
        text: &'a str,
    },
    /// Something failed and the work goes on anyway (a power-off hook).
    Warning {
        /// The text.
        text: &'a str,
    },
    /// A line of output of work in the guest (hooks, provisioning).
    GuestOutput {
        /// The VM it came from.
        vm: &'a str,
        /// Its stream.
        stream: Stream,
        /// The line, without its newline.
        line: &'a str,
    },
}

/// Receives the events of long work.
pub trait Observer {
    /// One event.
    fn event(&mut self, event: Event<'_>);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _: Event<'_>) {}
}

/// Stages one after the other on an observer: beginning a stage ends the
/// one before, with its time; dropping ends the last.
pub struct Stages<'o> {
    observer: &'o mut dyn Observer,
    current: Option<(String, Instant)>,
}

impl<'o> Stages<'o> {
    /// Stages reported to `observer`.
    pub fn new(observer: &'o mut dyn Observer) -> Self {
        Stages {
            observer,
            current: None,
        }
    }

    /// Ends the current stage and begins `stage`.
    pub fn stage(&mut self, stage: &str) {
        self.finish(None);
        self.observer.event(Event::StageStarted { stage });
        self.current = Some((stage.to_owned(), Instant::now()));
    }

    /// Ends the current stage, if any, with an optional note.
    pub fn finish(&mut self, note: Option<&str>) {
        if let Some((stage, since)) = self.current.take() {
            self.observer.event(Event::StageFinished {
                stage: &stage,
                elapsed: since.elapsed(),
                note,
            });
        }
    }

    /// Tells something worth knowing.
    pub fn note(&mut self, text: &str) {
        self.observer.event(Event::Note { text });
    }

    /// Tells of a failure that the work goes on after.
    pub fn warn(&mut self, text: &str) {
        self.observer.event(Event::Warning { text });
    }

    /// The observer itself, for work that reports its own events.
    pub fn observer(&mut self) -> &mut dyn Observer {
        self.finish(None);
        &mut *self.observer
    }
}

/// Events of work inside the current stage (guest output, notes) pass
/// through without ending it.
impl Observer for Stages<'_> {
    fn event(&mut self, event: Event<'_>) {
        self.observer.event(event);
    }
}

/// An observer that puts `prefix` before the stages of work done on
/// behalf of another (e.g. "builder VM: "), passing the rest on.
pub struct Prefixed<'o> {
    inner: &'o mut dyn Observer,
    prefix: &'o str,
}

impl<'o> Prefixed<'o> {
    /// Events to `inner`, stages named with `prefix`.
    pub fn new(inner: &'o mut dyn Observer, prefix: &'o str) -> Self {
        Prefixed { inner, prefix }
    }
}

impl Observer for Prefixed<'_> {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::StageStarted { stage } => {
                let stage = format!("{}{stage}", self.prefix);
                self.inner.event(Event::StageStarted { stage: &stage });
            }
            Event::StageFinished {
                stage,
                elapsed,
                note,
            } => {
                let stage = format!("{}{stage}", self.prefix);
                self.inner.event(Event::StageFinished {
                    stage: &stage,
                    elapsed,
                    note,
                });
            }
            other => self.inner.event(other),
        }
    }
}

impl Drop for Stages<'_> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(Vec<String>);

    impl Observer for Record {
        fn event(&mut self, event: Event<'_>) {
            self.0.push(match event {
                Event::StageStarted { stage } => format!("start {stage}"),
                Event::StageFinished { stage, note, .. } => format!("end {stage} {note:?}"),
                Event::Note { text } => format!("note {text}"),
                Event::Warning { text } => format!("warn {text}"),
                Event::GuestOutput { line, .. } => format!("out {line}"),
            });
        }
    }

    #[test]
    fn a_stage_ends_when_the_next_begins_and_at_drop() {
        let mut record = Record::default();
        {
            let mut stages = Stages::new(&mut record);
            stages.stage("one");
            stages.note("hello");
            stages.stage("two");
        }
        assert_eq!(
            record.0,
            [
                "start one",
                "note hello",
                "end one None",
                "start two",
                "end two None"
            ]
        );
    }
}
