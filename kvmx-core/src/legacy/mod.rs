//! The legacy `kvmxfile`: a bash fragment of `NAME="value"` lines.
//!
//! [`shell`] evaluates the fragment the way bash would; [`map`] puts each
//! variable into the `kvmx.toml` model.

pub mod map;
pub mod shell;

use std::collections::BTreeMap;

use camino::Utf8Path;

pub use map::{LegacyWarning, Mapped};

use crate::config::ConfigError;

/// The name of a legacy project file.
pub const FILE_NAME: &str = "kvmxfile";

/// Reads a kvmxfile for the VM `vm`: evaluates it (command substitutions
/// run through `sh`) and maps it to the config model.
pub fn read(file: &Utf8Path, vm: &str) -> Result<Mapped, crate::Error> {
    let text = std::fs::read_to_string(file).map_err(crate::Error::io(file))?;
    let context = context(vm, std::env::vars().collect());
    Ok(read_text(&text, file, &context, &mut shell::ShRunner)?)
}

/// Evaluates and maps kvmxfile `text`; `file` names it in errors.
pub fn read_text(
    text: &str,
    file: &Utf8Path,
    context: &shell::ShellContext,
    runner: &mut dyn shell::CommandRunner,
) -> Result<Mapped, ConfigError> {
    let assignments = shell::evaluate(text, context, runner).map_err(|error| {
        let line = error.line();
        let message = error.to_string();
        // The shell error starts with "line N[, column C]: "; ours shows
        // the place in its own way.
        let (column, message) = match message.strip_prefix(&format!("line {line}")) {
            Some(rest) => split_column(rest),
            None => (0, message.as_str()),
        };
        let mut located = ConfigError::at_line(file, text, line, message.to_owned());
        located.column = column;
        located
    })?;
    map::map(&assignments, file, text)
}

/// Splits `, column C: message` or `: message` into the column (0 when
/// absent) and the message.
fn split_column(rest: &str) -> (usize, &str) {
    if let Some(after) = rest.strip_prefix(", column ")
        && let Some((number, message)) = after.split_once(": ")
        && let Ok(column) = number.parse()
    {
        return (column, message);
    }
    (0, rest.strip_prefix(": ").unwrap_or(rest))
}

/// The variables a kvmxfile sees: kvmx's own (`VM`, `HOME`, `KVMX_BASE`,
/// `GUEST_DISPLAY`) over the process environment.
pub fn context(vm: &str, environment: BTreeMap<String, String>) -> shell::ShellContext {
    let mut provided = BTreeMap::new();
    provided.insert("VM".to_owned(), vm.to_owned());
    let home = environment.get("HOME").cloned().unwrap_or_default();
    provided.insert("HOME".to_owned(), home);
    // The original tool pointed KVMX_BASE at its install folder; the nearest
    // match is the folder above the running binary's.
    let base = environment.get("KVMX_BASE").cloned().or_else(|| {
        let exe = std::env::current_exe().ok()?;
        Some(exe.parent()?.parent()?.to_str()?.to_owned())
    });
    provided.insert("KVMX_BASE".to_owned(), base.unwrap_or_default());
    let display = environment
        .get("GUEST_DISPLAY")
        .cloned()
        .unwrap_or_else(|| "0".into());
    provided.insert("GUEST_DISPLAY".to_owned(), display);
    shell::ShellContext {
        provided,
        environment,
    }
}
