//! A command run through kvmx's agent with this process's stdio: stdin
//! streamed to it, its stdout and stderr to ours, and with a terminal
//! (when ours is one at both ends) raw mode here, the window size passed
//! on, and Ctrl-C as a byte for the guest's terminal to turn into SIGINT.

use std::sync::Mutex;

use kvmx_provision::agent::{AgentSession, Control, Terminal};

use crate::error::CommandError;

/// The running command that signals go to, if any.
pub(crate) struct Forward(Mutex<Option<Control>>);

impl Forward {
    pub(crate) const fn new() -> Forward {
        Forward(Mutex::new(None))
    }

    fn set(&self, control: Option<Control>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = control;
    }

    /// Passes `signal` to the running command; false when none runs.
    pub(crate) fn signal(&self, signal: i32) -> bool {
        let control = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        control.map(|control| control.signal(signal)).is_some()
    }
}

/// The terminal a command gets: one like ours when stdin and stdout are
/// both terminals, else none (pipes, as over SSH).
pub(crate) fn terminal_wanted() -> Option<Terminal> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return None;
    }
    let (rows, columns) = window_size().unwrap_or((24, 80));
    Some(Terminal {
        term: std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
        rows,
        columns,
    })
}

fn window_size() -> Option<(u16, u16)> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    Some((size.ws_row, size.ws_col))
}

/// The terminal's settings before raw mode, to put back.
static SAVED_TERMINAL: Mutex<Option<rustix::termios::Termios>> = Mutex::new(None);

/// Puts our terminal back as it was before raw mode, if it was changed.
pub(crate) fn restore_terminal() {
    if let Some(saved) = SAVED_TERMINAL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &saved,
        );
    }
}

fn raw_terminal() {
    let stdin = std::io::stdin();
    let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
        return;
    };
    let mut raw = saved.clone();
    raw.make_raw();
    if rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).is_ok() {
        *SAVED_TERMINAL.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
    }
}

/// Runs the started `command` with our stdio until it ends; signals that
/// reach kvmx meanwhile go to it through `forward`.
pub(crate) fn run(
    command: AgentSession,
    terminal: bool,
    forward: &Forward,
) -> Result<std::process::ExitStatus, CommandError> {
    let control = command.control();
    forward.set(Some(control.clone()));
    if terminal {
        raw_terminal();
        pass_window_changes(control);
    }
    let status = command.wait(
        Some(Box::new(std::io::stdin())),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    forward.set(None);
    restore_terminal();
    Ok(status?)
}

/// Sends the window's new size at each SIGWINCH.
fn pass_window_changes(control: Control) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
    else {
        return;
    };
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Some((rows, columns)) = window_size() {
                control.resize(rows, columns);
            }
        }
    });
}
