//! Value types of the config that check themselves when parsed.
//!
//! Each type parses from a string with [`FromStr`], and deserializes through
//! the same parser. That gives `kvmx.toml` (whose error then carries the
//! value's line and column) and the legacy `kvmxfile` mapping (which adds the
//! line itself) one set of rules and one set of messages.

use std::fmt;
use std::str::FromStr;

use camino::Utf8PathBuf;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements `Deserialize` (from a string, and optionally from an integer)
/// and `Serialize` (to its `Display` form) for a type that has `FromStr`.
macro_rules! string_value {
    ($ty:ty, $expecting:literal) => {
        string_value!(@impl $ty, $expecting, |_v: i64| -> Result<$ty, String> {
            Err(format!("expected {}, found an integer", $expecting))
        });
    };
    ($ty:ty, $expecting:literal, integer: $from_int:expr) => {
        string_value!(@impl $ty, $expecting, $from_int);
    };
    (@impl $ty:ty, $expecting:literal, $from_int:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        ($from_int)(v).map_err(E::custom)
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

/// An amount of memory or disk. A bare number counts MiB (as QEMU's `-m`
/// and the legacy `memory` key do); a string may carry a unit:
/// `512M`, `2G`, `1.5G`, `10GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

const MIB: u64 = 1024 * 1024;

impl ByteSize {
    /// A size of `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }
    /// A size of `n` GiB.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * 1024 * MIB)
    }
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
    /// The size in whole MiB, rounded down.
    pub fn as_mib(self) -> u64 {
        self.0 / MIB
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid size \"{text}\": write a number of MiB (2048) or a number with a unit (512M, 2G, 1.5T)"
            )
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: f64 = number.parse().map_err(|_| invalid())?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "m" | "mb" | "mib" => MIB,
            "b" => 1,
            "k" | "kb" | "kib" => 1024,
            "g" | "gb" | "gib" => 1024 * MIB,
            "t" | "tb" | "tib" => 1024 * 1024 * MIB,
            _ => return Err(invalid()),
        };
        let bytes = number * factor as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
            return Err(format!(
                "invalid size \"{text}\": it must be greater than zero"
            ));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let units = [
            (1u64 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (factor, unit) in units {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

string_value!(ByteSize, "a size such as \"2G\", \"512M\" or a number of MiB", integer: |v: i64| {
    u64::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .map(ByteSize::mib)
        .ok_or_else(|| format!("invalid size {v}: it must be a positive number of MiB"))
});

/// A TCP or UDP port number, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub u16);

impl Port {
    fn from_i64(value: i64) -> Result<Port, String> {
        u16::try_from(value)
            .ok()
            .filter(|p| *p != 0)
            .map(Port)
            .ok_or_else(|| format!("invalid port {value}: a port is a number from 1 to 65535"))
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let value: i64 = text
            .trim()
            .parse()
            .map_err(|_| format!("invalid port \"{text}\": a port is a number from 1 to 65535"))?;
        Port::from_i64(value)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(deserializer)?;
        Port::from_i64(value).map_err(serde::de::Error::custom)
    }
}

/// Defines a string newtype checked by `$check`, which returns an error
/// message for a bad value.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $expecting:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(text)?;
                Ok($name(text.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        string_value!($name, $expecting);
    };
}

fn check_name(kind: &str, text: &str, max: usize, extra: &[char]) -> Result<(), String> {
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c));
    if !first_ok || !rest_ok || text.len() > max {
        let allowed: String = extra.iter().map(|c| format!(" '{c}'")).collect();
        return Err(format!(
            "invalid {kind} \"{text}\": use 1 to {max} letters, digits and{allowed}, starting with a letter or digit"
        ));
    }
    Ok(())
}

checked_string!(
    /// A VM name: it names folders, sockets and QEMU's `-name`, so it is kept
    /// to letters, digits, `-`, `_` and `.`.
    VmName,
    "a VM name",
    |text| check_name("VM name", text, 64, &['-', '_', '.'])
);

checked_string!(
    /// A host name label (RFC 1123), without the domain.
    Hostname,
    "a host name",
    |text| {
        check_name("host name", text, 63, &['-'])?;
        if text.ends_with('-') {
            return Err(format!("invalid host name \"{text}\": it must not end with '-'"));
        }
        Ok(())
    }
);

checked_string!(
    /// A DNS domain such as `example.org`.
    Domain,
    "a domain name",
    |text| {
        if text.is_empty() || text.len() > 253 {
            return Err(format!("invalid domain \"{text}\": use labels separated by dots, such as example.org"));
        }
        for label in text.split('.') {
            check_name("domain label", label, 63, &['-'])
                .map_err(|e| format!("invalid domain \"{text}\": {e}"))?;
        }
        Ok(())
    }
);

checked_string!(
    /// A Unix user name in the guest.
    UserName,
    "a user name",
    |text| {
        let ok = text.len() <= 32
            && text.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(())
        } else {
            Err(format!("invalid user name \"{text}\": use lowercase letters, digits, '_' and '-', starting with a letter, at most 32"))
        }
    }
);

checked_string!(
    /// The id of a shared folder: it becomes a QEMU mount tag and appears in
    /// the legacy `id:host:guest` lists, so it cannot hold `:` or `,`.
    ShareId,
    "a share id",
    |text| check_name("share id", text, 31, &['-', '_', '.'])
);

checked_string!(
    /// An LVM volume group or logical volume name. Kept to letters, digits
    /// and `_`: device-mapper doubles a `-` in the names it makes.
    LvmName,
    "an LVM name",
    |text| check_name("LVM name", text, 32, &['_'])
);

checked_string!(
    /// A Debian package name.
    PackageName,
    "a package name",
    |text| {
        let ok = text.len() >= 2
            && text.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if ok {
            Ok(())
        } else {
            Err(format!("invalid package name \"{text}\": Debian package names use lowercase letters, digits, '+', '-' and '.'"))
        }
    }
);

/// An absolute path inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPath(Utf8PathBuf);

impl GuestPath {
    /// The path.
    pub fn as_path(&self) -> &camino::Utf8Path {
        &self.0
    }
}

impl FromStr for GuestPath {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!(
                "invalid guest path \"{text}\": paths in the guest must be absolute, such as /srv/shared"
            ));
        }
        Ok(GuestPath(Utf8PathBuf::from(text)))
    }
}

impl fmt::Display for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

string_value!(GuestPath, "an absolute path in the guest");

/// A screen resolution such as `1280x800`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("invalid resolution \"{text}\": write WIDTHxHEIGHT, such as 1280x800");
        let (w, h) = text.split_once('x').ok_or_else(invalid)?;
        let width: u32 = w.parse().map_err(|_| invalid())?;
        let height: u32 = h.parse().map_err(|_| invalid())?;
        if width == 0 || height == 0 {
            return Err(invalid());
        }
        Ok(Resolution { width, height })
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

string_value!(Resolution, "a resolution such as \"1280x800\"");

/// Where the guest gets its name servers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dns {
    /// Copy the host's `/etc/resolv.conf` when the image is made.
    Host,
    /// These servers.
    Servers(Vec<std::net::IpAddr>),
}

impl FromStr for Dns {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text == "host" {
            return Ok(Dns::Host);
        }
        let servers = text
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse().map_err(|_| {
                    format!("invalid DNS server \"{s}\": write \"host\" or IP addresses separated by commas")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(
                "empty DNS setting: write \"host\" or IP addresses separated by commas".into(),
            );
        }
        Ok(Dns::Servers(servers))
    }
}

impl fmt::Display for Dns {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Dns::Host => f.write_str("host"),
            Dns::Servers(servers) => {
                let list: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

string_value!(Dns, "\"host\" or comma-separated IP addresses");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_and_without_units() {
        assert_eq!("2048".parse::<ByteSize>().unwrap(), ByteSize::mib(2048));
        assert_eq!("2G".parse::<ByteSize>().unwrap(), ByteSize::gib(2));
        assert_eq!("1.5g".parse::<ByteSize>().unwrap(), ByteSize::mib(1536));
        assert_eq!("10GiB".parse::<ByteSize>().unwrap(), ByteSize::gib(10));
        assert!("lots".parse::<ByteSize>().is_err());
        assert!("0".parse::<ByteSize>().is_err());
        assert!("2X".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::mib(2048).to_string(), "2G");
        assert_eq!(ByteSize::mib(1536).to_string(), "1536M");
    }

    #[test]
    fn names_reject_separators() {
        assert!("shared".parse::<ShareId>().is_ok());
        assert!("a:b".parse::<ShareId>().is_err());
        assert!("web-1".parse::<Hostname>().is_ok());
        assert!("web-".parse::<Hostname>().is_err());
        assert!("Root".parse::<UserName>().is_err());
        assert!("example.org".parse::<Domain>().is_ok());
        assert!("example..org".parse::<Domain>().is_err());
    }

    #[test]
    fn ports_and_paths() {
        assert_eq!("8080".parse::<Port>().unwrap(), Port(8080));
        assert!("70000".parse::<Port>().is_err());
        assert!("0".parse::<Port>().is_err());
        assert!("srv/x".parse::<GuestPath>().is_err());
        assert!("/srv/x".parse::<GuestPath>().is_ok());
    }

    #[test]
    fn dns_and_resolution() {
        assert_eq!("host".parse::<Dns>().unwrap(), Dns::Host);
        assert_eq!(
            "1.1.1.1,9.9.9.9".parse::<Dns>().unwrap().to_string(),
            "1.1.1.1,9.9.9.9"
        );
        assert!("nope".parse::<Dns>().is_err());
        assert_eq!("1280x785".parse::<Resolution>().unwrap().height, 785);
        assert!("1280".parse::<Resolution>().is_err());
    }
}
