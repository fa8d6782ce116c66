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
    let session = start(&template, &args.options, None, context, output)?;
    let status = session
        .vm()
        .guest()
        .map_err(CommandError::from)
        .and_then(|guest| run_ssh(guest.target(), &args.command));
    finish(session, status, "the command")
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

fn erase_on_signal(vm: Vm) -> Result<(), CommandError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let _ = disposable::erase(&vm);
            std::process::exit(130);
        }
    });
    Ok(())
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
