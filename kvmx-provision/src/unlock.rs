//! Unlocking a LUKS guest at boot: its initramfs asks for the passphrase
//! on the serial console (`/dev/console` is ttyS0), and kvmx types it
//! into QEMU's serial socket once the prompt shows. QEMU's console log
//! records what the guest prints only, and the prompt does not echo, so
//! the passphrase is never written anywhere.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use camino::Utf8Path;
use kvmx_core::CancelFlag;
use kvmx_image::volumes::{CRYPT_NAME, Passphrase};

/// What the initramfs prints when it asks (Debian's cryptroot).
const PROMPT: &str = "Please unlock disk";
/// What it prints once the volume is open.
const OPENED: &str = "set up successfully";
/// What it prints when cryptsetup refuses the passphrase.
const REFUSED: &[&str] = &["bad password", "No key available"];

/// Why the disk was not unlocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockError {
    /// The guest asked again, or said the passphrase was wrong.
    Refused,
    /// No prompt (or no answer to it) within the time.
    TimedOut {
        /// Whether the prompt was seen and answered.
        answered: bool,
    },
    /// QEMU ended first.
    Exited,
    /// The caller gave up.
    Cancelled,
    /// The serial socket could not be used.
    Socket(String),
}

/// Watches the guest's serial output through `socket` and types
/// `passphrase` at the unlock prompt; returns once the guest says the
/// volume is open. `alive` tells whether QEMU still runs.
pub fn answer(
    socket: &Utf8Path,
    passphrase: &Passphrase,
    timeout: Duration,
    cancel: &CancelFlag,
    alive: &dyn Fn() -> bool,
) -> Result<(), UnlockError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(socket, deadline)?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| UnlockError::Socket(e.to_string()))?;
    let mut seen = String::new();
    let mut answered = false;
    let mut buffer = [0u8; 4096];
    loop {
        if cancel.is_cancelled() {
            return Err(UnlockError::Cancelled);
        }
        if Instant::now() > deadline {
            return Err(UnlockError::TimedOut { answered });
        }
        match stream.read(&mut buffer) {
            Ok(0) => return Err(UnlockError::Exited),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !alive() {
                    return Err(UnlockError::Exited);
                }
                continue;
            }
            Err(e) => return Err(UnlockError::Socket(e.to_string())),
        }
        if answered {
            if seen.contains(OPENED) {
                return Ok(());
            }
            if seen.contains(PROMPT) || REFUSED.iter().any(|r| seen.contains(r)) {
                return Err(UnlockError::Refused);
            }
        } else if let Some(at) = seen.find(PROMPT) {
            // The prompt's line must be complete: the initramfs reads
            // once it has printed it.
            if seen[at..].contains(':') {
                stream
                    .write_all(format!("{}\r", passphrase.expose()).as_bytes())
                    .map_err(|e| UnlockError::Socket(e.to_string()))?;
                answered = true;
                seen.clear();
                continue;
            }
        }
        // Only a prompt's worth of text is needed from the past.
        if seen.len() > 8192 {
            let cut = seen.len() - 1024;
            let cut = (cut..seen.len())
                .find(|&i| seen.is_char_boundary(i))
                .unwrap_or(seen.len());
            seen.drain(..cut);
        }
    }
}

fn connect(socket: &Utf8Path, deadline: Instant) -> Result<UnixStream, UnlockError> {
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(UnlockError::Socket(format!("{socket}: {e}"))),
        }
    }
}

impl UnlockError {
    /// The message, for the VM's error.
    pub fn describe(&self) -> String {
        match self {
            UnlockError::Refused => format!(
                "the guest refused the LUKS passphrase of {CRYPT_NAME}: it does not open the disk"
            ),
            UnlockError::TimedOut { answered: false } => {
                "the guest did not ask for its LUKS passphrase in time".into()
            }
            UnlockError::TimedOut { answered: true } => {
                "the guest did not open its LUKS volume in time after the passphrase".into()
            }
            UnlockError::Exited => "QEMU exited while the disk was being unlocked".into(),
            UnlockError::Cancelled => "cancelled while unlocking the disk".into(),
            UnlockError::Socket(problem) => format!("cannot use the serial console: {problem}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A fake guest console: prints `before`, reads a line, then prints
    /// `after` for it.
    fn guest(
        before: &'static str,
        after: fn(&str) -> String,
    ) -> (
        tempfile::TempDir,
        camino::Utf8PathBuf,
        std::thread::JoinHandle<String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let socket = camino::Utf8PathBuf::from_path_buf(dir.path().join("serial.sock")).unwrap();
        let listener = UnixListener::bind(&socket).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(before.as_bytes()).unwrap();
            let mut typed = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\r' {
                typed.push(byte[0]);
            }
            let typed = String::from_utf8(typed).unwrap();
            let _ = stream.write_all(after(&typed).as_bytes());
            std::thread::sleep(Duration::from_millis(300));
            typed
        });
        (dir, socket, handle)
    }

    const PROMPT_TEXT: &str =
        "Begin: Running /scripts/local-top ... \r\nPlease unlock disk kvmx_crypt: ";

    fn reply(typed: &str) -> String {
        if typed == "right one" {
            "\r\ncryptsetup: kvmx_crypt: set up successfully\r\n".into()
        } else {
            "\r\ncryptsetup: ERROR: kvmx_crypt: cryptsetup failed, bad password or options?\r\nPlease unlock disk kvmx_crypt: ".into()
        }
    }

    #[test]
    fn the_passphrase_is_typed_at_the_prompt() {
        let (_dir, socket, guest) = guest(PROMPT_TEXT, reply);
        let passphrase = Passphrase::new("right one").unwrap();
        answer(
            &socket,
            &passphrase,
            Duration::from_secs(10),
            &CancelFlag::new(),
            &|| true,
        )
        .unwrap();
        assert_eq!(guest.join().unwrap(), "right one");
    }

    #[test]
    fn a_wrong_passphrase_is_an_error_not_a_hang() {
        let (_dir, socket, guest) = guest(PROMPT_TEXT, reply);
        let passphrase = Passphrase::new("wrong").unwrap();
        let result = answer(
            &socket,
            &passphrase,
            Duration::from_secs(10),
            &CancelFlag::new(),
            &|| true,
        );
        assert_eq!(result, Err(UnlockError::Refused));
        guest.join().unwrap();
    }

    #[test]
    fn no_prompt_times_out() {
        let (_dir, socket, _guest) = guest("Booting\r\n", reply);
        let passphrase = Passphrase::new("x").unwrap();
        let result = answer(
            &socket,
            &passphrase,
            Duration::from_millis(800),
            &CancelFlag::new(),
            &|| true,
        );
        assert_eq!(result, Err(UnlockError::TimedOut { answered: false }));
    }
}
