//! The config model seen from outside: importing every real kvmxfile into a
//! kvmx.toml that loads back to the same config, the init template, error
//! messages that point at their line, and a parser that never panics.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::{self, Config};
use kvmx_core::layout::Layout;
use kvmx_core::legacy::{self, shell::CommandRunner};
use proptest::prelude::*;

/// Stands in for the fixtures' random password command.
struct FixedOutput;

impl CommandRunner for FixedOutput {
    fn run(&mut self, _: &str, _: &BTreeMap<String, String>) -> Result<String, String> {
        Ok("fixed-output".into())
    }
}

fn fixtures() -> Vec<Utf8PathBuf> {
    let dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kvmxfiles");
    let mut files: Vec<Utf8PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap())
        .filter(|p| p.extension() == Some("kvmxfile"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing from {dir}");
    files
}

fn import(file: &Utf8Path) -> legacy::Mapped {
    let text = std::fs::read_to_string(file).unwrap();
    let context = legacy::context(
        "example",
        BTreeMap::from([("HOME".into(), "/home/user".into())]),
    );
    legacy::read_text(&text, file, &context, &mut FixedOutput).unwrap_or_else(|e| panic!("{e}"))
}

fn resolved(config: Config) -> Config {
    let layout = Layout::under(Utf8Path::new("/kvmx-home"));
    config::resolve(
        config,
        Utf8Path::new("/projects/example"),
        "example".parse().unwrap(),
        &layout,
    )
}

#[test]
fn every_fixture_imports_to_a_kvmx_toml_with_the_same_effective_config() {
    for file in fixtures() {
        let mapped = import(&file);
        let text = config::render(&mapped.config, "imported", &mapped.notes);
        let reloaded = config::parse_toml(&text, Utf8Path::new("kvmx.toml"))
            .unwrap_or_else(|e| panic!("{file}: rendered kvmx.toml does not load: {e}\n{text}"));
        assert_eq!(reloaded, mapped.config, "{file}\n{text}");
        assert_eq!(
            resolved(reloaded),
            resolved(mapped.config.clone()),
            "{file}"
        );
        // Every mapped setting says where it came from.
        assert!(
            text.contains("# kvmxfile line "),
            "{file}: no provenance notes"
        );
    }
}

#[test]
fn fixture_values_land_where_they_belong() {
    let dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kvmxfiles");
    let mapped = import(&dir.join("onionprobe-1.1.2.kvmxfile"));
    let config = resolved(mapped.config);
    assert_eq!(config.vm.hostname.unwrap().as_str(), "onionprobe");
    assert_eq!(config.hardware.memory.as_mib(), 2048);
    assert_eq!(config.create.suite, "bullseye");
    assert_eq!(config.image.format, config::ImageFormat::Qcow2);
    assert_eq!(config.image.size.to_string(), "10G");
    assert!(config.create.compression);
    // The password came from a command: kvmx makes its own random one
    // rather than writing a secret into kvmx.toml.
    assert_eq!(config.vm.password, config::Password::Random);
    let ports: Vec<(u16, u16)> = config
        .network
        .forwards
        .iter()
        .map(|f| (f.host.0, f.guest.0))
        .collect();
    assert_eq!(
        ports,
        [(9090, 9090), (9935, 9935), (9093, 9093), (3000, 3000)]
    );
    assert_eq!(config.shares.len(), 1);
    assert_eq!(config.shares[0].host, "/projects/example");
    assert_eq!(config.shares[0].guest.to_string(), "/srv/shared");
    assert_eq!(config.display.kind, config::DisplayKind::Spice);
    assert_eq!(config.display.vga, Some(config::Vga::Qxl));
    assert_eq!(
        config.provision.command.as_deref(),
        Some("/srv/shared/scripts/provision")
    );
}

#[test]
fn an_undefined_variable_leaves_an_empty_item_that_is_dropped() {
    let dir = Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kvmxfiles");
    let mapped = import(&dir.join("git-onionprobe-2022-05-22-071b099.kvmxfile"));
    let ports: Vec<u16> = mapped
        .config
        .network
        .forwards
        .iter()
        .map(|f| f.host.0)
        .collect();
    assert_eq!(ports, [3030]);
}

#[test]
fn unknown_legacy_keys_are_warnings_with_their_line() {
    let text = "memory=\"512\"\nfrobnicate=\"y\"\n";
    let context = legacy::context("example", BTreeMap::new());
    let mapped = legacy::read_text(text, "kvmxfile".into(), &context, &mut FixedOutput).unwrap();
    assert_eq!(mapped.warnings.len(), 1);
    assert_eq!(mapped.warnings[0].line, 2);
    assert!(mapped.warnings[0].message.contains("frobnicate"));
}

/// The template with every `# key = value` line uncommented.
fn uncommented_template() -> String {
    config::TEMPLATE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_init_template_shows_the_real_defaults() {
    let parsed = config::parse_toml(&uncommented_template(), "template".into()).unwrap();
    assert_eq!(parsed, Config::default());
    assert_eq!(
        config::parse_toml(config::TEMPLATE, "t".into()).unwrap(),
        Config::default()
    );
}

#[test]
fn the_init_template_mentions_every_setting() {
    let all = toml::Value::try_from(Config::default()).unwrap();
    let mut keys = Vec::new();
    collect_keys(&all, "", &mut keys);
    // Settings that are unset by default appear as "e.g." examples.
    let template = config::TEMPLATE;
    for key in [
        "name",
        "hostname",
        "domain",
        "virtio_rng_max_bytes",
        "path",
        "dns",
        "address",
        "msize",
        "cache",
        "vga",
        "resolution",
        "command",
    ] {
        assert!(
            template.contains(&format!("# e.g. {key} = ")),
            "no example for {key}"
        );
    }
    for (table, key) in keys {
        let section = format!("[{table}]");
        let start = template
            .find(&section)
            .unwrap_or_else(|| panic!("no {section} in the template"));
        let body = &template[start..];
        let body = &body[..body[1..].find("\n[").map_or(body.len(), |i| i + 1)];
        assert!(
            body.contains(&format!("# {key} = ")),
            "{key} of {section} is not in the template"
        );
    }
}

fn collect_keys(value: &toml::Value, table: &str, keys: &mut Vec<(String, String)>) {
    if let toml::Value::Table(map) = value {
        for (key, item) in map {
            match item {
                toml::Value::Table(_) if table.is_empty() => collect_keys(item, key, keys),
                toml::Value::Table(_) => collect_keys(item, &format!("{table}.{key}"), keys),
                _ if table.is_empty() => {}
                _ => keys.push((table.to_owned(), key.clone())),
            }
        }
    }
}

#[test]
fn the_config_reference_is_the_template() {
    let doc = std::fs::read_to_string(
        Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md"),
    )
    .unwrap();
    let block = format!("```toml\n{}```", config::TEMPLATE);
    assert!(
        doc.contains(&block),
        "docs/config.md is out of date: paste kvmx-core/src/config/template.toml into its toml block"
    );
}

/// Bad inputs, each with the line the error must name.
const BAD_TOML: &[(&str, &str, usize)] = &[
    (
        "unknown key, close to a real one",
        "[hardware]\nmemroy = \"2G\"\n",
        2,
    ),
    ("unknown table", "[hardwere]\nmemory = \"2G\"\n", 1),
    (
        "memory that is not a size",
        "[hardware]\ncpus = 2\nmemory = \"lots\"\n",
        3,
    ),
    (
        "port out of range",
        "[network]\nforwards = [\n  { host = 70000, guest = 80 },\n]\n",
        3,
    ),
    (
        "share id with a colon",
        "[[shares]]\nid = \"a:b\"\nhost = \".\"\nguest = \"/srv\"\n",
        2,
    ),
    (
        "relative guest mount point",
        "[[shares]]\nid = \"code\"\nhost = \".\"\nguest = \"srv/code\"\n",
        4,
    ),
    (
        "unknown share kind",
        "[[shares]]\nid = \"code\"\nhost = \".\"\nguest = \"/srv\"\nkind = \"ftp\"\n",
        5,
    ),
    ("wrong type", "[hardware]\ncpus = \"two\"\n", 2),
    ("cpus out of range", "[hardware]\ncpus = 0\n", 2),
    ("usb level", "[hardware]\nusb = 4\n", 2),
    ("accelerator", "[hardware]\naccelerator = \"hvf\"\n", 2),
    (
        "backing without base",
        "[image]\nformat = \"qcow2\"\nbacking = true\n",
        3,
    ),
    (
        "duplicate share ids",
        "[[shares]]\nid = \"a\"\nhost = \"x\"\nguest = \"/x\"\n\n[[shares]]\nid = \"a\"\nhost = \"y\"\nguest = \"/y\"\n",
        7,
    ),
    (
        "twice forwarded port",
        "[network]\nforwards = [{ host = 8080, guest = 80 }, { host = 8080, guest = 81 }]\n",
        2,
    ),
    (
        "tap address on user network",
        "[network]\naddress = \"10.1.1.2\"\n",
        2,
    ),
    ("bad mirror", "[create]\nmirror = \"deb.debian.org\"\n", 2),
    (
        "bad package name",
        "[create]\npackages = [\"vim\", \"Bad Name\"]\n",
        2,
    ),
    ("syntax", "[vm]\nname = \"unterminated\n", 2),
    ("bad host name", "[vm]\nhostname = \"under_score\"\n", 2),
    ("bad resolution", "[display]\nresolution = \"big\"\n", 2),
    ("bad password", "[vm]\npassword = \"hunter2\"\n", 2),
    (
        "empty signature folder",
        "[disposable]\nclamav_database = \"\"\n",
        2,
    ),
    (
        "arch without image-bootstrap",
        "[create]\ndistribution = \"arch\"\n",
        2,
    ),
    (
        "image-bootstrap with LUKS",
        "[create]\nmethod = \"image-bootstrap\"\nencryption = \"luks\"\n",
        2,
    ),
    (
        "LUKS with direct boot",
        "[create]\nencryption = \"luks\"\nbootloader = \"direct\"\n",
        3,
    ),
    (
        "volumes with a plain layout",
        "[create]\nlayout = \"plain\"\n[create.lvm]\nswap_size = \"1G\"\n",
        3,
    ),
    (
        "a volume named root",
        "[create]\nlayout = \"lvm\"\n[create.lvm]\nvolumes = [{ name = \"root\", size = \"1G\", mount = \"/srv\" }]\n",
        4,
    ),
    (
        "volumes larger than the image",
        "[image]\nsize = \"2G\"\n[create]\nlayout = \"lvm\"\n[create.lvm]\nroot_size = \"2G\"\n",
        5,
    ),
    (
        "an LVM name with a dash",
        "[create]\nlayout = \"lvm\"\n[create.lvm]\nvolume_group = \"my-vg\"\n",
        4,
    ),
    (
        "an install with direct boot",
        "[create]\nmethod = \"install\"\nbootloader = \"direct\"\n",
        3,
    ),
    (
        "an install with sized volumes",
        "[create]\nmethod = \"install\"\nlayout = \"lvm\"\n[create.lvm]\nswap_size = \"1G\"\n",
        4,
    ),
    (
        "an install that asks for its passphrase",
        "[create]\nmethod = \"install\"\nencryption = \"luks\"\npassphrase = \"ask\"\n",
        4,
    ),
    ("an install without time", "[install]\ntimeout = 0\n", 2),
    (
        "a locale of two words",
        "[install]\nlocale = \"en US\"\n",
        2,
    ),
];

const BAD_LEGACY: &[(&str, &str, usize)] = &[
    ("function", "hostname=\"a\"\nf() { echo; }\n", 2),
    ("if", "memory=\"512\"\nif true; then x=1; fi\n", 2),
    ("array", "a=(1 2)\n", 1),
    ("command after assignment", "memory=512 make\n", 1),
    ("unterminated quote", "hostname=\"a\nmemory=512\n", 1),
    (
        "memory that is not a size",
        "hostname=\"a\"\nmemory=\"lots\"\n",
        2,
    ),
    ("truth value", "ssh_support=\"maybe\"\n", 1),
    (
        "port out of range",
        "port_mapping=\"hostfwd=tcp:127.0.0.1:70000-:80\"\n",
        1,
    ),
    (
        "share id with a colon list",
        "shared_folders=\"a:b:c:/srv\"\n",
        1,
    ),
    (
        "relative guest mount point",
        "shared_folder=\".\"\nshared_folder_mountpoint=\"srv\"\n",
        2,
    ),
    ("arithmetic", "smp=$((1+1))\n", 1),
    ("unsupported expansion", "x=${VM:0:2}\n", 1),
];

#[test]
fn config_errors_name_their_line() {
    let mut report = String::new();
    for (what, text, line) in BAD_TOML {
        let error = config::parse_toml(text, "kvmx.toml".into()).expect_err(what);
        assert_eq!(error.line, *line, "{what}: {error}");
        report.push_str(&format!("## {what}\n{error}\n"));
        if let Some(hint) = &error.hint {
            report.push_str(&format!("hint: {hint}\n"));
        }
        report.push('\n');
    }
    let context = legacy::context("example", BTreeMap::new());
    for (what, text, line) in BAD_LEGACY {
        let error =
            legacy::read_text(text, "kvmxfile".into(), &context, &mut FixedOutput).expect_err(what);
        assert_eq!(error.line, *line, "{what}: {error}");
        report.push_str(&format!("## legacy: {what}\n{error}\n\n"));
    }
    insta::assert_snapshot!(report);
}

proptest! {
    #[test]
    fn the_toml_reader_never_panics(text in "\\PC{0,200}") {
        let _ = config::parse_toml(&text, "kvmx.toml".into());
    }

    #[test]
    fn the_toml_reader_never_panics_on_near_configs(
        section in prop::sample::select(vec!["vm", "hardware", "image", "create", "network", "ssh", "provision", "hooks", "display", "supervise", "disposable"]),
        key in "[a-z_]{1,20}",
        value in prop::sample::select(vec!["\"\"", "0", "-1", "70000", "\"2G\"", "true", "[]", "{}", "\"/x\"", "[{ host = 1, guest = 2 }]", "\"a:b\"", "1.5"]),
    ) {
        let text = format!("[{section}]\n{key} = {value}\n");
        let _ = config::parse_toml(&text, "kvmx.toml".into());
    }
}
