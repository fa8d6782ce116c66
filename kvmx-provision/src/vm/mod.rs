//! A VM: its name, config and files, and the ways to reach it. What can
//! be done to it is split by concern: [`start`] (up), [`stop`] (power-off,
//! kill, pause, destroy) and [`status`].

mod kernel_copy;
mod start;
mod status;
mod stop;

pub(crate) use start::Patience;
pub use start::UpReport;
pub use status::{State, Status};
pub use stop::StopStep;

use std::time::Duration;

use camino::Utf8PathBuf;
use kvmx_core::config::Config;
use kvmx_core::config::values::VmName;
use kvmx_core::layout::{Layout, VmPaths};

use crate::Error;
use crate::files::VmFiles;
use crate::qmp::Qmp;
use crate::ssh::SshTarget;
use crate::state::{self};

/// How long QMP calls may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// A VM with its resolved config.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Its name.
    pub(crate) name: VmName,
    /// Its effective config.
    pub(crate) config: Config,
    /// Its files.
    pub(crate) files: VmFiles,
    /// The folders of its base box, if it has one.
    pub(crate) base: Option<VmPaths>,
    /// The template whose image it runs from, if it is template-based.
    pub(crate) template: Option<Box<Vm>>,
    /// kvmx's folders.
    pub(crate) layout: Layout,
    /// Shares without a kind became 9p: virtiofsd is missing.
    pub(crate) shares_lack_virtiofsd: bool,
    /// Disks beside its own (a builder VM's).
    pub(crate) extra_disks: Vec<crate::qemu::cmdline::ExtraDisk>,
    /// The installer this run boots instead of the disk (`install.rs`).
    pub(crate) installer: Option<kvmx_image::install::InstallMedia>,
}

impl Vm {
    /// The VM `name` with its resolved `config`, its shares' kinds
    /// settled for this host.
    pub(crate) fn new(layout: &Layout, name: VmName, mut config: Config) -> Vm {
        let shares_lack_virtiofsd = crate::virtiofs::settle_share_kinds(&mut config);
        Vm {
            shares_lack_virtiofsd,
            files: VmFiles::new(layout, &name),
            base: config.image.base.as_ref().map(|base| layout.vm(base)),
            name,
            config,
            template: None,
            layout: layout.clone(),
            extra_disks: Vec::new(),
            installer: None,
        }
    }

    /// Its name.
    pub fn name(&self) -> &VmName {
        &self.name
    }

    /// Its effective config (defaults filled in, paths absolute).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Its files: runtime sockets and state, data folder.
    pub fn files(&self) -> &VmFiles {
        &self.files
    }

    /// The template it runs from, if it is template-based.
    pub fn template(&self) -> Option<&Vm> {
        self.template.as_deref()
    }

    /// kvmx's folders.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The disk image path.
    pub fn image(&self) -> Utf8PathBuf {
        self.config
            .image
            .path
            .clone()
            .unwrap_or_else(|| self.files.paths.default_image())
    }

    /// Connects to the VM's QMP socket.
    pub fn qmp(&self) -> Result<Qmp, Error> {
        Ok(Qmp::connect(&self.files.qmp_socket(), QMP_TIMEOUT)?)
    }

    /// How to reach the running guest over SSH.
    pub fn ssh_target(&self) -> Result<SshTarget, Error> {
        if !self.config.ssh.enabled {
            return Err(Error::Remote {
                problem: format!(
                    "SSH is disabled for {}: its config sets ssh.enabled = false",
                    self.name
                ),
                hint: "set ssh.enabled = true in the [ssh] table of kvmx.toml, then restart the VM (`kvmx restart`)".into(),
            });
        }
        let run = state::read(&self.files).ok_or_else(|| Error::NotRunning {
            vm: self.name.to_string(),
        })?;
        let port = run.ssh_port.ok_or_else(|| Error::NoSshPort {
            vm: self.name.to_string(),
        })?;
        let ssh = &self.config.ssh;
        // A template-based guest is the template's, with its keys.
        let system = self.system();
        Ok(SshTarget {
            user: ssh
                .user
                .as_ref()
                .unwrap_or(&self.config.vm.user)
                .to_string(),
            port,
            keys: std::iter::once(system.files.paths.ssh_key())
                .chain(system.base_key())
                .collect(),
            known_hosts: system.files.paths.known_hosts(),
            control: Some(crate::ssh::master_socket(&self.files.paths.runtime)),
            env: ssh
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// The base box's private key, for an image made from a base.
    fn base_key(&self) -> Option<Utf8PathBuf> {
        let key = self.base.as_ref()?.ssh_key();
        key.exists().then_some(key)
    }
}
