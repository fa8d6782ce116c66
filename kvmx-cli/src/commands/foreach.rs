//! `kvmx foreach`: one subcommand on many VMs, a bounded number at once,
//! through the libraries (`up_with`, `stop_with`, `upgrade`, the guest
//! API), never by running kvmx again. Every line a VM's work prints goes
//! behind its name; a table of results ends it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use kvmx_core::Registry;
use kvmx_provision::guest::Lines;
use kvmx_provision::{StopOptions, UpOptions, Upgraded, Vm};
use serde::Serialize;

use super::Context;
use crate::cli::ForeachArgs;
use crate::error::{CliError, CommandError};
use crate::output::{Output, Prefixed};

/// What to do to each VM.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Up,
    Stop,
    Restart,
    Status,
    Provision,
    Upgrade,
    /// A command in the guest, its words as `kvmx ssh -- WORDS` takes them.
    Ssh(Vec<String>),
}

impl Action {
    fn parse(words: &[String]) -> Result<Action, CliError> {
        let (first, rest) = words
            .split_first()
            .ok_or_else(|| CliError::NotForeach(String::new()))?;
        Ok(match first.as_str() {
            "up" => Action::Up,
            "stop" => Action::Stop,
            "restart" => Action::Restart,
            "status" => Action::Status,
            "provision" => Action::Provision,
            "upgrade" => Action::Upgrade,
            "ssh" => {
                let words = rest.strip_prefix(&["--".to_owned()]).unwrap_or(rest);
                if words.is_empty() {
                    // An interactive login per VM makes no sense here.
                    return Err(CliError::NotForeach("ssh without a command".into()));
                }
                Action::Ssh(words.to_vec())
            }
            other => return Err(CliError::NotForeach(other.into())),
        })
    }
}

/// One VM's line in the summary.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    vm: String,
    /// `ok`, `failed` or `skipped`.
    result: &'static str,
    /// The error, the skip's reason, or the guest command's status.
    detail: Option<String>,
    seconds: f64,
}

pub fn run(args: &ForeachArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let action = Action::parse(&args.command)?;
    let vms = select(args, context, output)?;
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..usize::from(args.jobs).min(vms.len()) {
            scope.spawn(|| {
                while let Some(vm) = vms.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let outcome = act(vm, &action, output);
                    outcomes.lock().expect("no worker panics").push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().expect("no worker panicked");
    outcomes.sort_by(|a, b| a.vm.cmp(&b.vm));
    report(&outcomes, output);
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result == "failed")
        .map(|o| o.vm.clone())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(CliError::SomeFailed {
        failed: failed.len(),
        of: outcomes.len(),
        names: failed,
    }
    .into())
}

/// The VMs the arguments name, in name order.
fn select(args: &ForeachArgs, context: &Context, output: &Output) -> Result<Vec<Vm>, CommandError> {
    let registry = Registry::load(&context.layout)?;
    let mut names: Vec<&String> = Vec::new();
    for pattern in &args.vms {
        let matching: Vec<&String> = registry
            .vms
            .keys()
            .filter(|name| glob_matches(pattern, name))
            .collect();
        if matching.is_empty() {
            return Err(CliError::NothingSelected(format!(
                ": nothing registered matches {pattern}"
            ))
            .into());
        }
        names.extend(matching);
    }
    if args.all || args.managed || (args.vms.is_empty() && (args.running || args.stopped)) {
        names.extend(registry.vms.keys());
    }
    names.sort();
    names.dedup();
    let mut vms = Vec::new();
    for name in names {
        let vm = context.load_vm(Some(name), output)?;
        let running = vm.is_running();
        let wanted = (!args.managed || vm.config().supervise.manage)
            && (!args.running || running)
            && (!args.stopped || !running);
        if wanted {
            vms.push(vm);
        }
    }
    if vms.is_empty() {
        return Err(CliError::NothingSelected(String::new()).into());
    }
    Ok(vms)
}

/// `*` any run of characters, `?` one character; anything else itself.
fn glob_matches(pattern: &str, name: &str) -> bool {
    fn matches(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|skip| matches(rest, &name[skip..])),
            Some(('?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
            Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name)
}

/// Does `action` to `vm`, its lines behind its name.
fn act(vm: &Vm, action: &Action, output: &Output) -> Outcome {
    let started = Instant::now();
    let name = vm.name().to_string();
    let mut lines = Prefixed::new(&name).keep_stdout_for_json(output.json);
    let done = |result: Result<Option<String>, kvmx_provision::Error>| match result {
        Ok(detail) => ("ok", detail),
        Err(error) => ("failed", Some(error.to_string())),
    };
    let (result, detail) = match action {
        Action::Up => done(vm.up_with(&UpOptions::new(), &mut lines).map(|_| None)),
        Action::Stop => done(vm.stop_with(&StopOptions::new(), &mut lines).map(|_| None)),
        Action::Restart => done(
            vm.stop_with(&StopOptions::new(), &mut lines)
                .and_then(|_| vm.up_with(&UpOptions::new(), &mut lines))
                .map(|_| None),
        ),
        Action::Status => done(
            vm.status()
                .map(|status| Some(kvmx_core::config::spelling(&status.state))),
        ),
        Action::Provision => done(vm.provision(&mut lines).map(|()| None)),
        Action::Upgrade => match vm.upgrade(&mut lines) {
            Ok(Upgraded::Skipped { reason }) => ("skipped", Some(reason)),
            Ok(_) => ("ok", None),
            Err(error) => ("failed", Some(error.to_string())),
        },
        Action::Ssh(words) => match run_in_guest(vm, words, &mut lines) {
            Ok(0) => ("ok", None),
            Ok(code) => ("failed", Some(format!("exit status {code}"))),
            Err(error) => ("failed", Some(error.to_string())),
        },
    };
    Outcome {
        vm: name,
        result,
        detail,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }
}

/// Runs `words` in the guest, its output line by line into `lines`.
fn run_in_guest(
    vm: &Vm,
    words: &[String],
    lines: &mut Prefixed,
) -> Result<i32, kvmx_provision::Error> {
    let guest = vm.guest()?;
    let mut sink = Lines::new(lines);
    let code = guest.exec(words).stream(&mut sink)?;
    sink.finish();
    Ok(code)
}

fn report(outcomes: &[Outcome], output: &Output) {
    if output.json {
        output.json_result(&outcomes);
        return;
    }
    let width = outcomes
        .iter()
        .map(|o| o.vm.len())
        .max()
        .unwrap_or(2)
        .max(2);
    output.result(&format!(
        "{:width$}  {:7}  {:>8}  DETAIL",
        "VM", "RESULT", "SECONDS"
    ));
    for outcome in outcomes {
        output.result(&format!(
            "{:width$}  {:7}  {:>8.1}  {}",
            outcome.vm,
            outcome.result,
            outcome.seconds,
            outcome.detail.as_deref().unwrap_or("")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches("web-*", "web-1"));
        assert!(glob_matches("web-?", "web-1"));
        assert!(glob_matches("*", "anything"));
        assert!(!glob_matches("web-?", "web-12"));
        assert!(!glob_matches("web", "web-1"));
        assert!(glob_matches("a*b*c", "aXbYc"));
    }

    #[test]
    fn subcommands_parse_and_others_are_refused() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Action::parse(&words(&["upgrade"])).unwrap(),
            Action::Upgrade
        );
        assert_eq!(
            Action::parse(&words(&["ssh", "--", "uname", "-a"])).unwrap(),
            Action::Ssh(words(&["uname", "-a"]))
        );
        assert!(Action::parse(&words(&["ssh"])).is_err());
        assert!(Action::parse(&words(&["console"])).is_err());
    }
}
