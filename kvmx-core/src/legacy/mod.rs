//! The legacy `kvmxfile`: a bash fragment of `NAME="value"` lines.
//!
//! [`shell`] evaluates the fragment the way bash would.

pub mod shell;
