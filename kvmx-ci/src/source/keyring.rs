//! The job's own OpenPGP keyring: a GnuPG home under the job's folder,
//! filled from the job's file of armored public keys and rebuilt whenever
//! that file changes (so a key removed from the file leaves the keyring).
//! The user's own keyring is never read.

use std::os::unix::fs::PermissionsExt;

use camino::Utf8Path;
use kvmx_core::atomic_file::{self, Overwrite};

use super::SourceError;
use super::git::Git;

/// The copy of the file the keyring was built from.
const IMPORTED: &str = "kvmx-ci-imported.asc";

/// Makes the job's keyring hold exactly the keys of `file`.
pub(crate) fn prepare(git: &Git, file: &Utf8Path) -> Result<(), SourceError> {
    let wanted = std::fs::read(file).map_err(SourceError::io(file))?;
    let keyring = git.keyring();
    let imported = keyring.join(IMPORTED);
    if std::fs::read(&imported).ok().as_deref() == Some(wanted.as_slice()) {
        return Ok(());
    }
    if keyring.exists() {
        std::fs::remove_dir_all(keyring).map_err(SourceError::io(keyring))?;
    }
    std::fs::create_dir_all(keyring).map_err(SourceError::io(keyring))?;
    // gpg refuses a home others can read.
    std::fs::set_permissions(keyring, std::fs::Permissions::from_mode(0o700))
        .map_err(SourceError::io(keyring))?;
    // Import the bytes compared above, not the file again: it may change
    // in between.
    let incoming = keyring.join("kvmx-ci-incoming.asc");
    std::fs::write(&incoming, &wanted).map_err(SourceError::io(&incoming))?;
    let tool = git.gpg(
        format!("import the keys of {file}"),
        &["--quiet", "--import", incoming.as_str()],
    );
    git.run_tool(&tool).map_err(|source| SourceError::Keyring {
        file: file.to_owned(),
        keyring: keyring.to_owned(),
        source: Box::new(source),
    })?;
    std::fs::remove_file(&incoming).map_err(SourceError::io(&incoming))?;
    // Written last: an import cut short is done again next time.
    atomic_file::write(&imported, &wanted, Overwrite::Yes)?;
    Ok(())
}
