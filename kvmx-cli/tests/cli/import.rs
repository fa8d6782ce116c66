use crate::{Sandbox, fixture, output_text};

#[test]
fn import_writes_an_equivalent_commented_kvmx_toml() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("onionprobe");
    std::fs::copy(
        fixture("onionprobe-1.1.2.kvmxfile"),
        project.join("kvmxfile"),
    )
    .unwrap();
    let before = sandbox
        .kvmx_in(&project)
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    assert!(before.status.success(), "{before:?}");

    let output = sandbox.kvmx_in(&project).arg("import").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    assert!(
        text.contains("# kvmxfile line 187: memory=\"2048\"\nmemory = \"2G\""),
        "{text}"
    );
    assert!(
        text.contains(
            "# kvmxfile line 137: port_mapping item \"hostfwd=tcp:127.0.0.1:9935-:9935\""
        ),
        "{text}"
    );

    // Now read from kvmx.toml: the same effective config.
    let after = sandbox
        .kvmx_in(&project)
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(before.stdout).unwrap(),
        String::from_utf8(after.stdout).unwrap()
    );
    let path = sandbox
        .kvmx_in(&project)
        .args(["config", "path"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(path.stdout)
            .unwrap()
            .trim_end()
            .ends_with("onionprobe/kvmx.toml")
    );
}

#[test]
fn import_refuses_to_overwrite_without_force() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("p");
    std::fs::write(project.join("kvmxfile"), "memory=\"512\"\n").unwrap();
    std::fs::write(project.join("kvmx.toml"), "# mine\n").unwrap();
    let output = sandbox.kvmx_in(&project).arg("import").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(project.join("kvmx.toml")).unwrap(),
        "# mine\n"
    );
    sandbox
        .kvmx_in(&project)
        .args(["import", "--force"])
        .assert()
        .success();
    assert!(
        std::fs::read_to_string(project.join("kvmx.toml"))
            .unwrap()
            .contains("memory = \"512M\"")
    );
}

#[test]
fn import_reports_unknown_keys_with_their_line() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("p");
    std::fs::write(project.join("kvmxfile"), "memory=\"512\"\nmystery=\"1\"\n").unwrap();
    let output = sandbox
        .kvmx_in(&project)
        .args(["import", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let (stdout, stderr) = output_text(&output);
    assert!(
        stderr.contains("kvmxfile:2: `mystery` is not a kvmx setting; it is ignored"),
        "{stderr}"
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["warnings"][0]["line"], 2);
    let text = std::fs::read_to_string(project.join("kvmx.toml")).unwrap();
    assert!(
        text.contains("kvmxfile line 2: `mystery` is not a kvmx setting"),
        "{text}"
    );
}

#[test]
fn a_broken_kvmxfile_is_a_config_error_naming_the_line() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("p");
    std::fs::write(
        project.join("kvmxfile"),
        "memory=\"512\"\nif true; then x=1; fi\n",
    )
    .unwrap();
    let output = sandbox.kvmx_in(&project).arg("import").output().unwrap();
    assert_eq!(output.status.code(), Some(3));
    let (_, stderr) = output_text(&output);
    assert!(
        sandbox
            .filter(&stderr)
            .starts_with("error: [SANDBOX]/p/kvmxfile:2: `if`"),
        "{stderr}"
    );
    assert!(!project.join("kvmx.toml").exists());
}

#[test]
fn every_fixture_imports() {
    let sandbox = Sandbox::new();
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "kvmxfile") {
            continue;
        }
        let name = path
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .replace('.', "-");
        let project = sandbox.dir(&name);
        std::fs::copy(&path, project.join("kvmxfile")).unwrap();
        let output = sandbox.kvmx().arg("import").arg(&project).output().unwrap();
        assert!(output.status.success(), "{name}: {output:?}");
        sandbox
            .kvmx_in(&project)
            .args(["config", "show"])
            .assert()
            .success();
    }
}
