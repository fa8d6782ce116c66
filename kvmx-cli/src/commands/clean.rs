//! `kvmx mat`, `kvmx pdf-cleaner`, `kvmx clamav`: files cleaned or scanned
//! in a disposable with no network and no shares, erased afterwards.

use camino::Utf8PathBuf;
use kvmx_core::config::resolve::absolute_from;
use kvmx_provision::clean::{self, Cleaner};
use kvmx_provision::{Observer, Vm};

use super::Context;
use crate::cli::{DisposableOptionArgs, SanitizeArgs};
use crate::error::{CliError, CommandError};
use crate::output::Output;

pub fn clean(
    args: &SanitizeArgs,
    cleaner: Cleaner,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    let (template, files) = template_and_paths(args, context, output)?;
    clean::check_targets(cleaner, &files)?;
    let cleaned = in_disposable(&template, context, output, |vm, progress| {
        clean::clean_in(vm, cleaner, &files, progress)
    })?;
    if output.json {
        output.json_result(&cleaned);
    } else {
        for result in cleaned.iter().filter_map(|item| item.result.as_ref()) {
            output.result(result.as_str());
        }
    }
    let errors: Vec<&str> = cleaned
        .iter()
        .filter_map(|item| item.error.as_deref())
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(CliError::NotCleaned(errors.into_iter().map(str::to_owned).collect()).into())
}

pub fn clamav(args: &SanitizeArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let (template, paths) = template_and_paths(args, context, output)?;
    let database = template.config().disposable.clamav_database.as_deref();
    clean::check_scan(&paths, database)?;
    let scan = in_disposable(&template, context, output, |vm, progress| {
        clean::scan_in(vm, &paths, database, progress)
    })?;
    if output.json {
        output.json_result(&scan);
    } else {
        for found in &scan.found {
            output.result(&format!("{}: {}", found.path, found.signature));
        }
    }
    if scan.found.is_empty() {
        output.info(&format!("ClamAV found nothing in {} path(s)", paths.len()));
        return Ok(());
    }
    Err(CliError::Infected(scan.found.len()).into())
}

/// The template VM and the paths made absolute.
fn template_and_paths(
    args: &SanitizeArgs,
    context: &Context,
    output: &Output,
) -> Result<(Vm, Vec<Utf8PathBuf>), CommandError> {
    let template = context.load_vm(Some(&args.template), output)?;
    let paths = args
        .paths
        .iter()
        .map(|path| absolute_from(&context.cwd, path))
        .collect();
    Ok((template, paths))
}

/// Runs `work` in a disposable of `template` with no network and no
/// shares, and erases it whatever the result.
fn in_disposable<T>(
    template: &Vm,
    context: &Context,
    output: &Output,
    work: impl FnOnce(&Vm, &mut dyn Observer) -> Result<T, kvmx_provision::Error>,
) -> Result<T, CommandError> {
    let isolated = DisposableOptionArgs {
        no_network: true,
        share: Vec::new(),
        memory: None,
    };
    let session = super::disposable::start(template, &isolated, None, context, output)?;
    let result = work(session.vm(), &mut output.stages());
    let erased = session.erase();
    let value = result?;
    erased?;
    Ok(value)
}
