//! The error of running and reaching VMs.

use std::time::Duration;

use camino::Utf8PathBuf;
use kvmx_core::ErrorKind;

use crate::qmp::QmpError;

/// What can go wrong running a VM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A kvmx-core operation failed.
    #[error(transparent)]
    Core(#[from] kvmx_core::Error),
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The caller asked for something that cannot be done as asked (an
    /// argument names a missing file, a taken name...).
    #[error("{0}")]
    Usage(String),
    /// An environment variable kvmx reads holds a wrong value.
    #[error("{variable}: {problem}")]
    BadVariable {
        /// The variable.
        variable: &'static str,
        /// What is wrong with its value, and what is allowed.
        problem: String,
    },
    /// A socket path is longer than a unix socket allows.
    #[error("the socket path {path} is longer than 107 bytes")]
    SocketPathTooLong {
        /// The path.
        path: Utf8PathBuf,
    },
    /// The VM has no image yet.
    #[error("the VM has no image at {path}")]
    NoImage {
        /// Where it should be.
        path: Utf8PathBuf,
    },
    /// A template-based VM's template has no image yet.
    #[error("{vm}'s template {template} has no image at {path}")]
    NoTemplateImage {
        /// The template-based VM.
        vm: String,
        /// Its template.
        template: String,
        /// Where the template's image should be.
        path: Utf8PathBuf,
    },
    /// A VM's template is itself template-based.
    #[error(
        "{vm}'s template {template} is itself template-based: a template must have its own image"
    )]
    NestedTemplate {
        /// The VM.
        vm: String,
        /// The template it names.
        template: String,
    },
    /// `image.recreate_overlay` is set on an image that is no overlay.
    #[error("{path} is not an overlay (it has no backing file), but image.recreate_overlay is set")]
    NotAnOverlay {
        /// The image.
        path: Utf8PathBuf,
    },
    /// The VM must be stopped for this.
    #[error("{vm} is running")]
    Running {
        /// The VM.
        vm: String,
    },
    /// The VM must be running for this.
    #[error("{vm} is not running")]
    NotRunning {
        /// The VM.
        vm: String,
    },
    /// The VM's run lock is held: its QEMU runs, or another kvmx command
    /// is starting or removing it.
    #[error("{vm} is in use: it runs, or another kvmx command is starting or removing it")]
    InUse {
        /// The VM.
        vm: String,
    },
    /// Another kvmx holds the VM's lock and has not started QEMU in time.
    #[error("{vm} is locked by another kvmx that has not started QEMU")]
    Locked {
        /// The VM.
        vm: String,
    },
    /// VMs run on this VM's image, so it cannot start.
    #[error("{vm} cannot start while VMs run on its image: {}", names_or(.users, "(one is starting)"))]
    ImageInUse {
        /// The VM.
        vm: String,
        /// The VMs running on its image, when known.
        users: Vec<String>,
    },
    /// The VM runs on the image of another VM, which is running.
    #[error("{vm} runs on {owner}'s image, and {owner} is running")]
    BackingRunning {
        /// The VM.
        vm: String,
        /// Its template or base.
        owner: String,
    },
    /// Other VMs are built on this VM's image, so it cannot be destroyed.
    #[error("{vm} is the template or base of {}", .dependants.join(", "))]
    HasDependants {
        /// The VM.
        vm: String,
        /// The VMs built on it.
        dependants: Vec<String>,
    },
    /// A disposable's record disappeared while it started.
    #[error("{vm} vanished while starting: its record is gone")]
    Vanished {
        /// The disposable.
        vm: String,
    },
    /// A host port a forward needs is taken.
    #[error("host port {port} ({what}) is already in use on {address}")]
    PortInUse {
        /// The port.
        port: u16,
        /// The address.
        address: String,
        /// What the forward is for.
        what: String,
    },
    /// A program kvmx needs on the host is not installed.
    #[error("{program} is not installed on the host (needed by {needed_by})")]
    MissingTool {
        /// The program (a name or a path).
        program: String,
        /// What needs it ("the sshfs share code", "NFS shares").
        needed_by: String,
        /// Where to get it.
        provider: Provider,
    },
    /// A program kvmx needs in the guest is not installed there.
    #[error("{program} is not installed in the guest ({needed_for})")]
    MissingInGuest {
        /// The program.
        program: String,
        /// Why kvmx needs it.
        needed_for: String,
        /// The Debian package that holds it.
        package: &'static str,
    },
    /// Something kvmx waited for did not happen in time.
    #[error("timed out after {} waiting for {awaited}", span(*.after))]
    Timeout {
        /// What was awaited.
        awaited: String,
        /// How long kvmx waited.
        after: Duration,
    },
    /// QEMU could not start or exited at once.
    #[error("QEMU exited while starting{status}:\n{stderr}")]
    QemuFailed {
        /// ", with status N" or empty.
        status: String,
        /// The end of what QEMU printed.
        stderr: String,
    },
    /// A helper daemon of a share (virtiofsd, kvmx-nfsd) did not come up.
    #[error("{name} {ended}{}", log_text(.log_tail))]
    DaemonFailed {
        /// The daemon, with what it serves.
        name: String,
        /// How it ended.
        ended: DaemonEnd,
        /// Its log file.
        log: Utf8PathBuf,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The guest died or never answered.
    #[error("{what}; the last lines of its console:\n{console}")]
    Guest {
        /// What happened.
        what: String,
        /// The end of the serial console log.
        console: String,
        /// The likely cause.
        hint: String,
    },
    /// Reaching or using the guest over SSH failed for a known reason.
    #[error("{problem}")]
    Remote {
        /// What went wrong, naming the value at fault.
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// The VM has no SSH port to reach the guest on.
    #[error("{vm} has no SSH port: SSH needs ssh.enabled and user networking")]
    NoSshPort {
        /// The VM.
        vm: String,
    },
    /// A step kvmx takes in the guest failed, and the guest said no more.
    #[error("{what} in the guest failed")]
    InGuest {
        /// The step ("making a temporary folder").
        what: String,
    },
    /// A shared folder cannot be set up or used.
    #[error("share {share}: {problem}")]
    Share {
        /// The share's id.
        share: String,
        /// What is wrong.
        problem: ShareProblem,
    },
    /// A host folder to share does not exist.
    #[error("the host folder {folder} does not exist")]
    NoHostFolder {
        /// The folder.
        folder: Utf8PathBuf,
    },
    /// A warm state could not be saved or restored.
    #[error("{problem}")]
    WarmState {
        /// What went wrong.
        problem: String,
    },
    /// ssh could not reach the guest, or lost the connection while a
    /// command ran (ssh's own status 255, told apart from a command's).
    #[error("{problem}")]
    Transport {
        /// What went wrong, naming the guest's port.
        problem: String,
        /// What to do about it.
        hint: String,
    },
    /// Work in the guest ran past its timeout and was killed.
    #[error("{what} did not finish within {} and was killed", span(*.after))]
    TimedOut {
        /// The work, e.g. "the guest command `make test`".
        what: String,
        /// The timeout it had.
        after: std::time::Duration,
    },
    /// Work in the guest was cancelled through its cancel flag and killed.
    #[error("{what} was cancelled and killed")]
    Cancelled {
        /// The work.
        what: String,
    },
    /// A provisioning or hook step failed in the guest.
    #[error(transparent)]
    Step(#[from] crate::provision::StepFailed),
    /// A tool or a copy in the guest failed.
    #[error("{what}:\n{output}")]
    Tool {
        /// What failed, with its exit status.
        what: String,
        /// The end of what it printed.
        output: String,
    },
    /// clamscan in the guest has no virus signatures to scan with.
    #[error("clamscan found no virus signatures")]
    NoSignatures,
    /// The configured folder of ClamAV signatures does not exist.
    #[error("the ClamAV signature folder {folder} does not exist")]
    NoSignatureFolder {
        /// The folder.
        folder: Utf8PathBuf,
    },
    /// A program run on the host failed.
    #[error("{program} failed ({status}){}", output_text(.output))]
    ProgramFailed {
        /// The program.
        program: String,
        /// How it ended.
        status: String,
        /// The end of what it printed on stderr.
        output: String,
    },
    /// A result would overwrite a file.
    #[error("{path} already exists")]
    TargetExists {
        /// The file.
        path: Utf8PathBuf,
    },
    /// Building the VM's missing image failed.
    #[error(transparent)]
    Image(#[from] kvmx_image::Error),
    /// A start hook failed after the guest came up; the VM runs on.
    #[error("a start hook of {vm} failed; {vm} is running")]
    StartHook {
        /// The VM.
        vm: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// The caller's cancel flag was set (Ctrl-C).
    #[error("interrupted; {left}")]
    Interrupted {
        /// The state it leaves.
        left: String,
    },
    /// A program could not be run.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where a missing host program comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// The Debian package that holds it.
    Debian(&'static str),
    /// No Debian package holds it (in the Debian kvmx supports): how to get
    /// it instead.
    Instructions(&'static str),
}

/// How a share's helper daemon failed to come up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonEnd {
    /// It exited, with this status.
    #[error("exited ({0})")]
    Exited(String),
    /// It was still not serving at the deadline, and was killed.
    #[error("was not ready within {}", span(*.0))]
    NotReady(Duration),
}

/// What is wrong with a share.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareProblem {
    /// Its host folder does not exist.
    #[error("the host folder {host} does not exist")]
    HostFolderMissing {
        /// The folder.
        host: Utf8PathBuf,
    },
    /// Its NFS server is gone.
    #[error("its NFS server is not running")]
    NfsServerGone,
    /// Its guest folder could not be made.
    #[error("cannot make the folder {guest} in the guest")]
    MountPoint {
        /// The guest folder.
        guest: String,
    },
    /// Its guest path is a file.
    #[error("{guest} in the guest is a file, not a folder to mount on")]
    MountPointIsFile {
        /// The guest path.
        guest: String,
    },
    /// sshfs on the host could not mount the guest folder.
    #[error("sshfs could not mount {guest} of the guest at {host}: {said}")]
    HostMount {
        /// The guest folder.
        guest: String,
        /// The host folder.
        host: Utf8PathBuf,
        /// How sshfs ended, and the end of what it said.
        said: String,
    },
    /// A reverse sshfs mount did not appear in the guest in time.
    #[error("reverse sshfs of {host} did not mount at {guest} in the guest")]
    ReverseMount {
        /// The host folder.
        host: Utf8PathBuf,
        /// The guest folder.
        guest: String,
    },
    /// The guest could not mount a live share.
    #[error("the guest could not mount it at {guest}")]
    LiveMount {
        /// The guest folder.
        guest: String,
    },
    /// The guest could not unmount a live share.
    #[error("the guest could not unmount {guest}")]
    LiveUnmount {
        /// The guest folder.
        guest: String,
    },
}

/// A duration as people read it: whole seconds, or milliseconds below one.
fn span(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{} s", duration.as_secs())
    }
}

fn output_text(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(":\n{output}")
    }
}

fn log_text(tail: &str) -> String {
    if tail.is_empty() {
        "; its log is empty".into()
    } else {
        format!("; the end of its log:\n{tail}")
    }
}

fn names_or(names: &[String], none: &str) -> String {
    if names.is_empty() {
        none.to_owned()
    } else {
        names.join(", ")
    }
}

impl Error {
    /// A closure wrapping an I/O error from `action` on `path`.
    pub fn io<'a>(
        action: &'static str,
        path: &'a camino::Utf8Path,
    ) -> impl FnOnce(std::io::Error) -> Error + 'a {
        move |source| Error::Core(kvmx_core::Error::io_doing(action, path)(source))
    }

    /// What kind of failure this is. Every variant is named, so a new one
    /// cannot go without a decision.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Core(error) => error.kind(),
            Error::Usage(_) | Error::BadVariable { .. } | Error::TargetExists { .. } => {
                ErrorKind::Usage
            }
            // The guest command's own status, so scripts can test it.
            Error::Step(step) => ErrorKind::Guest(u8::try_from(step.code).unwrap_or(1).max(1)),
            Error::Image(error) => error.kind(),
            Error::StartHook { source, .. } => source.kind(),
            Error::Interrupted { .. } => ErrorKind::Interrupted,
            Error::Qmp(_)
            | Error::SocketPathTooLong { .. }
            | Error::NoImage { .. }
            | Error::NoTemplateImage { .. }
            | Error::NestedTemplate { .. }
            | Error::NotAnOverlay { .. }
            | Error::Running { .. }
            | Error::NotRunning { .. }
            | Error::Locked { .. }
            | Error::InUse { .. }
            | Error::ImageInUse { .. }
            | Error::BackingRunning { .. }
            | Error::HasDependants { .. }
            | Error::Vanished { .. }
            | Error::PortInUse { .. }
            | Error::MissingTool { .. }
            | Error::MissingInGuest { .. }
            | Error::Timeout { .. }
            | Error::QemuFailed { .. }
            | Error::DaemonFailed { .. }
            | Error::Guest { .. }
            | Error::Remote { .. }
            | Error::NoSshPort { .. }
            | Error::InGuest { .. }
            | Error::Share { .. }
            | Error::NoHostFolder { .. }
            | Error::WarmState { .. }
            | Error::Tool { .. }
            | Error::NoSignatures
            | Error::NoSignatureFolder { .. }
            | Error::ProgramFailed { .. }
            | Error::Spawn { .. }
            | Error::Transport { .. }
            | Error::TimedOut { .. } => ErrorKind::Failure,
            Error::Cancelled { .. } => ErrorKind::Interrupted,
        }
    }

    /// Advice for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Core(error) => error.hint(),
            Error::NoImage { .. } => {
                Some("build it with `kvmx-create`, or let `kvmx up` build it".into())
            }
            Error::NoTemplateImage { template, .. } => Some(format!(
                "build it with `kvmx up {template}` (or kvmx-create)"
            )),
            Error::NestedTemplate { .. } => {
                Some("set template.name to a VM that has its own image".into())
            }
            Error::NotAnOverlay { .. } => Some(
                "point image.path at a qcow2 overlay, or set image.recreate_overlay = false".into(),
            ),
            Error::Running { .. } => Some("stop it first with `kvmx stop`".into()),
            Error::InUse { .. } => Some(
                "see `kvmx status`; stop it with `kvmx stop`, or let the other command finish"
                    .into(),
            ),
            Error::NotRunning { .. } => Some("start it with `kvmx up`".into()),
            Error::Locked { .. } => Some(
                "another `kvmx` is starting it: wait for that one, then see `kvmx status`".into(),
            ),
            Error::ImageInUse { users, .. } if users.is_empty() => {
                Some("wait until the VM that is starting runs, then stop it".into())
            }
            Error::ImageInUse { users, .. } => Some(format!(
                "stop them first: {}",
                users
                    .iter()
                    .map(|user| format!("`kvmx stop {user}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Error::BackingRunning { owner, .. } => {
                Some(format!("stop {owner} first (`kvmx stop {owner}`)"))
            }
            Error::HasDependants { .. } => {
                Some("destroy those first, or point them at another VM".into())
            }
            Error::PortInUse { .. } => {
                Some("free the port or change network.forwards in kvmx.toml".into())
            }
            Error::MissingTool { provider, .. } => Some(match provider {
                Provider::Debian(package) => {
                    format!("install the {package} package (`sudo apt-get install {package}`)")
                }
                Provider::Instructions(text) => (*text).to_owned(),
            }),
            Error::MissingInGuest { package, .. } => Some(format!(
                "install it in the guest: `kvmx ssh -- sudo apt-get install -y {package}` (images made by kvmx-create have it)"
            )),
            Error::DaemonFailed { log, log_tail, .. } if !log_tail.is_empty() => {
                Some(format!("its whole log is {log}"))
            }
            Error::Guest { hint, .. }
            | Error::Remote { hint, .. }
            | Error::Transport { hint, .. } => Some(hint.clone()),
            Error::Image(error) => error.hint(),
            Error::StartHook { vm, source } => Some(format!(
                "{}; run `kvmx restart {vm}` once fixed",
                source.hint().unwrap_or_else(|| "fix the hook".into())
            )),
            Error::NoSshPort { .. } => Some(
                "set ssh.enabled = true and network.mode = \"user\" in kvmx.toml, then restart the VM (`kvmx restart`)".into(),
            ),
            Error::Share { problem, .. } => problem.hint(),
            Error::NoHostFolder { .. } => {
                Some("create it, or fix the setting or argument that names it".into())
            }
            Error::NoSignatures => Some(
                "fetch them in the template with freshclam (examples/sanitizer does it when \
                 provisioned), or name a host folder of signatures in disposable.clamav_database"
                    .into(),
            ),
            Error::NoSignatureFolder { .. } => Some(
                "create it, or fix disposable.clamav_database in the template's kvmx.toml".into(),
            ),
            Error::TargetExists { .. } => {
                Some("kvmx never overwrites a file: remove or rename it, then run again".into())
            }
            Error::SocketPathTooLong { .. } => {
                Some("use a shorter VM name or a shorter XDG_RUNTIME_DIR / KVMX_HOME".into())
            }
            _ => None,
        }
    }
}

impl ShareProblem {
    fn hint(&self) -> Option<String> {
        match self {
            ShareProblem::HostFolderMissing { .. } => {
                Some("create it, or fix shares.host in kvmx.toml".into())
            }
            ShareProblem::NfsServerGone => Some("restart the VM (`kvmx restart`)".into()),
            ShareProblem::MountPointIsFile { .. } => Some(
                "set shares.guest to a folder, or to a path that does not exist yet (kvmx makes it)"
                    .into(),
            ),
            ShareProblem::ReverseMount { .. } => Some(
                "the guest needs the sshfs package: add it to create.packages, or install it with `kvmx ssh -- sudo apt-get install -y sshfs`".into(),
            ),
            ShareProblem::LiveUnmount { .. } => Some(
                "it may be in use: leave it in every shell and program of the guest, then try again"
                    .into(),
            ),
            _ => None,
        }
    }
}
