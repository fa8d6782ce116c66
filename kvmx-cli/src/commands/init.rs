//! `kvmx init`: a commented kvmx.toml, and the VM in the registry.

use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::config::resolve::absolute_from;
use kvmx_core::config::values::VmName;
use kvmx_core::{Project, Registry, config, legacy, project};
use serde::Serialize;

use super::Context;
use crate::cli::InitArgs;
use crate::error::{CliError, CommandError};
use crate::output::Output;

#[derive(Serialize)]
struct Initialized {
    name: String,
    dir: String,
    file: String,
}

pub fn run(args: &InitArgs, context: &Context, output: &Output) -> Result<(), CommandError> {
    let dir = match &args.dir {
        Some(dir) => absolute_from(&context.cwd, dir),
        None => context.cwd.clone(),
    };
    let file = dir.join(project::FILE_NAME);
    let legacy_file = dir.join(legacy::FILE_NAME);
    if !file.exists() && legacy_file.exists() && !args.force {
        return Err(CliError::LegacyProject(legacy_file).into());
    }
    let folder_name = Project {
        dir: dir.clone(),
        file: project::ProjectFile::Toml(file.clone()),
    }
    .folder_name();
    let (name, name_in_file) = match &args.name {
        Some(name) => {
            let name: VmName = name.parse().map_err(|problem| CliError::BadValue {
                argument: "--name".into(),
                problem,
            })?;
            let differs = folder_name.as_ref().map_or(true, |folder| folder != &name);
            (name.clone(), differs.then_some(name))
        }
        None => (folder_name?, None),
    };
    let registry = Registry::load(&context.layout)?;
    if let Some(existing) = registry.get(name.as_str())
        && existing != dir
        && !args.force
    {
        return Err(kvmx_core::Error::NameTaken {
            name: name.to_string(),
            existing: existing.to_owned(),
        }
        .into());
    }
    std::fs::create_dir_all(&dir).map_err(kvmx_core::Error::io_doing("create", &dir))?;
    let overwrite = if args.force {
        Overwrite::Yes
    } else {
        Overwrite::No
    };
    atomic_file::write(
        &file,
        config::template(name_in_file.as_ref()).as_bytes(),
        overwrite,
    )?;
    Registry::register(&context.layout, name.as_str(), &dir, args.force)?;
    if output.json {
        output.json_result(&Initialized {
            name: name.to_string(),
            dir: dir.to_string(),
            file: file.to_string(),
        });
    } else {
        output.info(&format!("Wrote {file}"));
        output.info(&format!(
            "Registered VM \"{name}\"; edit kvmx.toml, then check it with `kvmx config show`"
        ));
    }
    Ok(())
}
