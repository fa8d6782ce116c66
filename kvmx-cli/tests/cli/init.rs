use crate::{Sandbox, output_text};

#[test]
fn init_writes_a_template_and_registers_the_folder() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("web-app");
    let output = sandbox.kvmx_in(&project).arg("init").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    assert!(text.starts_with("# kvmx.toml: one VM for this project."));
    let list = sandbox.kvmx().args(["list", "--json"]).output().unwrap();
    let entries: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(entries[0]["name"], "web-app");
    assert_eq!(entries[0]["dir"], project.to_str().unwrap());
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("p");
    std::fs::write(project.join("kvmx.toml"), "[hardware]\nmemory = \"4G\"\n").unwrap();
    let output = sandbox.kvmx_in(&project).arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let (_, stderr) = output_text(&output);
    insta::assert_snapshot!(sandbox.filter(&stderr), @r"
    error: [SANDBOX]/p/kvmx.toml already exists
    hint: pass --force to overwrite it
    ");
    // The user's file is untouched.
    assert_eq!(
        std::fs::read_to_string(project.join("kvmx.toml")).unwrap(),
        "[hardware]\nmemory = \"4G\"\n"
    );
    sandbox
        .kvmx_in(&project)
        .args(["init", "--force"])
        .assert()
        .success();
}

#[test]
fn init_with_a_name_writes_it_into_the_file() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("folder");
    sandbox
        .kvmx()
        .args(["init", "folder", "--name", "builder"])
        .assert()
        .success();
    let text = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    assert!(text.contains("\nname = \"builder\"\n"), "{text}");
    let show = sandbox
        .kvmx()
        .args(["config", "show", "builder", "--json"])
        .output()
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(config["vm"]["name"], "builder");
}

#[test]
fn a_name_taken_by_another_folder_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.dir("one");
    sandbox.dir("two");
    sandbox
        .kvmx()
        .args(["init", "one", "--name", "same"])
        .assert()
        .success();
    let output = sandbox
        .kvmx()
        .args(["init", "two", "--name", "same"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let (_, stderr) = output_text(&output);
    insta::assert_snapshot!(sandbox.filter(&stderr), @r#"
    error: the name "same" is already registered for [SANDBOX]/one
    hint: pick another name with --name, or set vm.name in kvmx.toml
    "#);
    assert!(!sandbox.root().join("two/kvmx.toml").exists());
}

#[test]
fn init_points_a_legacy_project_to_import() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("old");
    std::fs::write(project.join("kvmxfile"), "memory=\"512\"\n").unwrap();
    let output = sandbox.kvmx_in(&project).arg("init").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (_, stderr) = output_text(&output);
    assert!(stderr.contains("hint: run `kvmx import`"), "{stderr}");
}

#[test]
fn a_bad_name_is_a_usage_error() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .kvmx()
        .args(["init", "x", "--name", "no/slashes"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (_, stderr) = output_text(&output);
    assert!(
        stderr.starts_with("error: --name: invalid VM name \"no/slashes\""),
        "{stderr}"
    );
}
