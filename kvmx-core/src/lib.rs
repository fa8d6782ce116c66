//! The ground kvmx stands on: the config model (`kvmx.toml` and the legacy
//! bash `kvmxfile`), project discovery, the VM registry and where a VM's
//! files live on disk.
//!
//! Nothing here talks to QEMU or a guest; the one process this crate may
//! start is `sh`, for the command substitutions of a legacy `kvmxfile`.

pub mod atomic_file;
pub mod config;
mod error;
pub mod layout;
pub mod legacy;
pub mod project;
pub mod registry;

pub use config::Config;
pub use error::{Error, ErrorKind};
pub use layout::Layout;
pub use project::Project;
pub use registry::Registry;
