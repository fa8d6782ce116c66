//! Finds where a `$(...)` ends. Its text goes to `sh` unparsed, so all that
//! matters is not to stop at a `)` that is quoted, nested or commented out.

use super::parse::{MAX_DEPTH, is_blank, is_operator};

/// What is being skipped, which decides what ends it and what quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    /// The body of `$(...)`, ended by an unmatched `)`.
    Command,
    /// The inside of `"..."`.
    DoubleQuoted,
    /// The inside of `${...}`, itself inside double quotes or not.
    Brace { quoted: bool },
}

/// Index just past the `)` that closes a `$(` whose body starts at `start`,
/// or `None` if it is never closed.
pub(super) fn command_end(s: &[char], start: usize) -> Option<usize> {
    skip(s, start, Region::Command, 0)
}

fn skip(s: &[char], mut i: usize, region: Region, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let quoted = matches!(
        region,
        Region::DoubleQuoted | Region::Brace { quoted: true }
    );
    let mut parens = 0usize;
    let mut word_start = true;
    while let Some(&c) = s.get(i) {
        i += 1;
        match c {
            '\\' => i += 1,
            '`' => i = backtick_end(s, i)?,
            '$' if s.get(i) == Some(&'(') => i = skip(s, i + 1, Region::Command, depth + 1)?,
            '$' if s.get(i) == Some(&'{') => {
                i = skip(s, i + 1, Region::Brace { quoted }, depth + 1)?;
            }
            '"' if region == Region::DoubleQuoted => return Some(i),
            '"' => i = skip(s, i, Region::DoubleQuoted, depth + 1)?,
            '\'' if !quoted => i = past(s, i, '\'')?,
            '}' if matches!(region, Region::Brace { .. }) => return Some(i),
            '#' if region == Region::Command && word_start => {
                i = past(s, i, '\n').unwrap_or(s.len());
            }
            '(' if region == Region::Command => parens += 1,
            ')' if region == Region::Command => match parens.checked_sub(1) {
                Some(open) => parens = open,
                None => return Some(i),
            },
            _ => {}
        }
        word_start = is_blank(c) || c == '\n' || is_operator(c);
    }
    None
}

/// Index just past the next `end` at or after `i`.
fn past(s: &[char], i: usize, end: char) -> Option<usize> {
    let rest = s.get(i..)?;
    Some(i + rest.iter().position(|&c| c == end)? + 1)
}

/// Index just past the backtick closing one opened before `i`.
fn backtick_end(s: &[char], mut i: usize) -> Option<usize> {
    while let Some(&c) = s.get(i) {
        i += 1;
        match c {
            '\\' => i += 1,
            '`' => return Some(i),
            _ => {}
        }
    }
    None
}
