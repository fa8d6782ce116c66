//! Writes a config back as a readable, commented `kvmx.toml`: only the values
//! that differ from the defaults, each with the notes the caller attaches
//! (for an import: the legacy line it came from).

use toml::Value;

use super::model::Config;

/// A comment placed above the key at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderNote {
    /// Keys from the top; an index selects an entry of a list of tables.
    pub path: Vec<String>,
    /// The comment text, one line or several.
    pub text: String,
}

/// Renders `config` as TOML with `header` on top (each line becomes a
/// comment) and `notes` above their keys. Values equal to the defaults are
/// left out, so the file says only what this VM changes.
pub fn render(config: &Config, header: &str, notes: &[RenderNote]) -> String {
    let full = Value::try_from(config).expect("the config model always serializes");
    let defaults = Value::try_from(Config::default()).expect("defaults always serialize");
    let changed = match without_defaults(&full, &defaults) {
        Some(Value::Table(table)) => table,
        _ => toml::Table::new(),
    };
    let text = toml::to_string(&Value::Table(changed)).expect("a table always serializes");
    let mut document: toml_edit::DocumentMut = text.parse().expect("toml writes valid toml");
    for note in notes {
        attach_note(&mut document, note);
    }
    let mut out = comment_lines(header);
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&document.to_string());
    out
}

/// `value` without the parts equal to `default`; `None` when all are equal.
/// Lists are kept whole: a list differs or it does not.
fn without_defaults(value: &Value, default: &Value) -> Option<Value> {
    match (value, default) {
        (Value::Table(table), Value::Table(default_table)) => {
            let mut kept = toml::Table::new();
            for (key, item) in table {
                let reduced = match default_table.get(key) {
                    Some(default_item) => without_defaults(item, default_item),
                    None => Some(item.clone()),
                };
                if let Some(reduced) = reduced {
                    kept.insert(key.clone(), reduced);
                }
            }
            (!kept.is_empty()).then_some(Value::Table(kept))
        }
        _ if value == default => None,
        _ => Some(value.clone()),
    }
}

fn comment_lines(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.is_empty() {
                "#\n".to_owned()
            } else {
                format!("# {line}\n")
            }
        })
        .collect()
}

fn attach_note(document: &mut toml_edit::DocumentMut, note: &RenderNote) {
    let comment = comment_lines(&note.text);
    let mut table: &mut dyn toml_edit::TableLike = document.as_table_mut();
    let Some((last, parents)) = note.path.split_last() else {
        return;
    };
    let mut segments = parents.iter().peekable();
    while let Some(segment) = segments.next() {
        let Some(item) = table.get_mut(segment) else {
            return;
        };
        if let toml_edit::Item::ArrayOfTables(array) = item {
            let Some(index) = segments
                .next()
                .or(Some(last))
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return;
            };
            if segments.peek().is_none() && parents.last() == Some(segment) {
                // The note is about a whole `[[table]]` entry.
                if let Some(entry) = array.get_mut(index) {
                    let decor = entry.decor_mut();
                    let existing = decor
                        .prefix()
                        .and_then(|p| p.as_str())
                        .unwrap_or("")
                        .to_owned();
                    decor.set_prefix(format!("{existing}{comment}"));
                }
                return;
            }
            let Some(entry) = array.get_mut(index) else {
                return;
            };
            table = entry;
            continue;
        }
        let Some(next) = item.as_table_like_mut() else {
            return;
        };
        table = next;
    }
    if let Some(mut key) = table.key_mut(last) {
        let existing = key
            .leaf_decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or("")
            .to_owned();
        key.leaf_decor_mut()
            .set_prefix(format!("{existing}{comment}"));
    }
}
