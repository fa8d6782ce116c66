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
    NAME  STATE     SUPERVISED  FILE       FOLDER
    a-vm  stopped   no          kvmx.toml  [SANDBOX]/a-vm
    b-vm  unknown   no          missing    [SANDBOX]/b-vm
    ");
}

/// Every path under `dir`, sorted.
fn tree(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

#[test]
fn queries_of_a_never_started_vm_create_no_folder_or_file() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("quiet");
    sandbox.kvmx_in(&project).arg("init").assert().success();
    let kvmx_home = sandbox.root().join("kvmx");
    let before = tree(&kvmx_home);

    let queries: &[&[&str]] = &[
        &["list"],
        &["list", "--json"],
        &["status"],
        &["status", "--json"],
        &["config", "show"],
        &["shares"],
    ];
    for args in queries {
        let output = sandbox.kvmx_in(&project).args(*args).output().unwrap();
        assert!(output.status.success(), "kvmx {args:?}: {output:?}");
    }
    // Commands that find the VM stopped and say so.
    for args in [["port"], ["suspend"], ["stop"], ["kill"]] {
        sandbox.kvmx_in(&project).args(args).output().unwrap();
    }

    assert_eq!(tree(&kvmx_home), before);
    assert!(!kvmx_home.join("run").exists());
    assert!(!kvmx_home.join("data").exists());
}
