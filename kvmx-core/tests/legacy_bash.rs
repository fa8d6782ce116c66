//! Differential test: the kvmxfile evaluator against GNU bash sourcing the
//! same text, plus the recorded bash output of the real user files.
//!
//! Both sides really run: bash sources the file, and the evaluator runs its
//! command substitutions through `ShRunner`. The one random command in the
//! fixtures is replaced by a fixed one in the text both sides get.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kvmx_core::legacy::shell::{Assignment, CommandRunner, ShRunner, ShellContext, evaluate};

const RANDOM_COMMAND: &str = "head -c 40 /dev/urandom | base64";
const FIXED_COMMAND: &str = "printf '%s' 'not random, forty bytes of fixed text....' | base64";

const PROVIDED: &[(&str, &str)] = &[
    ("VM", "example"),
    ("HOME", "/home/user"),
    ("KVMX_BASE", "/usr/share/kvmx"),
    ("GUEST_DISPLAY", "3"),
];

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn context(environment: &[(&str, &str)]) -> ShellContext {
    ShellContext {
        provided: map(PROVIDED),
        environment: map(environment),
    }
}

/// Prints, NUL-separated, `name`, then `S<value>` or `U` (unset) for every
/// name given after the file, then `+name` for every variable the file
/// created that was not asked for.
const BASH_SCRIPT: &str = r#"
declare -A __kvmx_seen
while IFS= read -r __kvmx_n; do __kvmx_seen[$__kvmx_n]=1; done < <(compgen -v)
source "$1"
shift
for __kvmx_n in "$@"; do
    __kvmx_seen[$__kvmx_n]=1
    if [[ -n ${!__kvmx_n+x} ]]; then printf '%s\0S%s\0' "$__kvmx_n" "${!__kvmx_n}"
    else printf '%s\0U\0' "$__kvmx_n"; fi
done
for __kvmx_n in $(compgen -v); do
    [[ $__kvmx_n == __kvmx_* || $__kvmx_n == PIPESTATUS || -n ${__kvmx_seen[$__kvmx_n]} ]] && continue
    printf '+%s\0' "$__kvmx_n"
done
"#;

struct BashResult {
    values: BTreeMap<String, Option<String>>,
    unexpected: Vec<String>,
}

/// Sources `source` with bash in an environment of exactly `provided` and
/// `environment` (like `env -i`).
fn bash(source: &str, environment: &[(&str, &str)], names: &[&str]) -> BashResult {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(source.as_bytes()).unwrap();
    let mut env = map(environment);
    env.extend(map(PROVIDED));
    let output = Command::new("bash")
        .arg("-c")
        .arg(BASH_SCRIPT)
        .arg("bash")
        .arg(file.path())
        .args(names)
        .env_clear()
        .envs(&env)
        .output()
        .expect("GNU bash must be installed to run this test");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "bash failed on {source:?}: {stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut result = BashResult {
        values: BTreeMap::new(),
        unexpected: Vec::new(),
    };
    let mut rest: Vec<&str> = stdout.split('\0').collect();
    rest.pop(); // after the last NUL
    let mut i = 0;
    while i < rest.len() {
        if let Some(name) = rest[i].strip_prefix('+') {
            result.unexpected.push(name.to_owned());
            i += 1;
        } else {
            let value = rest[i + 1].strip_prefix('S').map(str::to_owned);
            result.values.insert(rest[i].to_owned(), value);
            i += 2;
        }
    }
    result
}

/// The last value of each name.
fn finals(assignments: &[Assignment]) -> BTreeMap<String, String> {
    assignments
        .iter()
        .map(|a| (a.name.clone(), a.value.clone()))
        .collect()
}

/// Evaluates `source` and compares every assigned variable with bash.
fn assert_same_as_bash(what: &str, source: &str, environment: &[(&str, &str)]) {
    let ours = evaluate(source, &context(environment), &mut ShRunner)
        .unwrap_or_else(|e| panic!("{what}: evaluator rejected {source:?}: {e}"));
    let ours = finals(&ours);
    let names: Vec<&str> = ours.keys().map(String::as_str).collect();
    let bash = bash(source, environment, &names);
    for (name, value) in &ours {
        assert_eq!(
            bash.values[name].as_ref(),
            Some(value),
            "{what}: `{name}` differs from bash for {source:?}"
        );
    }
    assert!(
        bash.unexpected.is_empty(),
        "{what}: bash also assigned {:?} for {source:?}",
        bash.unexpected
    );
}

fn fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kvmxfiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kvmxfile"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures missing in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn fixtures_match_bash() {
    for (name, text) in fixtures() {
        let text = text.replace(RANDOM_COMMAND, FIXED_COMMAND);
        assert_same_as_bash(&name, &text, &[]);
    }
}

/// Returns a fixed string for the random command and refuses anything else.
struct FixtureRunner;

impl CommandRunner for FixtureRunner {
    fn run(&mut self, command: &str, _: &BTreeMap<String, String>) -> Result<String, String> {
        assert_eq!(command, RANDOM_COMMAND);
        Ok("fixed".to_owned())
    }
}

#[test]
fn fixtures_match_recorded_bash_output() {
    let placeholder = "<command-substitution:";
    for (name, text) in fixtures() {
        let path = format!(
            "{}/tests/fixtures/kvmxfiles/expected/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let expected: BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let context = ShellContext {
            provided: map(&[("VM", "example"), ("HOME", "/home/user")]),
            environment: BTreeMap::new(),
        };
        let ours = evaluate(&text, &context, &mut FixtureRunner).unwrap();
        let substituted: Vec<&str> = ours
            .iter()
            .filter(|a| a.substituted)
            .map(|a| a.name.as_str())
            .collect();
        let ours = finals(&ours);
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (var, value) in &expected {
            if value.starts_with(placeholder) {
                assert!(substituted.contains(&var.as_str()), "{name}: {var}");
            } else {
                assert_eq!(&ours[var], value, "{name}: {var}");
            }
        }
    }
}

#[test]
fn fixture_password_really_runs() {
    let (_, text) = &fixtures()[0];
    let ours = evaluate(text, &context(&[]), &mut ShRunner).unwrap();
    let password = ours.iter().find(|a| a.name == "password").unwrap();
    assert!(password.substituted);
    assert_eq!(password.value.len(), 56, "{}", password.value);
}

/// Extra environment variables for a case.
type Env = &'static [(&'static str, &'static str)];

/// Hand-written tricky files: `(what, source, extra environment)`.
const CASES: &[(&str, &str, Env)] = &[
    (
        "self-append chain",
        "port_mapping=\"hostfwd=tcp:127.0.0.1:9090-:9090\"          # Prometheus\nport_mapping=\"$port_mapping,hostfwd=tcp:127.0.0.1:9935-:9935\" # exporter\nport_mapping=\"$port_mapping,hostfwd=tcp:127.0.0.1:3000-:3000\"\n",
        &[],
    ),
    (
        "append starting undefined",
        "provision_command=\"$provision_command && /srv/shared/scripts/provision\"\nprovision_command=\"$provision_command && /srv/x\"\n",
        &[],
    ),
    (
        "undefined variables",
        "a=\"$nope,x\"\nb=$nope\nc=${nope}y\nd=\"${nope}\"\n",
        &[],
    ),
    (
        "nested defaults",
        "a=${nope:-${VM}}\nb=\"${nope:-${also:-\"deep $HOME\"}}\"\nc=${nope:-${also:-${VM:+v$VM}}}\n",
        &[],
    ),
    (
        "default and alternative forms",
        "empty=\na=${VM-x}/${empty-x}/${empty:-x}/${nope-x}/${nope:-x}\nb=${VM:+y}/${empty:+y}/${empty+y}/${nope+y}/${nope:+y}\n",
        &[],
    ),
    (
        "hash inside quotes and words",
        "a=\"x # not a comment\"\nb='#also not'\nc=x#y\nd=\"q\" # comment \"with' quotes\ne=#x\nf=1 # c\ng=1#c\nh=$nope#y\n",
        &[],
    ),
    (
        "comment lines with quotes",
        "# it's a \"comment\n  # indented `comment` $(not run)\na=1\n#b=2\n",
        &[],
    ),
    (
        "escapes in double quotes",
        "a=\"\\$HOME \\\"q\\\" \\\\ \\` \\a \\n \\' \\}\"\n",
        &[],
    ),
    (
        "escapes in bare words",
        "a=\\$HOME\\ x\\\"\\'\\\\\\a\nb=\\#x\nc=\\~\n",
        &[],
    ),
    (
        "single quotes are literal",
        "a='$HOME \"x\" \\n `date` ${x:-y} \\'\n",
        &[],
    ),
    (
        "concatenation",
        "z=zed\na=\"x\"'y'$z\\z\"$(printf w)\"${z}\"\"''\nb=\"$VM\"'$VM'\"\\$VM\"\n",
        &[],
    ),
    (
        "multi-line double quotes",
        "a=\"line1\nline2 $VM\n\n\"\nb=after\n",
        &[],
    ),
    ("multi-line single quotes", "a='one\n  two\\\n'\nb=2\n", &[]),
    (
        "line continuations",
        "a=long\\\nvalue\nb=\"dq\\\ncontinued\"\nc=1 \\\n  d=2\n\\\ne=3\n",
        &[],
    ),
    (
        "command substitution with nested quotes",
        "a=\"$(printf '%s' \"a)b\")\"\nb=$(printf '%s' 'x\"y')\nc=\"$(printf '%s' \"${VM:-\"q}\"}\")\"\n",
        &[],
    ),
    (
        "nested command substitution",
        "a=$(printf '<%s>' \"$(printf in)\")\nb=\"$(printf '%s' \"$( (printf 'x)') )\")\"\n",
        &[],
    ),
    (
        "backticks",
        "a=`printf x`\nb=`printf '%s' \\`printf in\\``\nc=\"`printf '%s' \\\"q\\\"`\"\nd=`printf '%s' \\$HOME \"\\$VM\"`\n",
        &[],
    ),
    (
        "substitution is not word-split or globbed",
        "a=$(printf 'a  b\\n*\\n')\nb=`printf ' lead  *  trail '`\nc=x$(printf '  y  ')z\n",
        &[],
    ),
    (
        "trailing newlines stripped",
        "a=$(printf 'x\\n\\ny\\n\\n\\n')\nb=\"$(printf '\\n\\n')\"\nc=$(printf 'x\\r\\n')\n",
        &[],
    ),
    (
        "substitution sees earlier variables",
        "user=alice\na=$(printf '%s' \"$user@$VM:$HOME:$KVMX_BASE:$GUEST_DISPLAY\")\nuser=bob\nb=`printf '%s' \"$user\"`\n",
        &[],
    ),
    (
        "command substitution with a comment",
        "a=$(printf x # comment with ) and '\n)\n",
        &[],
    ),
    (
        "failing command keeps its output",
        "a=$(printf out; exit 3)\nb=$(false)\n",
        &[],
    ),
    (
        "default runs a command",
        "a=${nope:-$(printf d)}\nb=\"${VM:+$(printf '%s' \"$VM\")}\"\n",
        &[],
    ),
    (
        "environment fallback",
        "a=$FOO\nb=\"${FOO:-unset}\"\nc=$LANG\n",
        &[("FOO", "from env"), ("LANG", "C.UTF-8")],
    ),
    (
        "file overrides provided and environment",
        "VM=changed\na=$VM\nFOO=mine\nb=$FOO\nc=$(printf '%s' \"$FOO-$VM\")\n",
        &[("FOO", "env")],
    ),
    (
        "empty values",
        "a=\nb=\"\"\nc=''\nd=$nope\ne=\"$nope\"\nf=${nope:-}\n",
        &[],
    ),
    (
        "export",
        "export a=1\nexport b=$a\nexport c=\"x y\"\nd=$c\n",
        &[],
    ),
    (
        "several assignments per line",
        "a=1 b=$a\tc=\"$b$a\"   d=x # comment\n",
        &[],
    ),
    (
        "tilde",
        "a=~\nb=~/x\nc=x:~:~/y\nd=\"~\"\ne=~\"/x\"\nf=${nope:-~/z}\ng=\\~\nh=a~b\ni='~'\nj=${nope:-a:~}\nk=~''/x\n",
        &[],
    ),
    ("tilde after HOME changes", "HOME=/elsewhere\na=~/x\n", &[]),
    ("append operator", "a+=x\na+=\"$a\"\nVM+=-suffix\n", &[]),
    (
        "lonely dollar signs",
        "a=$\nb=\"a$\"\nc=$/x\nd=\"$ x\"\ne=${nope:-$}\nf=\"$'x'\"\ng=100$\n",
        &[],
    ),
    (
        "braces and globs",
        "a={x}\nb=x}\nc=\"}\"\nd=*\ne=/etc/*\nf=[a]?\n",
        &[],
    ),
    (
        "quotes inside default words",
        "a=${x:-'q'}\nb=\"${x:-'q'}\"\nc=\"${x:-\\}}\"\nd=\"${x:-\"a b\"}\"\ne=${x:-a b}\nf=${x:-;}\ng=\"${x:-\"}\"}\"\nh=${x:-\\'}\ni=\"${x:-\\'}\"\n",
        &[],
    ),
    (
        "defaults spanning lines",
        "a=${x:-a\nb}\nb=\"${x:-c\\\nd}\"\n",
        &[],
    ),
    ("carriage returns", "a=1\r\nb=\"2\"\r\n", &[]),
    ("unicode", "a=\"héllo ✓\"\nb=ünï'cödé'\n", &[]),
    ("equals signs in values", "a=x=y\nb==\nc=\"=\"\n", &[]),
    (
        "defaulted variable from environment",
        "a=$PATH\nb=${TERM:-none}\n",
        &[("PATH", "/usr/bin:/bin"), ("TERM", "xterm")],
    ),
    (
        "name boundaries",
        "a=$VM_suffix\nb=${VM}_suffix\nc=$VM.x/$VM-x/$VM:$HOME\nd=\"$VM\"x\"$HOME\"\ne=$VM$GUEST_DISPLAY$\n",
        &[],
    ),
    (
        "closing characters inside substitutions in defaults",
        "a=\"${x:-$(printf '%s' \"}\")}\"\nb=${x:-`printf '%s' }`}\nc=${x:-$(printf '%s' ')')}\n",
        &[],
    ),
    ("tabs and spaces in quotes", "a=\"\tx  y\t\"\nb='  '\n", &[]),
    ("leading blanks", "   a=1\n\tb=2\n  # c\n", &[]),
    ("no trailing newline", "a=x\\", &[]),
    ("trailing blank lines", "a=\"x\"\n\n\n", &[]),
    ("only comments", "# nothing\n\n#a=1\n", &[]),
    (
        "apostrophe in double quotes",
        "a=\"it's\"\nb='say \"hi\"'\n",
        &[],
    ),
    (
        "backtick inside double quotes inside command",
        "a=\"$(printf '%s' \"`printf in`\")\"\n",
        &[],
    ),
];

#[test]
fn tricky_files_match_bash() {
    assert!(CASES.len() >= 30);
    for (what, source, environment) in CASES {
        assert_same_as_bash(what, source, environment);
    }
}

/// Word pieces glued in pairs, bare and inside double quotes: every pair the
/// evaluator accepts must match bash.
#[test]
fn generated_pairs_match_bash() {
    let pieces = [
        "$VM",
        "${VM}",
        "${nope:-d}",
        "${VM:+a}",
        "\\$",
        "\\\\",
        "'s q'",
        "\"d q\"",
        "~",
        ":",
        "#",
        "$",
        "\\\"",
        "}",
        "$(printf c)",
        "`printf b`",
        "x",
        "\\\n",
    ];
    let mut accepted = 0;
    let mut sources = Vec::new();
    for a in pieces {
        for b in pieces {
            sources.push(format!("v={a}{b}\n"));
            if !a.starts_with('"') && !b.starts_with('"') {
                sources.push(format!("v=\"{a}{b}\"\n"));
            }
        }
    }
    for source in &sources {
        if evaluate(source, &context(&[]), &mut ShRunner).is_ok() {
            assert_same_as_bash("generated", source, &[]);
            accepted += 1;
        }
    }
    eprintln!("{accepted} of {} generated files accepted", sources.len());
    assert!(
        accepted * 10 >= sources.len() * 9,
        "{accepted} of {}",
        sources.len()
    );
}
