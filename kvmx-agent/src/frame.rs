//! The wire format: frames of a kind, a session number and a payload.
//!
//! ```text
//! kind: u8 | session: u32 BE | length: u32 BE | payload: length bytes
//! ```
//!
//! The host numbers each command (its session); every frame about that
//! command carries the number, so frames a previous command's threads
//! wrote after its host left are told apart and dropped. A frame is
//! written in one `write` of at most [`MAX_FRAME`] bytes, which the
//! virtio-serial driver passes whole.

use std::io::{self, Read, Write};

/// The largest payload of one frame.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// The size of a frame's header.
pub const HEADER: usize = 9;

/// The largest frame.
pub const MAX_FRAME: usize = HEADER + MAX_PAYLOAD;

/// What a frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Host: run a command (payload: an encoded [`crate::Request`]); a
    /// command still running is ended first.
    Start = 1,
    /// Host: bytes for the command's stdin.
    Stdin = 2,
    /// Host: the command's stdin ends.
    StdinEnd = 3,
    /// Host: send this signal (payload: one byte, its number) to the
    /// command's process group (the terminal's foreground group with a
    /// terminal).
    Signal = 4,
    /// Host: the terminal's size changed (payload: rows, columns, u16 BE).
    Resize = 5,
    /// Host: set the guest's clock (payload: seconds since the epoch, i64
    /// BE, and nanoseconds, u32 BE): a restored guest is as late as its
    /// saved state is old. Sent before [`Kind::Start`], so the command
    /// starts at the right time.
    SetClock = 6,
    /// Agent: it is ready for a command (session 0); written as soon as a
    /// host connects.
    Hello = 64,
    /// Agent: the command runs (payload: its pid, u32 BE).
    Started = 65,
    /// Agent: bytes the command wrote to stdout (or to its terminal).
    Stdout = 66,
    /// Agent: bytes the command wrote to stderr.
    Stderr = 67,
    /// Agent: the command ended (payload: 0 and an exit code, or 1 and a
    /// signal number, as i32 BE), after all its output.
    Exit = 68,
    /// Agent: the command could not start (payload: why, UTF-8).
    Failed = 69,
    /// Agent: this many stdin bytes (u32 BE) reached the command, so the
    /// host may send more (it keeps at most [`STDIN_WINDOW`] in flight).
    StdinTaken = 70,
}

/// How many stdin bytes the host sends ahead of what the command took:
/// the agent then never blocks on a command that does not read, and
/// signals always get through.
pub const STDIN_WINDOW: usize = 256 * 1024;

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        use Kind::*;
        Some(match byte {
            1 => Start,
            2 => Stdin,
            3 => StdinEnd,
            4 => Signal,
            5 => Resize,
            6 => SetClock,
            64 => Hello,
            65 => Started,
            66 => Stdout,
            67 => Stderr,
            68 => Exit,
            69 => Failed,
            70 => StdinTaken,
            _ => return None,
        })
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it says.
    pub kind: Kind,
    /// The command it is about (0 for none).
    pub session: u32,
    /// Its bytes, at most [`MAX_PAYLOAD`].
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame; `payload` must fit in [`MAX_PAYLOAD`].
    pub fn new(kind: Kind, session: u32, payload: impl Into<Vec<u8>>) -> Frame {
        let payload = payload.into();
        assert!(
            payload.len() <= MAX_PAYLOAD,
            "a frame's payload is too long"
        );
        Frame {
            kind,
            session,
            payload,
        }
    }

    /// A frame whose payload is one u32.
    pub fn number(kind: Kind, session: u32, value: u32) -> Frame {
        Frame::new(kind, session, value.to_be_bytes())
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER + self.payload.len());
        bytes.push(self.kind as u8);
        bytes.extend_from_slice(&self.session.to_be_bytes());
        bytes.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&self.payload);
        bytes
    }

    /// Writes the frame in one write.
    pub fn write_to(&self, writer: &mut impl Write) -> io::Result<()> {
        writer.write_all(&self.encode())?;
        writer.flush()
    }

    /// Reads the next frame; `None` at the end of the stream before a
    /// frame starts.
    pub fn read_from(reader: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut header = [0u8; HEADER];
        let mut filled = 0;
        while filled < HEADER {
            match reader.read(&mut header[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        let kind = Kind::from_byte(header[0]).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown frame kind {}", header[0]),
            )
        })?;
        let session = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes"));
        let length = u32::from_be_bytes(header[5..9].try_into().expect("4 bytes")) as usize;
        if length > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a frame of {length} bytes is longer than {MAX_PAYLOAD}"),
            ));
        }
        let mut payload = vec![0u8; length];
        reader.read_exact(&mut payload)?;
        Ok(Some(Frame {
            kind,
            session,
            payload,
        }))
    }

    /// The payload as one u32, if it is one.
    pub fn as_number(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.payload.as_slice().try_into().ok()?))
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Code(i32),
    /// A signal of this number killed it.
    Signal(i32),
}

impl Ended {
    /// The [`Kind::Exit`] payload.
    pub fn encode(self) -> Vec<u8> {
        let (how, value) = match self {
            Ended::Code(code) => (0u8, code),
            Ended::Signal(signal) => (1u8, signal),
        };
        let mut bytes = vec![how];
        bytes.extend_from_slice(&value.to_be_bytes());
        bytes
    }

    /// Reads a [`Kind::Exit`] payload.
    pub fn decode(payload: &[u8]) -> Option<Ended> {
        let [how, rest @ ..] = payload else {
            return None;
        };
        let value = i32::from_be_bytes(rest.try_into().ok()?);
        match how {
            0 => Some(Ended::Code(value)),
            1 => Some(Ended::Signal(value)),
            _ => None,
        }
    }

    /// The status a shell gives it: the code, or 128 + the signal, as ssh
    /// reports a command killed by a signal.
    pub fn shell_status(self) -> i32 {
        match self {
            Ended::Code(code) => code,
            Ended::Signal(signal) => 128 + signal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_as_written() {
        let frames = [
            Frame::new(Kind::Start, 7, b"user\0true\0".to_vec()),
            Frame::new(Kind::Stdin, 7, vec![0u8, 255, 10, 13]),
            Frame::new(Kind::StdinEnd, 7, Vec::new()),
            Frame::number(Kind::StdinTaken, 7, 70_000),
            Frame::new(Kind::Stdout, 9, vec![b'x'; MAX_PAYLOAD]),
        ];
        let mut wire = Vec::new();
        for frame in &frames {
            frame.write_to(&mut wire).unwrap();
        }
        let mut reader = wire.as_slice();
        for frame in &frames {
            assert_eq!(Frame::read_from(&mut reader).unwrap().as_ref(), Some(frame));
        }
        assert_eq!(Frame::read_from(&mut reader).unwrap(), None);
        assert_eq!(frames[3].as_number(), Some(70_000));
    }

    #[test]
    fn a_cut_or_unknown_frame_is_an_error() {
        let wire = Frame::new(Kind::Stdout, 1, b"hello".to_vec()).encode();
        let cut = Frame::read_from(&mut &wire[..wire.len() - 1]).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        let mut unknown = wire.clone();
        unknown[0] = 200;
        let error = Frame::read_from(&mut unknown.as_slice()).unwrap_err();
        assert_eq!(error.to_string(), "unknown frame kind 200");
        let mut long = wire;
        long[5..9].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(Frame::read_from(&mut long.as_slice()).is_err());
    }

    #[test]
    fn exit_statuses_read_back_and_signals_count_as_128_plus() {
        for ended in [Ended::Code(0), Ended::Code(3), Ended::Signal(15)] {
            assert_eq!(Ended::decode(&ended.encode()), Some(ended));
        }
        assert_eq!(Ended::Signal(15).shell_status(), 143);
        assert_eq!(Ended::Code(3).shell_status(), 3);
        assert_eq!(Ended::decode(&[2, 0, 0, 0, 0]), None);
    }
}
