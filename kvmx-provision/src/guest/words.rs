//! The command line a guest's shell runs, built from the words a caller
//! gives, the same way for `kvmx ssh`, disposables and [`super::Guest::exec`].
//!
//! OpenSSH joins the words of a remote command with spaces and hands the
//! result to the remote user's shell, so `ssh host sh -c 'exit 4'` runs
//! `sh -c exit 4` and exits 0. kvmx keeps the words instead, as `docker
//! exec` does: several words are an argv, each quoted for the shell; a
//! single word is a shell command line as it is (`'ls | wc -l'`).

use crate::Error;

/// The shell command line that runs `words` in the guest: a single word
/// as it is (a command line of its own), several words as an argv, each
/// quoted so that it arrives intact. No words give an empty line.
///
/// Fails on a word holding a NUL byte, which no shell word can carry.
pub fn command_line<S: AsRef<str>>(words: &[S]) -> Result<String, Error> {
    if let Some(word) = words.iter().find(|w| w.as_ref().contains('\0')) {
        return Err(Error::Usage(format!(
            "the command word {:?} holds a NUL byte, which a command line in the guest cannot carry",
            word.as_ref()
        )));
    }
    Ok(match words {
        [line] => line.as_ref().to_owned(),
        words => words
            .iter()
            .map(|w| quote(w.as_ref()))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

pub use kvmx_core::process::shell_quote as quote;

#[cfg(test)]
mod tests {
    use kvmx_testkit::shell::words_seen_by_sh;

    use super::*;

    #[test]
    fn several_words_reach_the_shell_intact() {
        let words = [
            "a b",
            "$HOME",
            "*",
            "it's",
            "",
            "\"q\"",
            "back\\slash",
            "`id`",
            "$(id)",
            "semi;colon",
            "tab\there",
            "~",
            "#hash",
            "A=b",
            "ünï",
        ];
        let line = command_line(&words).unwrap();
        assert_eq!(words_seen_by_sh(&line), words);
    }

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(
            command_line(&["sh", "-c", "exit 4"]).unwrap(),
            "sh -c 'exit 4'"
        );
        assert_eq!(
            command_line(&["cat", "/etc/os-release"]).unwrap(),
            "cat /etc/os-release"
        );
        assert_eq!(command_line(&["", "x"]).unwrap(), "'' x");
    }

    #[test]
    fn a_single_word_is_a_command_line() {
        assert_eq!(command_line(&["ls | wc -l"]).unwrap(), "ls | wc -l");
        assert_eq!(command_line(&["exit 3"]).unwrap(), "exit 3");
        assert_eq!(command_line::<&str>(&[]).unwrap(), "");
    }

    #[test]
    fn a_nul_byte_is_refused() {
        let error = command_line(&["a", "b\0c"]).unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }
}
