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

/// A command: its struct (a unit, or named fields as its arguments), its
/// wire name and its reply type.
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
    ($(#[$doc:meta])* $name:ident = $wire:literal -> $reply:ty {
        $($(#[$field_attr:meta])* $field:ident: $field_type:ty),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize)]
        pub struct $name {
            $($(#[$field_attr])* pub $field: $field_type),*
        }

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

command!(
    /// Turns migration capabilities on or off.
    MigrateSetCapabilities = "migrate-set-capabilities" -> Empty {
        /// The capabilities.
        capabilities: Vec<MigrationCapability>,
    }
);

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

/// One migration capability and its state.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationCapability {
    /// Its name (`x-ignore-shared`, `events`...).
    pub capability: String,
    /// On or off.
    pub state: bool,
}

command!(
    /// Migrates the running guest's state out to `uri`.
    Migrate = "migrate" -> Empty {
        /// Where to (`exec:...`, `unix:...`).
        uri: String,
    }
);

command!(
    /// Loads a guest state into a QEMU started with `-incoming defer`.
    MigrateIncoming = "migrate-incoming" -> Empty {
        /// Where from.
        uri: String,
    }
);

command!(
    /// A human monitor (HMP) command.
    HumanMonitorCommand = "human-monitor-command" -> String {
        /// The command line.
        #[serde(rename = "command-line")]
        command_line: String,
    }
);

/// Adds a device: its properties, a JSON object whose keys depend on the
/// driver.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAdd(pub Value);

impl Command for DeviceAdd {
    const NAME: &'static str = "device_add";
    type Reply = Empty;
}

command!(
    /// Asks the guest to release device `id`; `DEVICE_DELETED` tells when.
    DeviceDel = "device_del" -> Empty {
        /// The device.
        id: String,
    }
);

command!(
    /// Adds a character device.
    ChardevAdd = "chardev-add" -> Value {
        /// Its id.
        id: String,
        /// What it is.
        backend: Value,
    }
);

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

command!(
    /// Removes character device `id`.
    ChardevRemove = "chardev-remove" -> Empty {
        /// The chardev.
        id: String,
    }
);
