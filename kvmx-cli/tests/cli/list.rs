use crate::{Sandbox, output_text};

#[test]
fn list_shows_registered_vms_and_missing_folders() {
    let sandbox = Sandbox::new();
    let empty = sandbox.kvmx().arg("list").output().unwrap();
    assert!(empty.status.success());
    assert_eq!(output_text(&empty).0, "");

    sandbox.dir("b-vm");
    sandbox.dir("a-vm");
    sandbox.kvmx().args(["init", "b-vm"]).assert().success();
    sandbox.kvmx().args(["init", "a-vm"]).assert().success();
    std::fs::remove_file(sandbox.root().join("b-vm/kvmx.toml")).unwrap();
    let output = sandbox.kvmx().arg("list").output().unwrap();
    let (stdout, _) = output_text(&output);
    insta::assert_snapshot!(sandbox.filter(&stdout), @r"
    NAME  STATE     FILE       FOLDER
    a-vm  stopped   kvmx.toml  [SANDBOX]/a-vm
    b-vm  unknown   missing    [SANDBOX]/b-vm
    ");
}
