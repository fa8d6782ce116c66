//! `kvmx import`: a kvmx.toml equivalent to a legacy kvmxfile.

use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::config::resolve::absolute_from;
use kvmx_core::project::{self, ProjectFile};
use kvmx_core::{Project, Registry, config, legacy};
use serde::Serialize;

use super::{Context, print_legacy_warnings};
use crate::cli::ImportArgs;
use crate::error::{CliError, CommandError};
use crate::output::Output;

#[derive(Serialize)]
struct Imported {
    name: String,
    from: String,
    file: String,
    warnings: Vec<Warning>,
}

#[derive(Serialize)]
struct Warning {
    line: usize,
    message: String,
}

pub fn run(args: &ImportArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let path = match &args.path {
        Some(path) => absolute_from(&context.cwd, path),
        None => context.cwd.clone(),
    };
    let legacy_file = if path.is_dir() {
        path.join(legacy::FILE_NAME)
    } else {
        path
    };
    if !legacy_file.is_file() {
        return Err(CliError::NoKvmxfile(legacy_file).into());
    }
    let dir = legacy_file
        .parent()
        .expect("a file has a folder")
        .to_owned();
    let project = Project {
        dir: dir.clone(),
        file: ProjectFile::Legacy(legacy_file.clone()),
    };
    let loaded = project.load(&context.layout)?;
    print_legacy_warnings(&loaded, &legacy_file, output);
    let target = dir.join(project::FILE_NAME);
    let text = config::render(&loaded.unresolved, &header(&loaded), &loaded.notes);
    let overwrite = if args.force {
        Overwrite::Yes
    } else {
        Overwrite::No
    };
    atomic_file::write(&target, text.as_bytes(), overwrite)?;
    let registry = Registry::load(&context.layout)?;
    match registry.get(loaded.name.as_str()) {
        None => Registry::register(&context.layout, loaded.name.as_str(), &dir, false)?,
        Some(existing) if existing != dir => output.warn(&format!(
            "not registered: the name \"{}\" belongs to {existing}",
            loaded.name
        )),
        Some(_) => {}
    }
    if output.json {
        output.json_result(&Imported {
            name: loaded.name.to_string(),
            from: legacy_file.to_string(),
            file: target.to_string(),
            warnings: loaded
                .warnings
                .iter()
                .map(|w| Warning {
                    line: w.line,
                    message: w.message.clone(),
                })
                .collect(),
        });
    } else {
        output.info(&format!("Wrote {target} from {legacy_file}"));
        output.info("kvmx reads kvmx.toml from now on; the kvmxfile is left as it was");
    }
    Ok(())
}

fn header(loaded: &kvmx_core::project::Loaded) -> String {
    let mut text = String::from(
        "kvmx.toml imported from the kvmxfile beside it by `kvmx import`.\n\
         Only settings that differ from kvmx's defaults are written; each\n\
         says which kvmxfile line it came from. See `kvmx config show` for\n\
         the effective config.\n",
    );
    if !loaded.warnings.is_empty() {
        text.push_str("\nNot imported:\n");
        for warning in &loaded.warnings {
            text.push_str(&format!(
                "  kvmxfile line {}: {}\n",
                warning.line, warning.message
            ));
        }
    }
    text
}
