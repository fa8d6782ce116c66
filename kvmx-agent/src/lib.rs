//! kvmx's command channel into a guest, which needs no login: the host's
//! kvmx talks to `kvmx-agent`, a small program running as root in the
//! guest, over a virtio-serial port (`org.kvmx.agent`) whose host end is a
//! unix socket in the VM's runtime folder (mode 0700, so only the host
//! user's kvmx reaches it).
//!
//! One command runs at a time per connection ([`frame`] has the wire
//! format, [`request`] what a command is). The agent runs it as the named
//! guest user, in their home, with a minimal login environment, through
//! pipes or a pseudo-terminal; it streams stdin, stdout and stderr, passes
//! signals and window sizes, and returns the exit status ([`guest`]).

pub mod frame;
pub mod guest;
mod launch;
pub mod request;

pub use frame::{Frame, Kind};
pub use request::{Request, Terminal};

/// The virtio-serial port's name in the guest
/// (`/dev/virtio-ports/org.kvmx.agent`).
pub const PORT: &str = "org.kvmx.agent";

pub use launch::{LAUNCH, launch};
