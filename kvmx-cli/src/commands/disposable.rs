//! `kvmx disposable`, `disposable-run`, `disposable-name`: throwaway VMs
//! made from a template.

use std::sync::atomic::{AtomicBool, Ordering};

use camino::Utf8PathBuf;
use kvmx_provision::Vm;
use kvmx_provision::disposable::{self, Disposable, DisposableOptions};

use super::Context;
use super::access::run_ssh;
use super::guest::exit_with;
use crate::cli::{DisposableArgs, DisposableNameArgs, DisposableOptionArgs, DisposableRunArgs};
use crate::error::{CliError, CommandError};
use crate::output::Output;
use crate::output::Prefixed;

pub fn run(args: &DisposableArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let Some(template) = &args.template else {
        let erased = disposable::sweep(&context.layout);
        if output.json {
            output.json_result(&serde_json::json!({ "erased": erased }));
        } else if erased.is_empty() {
            output.info("No disposables were left behind");
        } else {
            output.info(&format!("Erased {}", erased.join(", ")));
        }
        return Ok(());
    };
    let template = context.load_vm(Some(template), output)?;
    // A command runs through kvmx's agent when the guest has it; a shell
    // (no command) is a login over SSH.
    let agent = !args.command.is_empty();
    let session = start_with(&template, &args.options, None, agent, context, output)?;
    let status = run_command(&session, &args.command);
    finish(session, status, "the command")
}

/// Runs `words` in the disposable: through its agent when it has one,
/// else over SSH, the same to the user but for the time it takes.
fn run_command(
    session: &Disposable,
    words: &[String],
) -> Result<std::process::ExitStatus, CommandError> {
    let terminal = super::agent_io::terminal_wanted();
    match session.agent_command(words, terminal.clone())? {
        Some(command) => super::agent_io::run(command, terminal.is_some(), &FORWARD),
        None => session
            .vm()
            .guest()
            .map_err(CommandError::from)
            .and_then(|guest| run_ssh(guest.target(), words)),
    }
}

pub fn run_script(
    args: &DisposableRunArgs,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    if !args.file.is_file() {
        return Err(CliError::NoFile(args.file.clone()).into());
    }
    let template = context.load_vm(Some(&args.template), output)?;
    let session = start(&template, &args.options, None, context, output)?;
    let status = session.vm().guest().and_then(|guest| {
        guest.run_script(&args.file, &args.args, args.root, &mut Prefixed::new(""))
    });
    finish(
        session,
        status.map_err(CommandError::from),
        args.file.as_str(),
    )
}

pub fn named(
    args: &DisposableNameArgs,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let name = args.name.parse().map_err(|problem| CliError::BadValue {
        argument: args.name.clone(),
        problem,
    })?;
    let template = context.load_vm(Some(&args.template), output)?;
    let session = start(&template, &args.options, Some(name), context, output)?;
    let name = session.vm().name().to_string();
    session.release()?;
    output.info(&format!(
        "{name} is up: `kvmx ssh {name}` reaches it; `kvmx stop {name}` erases it"
    ));
    Ok(())
}

/// Makes and boots a disposable of `template`. It is erased if this
/// process is interrupted (SIGINT, SIGTERM, SIGHUP) before it ends.
pub(crate) fn start(
    template: &Vm,
    options: &DisposableOptionArgs,
    name: Option<kvmx_core::config::values::VmName>,
    context: &Context,
    output: &Output,
) -> Result<Disposable, CommandError> {
    start_with(template, options, name, false, context, output)
}

/// [`start`], for a command run through the agent when `agent`.
fn start_with(
    template: &Vm,
    options: &DisposableOptionArgs,
    name: Option<kvmx_core::config::values::VmName>,
    agent: bool,
    context: &Context,
    output: &Output,
) -> Result<Disposable, CommandError> {
    let options = DisposableOptions {
        name,
        memory: options
            .memory
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|problem| CliError::BadValue {
                argument: "--memory".into(),
                problem,
            })?,
        network: !options.no_network,
        shares: options
            .share
            .iter()
            .map(|share| parse_share(share, context))
            .collect::<Result<_, _>>()?,
        agent,
    };
    let session = Disposable::create(&context.layout, template, options)?;
    erase_on_signal(session.vm().clone())?;
    output.info(&format!(
        "Starting {} from {}",
        session.vm().name(),
        template.name()
    ));
    session.boot(
        &mut output.stages(),
        &mut Prefixed::new(session.vm().name().as_str()),
    )?;
    Ok(session)
}

/// Erases the disposable, then reports the command's status (or the error
/// that ended it); a guest that died under the command is said to have.
fn finish(
    session: Disposable,
    status: Result<std::process::ExitStatus, CommandError>,
    what: &str,
) -> Result<(), CommandError> {
    wait_if_interrupted();
    let alive = session.vm().is_running();
    let name = session.vm().name().to_string();
    session.erase()?;
    if !alive {
        return Err(CliError::DisposableDied {
            vm: name,
            what: what.to_owned(),
        }
        .into());
    }
    exit_with(status?, &format!("{what} exited"))
}

/// Set once a signal has come: the signal thread then erases the
/// disposable and ends kvmx with status 130.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The command running through the agent, if one does: a signal goes to
/// it first, and it ends as it will (its status is kvmx's).
static FORWARD: super::agent_io::Forward = super::agent_io::Forward::new();

/// How long a command that was passed a signal gets to end before kvmx
/// erases its disposable anyway.
const SIGNALLED_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn erase_on_signal(vm: Vm) -> Result<(), CommandError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        let mut forwarded = false;
        for signal in signals.forever() {
            if !forwarded && FORWARD.signal(signal) {
                // A second signal, or the grace's end, erases it.
                forwarded = true;
                let vm = vm.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(SIGNALLED_GRACE);
                    interrupt(&vm);
                });
                continue;
            }
            interrupt(&vm);
        }
    });
    Ok(())
}

/// Erases the disposable and ends kvmx with status 130.
fn interrupt(vm: &Vm) -> ! {
    INTERRUPTED.store(true, Ordering::SeqCst);
    super::agent_io::restore_terminal();
    let _ = disposable::erase(vm);
    std::process::exit(130);
}

/// Leaves the end to the signal thread once a signal has come (the guest
/// command may return first, as its connection drops).
fn wait_if_interrupted() {
    while INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

/// `HOST:GUEST`, the host folder taken from the current folder.
fn parse_share(
    text: &str,
    context: &Context,
) -> Result<(Utf8PathBuf, kvmx_core::config::values::GuestPath), CommandError> {
    let usage = |problem: String| CliError::BadShare {
        text: text.to_owned(),
        problem,
    };
    let (host, guest) = text
        .rsplit_once(':')
        .ok_or_else(|| usage("no `:` between the host and guest folders".into()))?;
    let guest = guest.parse().map_err(usage)?;
    let host = kvmx_core::config::resolve::absolute_from(&context.cwd, camino::Utf8Path::new(host));
    Ok((host, guest))
}
