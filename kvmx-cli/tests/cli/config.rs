use crate::{Sandbox, output_text};

#[test]
fn config_show_prints_the_effective_config() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("svc");
    std::fs::write(
        project.join("kvmx.toml"),
        "[hardware]\nmemory = 2048\n\n[[shares]]\nid = \"code\"\nhost = \"src\"\nguest = \"/srv/code\"\n",
    )
    .unwrap();
    let nested = sandbox.dir("svc/src/deep");
    let output = sandbox
        .kvmx_in(&nested)
        .args(["config", "show", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(config["vm"]["name"], "svc");
    assert_eq!(config["vm"]["hostname"], "svc");
    assert_eq!(config["ssh"]["user"], "user");
    assert_eq!(config["hardware"]["memory"], "2G");
    assert_eq!(
        config["shares"][0]["host"],
        project.join("src").to_str().unwrap()
    );
    let image = config["image"]["path"].as_str().unwrap();
    assert_eq!(
        image,
        sandbox
            .root()
            .join("kvmx/data/svc/box.img")
            .to_str()
            .unwrap()
    );

    let text = sandbox
        .kvmx_in(&nested)
        .args(["config", "show"])
        .output()
        .unwrap();
    let (stdout, _) = output_text(&text);
    assert!(stdout.contains("[hardware]\nmemory = \"2G\""), "{stdout}");
}

#[test]
fn config_errors_point_at_the_line_and_exit_3() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("p");
    std::fs::write(
        project.join("kvmx.toml"),
        "[hardware]\ncpus = 2\nmemroy = \"2G\"\n",
    )
    .unwrap();
    let output = sandbox
        .kvmx_in(&project)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let (_, stderr) = output_text(&output);
    insta::assert_snapshot!(sandbox.filter(&stderr), @r#"
    error: [SANDBOX]/p/kvmx.toml:3:1: unknown key `memroy`
     3 | memroy = "2G"
         ^
    hint: did you mean `memory`?
    "#);
}

#[test]
fn outside_a_project_the_error_says_what_to_do() {
    let sandbox = Sandbox::new();
    let output = sandbox.kvmx().args(["config", "show"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (_, stderr) = output_text(&output);
    insta::assert_snapshot!(sandbox.filter(&stderr), @r"
    error: no kvmx.toml or kvmxfile in [SANDBOX] or any folder above it
    hint: run `kvmx init` to make a project here, or name a registered VM (see `kvmx list`)
    ");
}

#[test]
fn an_unknown_vm_lists_the_known_ones() {
    let sandbox = Sandbox::new();
    sandbox.dir("alpha");
    sandbox.kvmx().args(["init", "alpha"]).assert().success();
    let output = sandbox
        .kvmx()
        .args(["config", "show", "beta"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let (_, stderr) = output_text(&output);
    insta::assert_snapshot!(stderr, @r#"
    error: no VM named "beta"
    hint: registered VMs: alpha
    "#);
}

#[test]
fn a_legacy_only_folder_works_for_every_command() {
    let sandbox = Sandbox::new();
    let project = sandbox.dir("legacy");
    std::fs::write(project.join("kvmxfile"), "memory=\"768\"\nuser=\"dev\"\n").unwrap();
    let output = sandbox
        .kvmx()
        .args(["config", "show", "legacy", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(config["hardware"]["memory"], "768M");
    assert_eq!(config["ssh"]["user"], "dev");
}

#[test]
fn the_example_projects_load() {
    let sandbox = Sandbox::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for entry in std::fs::read_dir(examples).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("kvmx.toml").is_file() {
            let output = sandbox
                .kvmx()
                .args(["config", "show"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}: {output:?}", dir.display());
        }
    }
}
