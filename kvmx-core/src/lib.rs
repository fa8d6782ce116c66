//! The ground kvmx stands on: the config model (`kvmx.toml` and the legacy
//! bash `kvmxfile`), project discovery, the VM registry, where a VM's
//! files live on disk, whether a VM runs, and an image's virtual size.
//!
//! Nothing here talks to QEMU or a guest. It also holds what every library
//! shares: the progress events ([`observe`]), the cancel flag ([`cancel`])
//! and the runner of child processes ([`process`]), through which its own
//! one process, `sh` for a legacy `kvmxfile`'s command substitutions, runs.

pub mod atomic_file;
pub mod cancel;
pub mod config;
mod error;
pub mod image_size;
pub mod layout;
pub mod legacy;
pub mod observe;
pub mod process;
pub mod project;
pub mod registry;
pub mod run_lock;

pub use cancel::CancelFlag;
pub use config::Config;
pub use error::{Error, ErrorKind};
pub use layout::Layout;
pub use observe::{Event, Observer};
pub use project::Project;
pub use registry::Registry;
