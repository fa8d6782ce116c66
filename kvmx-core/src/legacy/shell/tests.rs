//! Unit tests: error reporting and runner plumbing. Values are checked
//! against real bash in `tests/legacy_bash.rs`.

use super::*;

/// Answers every substitution with `<command>` and records what it ran.
#[derive(Default)]
struct EchoRunner {
    ran: Vec<(String, BTreeMap<String, String>)>,
}

impl CommandRunner for EchoRunner {
    fn run(&mut self, command: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        self.ran.push((command.to_owned(), vars.clone()));
        Ok(format!("<{command}>"))
    }
}

fn context() -> ShellContext {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    ShellContext {
        provided: map(&[("VM", "example"), ("HOME", "/home/user")]),
        environment: map(&[("HOME", "/ignored"), ("LANG", "C.UTF-8")]),
    }
}

fn eval(source: &str) -> Result<Vec<Assignment>, ShellError> {
    evaluate(source, &context(), &mut EchoRunner::default())
}

fn error(source: &str) -> ShellError {
    match eval(source) {
        Ok(values) => panic!("expected an error for {source:?}, got {values:?}"),
        Err(e) => e,
    }
}

/// Each unsupported construct, with the line the error must name.
const ERRORS: &[(&str, &str, usize)] = &[
    ("function parens", "a=1\nf() { a=2; }\n", 2),
    ("function keyword", "\nfunction f {\n a=1\n}\n", 2),
    ("function with space", "f ()\n{ :; }", 1),
    ("if", "a=1\nif true; then a=2; fi\n", 2),
    ("for", "for i in 1 2; do a=$i; done", 1),
    ("while", "# c\n\nwhile false; do :; done", 3),
    ("case", "case $a in *) ;; esac", 1),
    ("brace group", "{ a=1; }", 1),
    ("double bracket", "[[ -n $a ]] && a=1", 1),
    ("array", "a=1\nb=(x y)\n", 2),
    ("array append", "b+=(x)", 1),
    ("array element", "a[0]=x", 1),
    ("semicolon", "a=1; b=2", 1),
    ("semicolon alone", "a=1\n;\n", 2),
    ("and", "a=1 && b=2", 1),
    ("or", "a=1 || b=2", 1),
    ("pipe", "a=1 | cat", 1),
    ("background", "a=1 &", 1),
    ("redirection", "a=1 > out.txt", 1),
    ("redirection glued", "a=1>out.txt", 1),
    ("input redirection", "a=1\n\n< /dev/null", 3),
    ("subshell", "(a=1)", 1),
    ("paren in value", "a=x(y)", 1),
    ("source", "a=1\nsource other.kvmxfile", 2),
    ("dot", ". ./other", 1),
    ("command", "echo hello", 1),
    ("command after assignment", "a=b cmd", 1),
    ("unquoted spaces", "a=1\nb=two words\n", 2),
    ("space before =", "a = 1", 1),
    ("export without value", "export a", 1),
    ("export option", "export -n a=1", 1),
    ("export of several", "export a=1 b=$a", 1),
    ("export with a command", "export a=1 cmd", 1),
    ("declare", "declare -r a=1", 1),
    ("arithmetic", "a=$((1 + 2))", 1),
    ("old arithmetic", "a=$[1 + 2]", 1),
    ("arithmetic in quotes", "a=\"x\"\nb=\"n=$((1+1))\"", 2),
    ("substring", "a=${HOME:1}", 1),
    ("prefix removal", "a=${HOME#/}", 1),
    ("suffix removal", "a=${HOME%/*}", 1),
    ("replacement", "a=\"${HOME/home/house}\"", 1),
    ("length", "a=${#HOME}", 1),
    ("indirect", "a=${!HOME}", 1),
    ("assign default", "a=${b:=x}", 1),
    ("error if unset", "a=${b:?unset}", 1),
    ("case modification", "a=${HOME^^}", 1),
    ("array subscript", "a=${b[0]}", 1),
    ("bad substitution", "a=${}", 1),
    ("space in braces", "a=${a b}", 1),
    ("nested unsupported", "a=${b:-${HOME%/*}}", 1),
    ("positional", "a=$1", 1),
    ("all arguments", "a=\"$@\"", 1),
    ("exit status", "a=$?", 1),
    ("pid", "a=$$", 1),
    ("ansi-c quoting", "a=$'\\n'", 1),
    ("locale quoting", "a=$\"x\"", 1),
    ("other user's home", "a=~root/x", 1),
    ("bash variable read", "a=$RANDOM", 1),
    ("bash variable assigned", "\nSECONDS=1", 2),
    ("bash variable in braces", "a=${BASH_VERSION}", 1),
    ("defaulted variable missing", "a=$PATH", 1),
    ("unterminated double quote", "a=1\nb=\"x\n\ny=2\n", 2),
    ("unterminated single quote", "a='x\n", 1),
    ("unterminated in nested", "a=\"${b:-\"x}\"\n", 1),
    ("unterminated brace", "a=1\n\nb=${c:-d\n", 3),
    ("unterminated command", "a=$(echo (x)\n", 1),
    ("unterminated backtick", "a=1\nb=`date\n", 2),
    ("case in command", "a=$(case x in x) echo y;; esac)", 1),
    ("heredoc in command", "a=$(cat <<EOF\nx\nEOF\n)", 1),
];

#[test]
fn unsupported_constructs_name_their_line() {
    for (what, source, line) in ERRORS {
        let e = error(source);
        assert_eq!(e.line(), *line, "{what}: {source:?} gave {e}");
        assert!(
            e.to_string().starts_with(&format!("line {line}")),
            "{what}: {e}"
        );
    }
}

#[test]
fn error_messages() {
    let all: String = ERRORS
        .iter()
        .map(|(what, source, _)| format!("{what}: {}\n", error(source)))
        .collect();
    insta::assert_snapshot!(all);
}

#[test]
fn nothing_runs_when_a_later_line_is_wrong() {
    let mut runner = EchoRunner::default();
    let result = evaluate("a=$(touch x)\nb=1; c=2\n", &context(), &mut runner);
    assert_eq!(result.unwrap_err().line(), 2);
    assert!(runner.ran.is_empty());
}

#[test]
fn lookup_order_is_file_then_provided_then_environment() {
    let values = eval("a=$HOME:$LANG:$NOPE\nHOME=/h\nb=$HOME\nc=~").unwrap();
    let got: Vec<_> = values.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(got, ["/home/user:C.UTF-8:", "/h", "/h", "/h"]);
}

#[test]
fn every_assignment_is_kept_with_its_line() {
    let values = eval("a=1\n\n# c\nb=2 a=\"x\ny\"\na=$a$b\n").unwrap();
    let got: Vec<_> = values
        .iter()
        .map(|a| (a.name.as_str(), a.value.as_str(), a.line))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "1", 1),
            ("b", "2", 4),
            ("a", "x\ny", 4),
            ("a", "x\ny2", 6)
        ]
    );
}

#[test]
fn substitutions_are_marked_and_the_mark_travels() {
    let values = eval("a=$(x)\nb=\"$a-\"\nc=plain\nd=${a:+y}\ne=`y`$c").unwrap();
    let got: Vec<_> = values
        .iter()
        .map(|a| (a.name.as_str(), a.substituted))
        .collect();
    assert_eq!(
        got,
        [
            ("a", true),
            ("b", true),
            ("c", false),
            ("d", false),
            ("e", true)
        ]
    );
}

#[test]
fn runner_sees_the_command_text_and_known_variables() {
    let mut runner = EchoRunner::default();
    let source = "user=u\na=\"$(printf '%s' \"$user\" | tr a-z A-Z)\"\nb=`echo \\`x\\` \\$HOME`\n";
    let values = evaluate(source, &context(), &mut runner).unwrap();
    assert_eq!(runner.ran[0].0, "printf '%s' \"$user\" | tr a-z A-Z");
    assert_eq!(runner.ran[1].0, "echo `x` $HOME");
    let vars = &runner.ran[0].1;
    assert_eq!(vars["user"], "u");
    assert_eq!(vars["HOME"], "/home/user");
    assert_eq!(vars["LANG"], "C.UTF-8");
    assert_eq!(values[1].value, "<printf '%s' \"$user\" | tr a-z A-Z>");
}

#[test]
fn defaults_run_their_substitution_only_when_used() {
    let mut runner = EchoRunner::default();
    let values = evaluate("a=${VM:-$(x)}${NOPE:+$(y)}", &context(), &mut runner).unwrap();
    assert_eq!(values[0].value, "example");
    assert!(runner.ran.is_empty());
}

#[test]
fn runner_failure_names_the_line() {
    struct Failing;
    impl CommandRunner for Failing {
        fn run(&mut self, _: &str, _: &BTreeMap<String, String>) -> Result<String, String> {
            Err("no shell".to_owned())
        }
    }
    let e = evaluate("\n\na=\"$(date)\"", &context(), &mut Failing).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3: the command substitution `date` could not run: no shell"
    );
}

#[test]
fn sh_runner_strips_trailing_newlines_and_nul_bytes() {
    let vars = BTreeMap::from([("X".to_owned(), "1".to_owned())]);
    let out = ShRunner.run("printf 'a\\000b\\n\\n'; printf \"$X\\n\\n\"", &vars);
    assert_eq!(out.unwrap(), "ab\n\n1");
    assert_eq!(ShRunner.run("exit 3", &vars).unwrap(), "");
    assert!(ShRunner.run("printf '\\377'", &vars).is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("a={}x{}", "${b:-".repeat(10_000), "}".repeat(10_000));
    assert!(matches!(error(&deep), ShellError::Syntax { line: 1, .. }));
    let deep = format!("a={}{}", "$(".repeat(10_000), ")".repeat(10_000));
    assert!(matches!(
        error(&deep),
        ShellError::Unterminated { line: 1, .. }
    ));
}

#[test]
fn runaway_values_are_an_error_not_an_allocation_failure() {
    let source = format!("a=x\n{}", "a=$a$a$a$a$a$a$a$a\n".repeat(40));
    let e = error(&source);
    assert!(e.to_string().contains("more than"), "{e}");
    assert!(e.line() < 12, "{e}");
}

#[test]
fn tilde_without_home_names_its_column() {
    let e = evaluate(
        "a=x:~",
        &ShellContext::default(),
        &mut EchoRunner::default(),
    )
    .unwrap_err();
    assert_eq!(
        (e.line(), e.to_string().contains("column 5")),
        (1, true),
        "{e}"
    );
}
