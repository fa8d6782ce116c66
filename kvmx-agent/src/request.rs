//! What the host asks the agent to run: the [`Kind::Start`] payload.
//!
//! [`Kind::Start`]: crate::Kind::Start

/// A command to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The guest user who runs it (never root by kvmx's choice: kvmx sends
    /// the VM's SSH user).
    pub user: String,
    /// The command line that the user's shell runs with `-c`; empty for a
    /// login shell.
    pub command: String,
    /// A pseudo-terminal for it, or pipes when `None`.
    pub terminal: Option<Terminal>,
    /// Variables set on top of the login environment.
    pub env: Vec<(String, String)>,
}

/// The terminal a command gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// `TERM`.
    pub term: String,
    /// Its rows.
    pub rows: u16,
    /// Its columns.
    pub columns: u16,
}

impl Request {
    /// The payload: fields separated by NUL bytes (user, command, TERM,
    /// rows, columns, then `NAME=value` per variable); no terminal is an
    /// empty TERM.
    pub fn encode(&self) -> Vec<u8> {
        let (term, rows, columns) = match &self.terminal {
            Some(terminal) => (terminal.term.as_str(), terminal.rows, terminal.columns),
            None => ("", 0, 0),
        };
        let mut fields = vec![
            self.user.clone(),
            self.command.clone(),
            term.to_owned(),
            rows.to_string(),
            columns.to_string(),
        ];
        fields.extend(
            self.env
                .iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
        let mut bytes = Vec::new();
        for field in fields {
            bytes.extend_from_slice(field.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    /// Reads a payload made by [`Request::encode`].
    pub fn decode(payload: &[u8]) -> Result<Request, String> {
        let text = std::str::from_utf8(payload).map_err(|_| "the request is not UTF-8")?;
        let mut fields = text.strip_suffix('\0').unwrap_or(text).split('\0');
        let mut next = |what: &str| {
            fields
                .next()
                .map(str::to_owned)
                .ok_or_else(|| format!("the request has no {what}"))
        };
        let user = next("user")?;
        let command = next("command")?;
        let term = next("TERM")?;
        let number = |text: String| {
            text.parse::<u16>()
                .map_err(|_| format!("bad terminal size {text:?}"))
        };
        let rows = number(next("rows")?)?;
        let columns = number(next("columns")?)?;
        let env = fields
            .map(|pair| {
                pair.split_once('=')
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .ok_or_else(|| format!("the variable {pair:?} has no `=`"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Request {
            user,
            command,
            terminal: (!term.is_empty()).then_some(Terminal {
                term,
                rows,
                columns,
            }),
            env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_back_as_written() {
        let plain = Request {
            user: "user".into(),
            command: "printf '%s' \"a=b\"; exit 3".into(),
            terminal: None,
            env: vec![("A".into(), "x=y".into()), ("EMPTY".into(), String::new())],
        };
        let with_terminal = Request {
            terminal: Some(Terminal {
                term: "xterm-256color".into(),
                rows: 40,
                columns: 132,
            }),
            env: Vec::new(),
            ..plain.clone()
        };
        for request in [plain, with_terminal] {
            assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
        assert_eq!(
            Request::decode(b"user\0"),
            Err("the request has no command".into())
        );
    }
}
