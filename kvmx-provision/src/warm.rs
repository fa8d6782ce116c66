//! Warm disposables: a template's disposables restore a saved running
//! state instead of booting.
//!
//! The first disposable of a template boots with its guest memory in a
//! file (mapped shared), and once SSH answers kvmx saves the device state
//! with QEMU's migration to a file, skipping the memory
//! (`x-ignore-shared`: it is already in the file), keeps its disk overlay,
//! and quits. Every disposable, that one included, then starts from the
//! state: the memory file mapped private (copy-on-write, read lazily), a
//! fresh overlay on the saved disk, the device state loaded through
//! `-incoming defer`. Saving takes a fraction of a second and the state is
//! a few hundred kilobytes beside the memory file.
//!
//! A restored guest gets a fresh `vmgenid` (QEMU makes one at every start
//! and tells the guest on restore; Linux reseeds its RNG from it), so
//! siblings share no random state, and its clock is set from the host's
//! in the first command. A state is kept per template and per shape of the
//! disposable, and is thrown away when the template's image or QEMU
//! changes.
//!
//! Before saving, the first disposable also gets kvmx's agent (`agent.rs`)
//! when the host has its binary: a state saved with a running agent
//! (marked by an `agent` file) lets a restored sibling run its command
//! without logging in, right after its clock is set.

use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::qemu::Accel;
use crate::qmp::{Qmp, commands};
use crate::{Error, Vm};

/// How long saving or loading the device state may take.
const MIGRATION_DEADLINE: Duration = Duration::from_secs(60);

/// How long a restored guest may take to set its clock.
const CLOCK_DEADLINE: Duration = Duration::from_secs(30);

/// A saved state that disposables start from.
#[derive(Debug, Clone)]
pub struct WarmState {
    /// Its folder.
    pub dir: Utf8PathBuf,
    /// What it depends on.
    pub facts: Facts,
    /// Whether the guest runs kvmx's agent, and the restore should rely
    /// on it instead of waiting for an SSH login.
    pub agent: bool,
}

/// What a saved state depends on; any change makes it stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The template image's size, modification time (ns) and inode.
    pub template_image: FileId,
    /// The same of the QEMU binary.
    pub qemu: FileId,
    /// The accelerator it ran under (a state restores under the same).
    pub accelerator: Accel,
}

/// Size, modification time in nanoseconds, and inode of a file.
pub type FileId = (u64, i128, u64);

impl WarmState {
    /// The disk at the moment of saving (a qcow2 overlay on the template's
    /// image); restores run on overlays of it.
    pub fn disk(&self) -> Utf8PathBuf {
        disk_in(&self.dir)
    }

    /// The guest memory.
    pub fn memory(&self) -> Utf8PathBuf {
        memory_file(&self.dir)
    }

    fn devices(&self) -> Utf8PathBuf {
        self.dir.join("devices.state")
    }
}

/// The mark of a state whose guest runs the agent.
fn agent_mark(dir: &Utf8Path) -> Utf8PathBuf {
    dir.join("agent")
}

/// Marks the state being made in `fresh` as one whose guest runs the agent.
pub(crate) fn mark_agent(fresh: &Utf8Path) -> Result<(), Error> {
    let mark = agent_mark(fresh);
    std::fs::write(&mark, "").map_err(Error::io("write", &mark))
}

fn disk_in(dir: &Utf8Path) -> Utf8PathBuf {
    dir.join("disk.qcow2")
}

/// What a state in `dir` was made from, to tell when it is stale.
fn facts_in(dir: &Utf8Path) -> Utf8PathBuf {
    dir.join("facts.json")
}

/// The guest memory file of a state in `dir`.
pub(crate) fn memory_file(dir: &Utf8Path) -> Utf8PathBuf {
    dir.join("memory.ram")
}

/// How a start uses a warm state.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WarmRun<'a> {
    /// Boot with the memory in this file, to be saved.
    Save(&'a Utf8Path),
    /// Restore this state.
    Restore(&'a WarmState),
}

/// The folder of the warm state for a disposable `vm` (of its template),
/// `None` when it should have none.
fn folder(vm: &Vm) -> Option<Utf8PathBuf> {
    let template = vm.template.as_deref()?;
    if !template.config.disposable.warm || !vm.config.shares.is_empty() {
        return None;
    }
    // Everything of the disposable that the guest can see, without what
    // differs between siblings (name, paths).
    let mut shape = vm.config.clone();
    shape.vm.name = None;
    shape.image.path = None;
    let text = serde_json::to_string(&shape).expect("configs serialize");
    let shape_key = crate::provision::digest(&text);
    Some(recipe_folder(&template.files.paths.data).join(shape_key))
}

/// States are grouped by how they were made (kvmx's version, the guest
/// preparation and the agent binary), so that those made otherwise can be
/// found and removed.
fn recipe_folder(template_data: &Utf8Path) -> Utf8PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    let agent = crate::agent::find_binary()
        .and_then(|path| Utf8PathBuf::from_path_buf(path).ok())
        .and_then(|path| file_id(&path));
    let recipe = crate::provision::digest(&format!("{version}{PREPARE_GUEST}{agent:?}"));
    crate::files::warm_states(template_data).join(recipe)
}

/// Removes the template's states made by another version of kvmx or
/// another preparation: no disposable of this kvmx restores them, and
/// each holds the guest's memory.
fn remove_other_recipes(recipe: &Utf8Path) {
    let (Some(warm), Some(current)) = (recipe.parent(), recipe.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(warm) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str() != Some(current) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn file_id(path: &Utf8Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Some((meta.len(), nanos, meta.ino()))
}

fn qemu_binary() -> Option<Utf8PathBuf> {
    let path = std::env::var("PATH").ok()?;
    path.split(':')
        .map(|dir| Utf8Path::new(dir).join(crate::qemu::QEMU))
        .find(|candidate| candidate.is_file())
}

fn current_facts(vm: &Vm, accelerator: Accel) -> Option<Facts> {
    Some(Facts {
        template_image: file_id(&vm.system().image())?,
        qemu: file_id(&qemu_binary()?)?,
        accelerator,
    })
}

/// The usable warm state for the disposable `vm`; a stale one is removed.
pub fn find(vm: &Vm) -> Option<WarmState> {
    let dir = folder(vm)?;
    let text = std::fs::read_to_string(facts_in(&dir)).ok()?;
    let facts: Facts = serde_json::from_str(&text).ok()?;
    if current_facts(vm, facts.accelerator).as_ref() != Some(&facts) {
        let _ = std::fs::remove_dir_all(&dir);
        return None;
    }
    let agent = agent_mark(&dir).exists();
    Some(WarmState { dir, facts, agent })
}

/// Throws a state away (it failed to restore).
pub fn discard(state: &WarmState) {
    let _ = std::fs::remove_dir_all(&state.dir);
}

/// A folder in which to save a new warm state for `vm`, when it should
/// have one.
pub(crate) fn new_folder(vm: &Vm) -> Result<Option<Utf8PathBuf>, Error> {
    let Some(dir) = folder(vm) else {
        return Ok(None);
    };
    let parent = dir.parent().expect("the warm folder has a parent");
    remove_other_recipes(parent);
    let fresh = parent.join(format!(".new-{}", vm.name));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(Error::io("create", &fresh))?;
    Ok(Some(fresh))
}

/// Saves the running `vm`, booted with its memory in `fresh`'s memory
/// file, into `fresh`, quits it, and makes `fresh` the template's state.
pub(crate) fn save(vm: &Vm, fresh: &Utf8Path, accelerator: Accel) -> Result<WarmState, Error> {
    let facts = current_facts(vm, accelerator).ok_or_else(|| Error::WarmState {
        problem: "cannot read the template's image or QEMU".into(),
    })?;
    if let Some(run) = crate::state::read(&vm.files) {
        wait_until_idle(run.pid);
    }
    let mut qmp = vm.qmp()?;
    qmp.execute(&commands::Stop)?;
    qmp.execute(&migration_capabilities())?;
    let devices = fresh.join("devices.state");
    let uri = format!("exec:cat > {}", crate::guest::quote(devices.as_str()));
    qmp.execute(&commands::Migrate { uri })?;
    wait_for_migration(&mut qmp)?;
    drop(qmp);
    vm.halt();
    let disk = disk_in(fresh);
    std::fs::rename(vm.image(), &disk).map_err(Error::io("keep", &disk))?;
    let text = serde_json::to_vec_pretty(&facts).expect("facts serialize");
    kvmx_core::atomic_file::write(
        &facts_in(fresh),
        &text,
        kvmx_core::atomic_file::Overwrite::Yes,
    )?;
    let agent = agent_mark(fresh).exists();
    let dir = folder(vm).expect("a warm folder was chosen");
    std::fs::rename(fresh, &dir).map_err(Error::io("keep", &dir))?;
    Ok(WarmState { dir, facts, agent })
}

/// Loads the saved device state into the QEMU just started with
/// `-incoming defer` on the state's memory, and lets the guest run.
pub(crate) fn load(vm: &Vm, state: &WarmState) -> Result<(), Error> {
    let mut qmp = vm.qmp()?;
    qmp.execute(&migration_capabilities())?;
    let uri = format!("exec:cat {}", crate::guest::quote(state.devices().as_str()));
    qmp.execute(&commands::MigrateIncoming { uri })?;
    wait_for_migration(&mut qmp)?;
    // The guest was paused when it was saved, and arrives paused.
    qmp.execute(&commands::Cont)?;
    Ok(())
}

/// The memory is in the file both sides map, so the migration skips it;
/// `events` makes QEMU report each change of the migration's status.
fn migration_capabilities() -> commands::MigrateSetCapabilities {
    commands::MigrateSetCapabilities::enable(&["x-ignore-shared", "events"])
}

/// Waits for the `MIGRATION` event that ends the migration.
fn wait_for_migration(qmp: &mut Qmp) -> Result<(), Error> {
    let event = qmp.wait_event("MIGRATION", MIGRATION_DEADLINE, |event| {
        matches!(
            event.data["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        )
    })?;
    if event.data["status"] == "completed" {
        return Ok(());
    }
    // The event carries no reason; query-migrate does.
    let info = qmp.execute(&commands::QueryMigrate)?;
    Err(Error::WarmState {
        problem: format!(
            "QEMU could not save or load the warm state: {}",
            info.error_desc.as_deref().unwrap_or("it gave no reason")
        ),
    })
}

/// What the first disposable changes in its own system before it is saved,
/// so that its restored siblings set their clock and log in quickly.
const PREPARE_GUEST: &str = include_str!("warm_prepare.sh");

/// How long the agent gets to run its first command, before the save.
const AGENT_CHECK_DEADLINE: Duration = Duration::from_secs(30);

/// Prepares the guest about to be saved, and checks that its clock can be
/// set and that a fresh login still works. Returns whether the agent runs
/// commands in it (it runs when the host has its binary; see `agent.rs`).
pub(crate) fn prepare_guest(vm: &Vm) -> Result<bool, Error> {
    let target = vm.ssh_target()?;
    let mut collected = crate::guest::Collected::default();
    // The script installs and starts the agent when it finds it here.
    if let Some(agent) =
        crate::agent::find_binary().and_then(|path| Utf8PathBuf::from_path_buf(path).ok())
    {
        let status = target.upload(&agent, "/tmp/kvmx-agent", &mut collected)?;
        if !status.success() {
            return Err(Error::WarmState {
                problem: format!(
                    "could not copy kvmx-agent into the guest ({status}): {}",
                    collected.tail(5)
                ),
            });
        }
    }
    let status = target.run_with_input("sudo -n sh -s", Some(PREPARE_GUEST), &mut collected)?;
    if !status.success() {
        return Err(Error::WarmState {
            problem: format!(
                "could not prepare the guest for restoring ({status}): {}",
                collected.tail(5)
            ),
        });
    }
    crate::clock::set(&clock_pipe(vm), CLOCK_DEADLINE)?;
    if !target.unshared().answers() {
        return Err(Error::WarmState {
            problem: "the guest's sshd did not answer after it was prepared for restoring".into(),
        });
    }
    Ok(agent_runs(vm))
}

/// Whether the guest's agent runs a command as the SSH user.
fn agent_runs(vm: &Vm) -> bool {
    let Ok(request) = agent_request(vm, "true") else {
        return false;
    };
    crate::agent::start(&vm.files, &request, AGENT_CHECK_DEADLINE, false)
        .and_then(|session| session.wait(None, &mut std::io::sink(), &mut std::io::sink()))
        .is_ok_and(|status| status.success())
}

/// A request to the agent that runs `command_line` as `vm`'s SSH user,
/// with `ssh.env` set.
pub(crate) fn agent_request(vm: &Vm, command_line: &str) -> Result<crate::agent::Request, Error> {
    let target = vm.ssh_target()?;
    Ok(crate::agent::Request {
        user: target.user.clone(),
        command: command_line.to_owned(),
        terminal: None,
        env: target.env.clone(),
    })
}

/// Waits, a few seconds at most, until the guest is idle, judged by the
/// CPU time its QEMU uses: whatever runs in the guest when it is saved (the
/// end of the preparing login, say) runs again after every restore.
fn wait_until_idle(qemu: i32) {
    const WINDOW: Duration = Duration::from_millis(250);
    // Clock ticks are 10 ms: at most 12% of one core.
    const IDLE_TICKS: u64 = 3;
    let end = Instant::now() + Duration::from_secs(20);
    let mut before = crate::state::cpu_ticks(qemu);
    while Instant::now() < end {
        std::thread::sleep(WINDOW);
        let now = crate::state::cpu_ticks(qemu);
        match (before, now) {
            (Some(before), Some(now)) if now - before <= IDLE_TICKS => return,
            (_, None) => return,
            _ => before = now,
        }
    }
}

fn clock_pipe(vm: &Vm) -> Utf8PathBuf {
    crate::clock::pipe_base(&vm.files.paths.runtime)
}

/// Sets the restored guest's clock and waits until it answers SSH,
/// leaving that connection open for the disposable's commands; the first
/// login runs nothing in the guest, so it goes on while the clock is set.
/// A guest whose command is to run through the agent (`state.agent`) is
/// left alone: the agent sets the clock with the command.
pub(crate) fn wake(vm: &Vm, state: &WarmState, deadline: Duration) -> Result<(), Error> {
    let target = vm.ssh_target()?;
    if let Some(socket) = &target.control {
        // A connection into the saved guest's previous run is dead.
        let _ = std::fs::remove_file(socket);
    }
    if state.agent {
        return Ok(());
    }
    wait_for_login(vm, deadline, || set_clock(vm))
}

/// Sets a restored guest's clock through the clock port.
pub(crate) fn set_clock(vm: &Vm) -> Result<(), Error> {
    crate::clock::set(&clock_pipe(vm), CLOCK_DEADLINE)
}

/// Waits until the restored guest answers SSH, running `meanwhile` once
/// the first login is on its way.
pub(crate) fn wait_for_login(
    vm: &Vm,
    deadline: Duration,
    meanwhile: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    let target = vm.ssh_target()?;
    let end = Instant::now() + deadline;
    let mut login = target.spawn_login()?;
    meanwhile()?;
    loop {
        let answered = login.wait().is_ok_and(|status| status.success());
        if answered {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(Error::Timeout {
                awaited: "the restored disposable to answer SSH".into(),
                after: deadline,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        login = target.spawn_login()?;
    }
}

#[cfg(test)]
mod tests {
    use kvmx_core::Layout;
    use kvmx_core::config::Config;

    use super::*;

    /// A template with an image file, and a disposable of it.
    fn disposable_of_template(root: &Utf8Path) -> Vm {
        let layout = Layout::under(root);
        let mut config = Config::default();
        config.image.path = Some(root.join("template.img"));
        std::fs::write(root.join("template.img"), "version 1").unwrap();
        let template = Vm::new(&layout, "tmpl".parse().unwrap(), config);
        let mut config = Config::default();
        config.template.name = Some("tmpl".parse().unwrap());
        Vm::on_template(&layout, "disp-1".parse().unwrap(), config, template)
    }

    #[test]
    fn a_state_goes_stale_when_the_template_image_changes() {
        let root = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(root.path()).unwrap();
        let vm = disposable_of_template(root);
        let dir = folder(&vm).expect("a disposable without shares has a warm folder");
        assert!(dir.starts_with(root.join("data/tmpl/warm")));
        std::fs::create_dir_all(&dir).unwrap();
        let facts = current_facts(&vm, Accel::Tcg).expect("QEMU is installed");
        std::fs::write(dir.join("facts.json"), serde_json::to_vec(&facts).unwrap()).unwrap();
        assert!(find(&vm).is_some());

        std::fs::write(root.join("template.img"), "version 2, longer").unwrap();
        assert!(
            find(&vm).is_none(),
            "a changed template invalidates the state"
        );
        assert!(!dir.exists(), "the stale state is removed");
    }

    #[test]
    fn states_of_another_recipe_are_removed_when_a_new_one_is_made() {
        let root = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(root.path()).unwrap();
        let vm = disposable_of_template(root);
        let older = root.join("data/tmpl/warm/0123456789abcdef/fedcba9876543210");
        std::fs::create_dir_all(&older).unwrap();
        let sibling = folder(&vm).unwrap().with_file_name("another-shape");
        std::fs::create_dir_all(&sibling).unwrap();

        let fresh = new_folder(&vm).unwrap().unwrap();
        assert!(fresh.is_dir());
        assert!(!older.exists(), "a state made otherwise is removed");
        assert!(sibling.exists(), "a state of another shape is kept");
    }

    #[test]
    fn a_template_with_warm_off_gives_no_warm_state() {
        let root = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(root.path()).unwrap();
        let mut vm = disposable_of_template(root);
        vm.template.as_mut().unwrap().config.disposable.warm = false;
        assert_eq!(folder(&vm), None);
    }
}
