//! What a POSIX shell makes of a command line, for tests of quoting.

/// The words `sh` passes on for `line` (run as `printf '%s\n' <line>`),
/// empty ones included.
pub fn words_seen_by_sh(line: &str) -> Vec<String> {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {line}"))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run sh");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8 words");
    text.strip_suffix('\n')
        .unwrap_or(&text)
        .split('\n')
        .map(String::from)
        .collect()
}
