//! QEMU: its command line, the accelerator choice, and starting it.

pub mod accel;
pub mod cmdline;
pub mod pvh;

pub use cmdline::{Accel, ExtraDisk, KernelBoot, Launch, qemu_args};

/// The QEMU binary for x86_64 guests.
pub const QEMU: &str = "qemu-system-x86_64";
