//! Maps the variables of a legacy `kvmxfile` onto the `kvmx.toml` model.
//!
//! Every legacy key lands in one place of [`Config`]; a key kvmx does not
//! know becomes a warning with its line, never silently dropped. A value that
//! cannot be mapped is an error with its line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use camino::{Utf8Path, Utf8PathBuf};

use super::shell::Assignment;
use crate::config::values::{ByteSize, GuestPath, ShareId};
use crate::config::{
    Accelerator, Bootloader, Config, ConfigError, DisplayKind, DriveInterface, Forward, Media,
    Method, NetworkMode, Password, Protocol, RenderNote, RsyncPair, Share, ShareKind, Sound,
    SshKey, SyncFolder, Vga,
};

/// A legacy key that was not mapped, or was mapped with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyWarning {
    /// 1-based line of the assignment.
    pub line: usize,
    /// What happened to it.
    pub message: String,
}

/// The result of mapping a kvmxfile.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The config, before project-dependent defaults are filled in.
    pub config: Config,
    /// Keys that were ignored or changed in meaning.
    pub warnings: Vec<LegacyWarning>,
    /// For each config key set, the legacy line it came from.
    pub notes: Vec<RenderNote>,
}

/// Maps evaluated assignments (later ones win, as in bash) to a config.
/// `file` and `text` only serve to point errors at their line.
pub fn map(assignments: &[Assignment], file: &Utf8Path, text: &str) -> Result<Mapped, ConfigError> {
    let mut latest: BTreeMap<&str, &Assignment> = BTreeMap::new();
    for assignment in assignments {
        latest.insert(&assignment.name, assignment);
    }
    let mut mapper = Mapper {
        all: assignments,
        latest,
        used: BTreeSet::new(),
        config: Config::default(),
        warnings: Vec::new(),
        notes: Vec::new(),
        file,
        text,
    };
    mapper.map_all()?;
    let Mapper {
        latest,
        used,
        config,
        mut warnings,
        notes,
        ..
    } = mapper;
    for (name, assignment) in &latest {
        if !used.contains(name) {
            warnings.push(LegacyWarning {
                line: assignment.line,
                message: format!("`{name}` is not a kvmx setting; it is ignored"),
            });
        }
    }
    warnings.sort_by_key(|w| w.line);
    if let Some(problem) = crate::config::validate(&config).into_iter().next() {
        let line = notes
            .iter()
            .filter(|note| {
                problem.path.starts_with(&note.path) || note.path.starts_with(&problem.path)
            })
            .find_map(|note| note_line(&note.text))
            .unwrap_or(0);
        return Err(ConfigError::at_line(file, text, line, problem.message));
    }
    Ok(Mapped {
        config,
        warnings,
        notes,
    })
}

fn note_line(note: &str) -> Option<usize> {
    let rest = note.strip_prefix("kvmxfile line ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A legacy key, the config key it maps to, and where that is in a
/// [`Config`].
type OneToOne<T> = (&'static str, &'static str, fn(&mut Config) -> &mut T);

/// Legacy keys that map one to one onto a bool setting.
const FLAGS: &[OneToOne<bool>] = &[
    ("supervise_manage", "supervise.manage", |c| {
        &mut c.supervise.manage
    }),
    ("image_discards", "image.discard", |c| &mut c.image.discard),
    ("backing_file", "image.backing", |c| &mut c.image.backing),
    ("qcow2_compression", "create.compression", |c| {
        &mut c.create.compression
    }),
    ("ssh_support", "ssh.enabled", |c| &mut c.ssh.enabled),
    ("run_spice_client", "display.open_client", |c| {
        &mut c.display.open_client
    }),
    ("kvmx_vdagent", "display.vdagent", |c| {
        &mut c.display.vdagent
    }),
    ("run_xpra", "display.xpra", |c| &mut c.display.xpra),
    ("run_xephyr", "display.xephyr", |c| &mut c.display.xephyr),
    ("xrandr", "display.xrandr", |c| &mut c.display.xrandr),
];

/// Legacy keys that map one to one onto a Option<String> setting.
const OPTIONAL_TEXTS: &[OneToOne<Option<String>>] = &[
    ("ssh_custom_pubkey", "ssh.authorized_key", |c| {
        &mut c.ssh.authorized_key
    }),
    ("provision_command", "provision.command", |c| {
        &mut c.provision.command
    }),
    ("startup_command", "hooks.startup_command", |c| {
        &mut c.hooks.startup_command
    }),
    ("poweroff_pre_command", "hooks.pre_poweroff_command", |c| {
        &mut c.hooks.pre_poweroff_command
    }),
    ("xrandr_device", "display.xrandr_device", |c| {
        &mut c.display.xrandr_device
    }),
];

/// Legacy keys that map one to one onto a String setting.
const TEXTS: &[OneToOne<String>] = &[
    ("version", "create.suite", |c| &mut c.create.suite),
    ("mirror", "create.mirror", |c| &mut c.create.mirror),
    ("nic_model", "network.nic_model", |c| {
        &mut c.network.nic_model
    }),
    ("spice_client", "display.spice_client", |c| {
        &mut c.display.spice_client
    }),
    ("vnc_client", "display.vnc_client", |c| {
        &mut c.display.vnc_client
    }),
];

struct Mapper<'a> {
    all: &'a [Assignment],
    latest: BTreeMap<&'a str, &'a Assignment>,
    used: BTreeSet<&'a str>,
    config: Config,
    warnings: Vec<LegacyWarning>,
    notes: Vec<RenderNote>,
    file: &'a Utf8Path,
    text: &'a str,
}

type Setter<'s> = Box<dyn FnOnce(&str, &mut Config) -> Result<(), String> + 's>;

impl<'a> Mapper<'a> {
    /// Maps `key` (when the file sets it) with `set`, and notes that the
    /// config key at `path` came from its line.
    fn key(&mut self, key: &'a str, path: &str, set: Setter<'_>) -> Result<(), ConfigError> {
        let Some(assignment) = self.latest.get(key).copied() else {
            return Ok(());
        };
        self.used.insert(key);
        set(&assignment.value, &mut self.config).map_err(|message| {
            ConfigError::at_line(
                self.file,
                self.text,
                assignment.line,
                format!("{key}: {message}"),
            )
        })?;
        self.note(path, assignment);
        Ok(())
    }

    fn note(&mut self, path: &str, assignment: &Assignment) {
        let shown = if assignment.substituted {
            format!("{}=(command output)", assignment.name)
        } else {
            format!("{}=\"{}\"", assignment.name, assignment.value)
        };
        self.notes.push(RenderNote {
            path: path.split('.').map(str::to_owned).collect(),
            text: format!("kvmxfile line {}: {shown}", assignment.line),
        });
    }

    /// Notes a list item: the line that first added `item` to the list
    /// `key` (lists are often built up by self-append, one item a line).
    fn note_item(&mut self, path: &str, key: &str, item: &str) {
        let line = self
            .all
            .iter()
            .find(|a| a.name == key && a.value.contains(item))
            .map_or(self.latest[key].line, |a| a.line);
        self.notes.push(RenderNote {
            path: path.split('.').map(str::to_owned).collect(),
            text: format!("kvmxfile line {line}: {key} item \"{item}\""),
        });
    }

    fn warn(&mut self, key: &str, message: String) {
        if let Some(assignment) = self.latest.get(key) {
            self.warnings.push(LegacyWarning {
                line: assignment.line,
                message,
            });
        }
    }

    fn value(&self, key: &str) -> Option<&'a Assignment> {
        self.latest.get(key).copied()
    }

    fn map_all(&mut self) -> Result<(), ConfigError> {
        self.map_one_to_one()?;
        self.map_identity()?;
        self.map_hardware()?;
        self.map_image()?;
        self.map_create()?;
        self.map_network()?;
        self.map_ssh()?;
        self.map_shares()?;
        self.map_provision()?;
        self.map_display()?;
        Ok(())
    }

    fn map_one_to_one(&mut self) -> Result<(), ConfigError> {
        self.each(FLAGS, truth_value)?;
        self.each(OPTIONAL_TEXTS, |v| Ok(non_empty(v).map(str::to_owned)))?;
        self.each(TEXTS, |v| Ok(v.to_owned()))
    }

    /// Maps every key of `table` whose value `convert` turns into the
    /// setting.
    fn each<T: 'static>(
        &mut self,
        table: &[OneToOne<T>],
        convert: fn(&str) -> Result<T, String>,
    ) -> Result<(), ConfigError> {
        for &(key, path, field) in table {
            self.key(
                key,
                path,
                Box::new(move |v, c| {
                    *field(c) = convert(v)?;
                    Ok(())
                }),
            )?;
        }
        Ok(())
    }

    fn map_identity(&mut self) -> Result<(), ConfigError> {
        self.key(
            "hostname",
            "vm.hostname",
            Box::new(|v, c| parse_opt(v, &mut c.vm.hostname)),
        )?;
        self.key(
            "domain",
            "vm.domain",
            Box::new(|v, c| parse_opt(v, &mut c.vm.domain)),
        )?;
        self.key(
            "user",
            "vm.user",
            Box::new(|v, c| parse_into(v, &mut c.vm.user)),
        )?;
        if let Some(password) = self.value("password") {
            // A password made by a command (the sample file's `head -c 40
            // /dev/urandom | base64`) is a random one: kvmx makes its own
            // rather than writing a secret into kvmx.toml.
            let substituted = password.substituted;
            self.key(
                "password",
                "vm.password",
                Box::new(move |v, c| {
                    c.vm.password = if substituted || v.is_empty() {
                        Password::Random
                    } else {
                        Password::Plain(v.to_owned())
                    };
                    Ok(())
                }),
            )?;
        }
        Ok(())
    }

    fn map_hardware(&mut self) -> Result<(), ConfigError> {
        self.key(
            "memory",
            "hardware.memory",
            Box::new(|v, c| parse_into(v, &mut c.hardware.memory)),
        )?;
        self.key(
            "smp",
            "hardware.cpus",
            Box::new(|v, c| {
                c.hardware.cpus = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("\"{v}\" is not a number of CPUs"))?;
                Ok(())
            }),
        )?;
        self.key(
            "usb",
            "hardware.usb",
            Box::new(|v, c| {
                c.hardware.usb = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("\"{v}\" is not a USB level: use 0, 1, 2 or 3"))?;
                Ok(())
            }),
        )?;
        self.key(
            "sound",
            "hardware.sound",
            Box::new(|v, c| {
                c.hardware.sound = match v {
                    "" | "0" | "n" | "none" => Sound::None,
                    other => enum_value(other)?,
                };
                Ok(())
            }),
        )?;
        self.key(
            "virtio_rng",
            "hardware.virtio_rng",
            Box::new(map_virtio_rng),
        )?;
        self.key(
            "qemu_opts",
            "hardware.qemu_args",
            Box::new(|v, c| {
                c.hardware.qemu_args = shell_words(v)?;
                Ok(())
            }),
        )?;
        self.key(
            "kvm",
            "hardware.accelerator",
            Box::new(|v, c| {
                let mut kvm = true;
                truth(v, &mut kvm)?;
                c.hardware.accelerator = if kvm {
                    Accelerator::Auto
                } else {
                    Accelerator::Tcg
                };
                Ok(())
            }),
        )?;
        Ok(())
    }

    fn map_image(&mut self) -> Result<(), ConfigError> {
        self.key(
            "image",
            "image.path",
            Box::new(|v, c| {
                c.image.path = non_empty(v).map(Utf8PathBuf::from);
                Ok(())
            }),
        )?;
        self.key(
            "format",
            "image.format",
            Box::new(|v, c| enum_into(v, &mut c.image.format)),
        )?;
        self.key(
            "size",
            "image.size",
            Box::new(|v, c| parse_into::<ByteSize>(v, &mut c.image.size)),
        )?;
        self.key(
            "image_drive",
            "image.media",
            Box::new(|v, c| {
                c.image.media = match v {
                    "" | "disk" => Media::Disk,
                    "cdrom" => Media::Cdrom,
                    other => {
                        return Err(format!(
                            "\"{other}\" is not a drive kind: use \"cdrom\" or leave it unset"
                        ));
                    }
                };
                Ok(())
            }),
        )?;
        self.key(
            "drive_interface",
            "image.interface",
            Box::new(|v, c| {
                let (interface, options) = v.split_once(',').unwrap_or((v, ""));
                c.image.interface = enum_value::<DriveInterface>(interface)?;
                c.image.drive_options = non_empty(options).map(str::to_owned);
                Ok(())
            }),
        )?;
        self.key(
            "basebox",
            "image.base",
            Box::new(|v, c| parse_opt(v, &mut c.image.base)),
        )?;
        if self.value("datadir").is_some() {
            self.used.insert("datadir");
            self.warn(
                "datadir",
                "`datadir` is not supported: a VM's files live in kvmx's data folder (KVMX_HOME or XDG_DATA_HOME)".into(),
            );
        }
        Ok(())
    }

    fn map_create(&mut self) -> Result<(), ConfigError> {
        self.key(
            "arch",
            "create.arch",
            Box::new(|v, c| {
                if v != "amd64" {
                    return Err(format!(
                        "\"{v}\" guests are not supported yet: kvmx runs amd64 guests"
                    ));
                }
                c.create.arch = v.to_owned();
                Ok(())
            }),
        )?;
        if let Some(method) = self.value("method")
            && method.value != "custom"
            && method.value != "debootstrap"
            && method.value != "mmdebstrap"
        {
            self.warn(
                "method",
                format!(
                    "method \"{}\" is not supported; kvmx-create uses mmdebstrap",
                    method.value
                ),
            );
        }
        self.key(
            "method",
            "create.method",
            Box::new(|v, c| {
                // The legacy "custom" method was kvmx-create's own bootstrap,
                // which mmdebstrap now does.
                c.create.method = if v == "debootstrap" {
                    Method::Debootstrap
                } else {
                    Method::Mmdebstrap
                };
                Ok(())
            }),
        )?;
        self.key(
            "bootloader",
            "create.bootloader",
            Box::new(|v, c| {
                c.create.bootloader = enum_value::<Bootloader>(v)?;
                Ok(())
            }),
        )?;
        self.key(
            "image_type",
            "create.image_type",
            Box::new(|v, c| enum_into(v, &mut c.create.image_type)),
        )?;
        Ok(())
    }

    fn map_network(&mut self) -> Result<(), ConfigError> {
        self.key(
            "net",
            "network.mode",
            Box::new(|v, c| {
                c.network.mode = if v.is_empty() {
                    NetworkMode::User
                } else {
                    enum_value(v)?
                };
                Ok(())
            }),
        )?;
        self.key(
            "net_dns",
            "network.dns",
            Box::new(|v, c| parse_opt(v, &mut c.network.dns)),
        )?;
        self.key(
            "net_ip",
            "network.address",
            Box::new(|v, c| parse_opt(v, &mut c.network.address)),
        )?;
        self.key(
            "net_mask",
            "network.netmask",
            Box::new(|v, c| parse_opt(v, &mut c.network.netmask)),
        )?;
        self.key(
            "net_gateway",
            "network.gateway",
            Box::new(|v, c| parse_opt(v, &mut c.network.gateway)),
        )?;
        if let Some(mapping) = self.value("port_mapping") {
            let mut unbound = false;
            let items: Vec<&str> = split_list(&mapping.value).collect();
            let forwards: Vec<Forward> = items
                .iter()
                .map(|item| parse_hostfwd(item, &mut unbound))
                .collect::<Result<_, _>>()
                .map_err(|message| {
                    ConfigError::at_line(
                        self.file,
                        self.text,
                        mapping.line,
                        format!("port_mapping: {message}"),
                    )
                })?;
            if unbound {
                self.warn(
                    "port_mapping",
                    "port_mapping: forwards without a host address now listen on 127.0.0.1 only"
                        .into(),
                );
            }
            self.used.insert("port_mapping");
            for (index, item) in items.iter().enumerate() {
                self.note_item(&format!("network.forwards.{index}"), "port_mapping", item);
            }
            self.config.network.forwards = forwards;
        }
        Ok(())
    }

    fn map_ssh(&mut self) -> Result<(), ConfigError> {
        self.key(
            "ssh_custom",
            "ssh.key",
            Box::new(|v, c| {
                let mut custom = true;
                truth(v, &mut custom)?;
                c.ssh.key = if custom {
                    SshKey::PerVm
                } else {
                    SshKey::Insecure
                };
                Ok(())
            }),
        )?;
        self.key(
            "ssh_env",
            "ssh.env",
            Box::new(|v, c| {
                for word in shell_words(v)? {
                    let (name, value) = word
                        .split_once('=')
                        .ok_or_else(|| format!("\"{word}\" is not NAME=VALUE"))?;
                    c.ssh.env.insert(name.to_owned(), value.to_owned());
                }
                Ok(())
            }),
        )?;
        Ok(())
    }

    fn map_shares(&mut self) -> Result<(), ConfigError> {
        if let Some(folder) = self.value("shared_folder")
            && !folder.value.is_empty()
        {
            // The original tool mounted a lone shared folder at /srv/shared
            // unless told otherwise.
            let mountpoint = self.value("shared_folder_mountpoint");
            let (guest, key, line) = match mountpoint {
                Some(m) => (m.value.as_str(), "shared_folder_mountpoint", m.line),
                None => ("/srv/shared", "shared_folder", folder.line),
            };
            let share =
                make_share("shared", &folder.value, guest, ShareKind::NineP).map_err(|m| {
                    ConfigError::at_line(self.file, self.text, line, format!("{key}: {m}"))
                })?;
            self.add_shares("shared_folder", vec![share], &[]);
            self.used.insert("shared_folder_mountpoint");
        }
        for (key, kind) in [
            ("shared_folders", ShareKind::NineP),
            ("shared_folders_sshfs", ShareKind::Sshfs),
        ] {
            let Some(list) = self.value(key) else {
                continue;
            };
            let items: Vec<&str> = split_list(&list.value).collect();
            let shares = items
                .iter()
                .map(|item| {
                    let [id, first, second] = triple(item)?;
                    // The sshfs list names the guest folder first.
                    let (host, guest) = if kind == ShareKind::Sshfs {
                        (second, first)
                    } else {
                        (first, second)
                    };
                    make_share(id, host, guest, kind)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| {
                    ConfigError::at_line(self.file, self.text, list.line, format!("{key}: {m}"))
                })?;
            self.add_shares(key, shares, &items);
        }
        self.key(
            "shared_folders_msize",
            "shares",
            Box::new(|v, c| {
                let msize: u32 = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("\"{v}\" is not a size in bytes"))?;
                nine_p(c).for_each(|s| s.msize = Some(msize));
                Ok(())
            }),
        )?;
        self.key(
            "shared_folders_cache",
            "shares",
            Box::new(|v, c| {
                let cache = enum_value(v)?;
                nine_p(c).for_each(|s| s.cache = Some(cache));
                Ok(())
            }),
        )?;
        Ok(())
    }

    /// Adds shares made from `key`; `items` are the list items they came
    /// from (empty for a single-value key).
    fn add_shares(&mut self, key: &'a str, shares: Vec<Share>, items: &[&str]) {
        self.used.insert(key);
        let assignment = self.latest[key];
        for (position, share) in shares.into_iter().enumerate() {
            let path = format!("shares.{}", self.config.shares.len());
            match items.get(position) {
                Some(item) => self.note_item(&path, key, item),
                None => self.note(&path, assignment),
            }
            self.config.shares.push(share);
        }
    }

    fn map_provision(&mut self) -> Result<(), ConfigError> {
        self.key(
            "provision_rsync",
            "provision.rsync",
            Box::new(|v, c| {
                c.provision.rsync = split_list(v)
                    .map(|item| {
                        let mut words = item.split_whitespace();
                        match (words.next(), words.next(), words.next()) {
                            (Some(host), Some(guest), None) => Ok(RsyncPair {
                                host: host.into(),
                                guest: guest.parse()?,
                            }),
                            _ => Err(format!("\"{item}\" is not \"HOST_FOLDER GUEST_FOLDER\"")),
                        }
                    })
                    .collect::<Result<_, String>>()?;
                Ok(())
            }),
        )?;
        self.key(
            "provision_rsync_opts",
            "provision.rsync_options",
            Box::new(|v, c| {
                c.provision.rsync_options = shell_words(v)?;
                Ok(())
            }),
        )?;
        self.key(
            "startup_rsync_to_guest",
            "hooks.startup_rsync",
            Box::new(|v, c| {
                c.hooks.startup_rsync = sync_folders(v, false)?;
                Ok(())
            }),
        )?;
        self.key(
            "poweroff_rsync_from_guest",
            "hooks.poweroff_rsync",
            Box::new(|v, c| {
                c.hooks.poweroff_rsync = sync_folders(v, true)?;
                Ok(())
            }),
        )?;
        Ok(())
    }

    fn map_display(&mut self) -> Result<(), ConfigError> {
        self.key("graphics", "display.vga", Box::new(map_graphics))?;
        self.key(
            "spice",
            "display.kind",
            Box::new(|v, c| {
                let mut spice = false;
                truth(v, &mut spice)?;
                if spice {
                    c.display.kind = DisplayKind::Spice;
                }
                Ok(())
            }),
        )?;
        self.key(
            "resolution",
            "display.resolution",
            Box::new(|v, c| parse_opt(v, &mut c.display.resolution)),
        )?;
        Ok(())
    }
}

/// Legacy truth: `y` and `1` are true (the original tool tested for exactly
/// these); `n`, `0` and empty are false; anything else is a mistake.
fn truth_value(value: &str) -> Result<bool, String> {
    match value {
        "y" | "1" | "yes" | "true" => Ok(true),
        "n" | "0" | "no" | "false" | "" => Ok(false),
        other => Err(format!(
            "\"{other}\" is not a truth value: use \"y\" or \"1\" for yes, \"n\" or \"0\" for no"
        )),
    }
}

fn truth(value: &str, target: &mut bool) -> Result<(), String> {
    *target = truth_value(value)?;
    Ok(())
}

fn parse_into<T: FromStr>(value: &str, target: &mut T) -> Result<(), String>
where
    T::Err: ToString,
{
    *target = value.parse().map_err(|e: T::Err| e.to_string())?;
    Ok(())
}

fn parse_opt<T: FromStr>(value: &str, target: &mut Option<T>) -> Result<(), String>
where
    T::Err: ToString,
{
    *target = match non_empty(value) {
        Some(v) => Some(v.parse().map_err(|e: T::Err| {
            let text = e.to_string();
            if text.contains(v) {
                text
            } else {
                format!("\"{v}\": {text}")
            }
        })?),
        None => None,
    };
    Ok(())
}

/// Reads a lowercase enum value the way `kvmx.toml` spells it.
fn enum_value<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    let deserializer: serde::de::value::StrDeserializer<serde::de::value::Error> =
        value.into_deserializer();
    T::deserialize(deserializer).map_err(|e| e.to_string().replace("variant", "value"))
}

fn enum_into<T: serde::de::DeserializeOwned>(value: &str, target: &mut T) -> Result<(), String> {
    *target = enum_value(value)?;
    Ok(())
}

fn non_empty(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

fn shell_words(value: &str) -> Result<Vec<String>, String> {
    shlex::split(value).ok_or_else(|| format!("unbalanced quotes in \"{value}\""))
}

/// Items of a comma-separated legacy list; empty items (from `$x,` with
/// `$x` unset) are dropped, as the original tool's loops skipped them.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn triple(item: &str) -> Result<[&str; 3], String> {
    let parts: Vec<&str> = item.split(':').collect();
    match parts.as_slice() {
        [a, b, c] => Ok([a, b, c]),
        _ => Err(format!("\"{item}\" is not ID:FOLDER:FOLDER")),
    }
}

fn make_share(id: &str, host: &str, guest: &str, kind: ShareKind) -> Result<Share, String> {
    Ok(Share {
        id: id.parse::<ShareId>()?,
        host: Utf8PathBuf::from(host),
        guest: guest.parse::<GuestPath>()?,
        // The shell tool's kinds, kept: its folders were 9p.
        kind: Some(kind),
        read_only: false,
        msize: None,
        cache: None,
    })
}

fn nine_p(config: &mut Config) -> impl Iterator<Item = &mut Share> {
    config
        .shares
        .iter_mut()
        .filter(|s| s.kind == Some(ShareKind::NineP))
}

fn sync_folders(value: &str, guest_first: bool) -> Result<Vec<SyncFolder>, String> {
    split_list(value)
        .map(|item| {
            let [id, first, second] = triple(item)?;
            let (host, guest) = if guest_first {
                (second, first)
            } else {
                (first, second)
            };
            Ok(SyncFolder {
                id: id.parse()?,
                host: host.into(),
                guest: guest.parse()?,
            })
        })
        .collect()
}

/// `hostfwd=[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport`.
fn parse_hostfwd(item: &str, unbound: &mut bool) -> Result<Forward, String> {
    let invalid = || format!("\"{item}\" is not hostfwd=tcp:ADDRESS:PORT-:GUEST_PORT");
    let spec = item.strip_prefix("hostfwd=").ok_or_else(invalid)?;
    let (host_side, guest_side) = spec.split_once('-').ok_or_else(invalid)?;
    let host_parts: Vec<&str> = host_side.split(':').collect();
    let (protocol, address, host_port) = match host_parts.as_slice() {
        [protocol, address, port] => (*protocol, *address, *port),
        [address, port] => ("tcp", *address, *port),
        _ => return Err(invalid()),
    };
    let (guest_address, guest_port) = guest_side.rsplit_once(':').ok_or_else(invalid)?;
    if !guest_address.is_empty() {
        return Err(format!(
            "\"{item}\": a guest address is not supported; forward to the guest's own address"
        ));
    }
    let protocol = match protocol {
        "" | "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("\"{other}\" is not a protocol: use tcp or udp")),
    };
    let address: IpAddr = if address.is_empty() {
        *unbound = true;
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        address
            .parse()
            .map_err(|_| format!("\"{address}\" is not an IP address"))?
    };
    Ok(Forward {
        host: host_port.parse()?,
        guest: guest_port.parse()?,
        protocol,
        address,
    })
}

/// `graphics` held raw QEMU options; `-vga X` and the display switches map
/// to `[display]`, anything else is kept as extra QEMU arguments.
fn map_graphics(value: &str, config: &mut Config) -> Result<(), String> {
    let words = shell_words(value)?;
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "-vga" => {
                let card = words.next().ok_or("-vga needs a card name")?;
                config.display.vga = Some(enum_value::<Vga>(&card)?);
            }
            "-nographic" => config.display.kind = DisplayKind::None,
            "-display" if words.as_slice().first().is_some_and(|w| w == "none") => {
                words.next();
                config.display.kind = DisplayKind::None;
            }
            "-vnc" => {
                // kvmx picks the VNC socket itself.
                words.next();
                config.display.kind = DisplayKind::Vnc;
            }
            _ => config.hardware.qemu_args.push(word),
        }
    }
    Ok(())
}

fn map_virtio_rng(value: &str, config: &mut Config) -> Result<(), String> {
    let hardware = &mut config.hardware;
    match value {
        "" | "0" | "n" => hardware.virtio_rng = false,
        "1" | "y" => hardware.virtio_rng = true,
        options => {
            hardware.virtio_rng = true;
            for option in options.split(',') {
                let (name, number) = option
                    .split_once('=')
                    .ok_or_else(|| format!("\"{option}\" is not NAME=NUMBER"))?;
                let number: u64 = number
                    .parse()
                    .map_err(|_| format!("\"{number}\" is not a number"))?;
                match name {
                    "max-bytes" => hardware.virtio_rng_max_bytes = Some(number),
                    "period" => hardware.virtio_rng_period_ms = Some(number),
                    other => {
                        return Err(format!(
                            "\"{other}\" is not a virtio-rng option: use max-bytes and period"
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
