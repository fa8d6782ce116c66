//! Stages of long work on stderr: each stage with its elapsed time, and on
//! a terminal a line that counts the seconds while a stage runs.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prints stages as they begin and end; quiet prints nothing.
pub struct StagePrinter {
    shared: Arc<Mutex<Current>>,
    quiet: bool,
}

struct Current {
    name: Option<String>,
    since: Instant,
    live: bool,
}

impl StagePrinter {
    /// A printer; `quiet` silences it.
    pub fn new(quiet: bool) -> Self {
        let live = !quiet && std::io::stderr().is_terminal();
        let shared = Arc::new(Mutex::new(Current {
            name: None,
            since: Instant::now(),
            live,
        }));
        if live {
            let ticker = Arc::downgrade(&shared);
            std::thread::spawn(move || {
                while let Some(shared) = ticker.upgrade() {
                    if let Ok(current) = shared.lock()
                        && let Some(name) = &current.name
                    {
                        eprint!("\r\x1b[K  {name}... {}s", current.since.elapsed().as_secs());
                        let _ = std::io::stderr().flush();
                    }
                    drop(shared);
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
        StagePrinter { shared, quiet }
    }

    /// Ends the current stage, printing its time.
    pub fn finish(&mut self) {
        let Ok(mut current) = self.shared.lock() else {
            return;
        };
        if let Some(name) = current.name.take()
            && !self.quiet
        {
            let clear = if current.live { "\r\x1b[K" } else { "" };
            eprintln!(
                "{clear}  {name} ({:.1}s)",
                current.since.elapsed().as_secs_f64()
            );
        }
    }

    fn begin(&mut self, name: &str) {
        self.finish();
        if let Ok(mut current) = self.shared.lock() {
            current.name = Some(name.to_owned());
            current.since = Instant::now();
        }
    }

    fn print_note(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        let live = self.shared.lock().map(|c| c.live).unwrap_or(false);
        let clear = if live { "\r\x1b[K" } else { "" };
        eprintln!("{clear}note: {text}");
    }
}

impl kvmx_provision::Progress for StagePrinter {
    fn stage(&mut self, name: &str) {
        self.begin(name);
    }
    fn note(&mut self, text: &str) {
        self.print_note(text);
    }
}

impl Drop for StagePrinter {
    fn drop(&mut self) {
        self.finish();
    }
}
