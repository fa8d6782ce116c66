//! SSH trust between host and guest: the VM's client key pair, the keys
//! authorized in the guest, and the guest's host key, made on the host and
//! recorded in the VM's known_hosts so the first connection already checks
//! it strictly.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::config::values::VmName;
use kvmx_core::layout::VmPaths;
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::{Error, Result};

/// The name the guest's host key has in the VM's known_hosts. Connections
/// pass it as `HostKeyAlias`, since the forwarded port changes from boot to
/// boot.
pub fn host_key_alias(vm: &VmName) -> String {
    format!("kvmx-{vm}")
}

/// A guest host key pair.
#[derive(Debug, Clone)]
pub struct HostKey {
    /// The private key in OpenSSH format.
    pub private: String,
    /// The public key line.
    pub public: String,
}

fn new_key(comment: &str) -> std::result::Result<PrivateKey, ssh_key::Error> {
    let mut key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)?;
    key.set_comment(comment);
    Ok(key)
}

/// A new ed25519 host key for the guest `hostname`.
pub fn new_host_key(hostname: &str) -> Result<HostKey> {
    let wrap = |source| Error::Key {
        path: "/etc/ssh/ssh_host_ed25519_key".into(),
        source,
    };
    let key = new_key(&format!("root@{hostname}")).map_err(wrap)?;
    Ok(HostKey {
        private: key.to_openssh(LineEnding::LF).map_err(wrap)?.to_string(),
        public: key.public_key().to_openssh().map_err(wrap)?,
    })
}

/// The public line of the VM's client key, made (mode 0600) if there is
/// none yet. An existing key is kept, so a rebuilt image trusts the same
/// key.
pub fn client_key(paths: &VmPaths, vm: &VmName) -> Result<String> {
    let private = paths.ssh_key();
    let public = Utf8PathBuf::from(format!("{private}.pub"));
    let wrap = |source| Error::Key {
        path: private.clone(),
        source,
    };
    if private.is_file() {
        let key = PrivateKey::read_openssh_file(private.as_std_path()).map_err(wrap)?;
        return key.public_key().to_openssh().map_err(wrap);
    }
    let key = new_key(&format!("kvmx@{vm}")).map_err(wrap)?;
    let text = key.to_openssh(LineEnding::LF).map_err(wrap)?;
    let line = key.public_key().to_openssh().map_err(wrap)?;
    write_private(&private, text.as_bytes())?;
    kvmx_core::atomic_file::write(
        &public,
        format!("{line}\n").as_bytes(),
        kvmx_core::atomic_file::Overwrite::Yes,
    )?;
    Ok(line)
}

/// Removes the VM's client key pair (and its folder, once empty): a build
/// that failed leaves no key it made.
pub fn remove_client_key(paths: &VmPaths) {
    let private = paths.ssh_key();
    let _ = std::fs::remove_file(format!("{private}.pub"));
    let _ = std::fs::remove_file(&private);
    if let Some(folder) = private.parent() {
        // Only when empty: a known_hosts of an earlier image stays.
        let _ = std::fs::remove_dir(folder);
    }
}

/// Writes a file readable by its owner alone, creating its folder (0700).
pub fn write_private(path: &Utf8Path, contents: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(Error::io("create", dir))?;
    }
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    let mut temp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(Error::io("write into", dir))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(Error::io("write", path))?;
    temp.persist(path)
        .map_err(|e| Error::io("write", path)(e.error))?;
    Ok(())
}

/// The extra key to authorize: the setting is the key itself or the path of
/// a `.pub` file.
pub fn extra_authorized_key(setting: &str) -> Result<String> {
    if kvmx_core::config::resolve::is_literal_public_key(setting) {
        return Ok(setting.trim().to_owned());
    }
    let text = std::fs::read_to_string(setting).map_err(Error::io("read", setting))?;
    Ok(text.trim().to_owned())
}

/// The VM's known_hosts text: the guest's host key under its alias.
pub fn known_hosts(vm: &VmName, host_public: &str) -> String {
    let mut parts = host_public.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    format!("{} {kind} {key}\n", host_key_alias(vm))
}

/// The known_hosts text of the VM whose folders are `paths`, with the
/// alias of `vm` (an image made from it, or a run of it under another
/// name).
pub fn known_hosts_as(paths: &VmPaths, vm: &VmName) -> Result<String> {
    let path = paths.known_hosts();
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (_alias, kind, key) = (parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{} {kind} {key}\n", host_key_alias(vm)))
        })
        .collect())
}

/// The client keys that reach a VM, in the order to try them: its own,
/// then its base's (an image made from a base VM trusts the base's key).
pub fn identities(own: &VmPaths, base: Option<&VmPaths>) -> Vec<Utf8PathBuf> {
    std::iter::once(own)
        .chain(base)
        .map(VmPaths::ssh_key)
        .filter(|key| key.is_file())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn client_key_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let data = Utf8Path::from_path(dir.path()).unwrap().join("vm");
        let paths = VmPaths {
            data: data.clone(),
            runtime: data.join("run"),
        };
        let vm: VmName = "vm".parse().unwrap();
        let first = client_key(&paths, &vm).unwrap();
        assert!(first.starts_with("ssh-ed25519 "));
        let mode = std::fs::metadata(paths.ssh_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(client_key(&paths, &vm).unwrap(), first);
        assert_eq!(identities(&paths, None), [paths.ssh_key()]);
    }

    #[test]
    fn known_hosts_names_the_alias() {
        let key = new_host_key("guest").unwrap();
        assert!(key.private.contains("OPENSSH PRIVATE KEY"));
        let vm: VmName = "web".parse().unwrap();
        let line = known_hosts(&vm, &key.public);
        assert!(line.starts_with("kvmx-web ssh-ed25519 AAAA"), "{line}");
        assert_eq!(line.split(' ').count(), 3);
    }
}
