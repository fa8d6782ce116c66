//! Finding a project and loading its effective config.
//!
//! A project is a folder with a `kvmx.toml` (or, for legacy projects, a
//! `kvmxfile`). Commands name a VM, or find it by walking up from the
//! current folder.

use camino::{Utf8Path, Utf8PathBuf};

use crate::Error;
use crate::config::values::VmName;
use crate::config::{self, Config, ConfigError, RenderNote};
use crate::layout::Layout;
use crate::legacy::{self, LegacyWarning};
use crate::registry::Registry;

/// The name of the native project file.
pub const FILE_NAME: &str = "kvmx.toml";

/// Which file describes a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectFile {
    /// A `kvmx.toml`.
    Toml(Utf8PathBuf),
    /// A legacy `kvmxfile` (used only when there is no `kvmx.toml`).
    Legacy(Utf8PathBuf),
}

impl ProjectFile {
    /// The file's path.
    pub fn path(&self) -> &Utf8Path {
        match self {
            ProjectFile::Toml(path) | ProjectFile::Legacy(path) => path,
        }
    }
}

/// A project folder and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The folder (absolute).
    pub dir: Utf8PathBuf,
    /// Its config file.
    pub file: ProjectFile,
}

/// A project's effective config and what came up while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The config with every default filled in and paths made absolute.
    pub config: Config,
    /// The VM's name.
    pub name: VmName,
    /// Warnings about a legacy file (keys not mapped), with their lines.
    pub warnings: Vec<LegacyWarning>,
    /// For a legacy file: which line each setting came from.
    pub notes: Vec<RenderNote>,
    /// For a legacy file: the mapped config before defaults that depend on
    /// the project (what `kvmx import` writes).
    pub unresolved: Config,
}

impl Project {
    /// The project in `dir` itself, if it has a project file.
    pub fn in_dir(dir: &Utf8Path) -> Option<Project> {
        let toml = dir.join(FILE_NAME);
        let legacy = dir.join(legacy::FILE_NAME);
        let file = if toml.is_file() {
            ProjectFile::Toml(toml)
        } else if legacy.is_file() {
            ProjectFile::Legacy(legacy)
        } else {
            return None;
        };
        Some(Project {
            dir: dir.to_owned(),
            file,
        })
    }

    /// The nearest project at or above `start`.
    pub fn find(start: &Utf8Path) -> Result<Project, Error> {
        start
            .ancestors()
            .find_map(Project::in_dir)
            .ok_or_else(|| Error::NoProject {
                start: start.to_owned(),
            })
    }

    /// The project of `vm`: a registered name, or a folder path; with no
    /// name, the project around `cwd`.
    pub fn select(vm: Option<&str>, cwd: &Utf8Path, layout: &Layout) -> Result<Project, Error> {
        let Some(vm) = vm else {
            return Project::find(cwd);
        };
        let registry = Registry::load(layout)?;
        if let Some(dir) = registry.get(vm) {
            return Project::in_dir(dir).ok_or_else(|| Error::NoProject {
                start: dir.to_owned(),
            });
        }
        let as_path = config::resolve::absolute_from(cwd, Utf8Path::new(vm));
        if (vm.contains('/') || vm == "." || as_path.is_dir())
            && let Some(project) = Project::in_dir(&as_path)
        {
            return Ok(project);
        }
        Err(Error::UnknownVm {
            name: vm.to_owned(),
            known: registry.vms.keys().cloned().collect(),
        })
    }

    /// The VM name the folder gives when the config names none.
    pub fn folder_name(&self) -> Result<VmName, Error> {
        let folder = self.dir.file_name().unwrap_or("");
        folder.parse().map_err(|message: String| {
            ConfigError {
                file: self.file.path().to_owned(),
                line: 0,
                column: 0,
                message: format!("the folder name cannot be a VM name: {message}"),
                source_line: None,
                hint: Some("set vm.name in kvmx.toml (or rename the folder)".into()),
            }
            .into()
        })
    }

    /// Reads the project file and resolves its effective config.
    pub fn load(&self, layout: &Layout) -> Result<Loaded, Error> {
        match &self.file {
            ProjectFile::Toml(path) => {
                let config = config::load_toml(path)?;
                let name = match &config.vm.name {
                    Some(name) => name.clone(),
                    None => self.folder_name()?,
                };
                Ok(Loaded {
                    unresolved: config.clone(),
                    config: config::resolve(config, &self.dir, name.clone(), layout),
                    name,
                    warnings: Vec::new(),
                    notes: Vec::new(),
                })
            }
            ProjectFile::Legacy(path) => {
                let name = self.folder_name()?;
                let mapped = legacy::read(path, name.as_str())?;
                Ok(Loaded {
                    config: config::resolve(mapped.config.clone(), &self.dir, name.clone(), layout),
                    unresolved: mapped.config,
                    name,
                    warnings: mapped.warnings,
                    notes: mapped.notes,
                })
            }
        }
    }
}
