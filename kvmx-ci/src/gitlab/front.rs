//! `kvmx-ci gitlab STAGE`: runs a stage of [`super::driver`], prints what
//! gitlab-runner shows in the job log, and exits as the driver contract
//! says.

use std::io::Write;
use std::process::ExitCode;

use kvmx_core::observe::{Event, Observer, Stream};
use kvmx_core::{CancelFlag, Layout};
use kvmx_provision::guest::{ByteSink, OutputSink};

use super::env::{BUILD_EXIT_CODE_FILE_VARIABLE, ExitCodes, env_var, job_vm_name};
use super::{GitlabCommand, GitlabError, RunOutcome, TemplateArg, driver};

/// Runs one stage for gitlab-runner. Exits 0 on success;
/// `$BUILD_FAILURE_EXIT_CODE` when the job script failed (its status
/// written to `$BUILD_EXIT_CODE_FILE` when set);
/// `$SYSTEM_FAILURE_EXIT_CODE` when anything else failed; 1 when those
/// codes themselves are missing.
pub fn run(command: GitlabCommand) -> ExitCode {
    let codes = match ExitCodes::from_env() {
        Ok(codes) => codes,
        Err(error) => {
            report(&error);
            return ExitCode::FAILURE;
        }
    };
    match stage(command, codes) {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::from(codes.system_failure)
        }
    }
}

fn stage(command: GitlabCommand, codes: ExitCodes) -> Result<ExitCode, GitlabError> {
    let layout = Layout::from_env()?;
    let vm = job_vm_name(env_var)?;
    match command {
        GitlabCommand::Config(template) => {
            let template = driver::open_template(&layout, template_name(&template)?)?;
            let config = driver::config(&template, &vm);
            println!(
                "{}",
                serde_json::to_string(&config).expect("the config serializes")
            );
        }
        GitlabCommand::Prepare(template) => {
            let template = driver::open_template(&layout, template_name(&template)?)?;
            let cancel = signal_flag()?;
            println!("kvmx-ci: making {vm} from {}", template.name());
            driver::prepare(&template, &vm, &cancel, &mut JobLog, &mut JobLog)?;
            println!("kvmx-ci: {vm} is up");
        }
        GitlabCommand::Run { script, .. } => {
            let cancel = signal_flag()?;
            let outcome = driver::run_script(&layout, &vm, &script, &cancel, &mut JobLog)?;
            if let RunOutcome::Failed { code } = outcome {
                if let Some(file) = env_var(BUILD_EXIT_CODE_FILE_VARIABLE) {
                    std::fs::write(&file, format!("{code}\n"))
                        .map_err(GitlabError::io(file.as_str()))?;
                }
                return Ok(ExitCode::from(codes.build_failure));
            }
        }
        GitlabCommand::Cleanup(_) => driver::cleanup(&layout, &vm)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn template_name(arg: &TemplateArg) -> Result<&str, GitlabError> {
    arg.template
        .as_deref()
        .filter(|name| !name.is_empty())
        .ok_or(GitlabError::NoTemplate)
}

/// A flag set by SIGTERM (gitlab-runner's job timeout or cancel) and
/// SIGINT.
fn signal_flag() -> Result<CancelFlag, GitlabError> {
    CancelFlag::on_signals().map_err(GitlabError::io("signal handlers"))
}

/// Prints an error and its causes to stderr, which the job log shows.
fn report(error: &dyn std::error::Error) {
    let mut text = format!("kvmx-ci: error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{text}");
}

/// The job log: this process's stdout and stderr, which gitlab-runner
/// forwards.
struct JobLog;

impl ByteSink for JobLog {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        // A closed pipe must not end the job's VM handling: drop the bytes.
        let _ = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    }
}

impl OutputSink for JobLog {
    fn line(&mut self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        }
    }
}

impl Observer for JobLog {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::StageStarted { stage } => println!("kvmx-ci: {stage}"),
            Event::Note { text } => println!("kvmx-ci: {text}"),
            Event::Warning { text } => eprintln!("kvmx-ci: warning: {text}"),
            Event::GuestOutput { stream, line, .. } => self.line(stream, line),
            _ => {}
        }
    }
}
