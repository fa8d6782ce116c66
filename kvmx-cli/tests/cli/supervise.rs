//! `kvmx supervise install`: the systemd user unit (the supervisor itself
//! runs real guests in `guest.rs`).

use crate::{Sandbox, output_text};

#[test]
fn install_writes_a_user_unit_and_keeps_an_existing_one() {
    let sandbox = Sandbox::new();
    let unit = sandbox
        .root()
        .join("home/.config/systemd/user/kvmx-supervise.service");
    let first = sandbox
        .kvmx()
        .args(["supervise", "install"])
        .output()
        .unwrap();
    let (stdout, stderr) = output_text(&first);
    assert!(first.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("loginctl enable-linger"), "{stderr}");
    let text = std::fs::read_to_string(&unit).unwrap();
    let kvmx = assert_cmd::cargo::cargo_bin("kvmx");
    assert!(
        text.contains(&format!("ExecStart={} supervise\n", kvmx.display())),
        "{text}"
    );
    assert!(text.contains("WantedBy=default.target"), "{text}");

    std::fs::write(&unit, "# edited by hand\n").unwrap();
    let again = sandbox
        .kvmx()
        .args(["supervise", "install"])
        .output()
        .unwrap();
    let (_, stderr) = output_text(&again);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap(),
        "# edited by hand\n"
    );
    let forced = sandbox
        .kvmx()
        .args(["supervise", "install", "--force"])
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert!(
        std::fs::read_to_string(&unit)
            .unwrap()
            .contains("ExecStart=")
    );
}
