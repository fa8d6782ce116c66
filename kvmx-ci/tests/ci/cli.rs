//! The command line without VMs: help, job checks, errors, completions.

use crate::{Sandbox, output_text};

#[test]
fn check_names_the_file_line_and_column_of_a_bad_key() {
    let sandbox = Sandbox::new();
    sandbox.write_job(
        "bad",
        "[source]\nurl = \"/srv/repo\"\nbrnach = \"main\"\nverify = \"none\"\n\n\
         [vm]\ntemplate = \"t\"\nfresh = \"disposable\"\n\n[[step]]\nname = \"a\"\nrun = \"true\"\n",
    );
    let output = sandbox.kvmx_ci().arg("check").output().unwrap();
    let (_, stderr) = output_text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let stderr = sandbox.filter(&stderr);
    assert!(
        stderr.contains("[SANDBOX]/kvmx/config/ci/bad.toml:3:1"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `branch`?"), "{stderr}");
}

#[test]
fn a_good_job_checks_and_an_unknown_one_is_named() {
    let sandbox = Sandbox::new();
    sandbox.write_job(
        "good",
        "[source]\nurl = \"/srv/repo\"\nverify = \"none\"\n\n\
         [vm]\ntemplate = \"t\"\nfresh = \"disposable\"\n\n[[step]]\nname = \"a\"\nrun = \"true\"\n",
    );
    let output = sandbox.kvmx_ci().arg("check").output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let output = sandbox.kvmx_ci().args(["run", "goood"]).output().unwrap();
    let (_, stderr) = output_text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("good"), "{stderr}");
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let sandbox = Sandbox::new();
    let output = sandbox
        .kvmx_ci()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("kvmx-ci"));
    let output = sandbox.kvmx_ci().arg("man").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(".TH kvmx-ci"));
}

#[test]
fn help_lists_every_command() {
    let sandbox = Sandbox::new();
    let output = sandbox.kvmx_ci().arg("--help").output().unwrap();
    assert!(output.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&output.stdout));
}
