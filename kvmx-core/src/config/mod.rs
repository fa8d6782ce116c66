//! The config: the `kvmx.toml` model, its parser and its checks.
//!
//! Reading goes text → [`Config`] (types check single values, so a bad value
//! is reported at its own line) → [`validate`] (rules that involve several
//! values, reported at the first key involved) → [`resolve`] (defaults that
//! depend on the project, and absolute paths).

mod error;
mod model;
mod render;
pub mod resolve;
mod validate;
pub mod values;

use camino::Utf8Path;

pub use error::ConfigError;
pub use model::*;
pub use render::{RenderNote, render};
pub use resolve::resolve;
pub use validate::{Problem, validate};

/// The name serde gives a unit value, as `kvmx.toml` and `--json` spell
/// it (`"9p"`, `"reverse-sshfs"`, `"paused"`); empty for other values.
pub fn spelling<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// The commented `kvmx.toml` that `kvmx init` writes: every setting with
/// its default, commented out. Also the config reference in `docs/config.md`.
pub const TEMPLATE: &str = include_str!("template.toml");

/// [`TEMPLATE`], naming the VM when its name differs from its folder's.
pub fn template(name: Option<&values::VmName>) -> String {
    match name {
        Some(name) => TEMPLATE.replacen(
            "# e.g. name = \"myproject\"",
            &format!("name = \"{name}\""),
            1,
        ),
        None => TEMPLATE.to_owned(),
    }
}

/// Parses and checks the text of a `kvmx.toml`; `file` names it in errors.
pub fn parse_toml(text: &str, file: &Utf8Path) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    if let Some(problem) = validate(&config).into_iter().next() {
        return Err(locate_problem(text, file, problem));
    }
    Ok(config)
}

/// Reads and checks a `kvmx.toml` file.
pub fn load_toml(file: &Utf8Path) -> Result<Config, crate::Error> {
    let text = std::fs::read_to_string(file).map_err(crate::Error::io(file))?;
    Ok(parse_toml(&text, file)?)
}

/// A TOML or serde error of `text` as a [`ConfigError`] at its place, in a
/// config file's words, with "did you mean" for a misspelt key. Shared with
/// the other strict TOML files of kvmx (kvmx-ci's job files).
pub fn toml_error(text: &str, file: &Utf8Path, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let message = error.message().trim().to_owned();
    let hint = unknown_field_hint(&message);
    let message = shorten_unknown_field(&message);
    let located = ConfigError::at_offset(file, text, offset, message);
    match hint {
        Some(hint) => located.with_hint(hint),
        None => located,
    }
}

/// serde says "unknown field `memroy`, expected one of `memory`, `cpus`";
/// turn that into "did you mean `memory`?" when one is close.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(unknown, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, name)) => Some(format!("did you mean `{name}`?")),
        None if !candidates.is_empty() => {
            Some(format!("allowed keys here: {}", candidates.join(", ")))
        }
        None => None,
    }
}

/// Says serde's messages in the words of a config file.
fn shorten_unknown_field(message: &str) -> String {
    let message = match message.split_once(", expected") {
        Some((head, _)) if message.starts_with("unknown field") => head.to_owned(),
        _ => message.to_owned(),
    };
    let mut message = message
        .replace("unknown field", "unknown key")
        .replace("unknown variant", "unknown value")
        .replace(", expected one of", "; allowed values:");
    for integer in ["u8", "u16", "u32", "u64", "i64"] {
        message = message.replace(&format!("expected {integer}"), "expected a whole number");
    }
    message
}

/// A broken rule as a [`ConfigError`] at the line of the key it is about
/// (see [`Problem::path`]). Shared with kvmx-ci's job files.
pub fn locate_problem(text: &str, file: &Utf8Path, problem: Problem) -> ConfigError {
    let offset = key_offset(text, &problem.path);
    let error = match offset {
        Some(offset) => ConfigError::at_offset(file, text, offset, problem.message),
        None => ConfigError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: problem.message,
            source_line: None,
            hint: None,
        },
    };
    match problem.hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// The byte offset of the key at `path` (table keys and array indices, as
/// strings) in a TOML text, or of the deepest enclosing key found.
fn key_offset(text: &str, path: &[String]) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let mut node = Node::Item(document.as_item());
    let mut found = None;
    for segment in path {
        let step = match segment.parse::<usize>() {
            Ok(index) => node.index(index),
            Err(_) => node.key(segment),
        };
        let Some((next, offset)) = step else { break };
        found = offset.or(found);
        node = next;
    }
    found
}

/// A place in a parsed TOML document.
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn key(&self, name: &str) -> Option<(Node<'a>, Option<usize>)> {
        let table: &dyn toml_edit::TableLike = match self {
            Node::Item(item) => item.as_table_like()?,
            Node::Table(table) => *table,
            Node::Value(value) => value.as_inline_table()?,
        };
        let (key, item) = table.get_key_value(name)?;
        Some((Node::Item(item), key.span().map(|s| s.start)))
    }

    fn index(&self, index: usize) -> Option<(Node<'a>, Option<usize>)> {
        let array_of_tables = match self {
            Node::Item(toml_edit::Item::ArrayOfTables(array)) => Some(array),
            _ => None,
        };
        if let Some(array) = array_of_tables {
            let table = array.get(index)?;
            return Some((Node::Table(table), table.span().map(|s| s.start)));
        }
        let array = match self {
            Node::Item(item) => item.as_array()?,
            Node::Value(value) => value.as_array()?,
            Node::Table(_) => return None,
        };
        let value = array.get(index)?;
        Some((Node::Value(value), value.span().map(|s| s.start)))
    }
}
