//! Parser for the part of bash a kvmxfile may use: lines of `NAME=value`
//! assignments. Everything else is turned into a [`ShellError`] here, so the
//! evaluator only ever sees assignments.

use super::ShellError;
use super::scan;

/// Deepest nesting of quotes, `${...}` and `$(...)` accepted. Real files
/// nest two or three levels; the limit keeps hostile input from exhausting
/// the stack.
pub(super) const MAX_DEPTH: usize = 64;

/// Words that start a compound command or otherwise make the line logic.
const CONTROL_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "select", "in", "{", "}", "[[", "]]", "!", "time", "coproc",
];

/// A place in the source, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One `NAME=value` (or `NAME+=value`) assignment.
#[derive(Debug)]
pub(super) struct Statement {
    pub name: String,
    pub pos: Pos,
    pub append: bool,
    pub value: Word,
}

/// The pieces of one shell word, quotes already removed.
pub(super) type Word = Vec<Part>;

#[derive(Debug)]
pub(super) enum Part {
    Literal(String),
    /// An unquoted `~` at the start of a value or after a `:`: `$HOME`.
    Tilde(Pos),
    /// `$NAME` or `${NAME}`.
    Var(String, Pos),
    /// `${NAME-word}`, `${NAME:-word}`, `${NAME+word}`, `${NAME:+word}`.
    Param {
        name: String,
        pos: Pos,
        alternative: bool,
        colon: bool,
        word: Word,
    },
    /// `$(...)` or a backtick substitution, as the text `sh -c` gets.
    Command(String, Pos),
}

/// Quoting context a word is read in; it decides what ends the word, which
/// backslash escapes apply and whether `~` expands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The unquoted value of an assignment.
    Bare,
    /// Inside `"..."`.
    Dq,
    /// The word of `${NAME:-word}` in an unquoted value.
    BraceBare,
    /// The word of `${NAME:-word}` inside `"..."`.
    BraceDq,
}

impl Ctx {
    fn ends_at(self, c: char) -> bool {
        match self {
            Ctx::Bare => is_blank(c) || c == '\n' || is_operator(c),
            Ctx::Dq => c == '"',
            Ctx::BraceBare | Ctx::BraceDq => c == '}',
        }
    }

    fn quoted(self) -> bool {
        matches!(self, Ctx::Dq | Ctx::BraceDq)
    }

    /// Whether a backslash before `c` escapes it.
    fn escapes(self, c: char) -> bool {
        match self {
            Ctx::Bare | Ctx::BraceBare => true,
            Ctx::Dq => matches!(c, '$' | '`' | '"' | '\\'),
            Ctx::BraceDq => matches!(c, '$' | '`' | '"' | '\\' | '}'),
        }
    }
}

pub(super) fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub(super) fn is_operator(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '<' | '>' | '(' | ')')
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses a whole kvmxfile into its assignments, in order.
pub(super) fn parse(source: &str) -> Result<Vec<Statement>, ShellError> {
    let mut parser = Parser {
        chars: source.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
        depth: 0,
    };
    let mut statements = Vec::new();
    loop {
        parser.skip_blanks();
        match parser.peek() {
            None => return Ok(statements),
            Some('\n') => {
                parser.bump();
            }
            Some('#') => parser.skip_comment(),
            Some(c) if is_operator(c) => return Err(parser.operator_error()),
            Some(_) => parser.command(&mut statements)?,
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.at + n).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    /// Skips blanks and backslash-newline line continuations.
    fn skip_blanks(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if is_blank(c) => self.bump_n(1),
                (Some('\\'), Some('\n')) => self.bump_n(2),
                _ => return,
            }
        }
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    fn at_command_end(&self) -> bool {
        matches!(self.peek(), None | Some('\n') | Some('#'))
    }

    /// The characters up to the next blank, newline or operator, quotes
    /// included; only used to name things in error messages.
    fn raw_word(&self) -> String {
        self.chars[self.at..]
            .iter()
            .take_while(|&&c| !(is_blank(c) || c == '\n' || is_operator(c)))
            .collect()
    }

    fn operator_error(&self) -> ShellError {
        let c = self.peek().unwrap_or(';');
        let doubled = self.peek_at(1) == Some(c);
        let (operator, meaning) = match (c, doubled) {
            (';', _) => (";", "command separator"),
            ('&', true) => ("&&", "and-list"),
            ('&', false) => ("&", "background job"),
            ('|', true) => ("||", "or-list"),
            ('|', false) => ("|", "pipe"),
            ('<', _) => ("<", "redirection"),
            ('>', _) => (">", "redirection"),
            _ => (if c == '(' { "(" } else { ")" }, "subshell or grouping"),
        };
        let pos = self.pos();
        ShellError::Operator {
            line: pos.line,
            column: pos.column,
            operator: operator.to_owned(),
            meaning,
        }
    }

    fn unsupported(&self, pos: Pos, construct: String, hint: &'static str) -> ShellError {
        ShellError::Unsupported {
            line: pos.line,
            column: pos.column,
            construct,
            hint,
        }
    }

    /// One line's command: assignments only, optionally after `export`.
    fn command(&mut self, out: &mut Vec<Statement>) -> Result<(), ShellError> {
        let start = self.pos();
        let exported = self.raw_word() == "export";
        if exported {
            self.bump_n("export".len());
            self.skip_blanks();
            if self.at_command_end() {
                return Err(self.unsupported(
                    start,
                    "`export` without a value".to_owned(),
                    "write `export NAME=\"value\"` or drop the line",
                ));
            }
        }
        let Some(statement) = self.assignment()? else {
            if exported {
                return Err(self.unsupported(
                    start,
                    format!("`export {}`", self.raw_word()),
                    "write `export NAME=\"value\"` or a plain `NAME=\"value\"`",
                ));
            }
            return Err(self.not_an_assignment(start));
        };
        out.push(statement);
        loop {
            match self.peek() {
                None | Some('\n') => return Ok(()),
                Some('(') if self.at > 0 && self.chars[self.at - 1] == '=' => {
                    return Err(self.unsupported(
                        self.pos(),
                        "an array (`NAME=(...)`)".to_owned(),
                        "use one string instead, e.g. comma-separated values",
                    ));
                }
                Some(c) if is_operator(c) => return Err(self.operator_error()),
                _ => {}
            }
            self.skip_blanks();
            if self.at_command_end() {
                self.skip_comment();
                return Ok(());
            }
            if self.peek().is_some_and(is_operator) {
                return Err(self.operator_error());
            }
            let pos = self.pos();
            // `a=1 b=$a` assigns left to right, just like two lines do.
            match self.assignment()? {
                Some(_) if exported => {
                    return Err(self.unsupported(
                        pos,
                        "a second assignment after `export`".to_owned(),
                        "bash expands all of them before assigning any; write one `export NAME=\"value\"` per line",
                    ));
                }
                Some(statement) => out.push(statement),
                None => {
                    return Err(ShellError::CommandAfterAssignment {
                        line: pos.line,
                        column: pos.column,
                        word: self.raw_word(),
                    });
                }
            }
        }
    }

    /// The error for a command that does not start with an assignment.
    fn not_an_assignment(&self, start: Pos) -> ShellError {
        let word = self.raw_word();
        let line = start.line;
        let rest = &self.chars[self.at + word.chars().count()..];
        let next = rest.iter().find(|&&c| !is_blank(c)).copied();
        let is_name =
            word.chars().next().is_some_and(is_name_start) && word.chars().all(is_name_char);
        if word == "function" || (is_name && next == Some('(')) {
            ShellError::Function { line }
        } else if CONTROL_WORDS.contains(&word.as_str()) {
            ShellError::ControlFlow {
                line,
                keyword: word,
            }
        } else if word == "source" || word == "." {
            self.unsupported(
                start,
                format!("sourcing another file (`{word}`)"),
                "copy the assignments you need into this file",
            )
        } else if word.contains("]=") || word.contains("]+=") {
            self.unsupported(
                start,
                format!("the array element assignment `{word}`"),
                "use a plain `NAME=\"value\"` variable",
            )
        } else if is_name && next == Some('=') {
            ShellError::Syntax {
                line,
                column: start.column,
                message: format!(
                    "`{word} =` has a space before `=`, so bash would run `{word}` as a command; write `{word}=\"value\"` without spaces"
                ),
            }
        } else if word.is_empty() {
            self.operator_error()
        } else {
            ShellError::Command {
                line,
                command: word,
            }
        }
    }

    /// Reads `NAME=value` or `NAME+=value` if it starts here.
    fn assignment(&mut self) -> Result<Option<Statement>, ShellError> {
        let name: String = self.chars[self.at..]
            .iter()
            .take_while(|&&c| is_name_char(c))
            .collect();
        if !name.chars().next().is_some_and(is_name_start) {
            return Ok(None);
        }
        let len = name.len();
        let append = match (self.peek_at(len), self.peek_at(len + 1)) {
            (Some('='), _) => false,
            (Some('+'), Some('=')) => true,
            _ => return Ok(None),
        };
        let pos = self.pos();
        self.bump_n(len + if append { 2 } else { 1 });
        let value = self.word(Ctx::Bare, pos)?;
        Ok(Some(Statement {
            name,
            pos,
            append,
            value,
        }))
    }

    /// Reads a word in `ctx` up to (not including) what ends it. `open` is
    /// where the enclosing quote or brace opened, for unterminated errors.
    fn word(&mut self, ctx: Ctx, open: Pos) -> Result<Word, ShellError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let pos = self.pos();
            return Err(ShellError::Syntax {
                line: pos.line,
                column: pos.column,
                message: "quotes and expansions are nested too deeply".to_owned(),
            });
        }
        let mut word = WordBuilder::default();
        // Assignments expand `~` at the start and after each unquoted `:`.
        let mut tilde_allowed = !ctx.quoted();
        loop {
            let Some(c) = self.peek() else {
                if ctx == Ctx::Bare {
                    break;
                }
                return Err(unterminated(ctx, open));
            };
            if ctx.ends_at(c) {
                break;
            }
            let pos = self.pos();
            let tilde_here = std::mem::replace(&mut tilde_allowed, false);
            match c {
                '\\' => {
                    self.bump();
                    match self.peek() {
                        // A line continuation vanishes, even between `:` and `~`.
                        Some('\n') => {
                            self.bump();
                            tilde_allowed = tilde_here;
                        }
                        Some(next) if ctx.escapes(next) => {
                            self.bump();
                            word.push(next);
                        }
                        // Anything else keeps its backslash (inside quotes
                        // the next character is then read as usual).
                        _ => word.push('\\'),
                    }
                }
                '\'' if !ctx.quoted() => {
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(unterminated_at(pos, "single quote", "`'`")),
                            Some('\'') => break,
                            Some(q) => word.push(q),
                        }
                    }
                }
                '"' if ctx != Ctx::Dq => {
                    self.bump();
                    let inner = self.word(Ctx::Dq, pos)?;
                    self.bump();
                    word.extend(inner);
                }
                '$' => self.dollar(ctx, &mut word)?,
                '`' => {
                    let text = self.backtick(ctx)?;
                    word.part(Part::Command(text, pos));
                }
                '~' if tilde_here => self.tilde(ctx, &mut word)?,
                _ => {
                    self.bump();
                    word.push(c);
                    tilde_allowed = c == ':' && !ctx.quoted();
                }
            }
        }
        self.depth -= 1;
        Ok(word.finish())
    }

    fn tilde(&mut self, ctx: Ctx, word: &mut WordBuilder) -> Result<(), ShellError> {
        let pos = self.pos();
        self.bump();
        while self.peek() == Some('\\') && self.peek_at(1) == Some('\n') {
            self.bump_n(2);
        }
        match self.peek() {
            None | Some('/' | ':') => word.part(Part::Tilde(pos)),
            Some(c) if ctx.ends_at(c) => word.part(Part::Tilde(pos)),
            // A quoted character in the tilde prefix turns expansion off.
            Some('"' | '\'' | '\\') => word.push('~'),
            Some(_) => {
                return Err(self.unsupported(
                    pos,
                    format!("the tilde prefix `~{}`", self.raw_word()),
                    "only `~` and `~/...` (your home directory) are supported; write the path out",
                ));
            }
        }
        Ok(())
    }

    /// Reads what follows a `$`.
    fn dollar(&mut self, ctx: Ctx, word: &mut WordBuilder) -> Result<(), ShellError> {
        let pos = self.pos();
        let next = self.peek_at(1);
        match next {
            Some('{') => {
                self.bump_n(2);
                let part = self.brace(ctx, pos)?;
                word.part(part);
            }
            Some('(') if self.peek_at(2) == Some('(') => {
                return Err(self.unsupported(
                    pos,
                    "arithmetic expansion `$((...))`".to_owned(),
                    "write the computed value",
                ));
            }
            Some('(') => {
                self.bump_n(2);
                let text = self.command_text(pos)?;
                word.part(Part::Command(text, pos));
            }
            Some('[') => {
                return Err(self.unsupported(
                    pos,
                    "arithmetic expansion `$[...]`".to_owned(),
                    "write the computed value",
                ));
            }
            Some(c) if is_name_start(c) => {
                self.bump();
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
                    self.bump();
                    name.push(c);
                }
                word.part(Part::Var(name, pos));
            }
            Some(c) if c.is_ascii_digit() || "@*#?-$!".contains(c) => {
                return Err(self.unsupported(
                    pos,
                    format!("the special parameter `${c}`"),
                    "it has no fixed value when kvmx reads the file; use a named variable",
                ));
            }
            Some(q @ ('\'' | '"')) if ctx != Ctx::Dq => {
                let form = if q == '\'' { "$'...'" } else { "$\"...\"" };
                return Err(self.unsupported(
                    pos,
                    format!("the quoting `{form}`"),
                    "use plain double or single quotes",
                ));
            }
            // A `$` that starts nothing is a literal dollar sign.
            _ => {
                self.bump();
                word.push('$');
            }
        }
        Ok(())
    }

    /// Reads a `${...}` expansion after its `${`; `open` is at the `$`.
    fn brace(&mut self, ctx: Ctx, open: Pos) -> Result<Part, ShellError> {
        let unsupported_expansion = |p: &Self, shown: String| {
            p.unsupported(
                open,
                format!("the expansion `{shown}`"),
                "use `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+alternative}` or `${NAME+alternative}`",
            )
        };
        let mut name = String::new();
        match self.peek() {
            Some(c) if is_name_start(c) => {
                while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
                    self.bump();
                    name.push(c);
                }
            }
            None => return Err(unterminated_at(open, "`${`", "`}`")),
            Some(c) => {
                let shown = match c {
                    '}' => "${}".to_owned(),
                    _ => format!("${{{c}...}}"),
                };
                return Err(unsupported_expansion(self, shown));
            }
        }
        let (colon, op) = match (self.peek(), self.peek_at(1)) {
            (Some('}'), _) => {
                self.bump();
                return Ok(Part::Var(name, open));
            }
            (None, _) | (Some(':'), None) => return Err(unterminated_at(open, "`${`", "`}`")),
            (Some(':'), Some(op)) => (true, op),
            (Some(op), _) => (false, op),
        };
        if !matches!(op, '-' | '+') {
            let colon = if colon { ":" } else { "" };
            return Err(unsupported_expansion(
                self,
                format!("${{{name}{colon}{op}...}}"),
            ));
        }
        self.bump_n(if colon { 2 } else { 1 });
        let inner = if ctx.quoted() {
            Ctx::BraceDq
        } else {
            Ctx::BraceBare
        };
        let word = self.word(inner, open)?;
        self.bump();
        Ok(Part::Param {
            name,
            pos: open,
            alternative: op == '+',
            colon,
            word,
        })
    }

    /// Reads the body of a `$(...)` after its `$(`; `open` is at the `$`.
    fn command_text(&mut self, open: Pos) -> Result<String, ShellError> {
        let start = self.at;
        let Some(end) = scan::command_end(&self.chars, start) else {
            return Err(unterminated_at(open, "`$(`", "`)`"));
        };
        let text: String = self.chars[start..end - 1].iter().collect();
        self.bump_n(end - start);
        check_command(&text, open)?;
        Ok(text)
    }

    /// Reads a backtick substitution, undoing the backslash escapes bash
    /// applies inside backticks before running the text.
    fn backtick(&mut self, ctx: Ctx) -> Result<String, ShellError> {
        let open = self.pos();
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated_at(open, "backtick", "backtick")),
                Some('`') => break,
                Some('\\') => match self.peek() {
                    Some(c @ ('$' | '`' | '\\')) => {
                        self.bump();
                        text.push(c);
                    }
                    Some('"') if ctx.quoted() => {
                        self.bump();
                        text.push('"');
                    }
                    _ => text.push('\\'),
                },
                Some(c) => text.push(c),
            }
        }
        check_command(&text, open)?;
        Ok(text)
    }
}

/// Rejects command texts whose end the simple scanner above may have
/// misjudged (`case` patterns end in `)`, here-documents are not scanned).
fn check_command(text: &str, open: Pos) -> Result<(), ShellError> {
    let has_case = text.split(|c: char| !is_name_char(c)).any(|w| w == "case");
    if has_case || text.contains("<<") {
        let what = if has_case {
            "`case`"
        } else {
            "a here-document"
        };
        return Err(ShellError::Unsupported {
            line: open.line,
            column: open.column,
            construct: format!("{what} inside a command substitution"),
            hint: "move the command into a script and call that script",
        });
    }
    Ok(())
}

fn unterminated(ctx: Ctx, open: Pos) -> ShellError {
    match ctx {
        Ctx::Dq => unterminated_at(open, "double quote", "`\"`"),
        _ => unterminated_at(open, "`${`", "`}`"),
    }
}

fn unterminated_at(open: Pos, what: &'static str, closer: &'static str) -> ShellError {
    ShellError::Unterminated {
        line: open.line,
        column: open.column,
        what,
        closer,
    }
}

/// Collects a word's parts, merging adjacent literal text.
#[derive(Default)]
struct WordBuilder {
    parts: Word,
    literal: String,
}

impl WordBuilder {
    fn push(&mut self, c: char) {
        self.literal.push(c);
    }

    fn part(&mut self, part: Part) {
        self.flush();
        self.parts.push(part);
    }

    fn extend(&mut self, parts: Word) {
        for part in parts {
            match part {
                Part::Literal(text) => self.literal.push_str(&text),
                other => self.part(other),
            }
        }
    }

    fn flush(&mut self) {
        if !self.literal.is_empty() {
            self.parts
                .push(Part::Literal(std::mem::take(&mut self.literal)));
        }
    }

    fn finish(mut self) -> Word {
        self.flush();
        self.parts
    }
}
