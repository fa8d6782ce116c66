//! Errors as the user sees them: printed once, as a chain of causes, with a
//! hint, and an exit code chosen by their kind.
//!
//! Each library error, and kvmx-cli's own [`CliError`], decides its kind
//! and its hint (`kind()`, an exhaustive match in its own crate, so a new
//! variant cannot go without one, and `hint()`); [`exit_code`] is the one
//! place a kind becomes an exit status.

use std::error::Error as StdError;

use camino::Utf8PathBuf;

/// What kind of failure, which picks the exit code.
pub use kvmx_core::ErrorKind as Kind;

/// The exit status of a kind of error, as README and `--help` state it: 1
/// a failure, 2 a usage error, 3 a config error, 130 interrupted, and a
/// guest command's own status.
pub fn exit_code(kind: Kind) -> u8 {
    match kind {
        Kind::Failure => 1,
        Kind::Usage => 2,
        Kind::Config => 3,
        Kind::Guest(code) => code,
        Kind::Interrupted => 130,
    }
}

/// The errors of the command line itself, outside the libraries.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An option or argument has a value its type refuses.
    #[error("{argument}: {problem}")]
    BadValue {
        /// The option ("--memory") or the value itself.
        argument: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A `--share HOST:GUEST` is not written that way.
    #[error("--share {text}: {problem}")]
    BadShare {
        /// The argument.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A guest port argument is not a number.
    #[error("\"{text}\" is not a port number")]
    NotAPort {
        /// The argument.
        text: String,
    },
    /// A USB device argument is not `VENDOR:PRODUCT`.
    #[error("\"{text}\" is not a USB id")]
    NotAUsbId {
        /// The argument.
        text: String,
    },
    /// A QMP message argument is not JSON.
    #[error("the QMP message is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// A configured display client is not a command line.
    #[error("the display client \"{client}\" is not a command")]
    NotACommand {
        /// The configured client.
        client: String,
    },
    /// Neither or both sides of `kvmx copy` are in the guest.
    #[error("one side of a copy must be in the guest, the other on the host")]
    CopySides,
    /// The script to run in the guest is not a file.
    #[error("there is no script at {0}")]
    NoScript(Utf8PathBuf),
    /// A file argument is not a file.
    #[error("there is no file at {0}")]
    NoFile(Utf8PathBuf),
    /// The kvmxfile to import is not a file.
    #[error("there is no kvmxfile at {0}")]
    NoKvmxfile(Utf8PathBuf),
    /// `kvmx init` in a folder with a legacy kvmxfile.
    #[error("{0} already describes this project")]
    LegacyProject(Utf8PathBuf),
    /// The VM is configured without a display.
    #[error("{vm} has no display (display.kind = \"none\")")]
    NoDisplay {
        /// The VM.
        vm: String,
    },
    /// The VM is configured without a USB controller.
    #[error("{vm} has no USB controller")]
    NoUsbController {
        /// The VM.
        vm: String,
    },
    /// The VM has no forwarded port at all.
    #[error("{vm} has no forwarded ports (is it running?)")]
    NoForwards {
        /// The VM.
        vm: String,
    },
    /// No forwarded port reaches the guest port asked for.
    #[error("no host port reaches guest port {port}")]
    NoForwardTo {
        /// The guest port.
        port: String,
    },
    /// scp or rsync failed.
    #[error("the transfer from {from} to {to} failed")]
    TransferFailed {
        /// Where from.
        from: String,
        /// Where to.
        to: String,
    },
    /// A disposable died before its command ended.
    #[error("{vm} stopped or crashed while {what} ran; it has been erased")]
    DisposableDied {
        /// The disposable.
        vm: String,
        /// What ran in it.
        what: String,
    },
    /// Some files could not be cleaned (the others were).
    #[error("{}", .0.join("\n"))]
    NotCleaned(Vec<String>),
    /// ClamAV found infected files.
    #[error("ClamAV found {0} infected file(s)")]
    Infected(usize),
    /// A command run in the guest failed: kvmx exits with its status.
    #[error("{what} with status {code}")]
    GuestCommand {
        /// What ran.
        what: String,
        /// Its exit status (1 when killed by a signal).
        code: i32,
    },
    /// No random password was kept for the VM.
    #[error("{vm} has no random password on record")]
    NoPassword {
        /// The VM.
        vm: String,
    },
    /// `kvmx foreach` was given no VM to act on.
    #[error("no VM selected{0}")]
    NothingSelected(String),
    /// `kvmx foreach` cannot run this subcommand.
    #[error("`kvmx foreach` cannot run `{0}`")]
    NotForeach(String),
    /// Some VMs of a `kvmx foreach` failed.
    #[error("{failed} of {of} VMs failed: {}", .names.join(", "))]
    SomeFailed {
        /// How many failed.
        failed: usize,
        /// Out of how many.
        of: usize,
        /// Which.
        names: Vec<String>,
    },
}

impl CliError {
    /// What kind of failure this is; every variant is named.
    pub fn kind(&self) -> Kind {
        match self {
            CliError::BadValue { .. }
            | CliError::BadShare { .. }
            | CliError::NotAPort { .. }
            | CliError::NotAUsbId { .. }
            | CliError::NotJson(_)
            | CliError::NotACommand { .. }
            | CliError::CopySides
            | CliError::NoScript(_)
            | CliError::NoFile(_)
            | CliError::NoKvmxfile(_)
            | CliError::LegacyProject(_)
            | CliError::NoDisplay { .. }
            | CliError::NoUsbController { .. }
            | CliError::NothingSelected(_)
            | CliError::NotForeach(_) => Kind::Usage,
            CliError::GuestCommand { code, .. } => {
                Kind::Guest(u8::try_from(*code).unwrap_or(1).max(1))
            }
            CliError::NoForwards { .. }
            | CliError::NoForwardTo { .. }
            | CliError::TransferFailed { .. }
            | CliError::DisposableDied { .. }
            | CliError::NotCleaned(_)
            | CliError::Infected(_)
            | CliError::NoPassword { .. }
            | CliError::SomeFailed { .. } => Kind::Failure,
        }
    }

    /// Advice for the user.
    pub fn hint(&self) -> Option<String> {
        let hint = match self {
            CliError::BadShare { .. } => "write it as HOST_FOLDER:/guest/folder",
            CliError::NotAUsbId { .. } => {
                "write VENDOR:PRODUCT in hexadecimal, as `lsusb` shows it, e.g. 046d:c52b"
            }
            CliError::NotJson(_) => r#"write it like '{"execute":"query-status"}'"#,
            CliError::CopySides => {
                "write the guest side with a leading colon: `kvmx copy notes.txt :/tmp/`"
            }
            CliError::NoScript(_) => {
                "give the path of a script on the host; kvmx copies it into the guest and runs it there"
            }
            CliError::NoKvmxfile(_) => "name a kvmxfile or the folder that holds it",
            CliError::LegacyProject(_) => "run `kvmx import` to turn it into a kvmx.toml",
            CliError::NoDisplay { .. } => {
                "set display.kind to \"spice\" or \"vnc\" and restart it; `kvmx console` reaches the serial console"
            }
            CliError::NoUsbController { .. } => {
                "set hardware.usb = 2 (or 3) in kvmx.toml and restart the VM"
            }
            CliError::NoForwards { .. } => "start it with `kvmx up`",
            CliError::NothingSelected(_) => {
                "name VMs or globs, or pass --all, --managed, --running or --stopped"
            }
            CliError::NotForeach(_) => {
                "foreach runs up, stop, restart, status, provision, upgrade and ssh -- COMMAND"
            }
            CliError::NoForwardTo { .. } => "add it to network.forwards in kvmx.toml",
            CliError::NoPassword { .. } => {
                "a password set in the config or a locked one is not kept; \
                 a random one is kept when kvmx-create builds the image"
            }
            _ => return None,
        };
        Some(hint.into())
    }
}

impl From<CliError> for CommandError {
    fn from(error: CliError) -> Self {
        CommandError {
            kind: error.kind(),
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

/// An error on its way to the terminal.
#[derive(Debug)]
pub struct CommandError {
    /// Its kind.
    pub kind: Kind,
    /// The error and its causes.
    pub error: Box<dyn StdError + Send + Sync>,
    /// What the user can do.
    pub hint: Option<String>,
}

impl CommandError {
    /// A usage error with a message.
    pub fn usage(message: impl Into<String>) -> Self {
        CommandError {
            kind: Kind::Usage,
            error: message.into().into(),
            hint: None,
        }
    }

    /// Adds or replaces the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The text printed for the error: `error: ...`, one `caused by: ...`
    /// per source, then `hint: ...`.
    pub fn render(&self) -> String {
        let mut out = format!("error: {}\n", self.error);
        let mut source = self.error.source();
        while let Some(cause) = source {
            out.push_str(&format!("caused by: {cause}\n"));
            source = cause.source();
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("hint: {hint}\n"));
        }
        out
    }
}

impl From<kvmx_core::Error> for CommandError {
    fn from(error: kvmx_core::Error) -> Self {
        CommandError {
            kind: error.kind(),
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

impl From<kvmx_image::Error> for CommandError {
    fn from(error: kvmx_image::Error) -> Self {
        CommandError {
            kind: error.kind(),
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

impl From<std::io::Error> for CommandError {
    fn from(error: std::io::Error) -> Self {
        CommandError {
            kind: Kind::Failure,
            error: Box::new(error),
            hint: None,
        }
    }
}

impl From<kvmx_provision::Error> for CommandError {
    fn from(error: kvmx_provision::Error) -> Self {
        CommandError {
            kind: error.kind(),
            hint: error.hint(),
            error: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use camino::Utf8PathBuf;
    use kvmx_core::config::ConfigError;
    use kvmx_core::layout::LayoutError;
    use kvmx_core::process::ToolError;
    use kvmx_image::mbr::GrubLayoutError;
    use kvmx_image::prerequisites::{Missing, Requirement};
    use kvmx_provision::provision::StepFailed;
    use kvmx_provision::qmp::QmpError;
    use kvmx_provision::{DaemonEnd, Provider, ShareProblem};

    use super::*;

    fn path(text: &str) -> Utf8PathBuf {
        Utf8PathBuf::from(text)
    }

    fn io_error() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::PermissionDenied)
    }

    fn core_errors() -> Vec<(&'static str, kvmx_core::Error, u8)> {
        use kvmx_core::Error as E;
        vec![
            (
                "Config",
                E::Config(ConfigError::at_line(
                    &path("kvmx.toml"),
                    "x",
                    1,
                    "bad".into(),
                )),
                3,
            ),
            ("Layout", E::Layout(LayoutError::NoHome), 1),
            ("NoProject", E::NoProject { start: path("/p") }, 2),
            (
                "UnknownVm",
                E::UnknownVm {
                    name: "x".into(),
                    known: vec![],
                },
                2,
            ),
            (
                "NameTaken",
                E::NameTaken {
                    name: "x".into(),
                    existing: path("/p"),
                },
                1,
            ),
            ("Exists", E::Exists { path: path("/p") }, 1),
            ("NotUtf8", E::NotUtf8("/p".into()), 1),
            (
                "Io",
                E::Io {
                    action: "read",
                    path: path("/p"),
                    source: io_error(),
                },
                1,
            ),
        ]
    }

    fn image_errors() -> Vec<(&'static str, kvmx_image::Error, u8)> {
        use kvmx_image::Error as E;
        vec![
            ("ImageExists", E::ImageExists(path("/i")), 1),
            (
                "Missing",
                E::Missing(vec![Missing(Requirement::program(
                    "mmdebstrap",
                    "mmdebstrap",
                ))]),
                1,
            ),
            (
                "Tool",
                E::Tool(ToolError {
                    what: "bootstrap".into(),
                    command: "mmdebstrap".into(),
                    status: "exit status 1".into(),
                    stderr_tail: vec![],
                    log: Some(path("/log")),
                }),
                1,
            ),
            ("Interrupted", E::Interrupted, 130),
            (
                "TooSmall",
                E::TooSmall {
                    size_mib: 1,
                    needed_mib: 2,
                },
                1,
            ),
            ("Unsupported", E::Unsupported("no".into()), 1),
            (
                "User",
                E::User {
                    problem: "taken".into(),
                },
                1,
            ),
            (
                "NotASystem",
                E::NotASystem {
                    tarball: path("/t"),
                },
                1,
            ),
            ("Grub", E::Grub(GrubLayoutError::BootImage(1)), 1),
            ("PasswordHash", E::PasswordHash("no".into()), 1),
            (
                "Base",
                E::Base {
                    name: "b".into(),
                    reason: "running".into(),
                },
                1,
            ),
            (
                "Core",
                E::Core(kvmx_core::Error::NoProject { start: path("/p") }),
                2,
            ),
            (
                "Key",
                E::Key {
                    path: path("/k"),
                    source: ssh_key::Error::FormatEncoding,
                },
                1,
            ),
            (
                "Install",
                E::Install(kvmx_image::install::InstallError {
                    message: "powered off early".into(),
                    cancelled: false,
                }),
                1,
            ),
        ]
    }

    fn provision_errors() -> Vec<(&'static str, kvmx_provision::Error, u8)> {
        use kvmx_provision::Error as E;
        let vm = || "vm".to_owned();
        let share = |problem| E::Share {
            share: "code".into(),
            problem,
        };
        vec![
            (
                "Core",
                E::Core(kvmx_core::Error::Exists { path: path("/p") }),
                1,
            ),
            ("Qmp", E::Qmp(QmpError::Closed), 1),
            ("Usage", E::Usage("no".into()), 2),
            (
                "BadVariable",
                E::BadVariable {
                    variable: "KVMX_ACCEL",
                    problem: "no".into(),
                },
                2,
            ),
            (
                "SocketPathTooLong",
                E::SocketPathTooLong { path: path("/s") },
                1,
            ),
            ("NoImage", E::NoImage { path: path("/i") }, 1),
            (
                "NoTemplateImage",
                E::NoTemplateImage {
                    vm: vm(),
                    template: "t".into(),
                    path: path("/i"),
                },
                1,
            ),
            (
                "NestedTemplate",
                E::NestedTemplate {
                    vm: vm(),
                    template: "t".into(),
                },
                1,
            ),
            ("NotAnOverlay", E::NotAnOverlay { path: path("/i") }, 1),
            ("Running", E::Running { vm: vm() }, 1),
            ("NotRunning", E::NotRunning { vm: vm() }, 1),
            ("Locked", E::Locked { vm: vm() }, 1),
            ("InUse", E::InUse { vm: vm() }, 1),
            (
                "ImageInUse",
                E::ImageInUse {
                    vm: vm(),
                    users: vec!["app".into()],
                },
                1,
            ),
            (
                "BackingRunning",
                E::BackingRunning {
                    vm: vm(),
                    owner: "t".into(),
                },
                1,
            ),
            (
                "HasDependants",
                E::HasDependants {
                    vm: vm(),
                    dependants: vec!["app".into()],
                },
                1,
            ),
            ("Vanished", E::Vanished { vm: vm() }, 1),
            (
                "PortInUse",
                E::PortInUse {
                    port: 80,
                    address: "127.0.0.1".into(),
                    what: "tcp".into(),
                },
                1,
            ),
            (
                "MissingTool",
                E::MissingTool {
                    program: "sshfs".into(),
                    needed_by: "the sshfs share code".into(),
                    provider: Provider::Debian("sshfs"),
                },
                1,
            ),
            (
                "MissingInGuest",
                E::MissingInGuest {
                    program: "rsync".into(),
                    needed_for: "copies".into(),
                    package: "rsync",
                },
                1,
            ),
            (
                "Timeout",
                E::Timeout {
                    awaited: "SSH".into(),
                    after: Duration::from_secs(5),
                },
                1,
            ),
            (
                "QemuFailed",
                E::QemuFailed {
                    status: String::new(),
                    stderr: "bad".into(),
                },
                1,
            ),
            (
                "DaemonFailed",
                E::DaemonFailed {
                    name: "virtiofsd".into(),
                    ended: DaemonEnd::NotReady(Duration::from_secs(10)),
                    log: path("/log"),
                    log_tail: String::new(),
                },
                1,
            ),
            (
                "Guest",
                E::Guest {
                    what: "died".into(),
                    console: String::new(),
                    hint: "look".into(),
                },
                1,
            ),
            (
                "Remote",
                E::Remote {
                    problem: "refused".into(),
                    hint: "look".into(),
                },
                1,
            ),
            ("NoSshPort", E::NoSshPort { vm: vm() }, 1),
            (
                "InGuest",
                E::InGuest {
                    what: "making a folder".into(),
                },
                1,
            ),
            ("Share", share(ShareProblem::NfsServerGone), 1),
            ("NoHostFolder", E::NoHostFolder { folder: path("/h") }, 1),
            (
                "WarmState",
                E::WarmState {
                    problem: "no".into(),
                },
                1,
            ),
            (
                "Step",
                E::Step(StepFailed {
                    step: "provision".into(),
                    code: 7,
                }),
                7,
            ),
            (
                "Tool",
                E::Tool {
                    what: "mat2 failed".into(),
                    output: String::new(),
                },
                1,
            ),
            ("NoSignatures", E::NoSignatures, 1),
            (
                "NoSignatureFolder",
                E::NoSignatureFolder {
                    folder: path("/db"),
                },
                1,
            ),
            (
                "ProgramFailed",
                E::ProgramFailed {
                    program: "mkfs.ext4".into(),
                    status: "exit status 1".into(),
                    output: String::new(),
                },
                1,
            ),
            ("TargetExists", E::TargetExists { path: path("/t") }, 2),
            (
                "Spawn",
                E::Spawn {
                    program: "ssh".into(),
                    source: io_error(),
                },
                1,
            ),
            ("Image", E::Image(kvmx_image::Error::Interrupted), 130),
            (
                "StartHook",
                E::StartHook {
                    vm: vm(),
                    source: Box::new(E::Step(StepFailed {
                        step: "the startup command".into(),
                        code: 4,
                    })),
                },
                4,
            ),
            (
                "Interrupted",
                E::Interrupted {
                    left: "vm is still running".into(),
                },
                130,
            ),
        ]
    }

    fn cli_errors() -> Vec<(&'static str, CliError, u8)> {
        use CliError as E;
        let vm = || "vm".to_owned();
        vec![
            (
                "BadValue",
                E::BadValue {
                    argument: "--memory".into(),
                    problem: "no".into(),
                },
                2,
            ),
            (
                "BadShare",
                E::BadShare {
                    text: "a".into(),
                    problem: "no".into(),
                },
                2,
            ),
            ("NotAPort", E::NotAPort { text: "x".into() }, 2),
            ("NotAUsbId", E::NotAUsbId { text: "x".into() }, 2),
            (
                "NotJson",
                E::NotJson(serde_json::from_str::<serde_json::Value>("{").unwrap_err()),
                2,
            ),
            (
                "NotACommand",
                E::NotACommand {
                    client: String::new(),
                },
                2,
            ),
            ("CopySides", E::CopySides, 2),
            ("NoScript", E::NoScript(path("s.sh")), 2),
            ("NoFile", E::NoFile(path("f")), 2),
            ("NoKvmxfile", E::NoKvmxfile(path("kvmxfile")), 2),
            ("LegacyProject", E::LegacyProject(path("kvmxfile")), 2),
            ("NoDisplay", E::NoDisplay { vm: vm() }, 2),
            ("NoUsbController", E::NoUsbController { vm: vm() }, 2),
            ("NoForwards", E::NoForwards { vm: vm() }, 1),
            ("NoForwardTo", E::NoForwardTo { port: "80".into() }, 1),
            (
                "TransferFailed",
                E::TransferFailed {
                    from: "a".into(),
                    to: ":b".into(),
                },
                1,
            ),
            (
                "DisposableDied",
                E::DisposableDied {
                    vm: vm(),
                    what: "sh".into(),
                },
                1,
            ),
            ("NotCleaned", E::NotCleaned(vec!["mat2 failed".into()]), 1),
            ("Infected", E::Infected(1), 1),
            (
                "GuestCommand",
                E::GuestCommand {
                    what: "sh exited".into(),
                    code: 4,
                },
                4,
            ),
            ("NoPassword", E::NoPassword { vm: vm() }, 1),
            ("NothingSelected", E::NothingSelected(String::new()), 2),
            ("NotForeach", E::NotForeach("console".into()), 2),
            (
                "SomeFailed",
                E::SomeFailed {
                    failed: 1,
                    of: 2,
                    names: vec![vm()],
                },
                1,
            ),
        ]
    }

    /// One value of each error kvmx prints, by library and variant, with
    /// the exit status it must give.
    fn table() -> Vec<(String, CommandError, u8)> {
        let mut table = Vec::new();
        for (variant, error, code) in core_errors() {
            table.push((format!("kvmx_core::{variant}"), error.into(), code));
        }
        for (variant, error, code) in image_errors() {
            table.push((format!("kvmx_image::{variant}"), error.into(), code));
        }
        for (variant, error, code) in provision_errors() {
            table.push((format!("kvmx_provision::{variant}"), error.into(), code));
        }
        for (variant, error, code) in cli_errors() {
            table.push((format!("kvmx_cli::{variant}"), error.into(), code));
        }
        table.push(("kvmx_cli::usage".into(), CommandError::usage("bad"), 2));
        table.push(("kvmx_cli::io".into(), io_error().into(), 1));
        table
    }

    #[test]
    fn every_error_has_the_exit_code_readme_promises() {
        for (name, error, code) in table() {
            assert_eq!(exit_code(error.kind), code, "{name}: {}", error.render());
        }
    }

    #[test]
    fn step_failures_exit_with_the_guest_status_and_never_zero() {
        let step = |code| {
            CommandError::from(kvmx_provision::Error::Step(StepFailed {
                step: "provision".into(),
                code,
            }))
            .kind
        };
        assert_eq!(exit_code(step(42)), 42);
        assert_eq!(exit_code(step(-1)), 1, "killed by a signal");
        assert_eq!(exit_code(step(300)), 1);
        let command = |code| {
            CommandError::from(CliError::GuestCommand {
                what: "sh exited".into(),
                code,
            })
            .kind
        };
        assert_eq!(exit_code(command(255)), 255);
        assert_eq!(exit_code(command(256)), 1, "no status above 255");
        assert_eq!(exit_code(Kind::Interrupted), 130);
    }

    #[test]
    fn messages_do_not_repeat_their_cause() {
        for (name, error, _) in table() {
            let text = error.render();
            let mut lines = text.lines();
            let first = lines.next().unwrap();
            for cause in lines.filter_map(|line| line.strip_prefix("caused by: ")) {
                assert!(!first.contains(cause), "{name}: {text}");
            }
        }
    }
}
