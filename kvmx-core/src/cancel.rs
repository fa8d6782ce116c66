//! Stopping long work from outside: a flag that the caller sets (or lets
//! SIGINT and SIGTERM set) and that the work checks between steps and
//! while it waits for a child process. One type serves every library, so
//! an embedder hands the same flag to a build, an `up` and a guest command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set to stop the work; it then stops its child processes, removes what
/// it made and returns its library's "interrupted" error.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not set.
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// A flag set by SIGINT and SIGTERM. A second signal, while the work
    /// still cleans up, ends the process at once (exit status 130).
    pub fn on_signals() -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = CancelFlag::new();
        for signal in [SIGINT, SIGTERM] {
            // The order matters: the first signal sets the flag, the one
            // after finds it set and exits.
            signal_hook::flag::register_conditional_shutdown(signal, 130, flag.0.clone())?;
            signal_hook::flag::register(signal, flag.0.clone())?;
        }
        Ok(flag)
    }

    /// Asks the work to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
