//! Helpers of the tests that run `kvmx` as the unprivileged test user
//! (kvmx-testkit's homes).

use std::process::Output;

use camino::Utf8Path;
use kvmx_testkit::Home;

/// The binary under test.
pub(crate) fn kvmx() -> &'static Utf8Path {
    Utf8Path::new(env!("CARGO_BIN_EXE_kvmx"))
}

/// stdout then stderr, as text.
pub(crate) fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Kills the VM when the test ends, passed or not.
pub(crate) struct KillOnDrop<'a> {
    pub(crate) home: &'a Home,
    pub(crate) project: &'a Utf8Path,
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.home.run(kvmx(), self.project, &["kill"]);
    }
}
