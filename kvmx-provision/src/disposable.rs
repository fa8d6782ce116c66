//! Disposable VMs: a throwaway VM made from a template for one task, whose
//! files are all erased when it ends.
//!
//! A disposable is a template-based VM with a generated name and no private
//! disk. Its data folder holds a record (`disposable.json`) with its config
//! and its owner: the kvmx process that runs it, or none for a named
//! disposable that stays up on its own. Whoever finds a disposable whose
//! owner is gone (or, for a named one, whose QEMU is gone) erases it, so a
//! killed kvmx leaves nothing behind for long.

use camino::Utf8PathBuf;
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::config::values::{ByteSize, GuestPath, VmName};
use kvmx_core::config::{Config, DisplayKind, NetworkMode, Share, TemplateRoot};
use kvmx_core::{Layout, Registry};
use serde::{Deserialize, Serialize};

use crate::files::VmFiles;
use crate::guest::OutputSink;
use crate::vm::{Patience, UpReport};
use crate::warm::{WarmRun, WarmState, memory_file};
use crate::{Error, Vm};
use kvmx_core::observe::{Observer, Stages};

/// How a disposable differs from its template.
#[derive(Debug, Clone)]
pub struct DisposableOptions {
    /// Its name; generated (`disp-` and six hex digits) when unset.
    pub name: Option<VmName>,
    /// Guest memory; defaults to the template's `disposable.memory`, then
    /// to the template's own.
    pub memory: Option<ByteSize>,
    /// With `false` the guest reaches no network, the host included; SSH
    /// from the host still reaches it.
    pub network: bool,
    /// Host folders shared into the guest (9p), as (host, guest).
    pub shares: Vec<(Utf8PathBuf, GuestPath)>,
    /// The caller runs its command with [`Disposable::agent_command`]: a
    /// guest restored with kvmx's agent is then not waited for on SSH.
    pub agent: bool,
}

impl Default for DisposableOptions {
    fn default() -> Self {
        DisposableOptions {
            name: None,
            memory: None,
            network: true,
            shares: Vec::new(),
            agent: false,
        }
    }
}

/// The process that runs a disposable; its start time tells a reused pid
/// from the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Owner {
    pid: i32,
    started: u64,
}

impl Owner {
    fn this_process() -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            pid,
            started: process_start(pid).unwrap_or(0),
        }
    }

    fn is_alive(&self) -> bool {
        process_start(self.pid) == Some(self.started)
    }
}

/// The start time of a process (field 22 of /proc/PID/stat).
fn process_start(pid: i32) -> Option<u64> {
    crate::state::proc_stat(pid)?.get(19)?.parse().ok()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    template: VmName,
    template_config: Config,
    config: Config,
    owner: Option<Owner>,
}

/// A running (or about to run) disposable. Dropping it erases it; a named
/// disposable that should stay up is [`Disposable::release`]d instead.
#[derive(Debug)]
pub struct Disposable {
    vm: Vm,
    done: bool,
    /// Whether the caller wants the agent ([`DisposableOptions::agent`]).
    wants_agent: bool,
    /// Set once the guest was restored with the agent running, and not
    /// waited for on SSH.
    agent_ready: std::cell::Cell<bool>,
}

impl Disposable {
    /// Makes a disposable of `template` (not started yet: see
    /// [`Disposable::boot`]). Leftovers of earlier disposables are erased
    /// first.
    pub fn create(
        layout: &Layout,
        template: &Vm,
        options: DisposableOptions,
    ) -> Result<Disposable, Error> {
        if template.template.is_some() {
            return Err(Error::Usage(format!(
                "{} is template-based: a disposable's template must have its own image",
                template.name
            )));
        }
        sweep(layout);
        let name = match options.name.clone() {
            Some(name) => {
                let taken = Registry::load(layout)?.get(name.as_str()).is_some()
                    || layout.vm(&name).data.exists();
                if taken {
                    return Err(Error::Usage(format!(
                        "the name {name} is taken by another VM: choose another"
                    )));
                }
                name
            }
            None => fresh_name(layout)?,
        };
        let config = disposable_config(&name, template, &options)?;
        let record = Record {
            template: template.name.clone(),
            template_config: template.config.clone(),
            config,
            owner: Some(Owner::this_process()),
        };
        let vm = record.vm(layout, name);
        crate::state::ensure_private_dir(&vm.files.paths.data)?;
        write_record(&vm, &record)?;
        Ok(Disposable {
            vm,
            done: false,
            wants_agent: options.agent,
            agent_ready: std::cell::Cell::new(false),
        })
    }

    /// Starts it and waits for SSH, then mounts its shares. On failure it
    /// is erased.
    pub fn boot(
        &self,
        observer: &mut dyn Observer,
        sink: &mut dyn OutputSink,
    ) -> Result<UpReport, Error> {
        let booted = self.start(&mut Stages::new(observer)).and_then(|report| {
            // A guest restored for the agent has no shares (warm states
            // are made without), and a disposable has no hooks: nothing
            // to log in over SSH for.
            if !self.agent_ready.get() {
                self.vm.startup_hooks(sink)?;
            }
            Ok(report)
        });
        if booted.is_err() {
            let _ = erase(&self.vm);
        }
        booted
    }

    /// Restores the template's warm state when there is one; otherwise
    /// boots, and saves the warm state for the next disposables.
    fn start(&self, progress: &mut Stages<'_>) -> Result<UpReport, Error> {
        if let Some(state) = crate::warm::find(&self.vm) {
            match self.restore(&state, progress) {
                Ok(report) => return Ok(report),
                Err(error) => {
                    progress.note(&format!(
                        "the warm state did not restore ({error}); booting instead"
                    ));
                    crate::warm::discard(&state);
                }
            }
        }
        let Some(fresh) = crate::warm::new_folder(&self.vm)? else {
            return self.vm.start(true, None, &Patience::default(), progress);
        };
        // Boot with the memory in the state's file, save, and come back
        // restored like every later sibling.
        let report = self.vm.start(
            true,
            Some(WarmRun::Save(&memory_file(&fresh))),
            &Patience::default(),
            progress,
        )?;
        progress.stage("preparing the guest for restoring");
        match crate::warm::prepare_guest(&self.vm) {
            Ok(true) => crate::warm::mark_agent(&fresh)?,
            Ok(false) => {}
            Err(error) => {
                // This one runs as booted; its memory file goes once QEMU ends.
                progress.note(&format!(
                    "{error}; this template's disposables boot each time (set disposable.warm = false in its config to stop trying)"
                ));
                let _ = std::fs::remove_dir_all(&fresh);
                return Ok(report);
            }
        }
        progress.stage("saving the warm state for the next disposables");
        match crate::warm::save(&self.vm, &fresh, report.accelerator) {
            Ok(state) => self.restore(&state, progress),
            Err(error) => {
                progress.note(&format!(
                    "no warm state was saved ({error}); booting instead"
                ));
                let _ = std::fs::remove_dir_all(&fresh);
                self.vm.halt();
                self.vm.start(true, None, &Patience::default(), progress)
            }
        }
    }

    fn restore(&self, state: &WarmState, progress: &mut Stages<'_>) -> Result<UpReport, Error> {
        let state = WarmState {
            agent: state.agent && self.wants_agent,
            ..state.clone()
        };
        let restored = self.vm.start(
            true,
            Some(WarmRun::Restore(&state)),
            &Patience::default(),
            progress,
        );
        match &restored {
            Ok(_) => self.agent_ready.set(state.agent),
            Err(_) => self.vm.halt(),
        }
        restored
    }

    /// Starts `words` (see [`crate::guest::command_line`]) through kvmx's
    /// agent, as the guest's SSH user, when the disposable was restored
    /// with it ([`DisposableOptions::agent`]); `terminal` gives the command
    /// a pseudo-terminal. `None` when there is no agent: the guest then
    /// answers SSH (an agent that fails to start the command is waited
    /// past, to SSH), and the caller runs the command there.
    pub fn agent_command<S: AsRef<str>>(
        &self,
        words: &[S],
        terminal: Option<crate::agent::Terminal>,
    ) -> Result<Option<crate::agent::AgentSession>, Error> {
        if !self.agent_ready.get() {
            return Ok(None);
        }
        let mut request =
            crate::warm::agent_request(&self.vm, &crate::guest::command_line(words)?)?;
        request.terminal = terminal;
        // The agent sets the restored guest's clock before the command.
        match crate::agent::start(&self.vm.files, &request, AGENT_DEADLINE, true) {
            Ok(session) => Ok(Some(session)),
            Err(_) => {
                self.agent_ready.set(false);
                let patience = Patience::default();
                crate::warm::wait_for_login(&self.vm, patience.timeout(&self.vm), || {
                    crate::warm::set_clock(&self.vm)
                })?;
                Ok(None)
            }
        }
    }

    /// The VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Powers it off and removes every file it made.
    pub fn erase(mut self) -> Result<(), Error> {
        self.done = true;
        erase(&self.vm)
    }

    /// Leaves it running on its own, for `kvmx ssh NAME` and the like; it
    /// is erased when it stops.
    pub fn release(mut self) -> Result<(), Error> {
        self.done = true;
        let mut record =
            read_record(&self.vm.layout, &self.vm.name).ok_or_else(|| Error::Vanished {
                vm: self.vm.name.to_string(),
            })?;
        record.owner = None;
        write_record(&self.vm, &record)
    }
}

/// How long a restored guest's agent gets to start a command.
const AGENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl Drop for Disposable {
    fn drop(&mut self) {
        if !self.done {
            let _ = erase(&self.vm);
        }
    }
}

impl Record {
    fn vm(&self, layout: &Layout, name: VmName) -> Vm {
        let template = Vm::new(layout, self.template.clone(), self.template_config.clone());
        Vm::on_template(layout, name, self.config.clone(), template)
    }
}

/// The config of a disposable: the template's system, with nothing of its
/// project (no forwards, shares, provisioning, hooks or display).
fn disposable_config(
    name: &VmName,
    template: &Vm,
    options: &DisposableOptions,
) -> Result<Config, Error> {
    let source = &template.config;
    let mut config = Config {
        hardware: source.hardware.clone(),
        create: source.create.clone(),
        ssh: source.ssh.clone(),
        supervise: source.supervise.clone(),
        ..Config::default()
    };
    config.vm = source.vm.clone();
    config.vm.name = Some(name.clone());
    config.template.name = Some(template.name.clone());
    config.template.root = TemplateRoot::Overlay;
    config.template.private_disk = false;
    if let Some(memory) = options.memory.or(source.disposable.memory) {
        config.hardware.memory = memory;
    }
    config.network.mode = NetworkMode::User;
    config.network.nic_model = source.network.nic_model.clone();
    config.network.restrict = !options.network;
    config.display.kind = DisplayKind::None;
    for (index, (host, guest)) in options.shares.iter().enumerate() {
        if !host.is_dir() {
            return Err(Error::Usage(format!(
                "--share {host}:{guest}: the host folder {host} does not exist"
            )));
        }
        config.shares.push(Share {
            id: format!("share{index}")
                .parse()
                .expect("shareN is a valid share id"),
            host: host.clone(),
            guest: guest.clone(),
            // This host's default kind (virtiofs where virtiofsd is):
            // a disposable with shares boots cold, never from a warm state.
            kind: None,
            read_only: false,
            msize: None,
            cache: None,
        });
    }
    Ok(config)
}

/// `disp-` and six random hex digits, not yet used.
fn fresh_name(layout: &Layout) -> Result<VmName, Error> {
    use std::io::Read;
    let mut random = std::fs::File::open("/dev/urandom")
        .map_err(Error::io("open", camino::Utf8Path::new("/dev/urandom")))?;
    loop {
        let mut bytes = [0u8; 3];
        random
            .read_exact(&mut bytes)
            .map_err(Error::io("read", camino::Utf8Path::new("/dev/urandom")))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let name: VmName = format!("disp-{hex}")
            .parse()
            .expect("disp-HEX is a valid VM name");
        if !layout.vm(&name).data.exists() {
            return Ok(name);
        }
    }
}

fn write_record(vm: &Vm, record: &Record) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(record).expect("records serialize");
    atomic_file::write(&vm.files.disposable_record(), &text, Overwrite::Yes)?;
    Ok(())
}

fn read_record(layout: &Layout, name: &VmName) -> Option<Record> {
    let text = std::fs::read_to_string(VmFiles::new(layout, name).disposable_record()).ok()?;
    serde_json::from_str(&text).ok()
}

/// The disposable called `name`, if there is one.
pub fn find(layout: &Layout, name: &str) -> Option<Vm> {
    let name: VmName = name.parse().ok()?;
    read_record(layout, &name).map(|record| record.vm(layout, name))
}

/// Whether `vm` is a disposable.
pub fn is_disposable(vm: &Vm) -> bool {
    vm.files.disposable_record().exists()
}

/// The names of the disposables made from `template`.
pub fn of_template(layout: &Layout, template: &VmName) -> Vec<String> {
    all(layout)
        .into_iter()
        .filter(|(_, record)| record.as_ref().is_some_and(|r| &r.template == template))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Every disposable folder, with its record when it can be read.
fn all(layout: &Layout) -> Vec<(VmName, Option<Record>)> {
    let Ok(entries) = std::fs::read_dir(&layout.data_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<VmName>().ok())
        .filter(|name| VmFiles::new(layout, name).disposable_record().exists())
        .map(|name| {
            let record = read_record(layout, &name);
            (name, record)
        })
        .collect()
}

/// Erases the disposables nobody runs any more: their kvmx is gone, or a
/// named one's QEMU is. Returns their names.
pub fn sweep(layout: &Layout) -> Vec<String> {
    let mut erased = Vec::new();
    for (name, record) in all(layout) {
        let leftover = match &record {
            None => true,
            Some(Record {
                owner: Some(owner), ..
            }) => !owner.is_alive(),
            Some(record) => {
                let vm = record.vm(layout, name.clone());
                !matches!(
                    crate::state::probe(&vm.files),
                    Ok(crate::state::Probe::Held)
                )
            }
        };
        if !leftover {
            continue;
        }
        let removed = match record {
            Some(record) => erase(&record.vm(layout, name.clone())),
            None => remove_folders(&Vm::new(layout, name.clone(), Config::default())),
        };
        if removed.is_ok() {
            erased.push(name.to_string());
        }
    }
    erased
}

/// Kills a disposable's QEMU and removes its folders.
pub fn erase(vm: &Vm) -> Result<(), Error> {
    vm.kill()?;
    remove_folders(vm)
}

/// Removes a disposable's folders: runtime first, the record last, so a
/// half-done removal is found and finished by the next sweep.
pub(crate) fn remove_folders(vm: &Vm) -> Result<(), Error> {
    if !is_disposable(vm) {
        return Ok(());
    }
    let paths = &vm.files.paths;
    if paths.runtime.exists() {
        std::fs::remove_dir_all(&paths.runtime).map_err(Error::io("remove", &paths.runtime))?;
    }
    let entries = std::fs::read_dir(&paths.data).map_err(Error::io("read", &paths.data))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path == vm.files.disposable_record() {
            continue;
        }
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|source| {
            Error::Core(kvmx_core::Error::io_doing("remove", &paths.data)(source))
        })?;
    }
    std::fs::remove_dir_all(&paths.data).map_err(Error::io("remove", &paths.data))
}
