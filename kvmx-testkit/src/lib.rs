//! Helpers for kvmx's end-to-end tests: an unprivileged user to run the
//! binaries as, hermetic homes owned by it, and real guests under QEMU
//! (TCG) reached over SSH with strict host-key checking and over QMP.
//!
//! The end-to-end tests run as root (as CI does) and make the user
//! themselves; [`Runtime::get`] fails a test run without root rather than
//! let it pass.

pub mod fixtures;
pub mod guest;
pub mod shell;
pub mod user;

pub use guest::{BootSpec, Guest};
pub use user::{Home, Runtime, TestUser};
