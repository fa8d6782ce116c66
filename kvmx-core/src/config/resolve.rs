//! Defaults that depend on the project, and absolute host paths.

use camino::{Utf8Path, Utf8PathBuf};

use super::model::Config;
use super::values::{Hostname, VmName};
use crate::layout::Layout;

/// Fills in what depends on where the project is: the VM name (from the
/// folder unless set), the host name, the SSH user, the image path, and makes
/// every relative host path absolute against `project_dir`.
pub fn resolve(
    mut config: Config,
    project_dir: &Utf8Path,
    name: VmName,
    layout: &Layout,
) -> Config {
    let vm = &mut config.vm;
    if vm.hostname.is_none() {
        // A VM name may hold '_' or '.', which a host name may not.
        let cleaned: String = name
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        vm.hostname = cleaned.trim_matches('-').parse::<Hostname>().ok();
    }
    if config.ssh.user.is_none() {
        config.ssh.user = Some(vm.user.clone());
    }
    let absolute = |path: &Utf8Path| -> Utf8PathBuf { absolute_from(project_dir, path) };
    let image = &mut config.image;
    image.path = Some(match &image.path {
        Some(path) => absolute(path),
        None => layout.vm(&name).default_image(),
    });
    image.cdrom = image.cdrom.as_deref().map(absolute);
    for share in &mut config.shares {
        share.host = absolute(&share.host);
    }
    for pair in &mut config.provision.rsync {
        pair.host = absolute(&pair.host);
    }
    for item in config
        .hooks
        .startup_rsync
        .iter_mut()
        .chain(config.hooks.poweroff_rsync.iter_mut())
    {
        item.host = absolute(&item.host);
    }
    config.disposable.clamav_database = config.disposable.clamav_database.as_deref().map(absolute);
    config.install.iso = config.install.iso.as_deref().map(absolute);
    if let Some(key) = &config.ssh.authorized_key
        && !is_literal_public_key(key)
    {
        config.ssh.authorized_key = Some(absolute(Utf8Path::new(key)).into_string());
    }
    config.vm.name = Some(name);
    config
}

/// Joins a relative path to `base`, dropping `.` components, and keeps a
/// trailing slash (rsync gives it meaning).
pub fn absolute_from(base: &Utf8Path, path: &Utf8Path) -> Utf8PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    let mut joined = base.to_owned();
    for part in path.components() {
        match part {
            camino::Utf8Component::CurDir => {}
            other => joined.push(other.as_str()),
        }
    }
    if path.as_str().ends_with('/') && !joined.as_str().ends_with('/') {
        Utf8PathBuf::from(format!("{joined}/"))
    } else {
        joined
    }
}

/// Whether an `authorized_key` setting is the key itself rather than a path.
pub fn is_literal_public_key(value: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|prefix| value.trim_start().starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_project() {
        let base = Utf8Path::new("/p");
        assert_eq!(absolute_from(base, ".".into()), "/p");
        assert_eq!(absolute_from(base, "puppet/".into()), "/p/puppet/");
        assert_eq!(absolute_from(base, "./a/b".into()), "/p/a/b");
        assert_eq!(absolute_from(base, "/abs".into()), "/abs");
    }
}
