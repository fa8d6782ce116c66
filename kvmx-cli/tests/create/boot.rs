//! Images that boot: GRUB and direct kernel boot, SSH with the VM's key and
//! strict host-key checking, the guest's setup, ACPI power-off over QMP.

use std::time::Duration;

use kvmx_testkit::Guest;

use super::*;

const SSH_DEADLINE: Duration = Duration::from_secs(300);
const POWERDOWN_DEADLINE: Duration = Duration::from_secs(90);

fn boot_and_check(name: &str, extra: &str) {
    let runtime = runtime();
    let home = runtime.home(name);
    let extra_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnEdGcqnqXWhk1B3klnoZbYhpQ6xgT2YQOxB1u5hUhD extra@test";
    let toml = config(
        name,
        &format!("{extra}\n[ssh]\nauthorized_key = \"{extra_key}\"\n"),
    )
    .replace("[vm]\n", "[vm]\ndomain = \"test.example\"\n");
    let project = home.project(name, &toml);
    let report = create_ok(&home, &project, &[]);

    let data = home.data(name);
    let mode = |path: &Utf8Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&data.join("ssh/id_ed25519")), 0o600);
    assert_eq!(mode(&data.join("password")), 0o600);
    let log = std::fs::read_to_string(data.join("create.log")).unwrap();
    assert!(log.contains("$ ") && log.contains("mkfs.ext4"), "{log}");

    let mut guest = Guest::boot(&boot_spec(&report, "dev"));
    guest.wait_for_ssh(SSH_DEADLINE);
    let out = guest.ssh(
        "hostname; hostname -f; id -un; id -Gn; sudo -n true && echo sudo-ok; \
         cat /etc/fstab; findmnt -no SOURCE,FSTYPE /; stat -c '%U %a' /usr/bin/sudo; \
         cat ~/.ssh/authorized_keys; systemctl is-active ssh qemu-guest-agent systemd-logind",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], name);
    assert_eq!(lines[1], format!("{name}.test.example"));
    assert_eq!(lines[2], "dev");
    assert!(lines[3].split(' ').any(|g| g == "sudo"), "{text}");
    assert!(text.contains("\nsudo-ok\n"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("UUID=") && l.contains("\t/\text4\t")),
        "{text}"
    );
    assert!(text.contains(" ext4\n"), "{text}");
    assert!(
        text.contains("root 4755\n"),
        "sudo keeps its setuid bit: {text}"
    );
    assert!(text.contains(extra_key), "{text}");
    assert!(text.ends_with("active\nactive\nactive\n"), "{text}");

    assert!(
        guest.powerdown(POWERDOWN_DEADLINE),
        "QEMU still runs {} s after system_powerdown:\n{}",
        POWERDOWN_DEADLINE.as_secs(),
        guest.serial_tail()
    );
}

#[test]
fn grub_qcow2_image_boots_and_powers_off() {
    boot_and_check("e2e-grub", "[create]\nbootloader = \"grub\"\n");
}

#[test]
fn direct_raw_image_boots_and_powers_off() {
    boot_and_check(
        "e2e-direct",
        "format = \"raw\"\n[create]\nbootloader = \"direct\"\n",
    );
}
