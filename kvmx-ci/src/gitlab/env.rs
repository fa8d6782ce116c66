//! What gitlab-runner tells each stage through the environment: the exit
//! codes to use and the ids that name the job's VM.

use kvmx_core::config::values::VmName;

use super::GitlabError;

/// The variable with the exit code of a failed job script.
pub const BUILD_FAILURE_VARIABLE: &str = "BUILD_FAILURE_EXIT_CODE";
/// The variable with the exit code of a failure of the driver or the VM.
pub const SYSTEM_FAILURE_VARIABLE: &str = "SYSTEM_FAILURE_EXIT_CODE";
/// The variable naming the file for the job script's real exit status.
pub const BUILD_EXIT_CODE_FILE_VARIABLE: &str = "BUILD_EXIT_CODE_FILE";

/// The ids, in order, that make the job's VM name unique on this host:
/// the runner, the project, the project's concurrent slot, the job.
pub const ID_VARIABLES: [&str; 4] = [
    "CUSTOM_ENV_CI_RUNNER_ID",
    "CUSTOM_ENV_CI_PROJECT_ID",
    "CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID",
    "CUSTOM_ENV_CI_JOB_ID",
];

/// The exit codes gitlab-runner expects; never hard-coded, since a runner
/// may change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCodes {
    /// The job script failed.
    pub build_failure: u8,
    /// Anything else failed.
    pub system_failure: u8,
}

impl ExitCodes {
    /// Reads both codes through `lookup` (the process environment in
    /// [`ExitCodes::from_env`]).
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<ExitCodes, GitlabError> {
        let code = |name: &str| -> Result<u8, GitlabError> {
            let value = lookup(name).ok_or_else(|| GitlabError::MissingVariable {
                name: name.to_owned(),
            })?;
            match value.trim().parse::<u8>() {
                Ok(code) if code != 0 => Ok(code),
                _ => Err(GitlabError::BadVariable {
                    name: name.to_owned(),
                    value,
                    problem: "an exit code is a number from 1 to 255".into(),
                }),
            }
        };
        Ok(ExitCodes {
            build_failure: code(BUILD_FAILURE_VARIABLE)?,
            system_failure: code(SYSTEM_FAILURE_VARIABLE)?,
        })
    }

    /// Reads both codes from this process's environment.
    pub fn from_env() -> Result<ExitCodes, GitlabError> {
        ExitCodes::read(env_var)
    }
}

/// The name of the job's VM, from the ids in [`ID_VARIABLES`] read through
/// `lookup`: `gl-RUNNER-PROJECT-SLOT-JOB`. The same job always gets the
/// same name, so `cleanup` finds the VM after a crash of `prepare`.
pub fn job_vm_name(lookup: impl Fn(&str) -> Option<String>) -> Result<VmName, GitlabError> {
    let mut name = String::from("gl");
    for variable in ID_VARIABLES {
        let value = lookup(variable).ok_or_else(|| GitlabError::MissingVariable {
            name: variable.to_owned(),
        })?;
        let id = value.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GitlabError::BadVariable {
                name: variable.to_owned(),
                value,
                problem: "GitLab's ids are decimal numbers".into(),
            });
        }
        name.push('-');
        name.push_str(id);
    }
    name.parse().map_err(|problem| GitlabError::BadVariable {
        name: ID_VARIABLES.join(", "),
        value: name.clone(),
        problem,
    })
}

/// A variable of this process's environment; unset and empty are alike.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    const IDS: [(&str, &str); 4] = [
        ("CUSTOM_ENV_CI_RUNNER_ID", "12"),
        ("CUSTOM_ENV_CI_PROJECT_ID", "345"),
        ("CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID", "0"),
        ("CUSTOM_ENV_CI_JOB_ID", "6789"),
    ];

    #[test]
    fn the_vm_name_joins_the_ids() {
        let name = job_vm_name(lookup(&IDS)).unwrap();
        assert_eq!(name.as_str(), "gl-12-345-0-6789");
    }

    #[test]
    fn a_missing_id_is_named() {
        let error = job_vm_name(lookup(&IDS[..3])).unwrap_err();
        assert!(
            error.to_string().contains("CUSTOM_ENV_CI_JOB_ID"),
            "{error}"
        );
    }

    #[test]
    fn an_id_that_is_not_a_number_is_refused() {
        let mut ids = IDS;
        ids[1] = ("CUSTOM_ENV_CI_PROJECT_ID", "../x");
        let error = job_vm_name(lookup(&ids)).unwrap_err();
        assert!(matches!(error, GitlabError::BadVariable { .. }), "{error}");
    }

    #[test]
    fn exit_codes_come_from_the_environment() {
        let codes = ExitCodes::read(lookup(&[
            ("BUILD_FAILURE_EXIT_CODE", "7"),
            ("SYSTEM_FAILURE_EXIT_CODE", "9"),
        ]))
        .unwrap();
        assert_eq!(
            codes,
            ExitCodes {
                build_failure: 7,
                system_failure: 9
            }
        );
        let missing = ExitCodes::read(lookup(&[("BUILD_FAILURE_EXIT_CODE", "7")])).unwrap_err();
        assert!(
            missing.to_string().contains("SYSTEM_FAILURE_EXIT_CODE"),
            "{missing}"
        );
        let zero = ExitCodes::read(lookup(&[
            ("BUILD_FAILURE_EXIT_CODE", "0"),
            ("SYSTEM_FAILURE_EXIT_CODE", "9"),
        ]));
        assert!(zero.is_err());
    }
}
