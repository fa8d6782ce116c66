//! `kvmx disposable`, `disposable-run`, `disposable-name`: throwaway VMs
//! made from a template.

use std::sync::atomic::{AtomicBool, Ordering};

use camino::Utf8PathBuf;
use kvmx_provision::Vm;
use kvmx_provision::disposable::{self, Disposable, DisposableOptions};

use super::Context;
use super::access::run_ssh;
use super::guest::{Prefixed, exit_with};
use super::lifecycle::load_vm;
use crate::cli::{DisposableArgs, DisposableNameArgs, DisposableOptionArgs, DisposableRunArgs};
use crate::error::{CommandError, Kind};
use crate::output::Output;

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
    let template = load_vm(Some(template), context, output)?;
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
        return Err(CommandError::usage(format!(
            "there is no file at {}",
            args.file
        )));
    }
    let template = load_vm(Some(&args.template), context, output)?;
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
    let name = args
        .name
        .parse()
        .map_err(|message: String| CommandError::usage(format!("{}: {message}", args.name)))?;
    let template = load_vm(Some(&args.template), context, output)?;
    let session = start(&template, &args.options, Some(name), context, output)?;
    let name = session.vm().name.to_string();
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
            .map_err(|message: String| CommandError::usage(format!("--memory: {message}")))?,
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
        session.vm().name,
        template.name
    ));
    {
        let mut stages = output.stages();
        session.boot(&mut stages, &mut Prefixed::new(session.vm().name.as_str()))?;
        stages.finish();
    }
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
    let name = session.vm().name.to_string();
    session.erase()?;
    if !alive {
        return Err(CommandError {
            kind: Kind::Failure,
            error: format!("{name} stopped or crashed while {what} ran; it has been erased").into(),
            hint: None,
        });
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
    let usage = |why: String| {
        CommandError::usage(format!("--share {text}: {why}"))
            .with_hint("write it as HOST_FOLDER:/guest/folder")
    };
    let (host, guest) = text
        .rsplit_once(':')
        .ok_or_else(|| usage("no `:` between the host and guest folders".into()))?;
    let guest = guest.parse().map_err(usage)?;
    let host = kvmx_core::config::resolve::absolute_from(&context.cwd, camino::Utf8Path::new(host));
    Ok((host, guest))
}
