//! The process that owns a run: its pid and its start time, so that a pid
//! reused by another process after kvmx-ci was killed is told apart.

use serde::{Deserialize, Serialize};

/// A process, as `/proc` knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// When it started, in clock ticks after boot (field 22 of
    /// `/proc/PID/stat`); none where `/proc` could not tell.
    pub start_time: Option<u64>,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start_time: stat(pid).map(|stat| stat.start_time),
        }
    }

    /// Whether the process still runs: its pid exists, is not a zombie, and
    /// started when it was recorded.
    pub fn is_alive(&self) -> bool {
        match stat(self.pid) {
            None => false,
            Some(stat) if stat.state == 'Z' => false,
            Some(stat) => self.start_time.is_none_or(|start| start == stat.start_time),
        }
    }
}

/// The fields of `/proc/PID/stat` that tell a process apart.
struct Stat {
    state: char,
    start_time: u64,
}

/// Reads `/proc/PID/stat`; none when the process does not exist.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so the fields are counted
/// from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 (the state) was just read; field 22 is 19 further.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let text =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time, 98765);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Owner::current();
        assert!(me.start_time.is_some());
        assert!(me.is_alive());
        let other = Owner {
            start_time: me.start_time.map(|start| start + 1),
            ..me
        };
        assert!(!other.is_alive());
    }

    #[test]
    fn a_finished_process_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Owner {
            pid,
            start_time: None,
        };
        assert!(!gone.is_alive());
    }
}
