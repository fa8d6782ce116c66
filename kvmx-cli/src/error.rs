//! Errors as the user sees them: printed once, as a chain of causes, with a
//! hint, and an exit code chosen by their kind.

use std::error::Error as StdError;
use std::process::ExitCode;

/// What kind of failure, which picks the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something failed while doing the work.
    Failure,
    /// The command line is wrong.
    Usage,
    /// A config file is wrong.
    Config,
    /// A command in the guest failed: kvmx exits with its status.
    Guest(u8),
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl Kind {
    /// The exit code of this kind.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Kind::Failure => 1,
            Kind::Usage => 2,
            Kind::Config => 3,
            Kind::Guest(code) => code,
            Kind::Interrupted => 130,
        })
    }
}

/// An error on its way to the terminal.
#[derive(Debug)]
pub struct CommandError {
    /// Its kind.
    pub kind: Kind,
    /// The error and its causes.
    pub error: Box<dyn StdError + Send + Sync>,
    /// What the user can do.
    pub hint: Option<String>,
}

impl CommandError {
    /// A usage error with a message.
    pub fn usage(message: impl Into<String>) -> Self {
        CommandError {
            kind: Kind::Usage,
            error: message.into().into(),
            hint: None,
        }
    }

    /// Adds or replaces the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The text printed for the error: `error: ...`, one `caused by: ...`
    /// per source, then `hint: ...`.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.error);
        let mut source = self.error.source();
        while let Some(cause) = source {
            out.push_str(&format!("caused by: {cause}\n"));
            source = cause.source();
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("hint: {hint}\n"));
        }
        out
    }
}

impl From<kvmx_core::Error> for CommandError {
    fn from(error: kvmx_core::Error) -> Self {
        let kind = match &error {
            kvmx_core::Error::Config(_) => Kind::Config,
            kvmx_core::Error::UnknownVm { .. } | kvmx_core::Error::NoProject { .. } => Kind::Usage,
            _ => Kind::Failure,
        };
        CommandError {
            kind,
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

impl From<kvmx_image::Error> for CommandError {
    fn from(error: kvmx_image::Error) -> Self {
        let kind = match &error {
            kvmx_image::Error::Interrupted => Kind::Interrupted,
            _ => Kind::Failure,
        };
        CommandError {
            kind,
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        CommandError {
            kind: Kind::Failure,
            error: Box::new(error),
            hint: None,
        }
    }
}

impl From<kvmx_provision::Error> for CommandError {
    fn from(error: kvmx_provision::Error) -> Self {
        CommandError {
            kind: provision_kind(&error),
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

fn provision_kind(error: &kvmx_provision::Error) -> Kind {
    use kvmx_provision::Error as E;
    match error {
        E::Core(kvmx_core::Error::Config(_)) => Kind::Config,
        E::Core(kvmx_core::Error::UnknownVm { .. } | kvmx_core::Error::NoProject { .. })
        | E::Usage(_)
        | E::TargetExists { .. } => Kind::Usage,
        // The guest command's own status, so scripts can test it.
        E::Step(step) => Kind::Guest(u8::try_from(step.code).unwrap_or(1).max(1)),
        E::Image(kvmx_image::Error::Interrupted) | E::Interrupted { .. } => Kind::Interrupted,
        E::StartHook { source, .. } => provision_kind(source),
        _ => Kind::Failure,
    }
}
