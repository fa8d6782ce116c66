//! Evaluates a legacy `kvmxfile`, the bash fragment the original kvmx
//! `source`d, without running bash.
//!
//! Only assignments are accepted, and they get exactly the value bash would
//! give them:
//!
//! * `NAME=value` and `NAME+=value`, several per line if wanted (`a=1 b=$a`
//!   assigns left to right, as bash does), and `export NAME=value` (one
//!   assignment per `export`), which is read as a plain assignment:
//!   exporting changes no value.
//! * Values made of bare words, `'single'` and `"double"` quotes (also
//!   spanning lines), backslash escapes and line continuations.
//! * `$NAME`, `${NAME}`, `${NAME-word}`, `${NAME:-word}`, `${NAME+word}` and
//!   `${NAME:+word}` (nestable), `~` and `~/...` at the start of a value or
//!   after a `:`, and `$(...)` and backtick command substitutions, which run
//!   through a [`CommandRunner`].
//! * Comments: a `#` at the start of a word up to the end of the line.
//!
//! Like bash, values are never word-split or globbed: a substitution that
//! prints `a  b*` assigns exactly that.
//!
//! Anything else (commands, functions, control flow, arrays, operators,
//! redirections, other expansions, bash's own variables such as `$RANDOM`)
//! is a [`ShellError`] naming the line, never skipped.

mod parse;
mod scan;

use crate::CancelFlag;
use crate::process::{Runner, Tool};
use std::collections::BTreeMap;

use parse::{Part, Pos, Word};

/// One `NAME=value` line after evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable assigned.
    pub name: String,
    /// Its value after expansion.
    pub value: String,
    /// The 1-based line the assignment starts on.
    pub line: usize,
    /// Whether the value came, wholly or in part, from a command
    /// substitution, directly or through a variable that did.
    pub substituted: bool,
}

/// Where unset names come from, in order: earlier assignments in the file,
/// then `provided` (kvmx's own `VM`, `HOME`, `KVMX_BASE`, `GUEST_DISPLAY`),
/// then `environment`; undefined names expand to the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellContext {
    /// Variables kvmx itself defines for the file.
    pub provided: BTreeMap<String, String>,
    /// The process environment the file would have seen.
    pub environment: BTreeMap<String, String>,
}

/// Runs the text of a `$(...)` or backtick substitution.
pub trait CommandRunner {
    /// Runs `command` with `vars` (every variable known at that point: file
    /// assignments, provided and environment) and returns its output with
    /// trailing newlines removed, as bash's substitution does. `Err` carries
    /// why the command could not run.
    fn run(&mut self, command: &str, vars: &BTreeMap<String, String>) -> Result<String, String>;
}

/// How long a command substitution may run.
const SUBSTITUTION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// The default [`CommandRunner`]: `sh -c COMMAND` with `vars` as its
/// environment (and `PATH`, `LC_ALL`), stdin closed, stderr kept for the
/// error, in the current directory, for at most a minute. Like bash, it takes the output whatever the exit status, drops
/// NUL bytes and strips trailing newlines; output that is not UTF-8 is an
/// error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShRunner;

impl CommandRunner for ShRunner {
    fn run(&mut self, command: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        let mut sh = Tool::new("sh", "a command substitution")
            .args(["-c", command])
            .clean_env()
            .any_status()
            .deadline(SUBSTITUTION_DEADLINE);
        for (name, value) in vars {
            sh = sh.env(name, value);
        }
        let mut output = Runner::unlogged(CancelFlag::new())
            .run(&sh)
            .map_err(|error| error.to_string())?
            .stdout;
        output.retain(|&b| b != 0);
        while output.last() == Some(&b'\n') {
            output.pop();
        }
        String::from_utf8(output).map_err(|_| "its output is not valid UTF-8".to_owned())
    }
}

/// Why a kvmxfile cannot be evaluated. Every variant names the 1-based line
/// and says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// A shell function definition.
    #[error(
        "line {line}: shell functions are not supported in a kvmxfile; move this logic out of the file or into a provision script"
    )]
    Function {
        /// Where the definition starts.
        line: usize,
    },
    /// `if`, `for`, `while`, `case`, `{` and the like.
    #[error(
        "line {line}: `{keyword}` (shell control flow) is not supported in a kvmxfile; write plain `NAME=\"value\"` lines and move any logic into a provision script"
    )]
    ControlFlow {
        /// The line of the keyword.
        line: usize,
        /// The keyword.
        keyword: String,
    },
    /// A line that runs a command instead of assigning.
    #[error(
        "line {line}: `{command}` would run a command, which a kvmxfile may not do; only `NAME=\"value\"` assignments are allowed"
    )]
    Command {
        /// The line of the command.
        line: usize,
        /// The command word.
        command: String,
    },
    /// `a=b cmd`: bash runs `cmd` with `a` set only for it.
    #[error(
        "line {line}, column {column}: `{word}` after an assignment would run as a command; quote the value if it contains spaces, or put each assignment on its own line"
    )]
    CommandAfterAssignment {
        /// The line of the word.
        line: usize,
        /// The column of the word.
        column: usize,
        /// The word that would be run.
        word: String,
    },
    /// `;`, `&&`, `|`, `>`, `(` and the other control and redirection
    /// operators.
    #[error(
        "line {line}, column {column}: `{operator}` ({meaning}) is not supported in a kvmxfile; put one `NAME=\"value\"` per line and quote values that contain `{operator}`"
    )]
    Operator {
        /// The line of the operator.
        line: usize,
        /// The column of the operator.
        column: usize,
        /// The operator as written.
        operator: String,
        /// What bash would do with it.
        meaning: &'static str,
    },
    /// A shell feature outside the kvmxfile subset: arrays, `$((...))`,
    /// pattern expansions, special parameters, `source`, and so on.
    #[error("line {line}, column {column}: {construct} is not supported in a kvmxfile; {hint}")]
    Unsupported {
        /// Where the construct starts.
        line: usize,
        /// Where the construct starts.
        column: usize,
        /// What was found.
        construct: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// A quote, `${`, `$(` or backtick that is never closed.
    #[error(
        "line {line}, column {column}: this {what} is never closed; add the missing `{closer}`"
    )]
    Unterminated {
        /// Where it opened.
        line: usize,
        /// Where it opened.
        column: usize,
        /// What opened.
        what: &'static str,
        /// What would close it, as shown to the user.
        closer: &'static str,
    },
    /// Something bash itself would reject.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// Where the problem is.
        line: usize,
        /// Where the problem is.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A command substitution that could not run.
    #[error("line {line}: the command substitution `{command}` could not run: {message}")]
    CommandFailed {
        /// The line of the substitution.
        line: usize,
        /// The command text.
        command: String,
        /// Why it failed.
        message: String,
    },
}

impl ShellError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            ShellError::Function { line }
            | ShellError::ControlFlow { line, .. }
            | ShellError::Command { line, .. }
            | ShellError::CommandAfterAssignment { line, .. }
            | ShellError::Operator { line, .. }
            | ShellError::Unsupported { line, .. }
            | ShellError::Unterminated { line, .. }
            | ShellError::Syntax { line, .. }
            | ShellError::CommandFailed { line, .. } => *line,
        }
    }
}

/// Variables bash sets or recomputes itself, whatever the environment says;
/// a kvmxfile may neither read nor assign them.
const BASH_OWNED: &[&str] = &[
    "BASHOPTS",
    "BASHPID",
    "COMP_WORDBREAKS",
    "DIRSTACK",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "EUID",
    "FUNCNAME",
    "GROUPS",
    "HISTCMD",
    "IFS",
    "LINENO",
    "OLDPWD",
    "OPTERR",
    "OPTIND",
    "PIPESTATUS",
    "PPID",
    "PS4",
    "PWD",
    "RANDOM",
    "SECONDS",
    "SHELLOPTS",
    "SHLVL",
    "SRANDOM",
    "UID",
    "_",
];

/// Variables bash takes from the environment but fills in from the system
/// when they are missing there.
const BASH_DEFAULTED: &[&str] = &[
    "HOSTNAME", "HOSTTYPE", "MACHTYPE", "OSTYPE", "PATH", "SHELL", "TERM",
];

/// How many bytes all values of one file may add up to. Real files stay
/// under a few kilobytes; the cap stops `a=$a$a` chains from exhausting
/// memory.
const MAX_TOTAL_BYTES: usize = 16 << 20;

fn bash_owned(name: &str) -> bool {
    name == "BASH" || name.starts_with("BASH_") || BASH_OWNED.contains(&name)
}

/// Evaluates a kvmxfile and returns every assignment in file order (a name
/// assigned twice appears twice; the later one wins).
///
/// The whole file is checked before any command substitution runs, so a
/// file with a syntax error runs nothing. The values of one file may add up
/// to 16 MiB at most, so that self-doubling chains fail cleanly.
pub fn evaluate(
    source: &str,
    context: &ShellContext,
    runner: &mut dyn CommandRunner,
) -> Result<Vec<Assignment>, ShellError> {
    let statements = parse::parse(source)?;
    let mut state = State {
        context,
        runner,
        file: BTreeMap::new(),
        budget: MAX_TOTAL_BYTES,
    };
    let mut assignments = Vec::with_capacity(statements.len());
    for statement in statements {
        if bash_owned(&statement.name) {
            return Err(bash_variable_error(&statement.name, statement.pos));
        }
        let mut substituted = false;
        let mut value = state.expand(&statement.value, statement.pos, &mut substituted)?;
        if statement.append {
            let (old, old_substituted) = state.get(&statement.name, statement.pos)?;
            value.insert_str(0, &old);
            substituted |= old_substituted;
        }
        state.spend(value.len(), statement.pos)?;
        state
            .file
            .insert(statement.name.clone(), (value.clone(), substituted));
        assignments.push(Assignment {
            name: statement.name,
            value,
            line: statement.pos.line,
            substituted,
        });
    }
    Ok(assignments)
}

fn bash_variable_error(name: &str, pos: Pos) -> ShellError {
    ShellError::Unsupported {
        line: pos.line,
        column: pos.column,
        construct: format!("bash's own variable `{name}`"),
        hint: "bash sets it itself and kvmx does not imitate that; use a variable of your own",
    }
}

/// Variables assigned so far, plus where to look for the rest.
struct State<'a> {
    context: &'a ShellContext,
    runner: &'a mut dyn CommandRunner,
    /// Value, and whether it came from a command substitution.
    file: BTreeMap<String, (String, bool)>,
    /// Bytes of values still allowed, see [`MAX_TOTAL_BYTES`].
    budget: usize,
}

impl State<'_> {
    /// The value of `name` if it is set, and whether it came from a
    /// command substitution.
    fn lookup(&self, name: &str, pos: Pos) -> Result<Option<(String, bool)>, ShellError> {
        if bash_owned(name) {
            return Err(bash_variable_error(name, pos));
        }
        if let Some(found) = self.file.get(name) {
            return Ok(Some(found.clone()));
        }
        let outside = self
            .context
            .provided
            .get(name)
            .or_else(|| self.context.environment.get(name));
        match outside {
            Some(value) => Ok(Some((value.clone(), false))),
            None if BASH_DEFAULTED.contains(&name) => Err(ShellError::Unsupported {
                line: pos.line,
                column: pos.column,
                construct: format!("`${name}` without a value in the environment"),
                hint: "bash would fill it in from the system; set it in the environment or assign it earlier in the file",
            }),
            None => Ok(None),
        }
    }

    /// Like [`State::lookup`], with unset names empty.
    fn get(&self, name: &str, pos: Pos) -> Result<(String, bool), ShellError> {
        Ok(self.lookup(name, pos)?.unwrap_or_default())
    }

    /// Takes `len` bytes from the budget, or fails at `pos`.
    fn spend(&mut self, len: usize, pos: Pos) -> Result<(), ShellError> {
        self.budget = self.budget.checked_sub(len).ok_or(ShellError::Unsupported {
            line: pos.line,
            column: pos.column,
            construct: format!("values adding up to more than {MAX_TOTAL_BYTES} bytes"),
            hint: "a kvmxfile holds short settings; look for a variable that keeps appending itself",
        })?;
        Ok(())
    }

    /// Expands the value of the assignment at `statement`.
    fn expand(
        &mut self,
        word: &Word,
        statement: Pos,
        substituted: &mut bool,
    ) -> Result<String, ShellError> {
        let mut out = String::new();
        for part in word {
            // Fail before a runaway value is built, not after.
            if out.len() > self.budget {
                self.spend(out.len(), statement)?;
            }
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Tilde(at) => match self.lookup("HOME", *at)? {
                    Some((home, from_command)) => {
                        out.push_str(&home);
                        *substituted |= from_command;
                    }
                    None => {
                        return Err(ShellError::Unsupported {
                            line: at.line,
                            column: at.column,
                            construct: "`~` while HOME is unset".to_owned(),
                            hint: "write the path out",
                        });
                    }
                },
                Part::Var(name, pos) => {
                    let (value, from_command) = self.get(name, *pos)?;
                    out.push_str(&value);
                    *substituted |= from_command;
                }
                Part::Param {
                    name,
                    pos,
                    alternative,
                    colon,
                    word,
                } => {
                    let value = self
                        .lookup(name, *pos)?
                        .filter(|(value, _)| !(*colon && value.is_empty()));
                    match (value, *alternative) {
                        (Some(_), true) | (None, false) => {
                            out.push_str(&self.expand(word, statement, substituted)?);
                        }
                        (Some((value, from_command)), false) => {
                            out.push_str(&value);
                            *substituted |= from_command;
                        }
                        (None, true) => {}
                    }
                }
                Part::Command(command, pos) => {
                    let vars = self.known_vars();
                    let output = self.runner.run(command, &vars).map_err(|message| {
                        ShellError::CommandFailed {
                            line: pos.line,
                            command: command.clone(),
                            message,
                        }
                    })?;
                    out.push_str(&output);
                    *substituted = true;
                }
            }
        }
        if out.len() > self.budget {
            self.spend(out.len(), statement)?;
        }
        Ok(out)
    }

    /// Every variable known at this point, for a command's environment.
    fn known_vars(&self) -> BTreeMap<String, String> {
        let mut vars = self.context.environment.clone();
        vars.extend(self.context.provided.clone());
        vars.extend(
            self.file
                .iter()
                .map(|(name, (value, _))| (name.clone(), value.clone())),
        );
        vars
    }
}

#[cfg(test)]
mod tests;
