//! The command-line surface, defined once: parsing, `--help`, completions
//! and the man page all come from these types.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

/// QEMU virtual machines from a file in each project.
#[derive(Debug, Parser)]
#[command(name = "kvmx", version, about, long_about = None)]
#[command(
    after_help = "Exit status: 0 success, 1 failure, 2 usage error, 3 config error, 130 interrupted; \
                  a command run in the guest (ssh, run, provision, disposable) passes its own on."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a project: write a commented kvmx.toml and register the VM.
    Init(InitArgs),
    /// Write a kvmx.toml equivalent to a legacy kvmxfile.
    Import(ImportArgs),
    /// List registered VMs.
    List,
    /// Inspect a VM's config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page (roff).
    Man,
    /// Start a VM (building its image first if needed) and wait for SSH.
    Up(UpArgs),
    /// Make a VM's image with an installer: Debian's, preseeded from
    /// kvmx.toml, or install.iso.
    Install(InstallArgs),
    /// Power a VM off: ACPI, then SSH poweroff, QMP quit, SIGTERM, SIGKILL.
    #[command(alias = "poweroff")]
    Stop(StopArgs),
    /// Kill a VM's QEMU at once.
    Kill(VmArg),
    /// Pause a running VM.
    Suspend(VmArg),
    /// Resume a paused VM.
    Resume(VmArg),
    /// Stop a VM, then start it again.
    Restart(VmArg),
    /// Show whether a VM runs, with its ports, accelerator and image.
    Status(VmArg),
    /// Delete a stopped VM's disk image and data (keys, logs).
    Destroy(DestroyArgs),
    /// Destroy a VM and remove it from the registry.
    Purge(DestroyArgs),
    /// Attach to a running VM's serial console (Ctrl-] detaches).
    Console(VmArg),
    /// Log in to a running VM, or run a command there.
    Ssh(SshArgs),
    /// Send a raw QMP command (JSON) to a running VM.
    Qmp(QmpArgs),
    /// Run a QEMU monitor (HMP) command in a running VM.
    Monitor(MonitorArgs),
    /// Show which host port reaches a guest port.
    Port(PortArgs),
    /// Print an OpenSSH config block for a running VM (for scp, IDEs...).
    SshConfig(VmArg),
    /// Copy files to or from a running VM (guest paths start with `:`).
    Copy(TransferArgs),
    /// Rsync a host folder into a running VM.
    RsyncTo(TransferArgs),
    /// Rsync a folder of a running VM to the host.
    RsyncFrom(TransferArgs),
    /// Upload a script to a running VM, run it, remove it; exits with its status.
    Run(RunArgs),
    /// Sync the provision folders and run the provision command.
    Provision(VmArg),
    /// Run the configured upgrade command (a stopped VM is started for it,
    /// then stopped again).
    Upgrade(VmArg),
    /// Stop, destroy, rebuild, start and provision a VM in one step.
    Recycle(DestroyArgs),
    /// Keep the VMs with supervise.manage = true running: start them,
    /// restart them after a crash (with backoff), leave those stopped on
    /// purpose; SIGTERM powers them off.
    Supervise(SuperviseArgs),
    /// Run a kvmx subcommand (up, stop, restart, status, provision,
    /// upgrade, ssh -- COMMAND) on many VMs in parallel, each output line
    /// behind the VM's name, then a summary table; `foreach --managed --
    /// upgrade` is the mass upgrade.
    Foreach(ForeachArgs),
    /// List the folders shared with a VM, and how.
    Shares(VmArg),
    /// Make a host folder appear in a running VM (virtiofs, no reboot).
    Mount(MountArgs),
    /// Remove a folder added with `kvmx mount`.
    Umount(UmountArgs),
    /// Open the configured SPICE or VNC client on a running VM.
    #[command(visible_aliases = ["spice", "vnc"])]
    Display(VmArg),
    /// Attach or detach a host USB device (by VENDOR:PRODUCT id).
    #[command(subcommand)]
    Usb(UsbCommand),
    /// Boot a throwaway copy of a template, run a command (or a shell) in
    /// it, and erase it; exits with the command's status.
    Disposable(DisposableArgs),
    /// Run a script in a throwaway copy of a template, then erase it.
    DisposableRun(DisposableRunArgs),
    /// Start a named throwaway copy of a template that stays up (for
    /// `kvmx ssh NAME`) and is erased when it stops.
    DisposableName(DisposableNameArgs),
    /// Remove metadata from files with mat2; each result is NAME.cleaned.EXT.
    Mat(SanitizeArgs),
    /// Rebuild PDFs from images of their pages, so nothing active survives;
    /// each result is NAME.flattened.pdf.
    PdfCleaner(SanitizeArgs),
    /// Scan files or folders for viruses with ClamAV; exits 1 when
    /// something is found.
    Clamav(SanitizeArgs),
}

/// How a disposable differs from its template.
#[derive(Debug, Args)]
pub struct DisposableOptionArgs {
    /// Cut the guest off from every network (the host too); SSH still
    /// reaches it.
    #[arg(long)]
    pub no_network: bool,
    /// Share a host folder into the guest (virtiofs where virtiofsd is found, else 9p), as HOST:GUEST; repeatable.
    #[arg(long, value_name = "HOST:GUEST")]
    pub share: Vec<String>,
    /// Guest memory, such as 512M or 2G.
    #[arg(long)]
    pub memory: Option<String>,
}

/// `kvmx disposable`.
#[derive(Debug, Args)]
pub struct DisposableArgs {
    /// The template: a registered VM name or a project folder.
    #[arg(required_unless_present = "cleanup")]
    pub template: Option<String>,
    /// Erase disposables left behind by a killed kvmx, and exit.
    #[arg(long, conflicts_with_all = ["template", "command"])]
    pub cleanup: bool,
    /// How it differs from the template.
    #[command(flatten)]
    pub options: DisposableOptionArgs,
    /// The command to run instead of a login shell (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `kvmx disposable-run`.
#[derive(Debug, Args)]
pub struct DisposableRunArgs {
    /// The template: a registered VM name or a project folder.
    pub template: String,
    /// The script to run.
    pub file: Utf8PathBuf,
    /// Arguments for the script.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Run it as root (with sudo).
    #[arg(long)]
    pub root: bool,
    /// How it differs from the template.
    #[command(flatten)]
    pub options: DisposableOptionArgs,
}

/// `kvmx disposable-name`.
#[derive(Debug, Args)]
pub struct DisposableNameArgs {
    /// The template: a registered VM name or a project folder.
    pub template: String,
    /// The disposable's name.
    pub name: String,
    /// How it differs from the template.
    #[command(flatten)]
    pub options: DisposableOptionArgs,
}

/// `kvmx mat`, `pdf-cleaner` and `clamav`: the work runs in a throwaway
/// copy of a template VM with no network and no shares; files are copied
/// in, only results come out, and originals are never changed.
#[derive(Debug, Args)]
pub struct SanitizeArgs {
    /// The template: a registered VM name or a project folder (see
    /// examples/sanitizer).
    pub template: String,
    /// Files to work on (folders too for `clamav`). A result is written
    /// beside its file, never over an existing one.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<Utf8PathBuf>,
}

/// `kvmx usb ...`.
#[derive(Debug, Subcommand)]
pub enum UsbCommand {
    /// Pass a host USB device through to a running VM.
    Attach(UsbArgs),
    /// Take a passed-through USB device back.
    Detach(UsbArgs),
}

/// A VM and a USB device.
#[derive(Debug, Args)]
pub struct UsbArgs {
    /// `[VM] VENDOR:PRODUCT`, hexadecimal ids as `lsusb` shows them.
    #[arg(num_args = 1..=2, required = true, value_names = ["VM", "DEVICE"])]
    pub args: Vec<String>,
}

/// `kvmx init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Project folder. Default: the current folder.
    pub dir: Option<Utf8PathBuf>,
    /// VM name. Default: the folder's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Replace an existing kvmx.toml, and take over a name registered for
    /// another folder.
    #[arg(long)]
    pub force: bool,
}

/// `kvmx import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A kvmxfile, or a folder holding one. Default: the current folder.
    pub path: Option<Utf8PathBuf>,
    /// Replace an existing kvmx.toml.
    #[arg(long)]
    pub force: bool,
}

/// `kvmx config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config, with every default filled in.
    Show(VmArg),
    /// Print the path of the VM's config file.
    Path(VmArg),
}

/// A VM named explicitly, or found from the current folder.
#[derive(Debug, Args)]
pub struct VmArg {
    /// A registered VM name or a project folder. Default: the project
    /// around the current folder.
    pub vm: Option<String>,
}

/// `kvmx completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `kvmx up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// A registered VM name or a project folder.
    pub vm: Option<String>,
    /// Follow the serial console after starting instead of waiting for SSH.
    #[arg(long)]
    pub console: bool,
    /// Fail when the VM has no image, instead of building it.
    #[arg(long)]
    pub no_build: bool,
}

/// `kvmx install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// A registered VM name or a project folder.
    pub vm: Option<String>,
    /// Replace an existing image (once the new one is complete).
    #[arg(long)]
    pub force: bool,
}

/// `kvmx supervise`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SuperviseArgs {
    /// One pass (start what is not running), then exit: for cron or a
    /// systemd timer.
    #[arg(long)]
    pub once: bool,
    /// Seconds between passes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Something else than supervising.
    #[command(subcommand)]
    pub command: Option<SuperviseCommand>,
}

/// `kvmx supervise ...`.
#[derive(Debug, Subcommand)]
pub enum SuperviseCommand {
    /// Write a systemd user unit that runs `kvmx supervise` at login (or at
    /// boot, with lingering).
    Install {
        /// Replace an existing unit.
        #[arg(long)]
        force: bool,
    },
}

/// `kvmx foreach`.
#[derive(Debug, Args)]
pub struct ForeachArgs {
    /// VM names or glob patterns (`web-*`), besides or instead of the
    /// selection flags.
    pub vms: Vec<String>,
    /// Every registered VM.
    #[arg(long)]
    pub all: bool,
    /// The VMs with `supervise.manage = true`.
    #[arg(long)]
    pub managed: bool,
    /// Only those that run now.
    #[arg(long)]
    pub running: bool,
    /// Only those that do not run now.
    #[arg(long)]
    pub stopped: bool,
    /// How many VMs at once.
    #[arg(short = 'j', long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// The subcommand and its arguments: `-- upgrade`, `-- ssh -- uname -a`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `kvmx stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// A registered VM name or a project folder.
    pub vm: Option<String>,
    /// Skip the guest's own shutdown: QMP quit, then signals.
    #[arg(long)]
    pub force: bool,
    /// Seconds the guest gets at each polite step (ACPI, then poweroff over
    /// SSH); default: supervise.shutdown_timeout.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// `kvmx destroy` and `kvmx purge`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// A registered VM name or a project folder.
    pub vm: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// When another kvmx command holds the VM (starting or removing it),
    /// wait up to this many seconds for it instead of refusing.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "60")]
    pub wait: Option<u64>,
}

/// `kvmx ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// A registered VM name or a project folder.
    pub vm: Option<String>,
    /// A command to run instead of a login shell (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `kvmx qmp`.
#[derive(Debug, Args)]
pub struct QmpArgs {
    /// `[VM] JSON`: the VM (optional) and a QMP message such as
    /// '{"execute":"query-status"}'.
    #[arg(num_args = 1..=2, required = true, value_names = ["VM", "JSON"])]
    pub args: Vec<String>,
}

/// `kvmx monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// `[VM] COMMAND`: the VM (optional) and an HMP command such as
    /// "info status" (quoted as one argument).
    #[arg(num_args = 1..=2, required = true, value_names = ["VM", "COMMAND"])]
    pub args: Vec<String>,
}

/// `kvmx port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// `[VM] [GUEST_PORT]`: without a guest port, every forward is listed.
    #[arg(num_args = 0..=2, value_names = ["VM", "GUEST_PORT"])]
    pub args: Vec<String>,
}

/// `kvmx copy`, `rsync-to`, `rsync-from`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// `[VM] SOURCE DESTINATION`. For `copy`, the guest side is written
    /// `:path` (e.g. `kvmx copy notes.txt :/tmp/`); for `rsync-to` the
    /// source is on the host, for `rsync-from` in the guest.
    #[arg(num_args = 2..=3, required = true, value_names = ["VM", "SOURCE", "DESTINATION"])]
    pub args: Vec<String>,
}

/// `kvmx run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A registered VM name or a project folder.
    pub vm: String,
    /// The script to run.
    pub file: Utf8PathBuf,
    /// Arguments for the script.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Run it as root (with sudo).
    #[arg(long)]
    pub root: bool,
}

/// `kvmx mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// `[VM] HOST_DIR GUEST_DIR`.
    #[arg(num_args = 2..=3, required = true, value_names = ["VM", "HOST_DIR", "GUEST_DIR"])]
    pub args: Vec<String>,
}

/// `kvmx umount`.
#[derive(Debug, Args)]
pub struct UmountArgs {
    /// `[VM] GUEST_DIR`.
    #[arg(num_args = 1..=2, required = true, value_names = ["VM", "GUEST_DIR"])]
    pub args: Vec<String>,
}
