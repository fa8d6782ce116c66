//! The job's notify command: a host command told about a run's result
//! through its environment, e.g. to send mail or call a webhook.

use std::time::Duration;

use kvmx_core::CancelFlag;
use kvmx_core::process::{Runner, Tool};

use kvmx_core::observe::{Event, Observer};

use crate::job::{Notify, NotifyOn};
use crate::store::{RunRecord, RunResult, Runs};

/// How long the command may take.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs the notify command when `record`'s result calls for it; its
/// failure is a warning, never the run's result.
pub(super) fn tell(notify: &Notify, record: &RunRecord, runs: &Runs, observer: &mut dyn Observer) {
    let passed = record.result == RunResult::Passed;
    let wanted = match notify.on {
        NotifyOn::Success => passed,
        NotifyOn::Failure => !passed,
        NotifyOn::Always => true,
    };
    if !wanted {
        return;
    }
    let mut tool = Tool::new("sh", "the notify command")
        .arg("-c")
        .arg(&notify.command)
        .deadline(DEADLINE);
    for (name, value) in environment(record, runs) {
        tool = tool.env(name, value);
    }
    let ran = Runner::unlogged(CancelFlag::new()).run(&tool);
    if let Err(error) = ran {
        observer.event(Event::Warning {
            text: &format!("the notify command failed: {error}"),
        });
    }
}

/// The variables the notify command gets.
fn environment(record: &RunRecord, runs: &Runs) -> Vec<(&'static str, String)> {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    vec![
        ("KVMX_CI_JOB", record.job.clone()),
        ("KVMX_CI_RUN", record.id.to_string()),
        ("KVMX_CI_RESULT", record.result.to_string()),
        ("KVMX_CI_REASON", text(&record.reason)),
        (
            "KVMX_CI_STATUS",
            record.status.map(|s| s.to_string()).unwrap_or_default(),
        ),
        ("KVMX_CI_COMMIT", text(&record.commit)),
        ("KVMX_CI_SIGNER", text(&record.signer)),
        ("KVMX_CI_RUN_DIR", runs.dir(record.id).to_string()),
        ("KVMX_CI_LOG", runs.log_file(record.id).to_string()),
    ]
}
