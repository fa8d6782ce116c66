use crate::{Sandbox, output_text};

#[test]
fn completions_cover_the_commands() {
    let sandbox = Sandbox::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = sandbox
            .kvmx()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success(), "{shell}");
        let (stdout, _) = output_text(&output);
        for command in ["init", "import", "list", "config"] {
            assert!(
                stdout.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let bash = sandbox
        .kvmx()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    // The script is valid bash.
    let mut check = std::process::Command::new("bash")
        .args(["-n"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check.stdin.take().unwrap().write_all(&bash.stdout).unwrap();
    assert!(check.wait().unwrap().success());
}

#[test]
fn the_man_page_documents_every_command() {
    let sandbox = Sandbox::new();
    let output = sandbox.kvmx().arg("man").output().unwrap();
    assert!(output.status.success());
    let (stdout, _) = output_text(&output);
    assert!(stdout.starts_with(".ie \\n(.g .ds Aq"), "not roff");
    for command in ["init", "import", "list", "config", "completions"] {
        assert!(
            stdout.contains(&format!("kvmx\\-{command}")) || stdout.contains(command),
            "{command}"
        );
    }
}

#[test]
fn help_lists_only_working_commands() {
    let sandbox = Sandbox::new();
    let output = sandbox.kvmx().arg("--help").output().unwrap();
    let (stdout, _) = output_text(&output);
    insta::assert_snapshot!(stdout);
}

#[test]
fn usage_errors_exit_2() {
    let sandbox = Sandbox::new();
    let output = sandbox.kvmx().arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
