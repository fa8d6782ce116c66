//! LVM and LUKS images, made by a plain user through the builder VM and
//! started with `kvmx up`, which types the passphrase at the guest's
//! unlock prompt: the layers under `/` in the guest, the data encrypted at
//! rest (and readable in an unencrypted image, the control), and the
//! passphrase in no process's command line or environment, no log and no
//! JSON output.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// The `kvmx` binary.
fn kvmx() -> &'static Utf8Path {
    Utf8Path::new(env!("CARGO_BIN_EXE_kvmx"))
}

/// Every distinct command line and environment of every process, read
/// from `/proc` in a loop until finished.
struct ProcessScan {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<Vec<u8>>>>,
    thread: std::thread::JoinHandle<()>,
}

impl ProcessScan {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                        let name = entry.file_name();
                        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                            continue;
                        }
                        for file in ["cmdline", "environ"] {
                            if let Ok(bytes) = std::fs::read(entry.path().join(file)) {
                                seen.lock().unwrap().insert(bytes);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        ProcessScan { stop, seen, thread }
    }

    fn finish(self) -> BTreeSet<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the file holds `text`, by grep (fast on an image of gigabytes).
fn file_contains(file: &Utf8Path, text: &str) -> bool {
    let status = std::process::Command::new("grep")
        .args(["-q", "-a", "-F", text])
        .arg(file)
        .status()
        .unwrap();
    status.success()
}

/// Runs `kvmx args` as the test user in `project` and requires success.
fn kvmx_ok(home: &Home, project: &Utf8Path, args: &[&str]) -> Output {
    let out = home.run(kvmx(), project, args);
    assert!(
        out.status.success(),
        "kvmx {args:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A marker no image holds by chance.
fn marker() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kvmx-marker-{now:x}-{}", std::process::id())
}

/// Builds the image of the `[create]` `settings` (raw, so the file is the disk), starts it
/// with `kvmx up`, writes `marker` on the root and the data volume, shows
/// the block layers under `/` and stops it. Returns the image, the
/// `lsblk` text, and everything kvmx printed.
fn build_boot_and_mark(
    home: &Home,
    name: &str,
    settings: &str,
    marker: &str,
) -> (Utf8PathBuf, String, Vec<u8>) {
    let toml = config(
        name,
        &format!(
            "format = \"raw\"\n[create]\n{settings}\n[create.lvm]\nswap_size = \"128M\"\n\
             volumes = [{{ name = \"data\", size = \"128M\", mount = \"/srv/data\" }}]\n"
        ),
    );
    let project = home.project(name, &toml);
    let (out, report) = create(home, &project, &[]);
    assert!(
        out.status.success(),
        "kvmx-create failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report.expect("a JSON report");
    let mut printed = [out.stdout, out.stderr].concat();
    let up = kvmx_ok(home, &project, &["up", "--json"]);
    printed.extend([up.stdout, up.stderr].concat());
    let ssh = kvmx_ok(
        home,
        &project,
        &[
            "ssh",
            "--",
            &format!(
                "lsblk -rno TYPE,MOUNTPOINT; echo {marker} | sudo tee /var/lib/marker /srv/data/marker >/dev/null; sync"
            ),
        ],
    );
    let lsblk = String::from_utf8_lossy(&ssh.stdout).into_owned();
    let stop = kvmx_ok(home, &project, &["stop"]);
    printed.extend([stop.stdout, stop.stderr].concat());
    (path(&report["image"]), lsblk, printed)
}

#[test]
fn an_lvm_in_luks_image_boots_is_encrypted_at_rest_and_keeps_its_passphrase_secret() {
    let runtime = runtime();
    let home = runtime.home("e2e-luks");
    let name = "e2e-luks";
    let marker = marker();
    let scan = ProcessScan::start();
    let (image, lsblk, printed) = build_boot_and_mark(
        &home,
        name,
        "layout = \"lvm\"\nencryption = \"luks\"",
        &marker,
    );
    let seen = scan.finish();

    assert!(lsblk.lines().any(|l| l == "crypt "), "{lsblk}");
    assert!(lsblk.lines().any(|l| l == "lvm /"), "{lsblk}");
    assert!(lsblk.lines().any(|l| l == "lvm /srv/data"), "{lsblk}");
    assert!(lsblk.lines().any(|l| l == "lvm [SWAP]"), "{lsblk}");
    assert!(lsblk.lines().any(|l| l == "part /boot"), "{lsblk}");

    let data = home.data(name);
    let file = data.join("luks-passphrase");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600);
    let passphrase = std::fs::read_to_string(&file)
        .unwrap()
        .trim_end()
        .to_owned();
    assert!(passphrase.len() >= 20, "{passphrase:?}");
    let secret = passphrase.as_bytes();
    assert!(
        !seen.iter().any(|bytes| contains(bytes, secret)),
        "a process's command line or environment held the passphrase"
    );
    // The scan saw the work it watched: the build, the builder's QEMU and
    // the start (a count of processes depends on the host).
    for program in [&b"kvmx-create"[..], b"qemu-system-x86_64", b"kvmx\0up"] {
        assert!(
            seen.iter().any(|bytes| contains(bytes, program)),
            "the scan never saw {}",
            String::from_utf8_lossy(program)
        );
    }
    for log in ["console.log", "create.log"] {
        let text = std::fs::read(data.join(log)).unwrap();
        assert!(!contains(&text, secret), "{log} holds the passphrase");
    }
    assert!(!contains(&printed, secret), "kvmx printed the passphrase");

    assert!(
        !file_contains(&image, &marker),
        "the marker is readable in {image}"
    );
    assert!(file_contains(&image, "LUKS\u{ba}\u{be}") || file_contains(&image, "LUKS"));

    // A wrong passphrase is a clear error, not a hang, and leaves no QEMU.
    std::fs::write(&file, "not the passphrase\n").unwrap();
    let project = home.root.join("projects").join(name);
    let out = home.run(kvmx(), &project, &["up"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused the LUKS passphrase"), "{stderr}");
    let status = kvmx_ok(&home, &project, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
}

#[test]
fn an_lvm_image_without_luks_boots_and_its_data_is_readable_in_the_image() {
    let runtime = runtime();
    let home = runtime.home("e2e-lvm");
    let marker = marker();
    let (image, lsblk, _) = build_boot_and_mark(&home, "e2e-lvm", "layout = \"lvm\"", &marker);
    assert!(lsblk.lines().any(|l| l == "lvm /"), "{lsblk}");
    assert!(!lsblk.lines().any(|l| l.starts_with("crypt")), "{lsblk}");
    assert!(!home.data("e2e-lvm").join("luks-passphrase").exists());
    assert!(
        file_contains(&image, &marker),
        "the control: {image} shows the marker in plain text"
    );
}

/// image-bootstrap writes a Debian system onto a blank disk in the builder
/// VM (its debootstrap under emulation is most of the 13 minutes this takes
/// here); the image boots with `kvmx up` and is a kvmx guest like any other.
#[test]
fn a_debian_image_made_by_image_bootstrap_boots_and_answers_ssh() {
    let runtime = runtime();
    let home = runtime.home("e2e-ib");
    let toml = config(
        "e2e-ib",
        "format = \"qcow2\"\n[create]\nmethod = \"image-bootstrap\"\ndistribution = \"debian\"\n",
    );
    let project = home.project("e2e-ib", &toml);
    let report = create_ok(&home, &project, &[]);
    assert_eq!(report["bootloader"], "grub");
    let log = std::fs::read_to_string(home.data("e2e-ib").join("create.log")).unwrap();
    assert!(log.contains("image-bootstrap"), "{log}");
    kvmx_ok(&home, &project, &["up"]);
    // The user, sudo, the services and DNS as on every kvmx guest, and the
    // user's random password set (its hash in shadow, its text on the host).
    let out = kvmx_ok(
        &home,
        &project,
        &[
            "ssh",
            "--",
            "id -un; sudo -n true && echo sudo-ok; \
             systemctl is-active ssh systemd-networkd systemd-resolved; \
             readlink /etc/resolv.conf; sudo -n grep -c '^dev:[$]' /etc/shadow",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "dev\nsudo-ok\nactive\nactive\nactive\n/run/systemd/resolve/stub-resolv.conf\n1\n"
    );
    let password = path(&report["password_file"]);
    assert!(std::fs::read_to_string(&password).unwrap().trim().len() >= 12);
    kvmx_ok(&home, &project, &["stop"]);
}
