//! Asking for a LUKS passphrase on the terminal, for images whose config
//! says `create.passphrase = "ask"`. It is read from `/dev/tty` with echo
//! off, never from an argument or the environment.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;

use kvmx_core::config::{Config, Encryption, PassphraseSource};
use kvmx_image::volumes::Passphrase;
use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::error::CommandError;

fn asks(config: &Config) -> bool {
    config.create.encryption == Encryption::Luks
        && config.create.passphrase == PassphraseSource::Ask
}

/// The passphrase for a new image: asked twice. `None` when the config
/// does not ask.
pub fn for_create(config: &Config) -> Result<Option<Passphrase>, CommandError> {
    if !asks(config) {
        return Ok(None);
    }
    let first = read("New LUKS passphrase: ")?;
    let second = read("The same again: ")?;
    if first != second {
        return Err(CommandError::usage("the two passphrases differ"));
    }
    Ok(Some(first))
}

/// The passphrase to unlock an image at start (and for a missing image
/// that `up` builds first); `None` when the config does not ask.
pub fn for_start(config: &Config) -> Result<Option<Passphrase>, CommandError> {
    if !asks(config) {
        return Ok(None);
    }
    read("LUKS passphrase: ").map(Some)
}

fn read(prompt: &str) -> Result<Passphrase, CommandError> {
    let no_tty = |e: std::io::Error| {
        CommandError::usage(format!("cannot ask for the LUKS passphrase: /dev/tty: {e}")).with_hint(
            "run it on a terminal, or set create.passphrase = \"file\" to keep the passphrase in a file",
        )
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(no_tty)?;
    let saved = termios::tcgetattr(tty.as_fd()).map_err(|e| no_tty(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    (&tty).write_all(prompt.as_bytes()).map_err(no_tty)?;
    termios::tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &quiet).map_err(|e| no_tty(e.into()))?;
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    let _ = termios::tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &saved);
    read.map_err(no_tty)?;
    Ok(Passphrase::new(line.trim_end_matches(['\n', '\r']))?)
}
