//! A config error that points at its place in the file.

use std::fmt;

use camino::Utf8PathBuf;

/// A problem in a config file, with the place it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: Utf8PathBuf,
    /// 1-based line, 0 when the problem has no single place.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The text of the offending line, for display under the message.
    pub source_line: Option<String>,
    /// What to do about it, when there is something better to say than the
    /// message.
    pub hint: Option<String>,
}

impl ConfigError {
    /// An error at a byte offset of `text`.
    pub fn at_offset(file: &camino::Utf8Path, text: &str, offset: usize, message: String) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        let source_line = text[line_start..].lines().next().unwrap_or("").to_owned();
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            message,
            source_line: Some(source_line),
            hint: None,
        }
    }

    /// An error on a line of `text` (1-based), without a column.
    pub fn at_line(file: &camino::Utf8Path, text: &str, line: usize, message: String) -> Self {
        ConfigError {
            file: file.to_owned(),
            line,
            column: 0,
            message,
            source_line: text.lines().nth(line.saturating_sub(1)).map(str::to_owned),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(source) = &self.source_line {
            let gutter = self.line.to_string();
            write!(f, "\n {gutter} | {source}")?;
            if self.column > 0 {
                let pad = " ".repeat(gutter.len() + self.column + 3);
                write!(f, "\n{pad}^")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
