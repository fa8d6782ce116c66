//! The Debian installer's progress, read from its serial console.
//!
//! With `DEBIAN_FRONTEND=text` the installer prints each progress bar as
//! a line: its title, two spaces, then `... 5%... 100%` as it advances
//! ("Installing the base system  ... 10%... 20%"), and each question as a
//! text dialog ending in `Prompt: '?' for help, default=1> `. On the
//! serial console it runs under GNU screen, whose status bar is drawn in
//! the middle of those lines (after a cursor-home escape, up to the next
//! cursor move or line end). [`Progress`] takes the console's bytes as
//! they come and gives the titles as steps, the last lines, and whether
//! the install is done, failed, or waits for an answer nobody will give.

use std::collections::VecDeque;

/// The last lines of the text frontend's questions and of its error and
/// note dialogs: the installer waits for input.
const PROMPTS: [&str; 2] = ["Prompt: '?' for help", "[Press enter to continue]"];

/// How many clean console lines are kept for an error.
const TAIL: usize = 20;

/// The longest unfinished line looked at (a guard against a console
/// that never ends its line).
const LONGEST_LINE: usize = 64 * 1024;

/// Where an install stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still going.
    Running,
    /// The end-of-install script printed its done marker.
    Done,
    /// It printed its failed marker.
    Failed,
    /// An unattended install shows a question: it will wait forever.
    Stuck,
}

/// Reads the installer's console.
#[derive(Debug)]
pub struct Progress {
    done_marker: Option<&'static str>,
    failed_marker: Option<&'static str>,
    /// The raw bytes of the line not yet ended.
    pending: Vec<u8>,
    step: Option<String>,
    tail: VecDeque<String>,
    verdict: Verdict,
}

impl Progress {
    /// A reader for an install whose end-of-install script prints
    /// `done_marker` (or `failed_marker`); with no markers the install is
    /// interactive and a question is no failure.
    pub fn new(done_marker: Option<&'static str>, failed_marker: Option<&'static str>) -> Self {
        Progress {
            done_marker,
            failed_marker,
            pending: Vec::new(),
            step: None,
            tail: VecDeque::new(),
            verdict: Verdict::Running,
        }
    }

    /// Takes more console bytes; returns the steps that began in them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut steps = Vec::new();
        for &byte in bytes {
            // A bare carriage return ends a line too: the installer's
            // dialogs and screen's status bar end some lines with one.
            if byte == b'\n' || byte == b'\r' {
                let line = clean(&std::mem::take(&mut self.pending));
                self.line(&line, true, &mut steps);
            } else if self.pending.len() < LONGEST_LINE {
                self.pending.push(byte);
            }
        }
        // The line being written: a progress title shows before its
        // line ends, and a question's prompt never ends its line.
        if !self.pending.is_empty() {
            let line = clean(&self.pending);
            self.line(&line, false, &mut steps);
        }
        steps
    }

    fn line(&mut self, line: &str, complete: bool, steps: &mut Vec<String>) {
        if let Some(title) = title(line)
            && self.step.as_deref() != Some(title.as_str())
        {
            self.step = Some(title.clone());
            steps.push(title);
        }
        let unattended = self.done_marker.is_some();
        if self.failed_marker.is_some_and(|m| line.contains(m)) {
            self.verdict = Verdict::Failed;
        } else if self.done_marker.is_some_and(|m| line.contains(m)) {
            self.verdict = Verdict::Done;
        } else if unattended
            && PROMPTS.iter().any(|p| line.contains(p))
            && self.verdict == Verdict::Running
        {
            self.verdict = Verdict::Stuck;
        }
        if complete && !line.trim().is_empty() {
            if self.tail.len() == TAIL {
                self.tail.pop_front();
            }
            self.tail.push_back(line.trim_end().to_owned());
        }
    }

    /// Where the install stands.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// The installer's current step.
    pub fn step(&self) -> Option<&str> {
        self.step.as_deref()
    }

    /// The last console lines, escapes and screen's status bar removed,
    /// with the line being written last.
    pub fn tail(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        let pending = clean(&self.pending);
        if !pending.trim().is_empty() {
            lines.push(pending.trim_end().to_owned());
        }
        lines
    }
}

/// A progress bar's title in a console line: the text before the two
/// spaces that precede its `...`, without a trailing "..." or "; please
/// wait". Lines that start with a blank (dialog text, choices) have none.
fn title(line: &str) -> Option<String> {
    if line.starts_with(char::is_whitespace) || line.starts_with('[') {
        return None;
    }
    let head = match line.find("  ...") {
        Some(at) => &line[..at],
        None if line.ends_with("  ") => line,
        None => return None,
    };
    let mut title = head.trim().trim_end_matches('.').trim_end();
    if let Some(shorter) = title.strip_suffix("; please wait") {
        title = shorter.trim_end_matches('.');
    }
    (!title.is_empty() && !PROMPTS.iter().any(|p| title.contains(p))).then(|| title.to_owned())
}

/// The text of a raw console line: escape sequences, carriage returns and
/// screen's status bar removed.
fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    // Inside screen's status bar: from a cursor-home to the next cursor
    // move or the end of the line.
    let mut status = false;
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    let mut params = String::new();
                    let mut last = None;
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            last = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    match (last, params.is_empty()) {
                        (Some('H'), true) => status = true,
                        (Some('H' | 'f'), false) => status = false,
                        _ => {}
                    }
                }
                // Character set selection: one more character.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                _ => {}
            },
            '\r' => status = false,
            c if c.is_control() => {}
            c if !status => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console of a real run of Debian 12's netboot installer (text
    /// frontend, serial console) up to the question it stopped at: the
    /// mirror of this project's CI host serves no installer components.
    const RECORDED: &[u8] = include_bytes!("testdata/netboot-console.log");

    fn steps_of(progress: &mut Progress, bytes: &[u8], chunk: usize) -> Vec<String> {
        bytes
            .chunks(chunk)
            .flat_map(|piece| progress.feed(piece))
            .collect()
    }

    #[test]
    fn steps_of_a_recorded_run() {
        let mut progress = Progress::new(Some("kvmx-install: done"), Some("kvmx-install: failed"));
        let steps = steps_of(&mut progress, RECORDED, 4096);
        assert_eq!(
            steps,
            [
                "Detecting network hardware",
                "Detecting link on ens2",
                "Waiting for link-local address",
                "Attempting IPv6 autoconfiguration",
                "Configuring the network with DHCP",
                "Checking the Debian archive mirror",
                "Loading additional components",
            ]
        );
        assert_eq!(progress.verdict(), Verdict::Stuck);
        assert_eq!(progress.step(), Some("Loading additional components"));
        let tail = progress.tail();
        assert!(
            tail.iter().any(|l| l.contains("failed to download a file")),
            "{tail:#?}"
        );
        assert!(tail.last().unwrap().starts_with("Prompt: '?' for help"));
        assert!(!tail.iter().any(|l| l.contains("1*installer")), "{tail:#?}");
    }

    /// Byte by byte, the same steps: escapes and lines cut anywhere.
    #[test]
    fn any_cut_gives_the_same_steps() {
        let mut whole = Progress::new(None, None);
        let mut bytewise = Progress::new(None, None);
        assert_eq!(
            steps_of(&mut whole, RECORDED, RECORDED.len()),
            steps_of(&mut bytewise, RECORDED, 1)
        );
        // An interactive install may ask.
        assert_eq!(bytewise.verdict(), Verdict::Running);
    }

    #[test]
    fn the_markers_end_it() {
        let mut progress = Progress::new(Some("kvmx-install: done"), Some("kvmx-install: failed"));
        let steps = progress.feed(
            b"Installing the base system  ... 10%... 100%\r\nInstalling GRUB  ... 50%\r\n\
              Finishing the installation  ... 10%",
        );
        assert_eq!(
            steps,
            [
                "Installing the base system",
                "Installing GRUB",
                "Finishing the installation"
            ]
        );
        assert_eq!(progress.verdict(), Verdict::Running);
        progress.feed(b"... 50%\r\nkvmx-install: done\r\n");
        assert_eq!(progress.verdict(), Verdict::Done);

        let mut failing = Progress::new(Some("kvmx-install: done"), Some("kvmx-install: failed"));
        failing.feed(b"Running preseed...  ... 10%\r\nkvmx-install: failed (status 1)\r\n");
        assert_eq!(failing.verdict(), Verdict::Failed);
        assert_eq!(failing.step(), Some("Running preseed"));
    }

    /// An error dialog waits for Enter: as stuck as a question.
    #[test]
    fn an_error_dialog_is_stuck() {
        let mut progress = Progress::new(Some("kvmx-install: done"), None);
        progress.feed(
            b"Checking the Debian archive mirror  ... 25%... 100%\r\n\
              Choose a mirror of the Debian archive\r\n-------------------------------------\r\n\
              !! ERROR: Bad archive mirror\r\n\r\n[Press enter to continue] ",
        );
        assert_eq!(progress.verdict(), Verdict::Stuck);
        assert_eq!(progress.step(), Some("Checking the Debian archive mirror"));
        assert!(
            progress
                .tail()
                .contains(&"!! ERROR: Bad archive mirror".to_owned())
        );
    }

    #[test]
    fn a_bare_carriage_return_ends_a_line() {
        let mut progress = Progress::new(None, None);
        progress.feed(b"Please try a different one.\r[Press enter to continue] ");
        assert_eq!(
            progress.tail(),
            ["Please try a different one.", "[Press enter to continue]"]
        );
    }

    #[test]
    fn screen_status_bars_are_dropped() {
        let raw = b"Attempting IPv6 autoconfiguration...  \x1b[H\x1b[7m\x1b[m\x1b[32m\x1b[40m[  \x1b[37m (\x1b[37m1*installer\x1b[31m)\x1b[37m  2 shell  ][\x1b[34m Nov 29 \x1b[37m16:57 \x1b[32m]\x1b[6;39H\x1b[0m... 5%... 100%";
        assert_eq!(
            clean(raw),
            "Attempting IPv6 autoconfiguration...  ... 5%... 100%"
        );
        assert_eq!(clean(b"\x1b=\x1b(BDetecting\r"), "Detecting");
    }
}
