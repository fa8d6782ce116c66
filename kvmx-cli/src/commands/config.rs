//! `kvmx config show|path`.

use kvmx_core::Project;

use super::{Context, print_legacy_warnings};
use crate::cli::ConfigCommand;
use crate::error::CommandError;
use crate::output::Output;

pub fn run(
    command: &ConfigCommand,
    context: &Context,
    output: &Output,
) -> Result<(), CommandError> {
    match command {
        ConfigCommand::Show(vm) => {
            let project = Project::select(vm.vm.as_deref(), &context.cwd, &context.layout)?;
            output.detail(&format!("reading {}", project.file.path()));
            let loaded = project.load(&context.layout)?;
            print_legacy_warnings(&loaded, project.file.path(), output);
            if output.json {
                output.json_result(&loaded.config);
            } else {
                let text = toml::to_string(&loaded.config).expect("the config always serializes");
                output.result(&format!(
                    "# effective config of {} ({})\n{}",
                    loaded.name,
                    project.file.path(),
                    text.trim_end()
                ));
            }
        }
        ConfigCommand::Path(vm) => {
            let project = Project::select(vm.vm.as_deref(), &context.cwd, &context.layout)?;
            output.result(project.file.path().as_str());
        }
    }
    Ok(())
}
