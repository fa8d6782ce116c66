use camino::Utf8Path;
use kvmx_core::config::{self, Config};
use kvmx_core::layout::Layout;

use super::*;

/// A fixed hash of "secret", so the snapshots are stable.
const HASH: &str = "$6$saltsalt$hashhashhash";

fn resolved(config: Config) -> Config {
    config::resolve(
        config,
        Utf8Path::new("/projects/example"),
        "example".parse().unwrap(),
        &Layout::under(Utf8Path::new("/kvmx")),
    )
}

fn toml(text: &str) -> Config {
    resolved(config::parse_toml(text, "kvmx.toml".into()).unwrap())
}

fn input<'a>(config: &'a Config, passphrase: Option<&'a str>) -> PreseedInput<'a> {
    PreseedInput {
        config,
        hostname: config.vm.hostname.as_ref().unwrap().to_string(),
        password_hash: Some(HASH.into()),
        uid: 1000,
        gid: 1000,
        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClient kvmx@example".into()],
        host_key_private:
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n"
                .into(),
        host_key_public: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost root@example".into(),
        passphrase,
    }
}

#[test]
fn plain() {
    let config = toml("[create]\nmethod = \"install\"\n");
    insta::assert_snapshot!(preseed(&input(&config, None)));
}

#[test]
fn lvm() {
    let config = toml(
        "[vm]\ndomain = \"example.org\"\nuser = \"dev\"\n\
         [create]\nmethod = \"install\"\nlayout = \"lvm\"\nmirror = \"http://mirror.example:8080/debian\"\n\
         packages = [\"htop\", \"linux-image-cloud-amd64\"]\n\
         [create.lvm]\nvolume_group = \"vg0\"\n",
    );
    insta::assert_snapshot!(preseed(&input(&config, None)));
}

#[test]
fn lvm_luks() {
    let config = toml(
        "[create]\nmethod = \"install\"\nlayout = \"lvm\"\nencryption = \"luks\"\n\
         [install]\nlocale = \"de_DE.UTF-8\"\nkeyboard = \"de\"\ntimezone = \"Europe/Berlin\"\n",
    );
    let text = preseed(&input(&config, Some("Passphrase123")));
    assert!(text.contains("d-i partman-auto/method string crypto"));
    insta::assert_snapshot!(text);
}

#[test]
fn the_password_is_only_a_hash() {
    let config = toml("[vm]\npassword = { plain = \"secret\" }\n");
    let hash = crate::password::hash("secret").unwrap();
    let mut given = input(&config, None);
    given.password_hash = Some(hash.clone());
    let text = preseed(&given);
    assert!(text.contains(&format!("user-password-crypted password {hash}")));
    assert!(!text.contains("secret"));
    given.password_hash = None;
    assert!(preseed(&given).contains("user-password-crypted password !\n"));
}

#[test]
fn mirrors_are_split() {
    assert_eq!(
        split_mirror("https://deb.debian.org/debian/"),
        Mirror {
            protocol: "https".into(),
            host: "deb.debian.org".into(),
            directory: "/debian".into()
        }
    );
    assert_eq!(
        split_mirror("http://10.0.2.2:3142/"),
        Mirror {
            protocol: "http".into(),
            host: "10.0.2.2:3142".into(),
            directory: "/".into()
        }
    );
    assert_eq!(
        split_mirror("ftp.de.debian.org/debian").host,
        "ftp.de.debian.org"
    );
}

#[test]
fn late_and_setup_scripts() {
    let config = toml("[vm]\nuser = \"dev\"\n");
    insta::assert_snapshot!(format!(
        "{}\n{}",
        super::late_script(),
        setup_script(&input(&config, None))
    ));
}

#[test]
fn initrd_files_are_private() {
    let config = toml("");
    let overlay = initrd_files(&input(&config, None));
    let names: Vec<&str> = overlay.entries().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "preseed.cfg",
            "kvmx",
            "kvmx/late.sh",
            "kvmx/setup.sh",
            "kvmx/authorized_keys",
            "kvmx/ssh_host_ed25519_key",
            "kvmx/ssh_host_ed25519_key.pub",
            "kvmx/sshd_config"
        ]
    );
    for entry in overlay.entries() {
        assert_eq!(entry.mode & 0o077 & !0o044, 0, "{}", entry.path);
    }
    assert_eq!(overlay.get("preseed.cfg").unwrap().mode, 0o600);
    assert_eq!(
        overlay.get("kvmx/ssh_host_ed25519_key").unwrap().mode,
        0o600
    );
}

/// Every real legacy kvmxfile, imported as `kvmx import` does, then
/// installed instead of built.
#[test]
fn every_legacy_fixture() {
    let mut out = String::new();
    for (file, mut config) in kvmx_testkit::fixtures::legacy_configs(
        Utf8Path::new("/projects/example"),
        Utf8Path::new("/kvmx"),
    ) {
        config.create.method = kvmx_core::config::Method::Install;
        out.push_str(&format!("## {file}\n"));
        out.push_str(&preseed(&input(&config, None)));
        out.push('\n');
    }
    insta::assert_snapshot!(out);
}
