//! The real legacy kvmxfiles kept in kvmx-core's tests, imported as
//! `kvmx import` leaves them, for golden tests of what kvmx makes of a
//! config (QEMU command lines, preseeds).

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::{self, Config};
use kvmx_core::layout::Layout;
use kvmx_core::legacy::{self, shell::CommandRunner};

/// Command substitutions in the fixtures print `fixed`.
struct FixedOutput;

impl CommandRunner for FixedOutput {
    fn run(&mut self, _: &str, _: &BTreeMap<String, String>) -> Result<String, String> {
        Ok("fixed".into())
    }
}

/// Every fixture (file name, config) in name order: read as the shell
/// tool would (`HOME=/home/user`, the VM named `example`), written to
/// kvmx.toml and read back, then resolved for the project folder
/// `project` in kvmx's folders under `kvmx_home`.
pub fn legacy_configs(project: &Utf8Path, kvmx_home: &Utf8Path) -> Vec<(String, Config)> {
    let dir =
        Utf8Path::new(env!("CARGO_MANIFEST_DIR")).join("../kvmx-core/tests/fixtures/kvmxfiles");
    let mut files: Vec<Utf8PathBuf> = std::fs::read_dir(&dir)
        .expect("the fixtures folder")
        .map(|e| Utf8PathBuf::from_path_buf(e.expect("a fixture").path()).expect("UTF-8"))
        .filter(|p| p.extension() == Some("kvmxfile"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    let context = legacy::context(
        "example",
        BTreeMap::from([("HOME".into(), "/home/user".into())]),
    );
    let layout = Layout::under(kvmx_home);
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("read a fixture");
            let mapped = legacy::read_text(&text, &file, &context, &mut FixedOutput)
                .expect("the fixture maps");
            // Through kvmx.toml, as `kvmx import` would leave it.
            let rendered = config::render(&mapped.config, "", &mapped.notes);
            let parsed = config::parse_toml(&rendered, "kvmx.toml".into()).expect("it parses");
            let resolved = config::resolve(
                parsed,
                project,
                "example".parse().expect("a VM name"),
                &layout,
            );
            (file.file_name().unwrap_or_default().to_owned(), resolved)
        })
        .collect()
}
