//! The QMP commands kvmx sends, each with its arguments and reply as Rust
//! types. A dozen small structs instead of the generated `qapi-qmp`
//! schema: that one is pinned to one QEMU release and is slow to build,
//! while these name only the fields kvmx reads, so a newer QEMU's extra
//! fields are ignored.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A QMP command: its wire name, its arguments (the struct's fields) and
/// what its `return` holds.
pub trait Command: Serialize {
    /// The command's name on the wire.
    const NAME: &'static str;
    /// The type of its `return` value.
    type Reply: DeserializeOwned;
}

/// A reply that carries nothing kvmx reads (`{}`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Empty {}

macro_rules! command {
    ($(#[$doc:meta])* $name:ident = $wire:literal -> $reply:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, Serialize)]
        pub struct $name;

        impl Command for $name {
            const NAME: &'static str = $wire;
            type Reply = $reply;
        }
    };
}

command!(
    /// Leaves capability negotiation.
    Capabilities = "qmp_capabilities" -> Empty
);
command!(
    /// The run state of the guest.
    QueryStatus = "query-status" -> StatusInfo
);
command!(
    /// Presses the ACPI power button.
    SystemPowerdown = "system_powerdown" -> Empty
);
command!(
    /// Ends QEMU at once.
    Quit = "quit" -> Empty
);
command!(
    /// Pauses the guest's CPUs.
    Stop = "stop" -> Empty
);
command!(
    /// Resumes the guest's CPUs.
    Cont = "cont" -> Empty
);
command!(
    /// How a migration goes.
    QueryMigrate = "query-migrate" -> MigrationInfo
);

/// The reply of [`QueryStatus`].
#[derive(Debug, Clone, Deserialize)]
pub struct StatusInfo {
    /// `running`, `paused`, `inmigrate`, `postmigrate`, ...
    pub status: String,
}

/// The reply of [`QueryMigrate`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MigrationInfo {
    /// `active`, `completed`, `failed`, ... (absent before any migration).
    pub status: Option<String>,
    /// Why it failed.
    #[serde(rename = "error-desc")]
    pub error_desc: Option<String>,
}

/// Turns migration capabilities on or off.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateSetCapabilities {
    /// The capabilities.
    pub capabilities: Vec<MigrationCapability>,
}

impl MigrateSetCapabilities {
    /// Turns each of `names` on.
    pub fn enable(names: &[&str]) -> Self {
        MigrateSetCapabilities {
            capabilities: names
                .iter()
                .map(|name| MigrationCapability {
                    capability: (*name).to_owned(),
                    state: true,
                })
                .collect(),
        }
    }
}

impl Command for MigrateSetCapabilities {
    const NAME: &'static str = "migrate-set-capabilities";
    type Reply = Empty;
}

/// One migration capability and its state.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationCapability {
    /// Its name (`x-ignore-shared`, `events`...).
    pub capability: String,
    /// On or off.
    pub state: bool,
}

/// Migrates the running guest's state out to `uri`.
#[derive(Debug, Clone, Serialize)]
pub struct Migrate {
    /// Where to (`exec:...`, `unix:...`).
    pub uri: String,
}

impl Command for Migrate {
    const NAME: &'static str = "migrate";
    type Reply = Empty;
}

/// Loads a guest state into a QEMU started with `-incoming defer`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateIncoming {
    /// Where from.
    pub uri: String,
}

impl Command for MigrateIncoming {
    const NAME: &'static str = "migrate-incoming";
    type Reply = Empty;
}

/// A human monitor (HMP) command.
#[derive(Debug, Clone, Serialize)]
pub struct HumanMonitorCommand {
    /// The command line.
    #[serde(rename = "command-line")]
    pub command_line: String,
}

impl Command for HumanMonitorCommand {
    const NAME: &'static str = "human-monitor-command";
    type Reply = String;
}

/// Adds a device: its properties, a JSON object whose keys depend on the
/// driver.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAdd(pub Value);

impl Command for DeviceAdd {
    const NAME: &'static str = "device_add";
    type Reply = Empty;
}

/// Asks the guest to release device `id`; `DEVICE_DELETED` tells when.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceDel {
    /// The device.
    pub id: String,
}

impl Command for DeviceDel {
    const NAME: &'static str = "device_del";
    type Reply = Empty;
}

/// Adds a character device that connects to a unix socket.
#[derive(Debug, Clone, Serialize)]
pub struct ChardevAdd {
    /// Its id.
    pub id: String,
    /// What it is.
    pub backend: Value,
}

impl ChardevAdd {
    /// A chardev `id` that connects to the unix socket `path`.
    pub fn unix_client(id: String, path: &str) -> Self {
        ChardevAdd {
            id,
            backend: serde_json::json!({ "type": "socket", "data": {
                "addr": { "type": "unix", "data": { "path": path } },
                "server": false
            }}),
        }
    }
}

impl Command for ChardevAdd {
    const NAME: &'static str = "chardev-add";
    type Reply = Value;
}

/// Removes character device `id`.
#[derive(Debug, Clone, Serialize)]
pub struct ChardevRemove {
    /// The chardev.
    pub id: String,
}

impl Command for ChardevRemove {
    const NAME: &'static str = "chardev-remove";
    type Reply = Empty;
}
