//! The entry point: [`ImageBuilder`] builds a VM's image from its config and
//! reports its stages to the [`Observer`] the caller supplies.
//!
//! Everything is made in a work folder beside the image and moved into place
//! by renames at the end: an existing image is replaced only by a complete
//! new one, and a failed or interrupted build removes what it made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::CancelFlag;
use kvmx_core::config::values::VmName;
use kvmx_core::config::{
    Bootloader, Config, Encryption, ImageFormat, ImageType, Method, PassphraseSource,
};
use kvmx_core::layout::{DirectBoot, Layout, VmPaths};
use kvmx_core::observe::{Observer, Prefixed, Stages};
use serde::Serialize;

use crate::base::BaseVm;
use crate::bootstrap::{self, BootstrapSpec};
use crate::builder::{BuilderDisk, BuilderImage, BuilderJob, BuilderVm};
use crate::cache::{self, BootstrapCache, CacheUse};
use crate::cleanup::{TempFile, WorkDir};
use crate::guest::{GuestSetup, kernel_cmdline};
use crate::install::InstallerVm;
use crate::password::GuestPassword;
use crate::prerequisites::{self, Requirement, grub_dir, is_root};
use crate::rootfs::Rootfs;
use crate::userns::GuestRoot;
use crate::volumes::{Passphrase, VolumePlan, serials};
use crate::{Error, Result, disk, image_bootstrap, keys};
use kvmx_core::process::Runner;

/// A step of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Checking the config, the target and the host's tools.
    Check,
    /// Making keys and the password.
    Keys,
    /// Bootstrapping the system (or taking it from the cache).
    Bootstrap,
    /// Writing the VM's files for the guest.
    GuestSetup,
    /// Making the partition table and the root file system.
    Filesystem,
    /// Installing the bootloader.
    Bootloader,
    /// Converting to the image format.
    Convert,
    /// Making the image from the base VM's.
    Base,
    /// Making the builder VM's image, or finding it in the cache.
    Builder,
    /// Partitions, LUKS, LVM and file systems, in the builder VM.
    Volumes,
    /// Running the installer in the VM (`create.method = "install"`).
    Install,
    /// Moving the results into place.
    Finish,
}

impl Stage {
    /// A short description for progress displays.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Check => "checking prerequisites",
            Stage::Keys => "making keys",
            Stage::Bootstrap => "bootstrapping the system",
            Stage::GuestSetup => "setting up the guest",
            Stage::Filesystem => "making the file system",
            Stage::Bootloader => "installing the bootloader",
            Stage::Convert => "converting the image",
            Stage::Base => "making the image from the base",
            Stage::Builder => "preparing the builder VM",
            Stage::Volumes => "making the volumes in the builder VM",
            Stage::Install => "running the installer",
            Stage::Finish => "finishing",
        }
    }
}

/// How long a stage took.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    /// The stage.
    pub stage: Stage,
    /// Seconds.
    pub seconds: f64,
}

/// What a build made.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The VM.
    pub vm: String,
    /// The image.
    pub image: Utf8PathBuf,
    /// Its format.
    pub format: ImageFormat,
    /// How it boots.
    pub bootloader: Bootloader,
    /// Kernel, initrd and command line for direct boot.
    pub direct_boot: Option<DirectBoot>,
    /// Whether the bootstrap came from the cache.
    pub cache: CacheUse,
    /// The cache key of the bootstrapped tree.
    pub cache_key: Option<String>,
    /// The base VM, for an image made from one.
    pub base: Option<String>,
    /// Whether the image is an overlay on the base's.
    pub backing: bool,
    /// Client keys that reach the guest, in the order to try them.
    pub ssh_keys: Vec<Utf8PathBuf>,
    /// known_hosts with the guest's host key.
    pub known_hosts: Utf8PathBuf,
    /// The host key alias to connect with.
    pub host_key_alias: String,
    /// The file holding the random password, when there is one.
    pub password_file: Option<Utf8PathBuf>,
    /// The file holding the LUKS passphrase (`passphrase = "file"`).
    pub luks_passphrase_file: Option<Utf8PathBuf>,
    /// The build log.
    pub log: Utf8PathBuf,
    /// Time per stage.
    pub stages: Vec<StageTime>,
}

/// Builds one VM's image.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    name: VmName,
    config: Config,
    paths: VmPaths,
    cache_dir: Utf8PathBuf,
    force: bool,
    no_cache: bool,
    base: Option<BaseVm>,
    cancel: CancelFlag,
    builder: Option<Arc<dyn BuilderVm>>,
    passphrase: Option<Passphrase>,
    extra_setup: Option<(String, Vec<Utf8PathBuf>)>,
    installer: Option<Arc<dyn InstallerVm>>,
    install: bool,
}

mod install;

struct Timer<'a> {
    stages: Stages<'a>,
    times: Vec<StageTime>,
}

impl Timer<'_> {
    fn run<T>(
        &mut self,
        stage: Stage,
        cancel: &CancelFlag,
        work: impl FnOnce() -> Result<(T, Option<String>)>,
    ) -> Result<T> {
        self.run_observed(stage, cancel, |_| work())
    }

    /// [`Timer::run`] for work that reports events of its own.
    fn run_observed<T>(
        &mut self,
        stage: Stage,
        cancel: &CancelFlag,
        work: impl FnOnce(&mut dyn Observer) -> Result<(T, Option<String>)>,
    ) -> Result<T> {
        kvmx_core::process::check_cancel(cancel)?;
        self.stages.stage(stage.describe());
        let start = Instant::now();
        let (value, note) = work(&mut self.stages)?;
        let elapsed = start.elapsed();
        self.stages.finish(note.as_deref());
        self.times.push(StageTime {
            stage,
            seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        });
        Ok(value)
    }
}

impl ImageBuilder {
    /// A build of the image of `name` as its resolved `config` describes
    /// it (see [`kvmx_core::Project::load`]); `paths` are the VM's folders
    /// and `cache_dir` kvmx's cache folder.
    pub fn new(name: VmName, config: Config, paths: VmPaths, cache_dir: Utf8PathBuf) -> Self {
        ImageBuilder {
            name,
            config,
            paths,
            cache_dir,
            force: false,
            no_cache: false,
            base: None,
            cancel: CancelFlag::new(),
            builder: None,
            passphrase: None,
            extra_setup: None,
            installer: None,
            install: false,
        }
    }

    /// The build of VM `name`'s image in kvmx's folders `layout`, as its
    /// resolved `config` describes it; the base box of `image.base`, a
    /// registered VM, is looked up here.
    pub fn for_vm(layout: &Layout, name: VmName, config: Config) -> Result<Self> {
        let base = match &config.image.base {
            Some(base) => Some(BaseVm::registered(layout, base.as_str())?),
            None => None,
        };
        let paths = layout.vm(&name);
        Ok(ImageBuilder::new(name, config, paths, layout.cache_dir.clone()).base(base))
    }

    /// Replace an existing image.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Bootstrap afresh, neither reading nor filling the cache.
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// The base VM of `image.base`, as its own config describes it.
    pub fn base(mut self, base: Option<BaseVm>) -> Self {
        self.base = base;
        self
    }

    /// The builder VM that makes LVM, LUKS and image-bootstrap images
    /// (kvmx-provision's `QemuBuilder`).
    pub fn builder_vm(mut self, builder: Arc<dyn BuilderVm>) -> Self {
        self.builder = Some(builder);
        self
    }

    /// The LUKS passphrase, for `create.passphrase = "ask"` (a file's is
    /// made by the build).
    pub fn passphrase(mut self, passphrase: Option<Passphrase>) -> Self {
        self.passphrase = passphrase;
        self
    }

    /// A shell script run in the bootstrapped tree (chrooted, with the
    /// network) after the packages are in, with `files` copied into its
    /// `/tmp` first; the script is part of the cache key.
    pub fn extra_setup(mut self, script: String, files: Vec<Utf8PathBuf>) -> Self {
        self.extra_setup = Some((script, files));
        self
    }

    /// Stops the build when set.
    pub fn cancel(mut self, cancel: CancelFlag) -> Self {
        self.cancel = cancel;
        self
    }

    fn image(&self) -> Utf8PathBuf {
        self.config
            .image
            .path
            .clone()
            .unwrap_or_else(|| self.paths.default_image())
    }

    /// Runs the installer of VMs `installer` for images made by an
    /// installer (`create.method = "install"`, or [`ImageBuilder::install`]).
    pub fn installer_vm(mut self, installer: Arc<dyn InstallerVm>) -> Self {
        self.installer = Some(installer);
        self
    }

    /// Makes the image with the installer whatever `create.method` says
    /// (`kvmx install`).
    pub fn install(mut self, install: bool) -> Self {
        self.install = install;
        self
    }

    /// Whether this build runs an installer.
    pub fn installs(&self) -> bool {
        self.install || self.config.create.method == Method::Install
    }

    /// Builds the image.
    pub fn build(&self, observer: &mut dyn Observer) -> Result<BuildReport> {
        let runner = Runner::new(&self.paths.create_log(), self.cancel.clone());
        runner.note(&format!(
            "# kvmx-create {}: building {}",
            self.name,
            self.image()
        ));
        // A key made by a build that fails goes with it; one from an
        // earlier build stays, so that a rebuilt image trusts it again.
        let had_key = self.paths.ssh_key().is_file();
        let mut timer = Timer {
            stages: Stages::new(observer),
            times: Vec::new(),
        };
        let result = match &self.base {
            Some(base) => self.build_from_base(base, &runner, &mut timer),
            None if self.installs() => self.build_with_installer(&runner, &mut timer),
            None if self.config.create.method == Method::ImageBootstrap => {
                self.build_with_image_bootstrap(&runner, &mut timer)
            }
            None => self.build_new(&runner, &mut timer),
        };
        match &result {
            Ok(_) => runner.note("# done"),
            Err(e) => {
                runner.note(&format!("# failed: {e}"));
                if !had_key {
                    keys::remove_client_key(&self.paths);
                }
            }
        }
        let mut report = result?;
        report.stages = std::mem::take(&mut timer.times);
        Ok(report)
    }

    fn check_target(&self) -> Result<Utf8PathBuf> {
        let image = self.image();
        match self.config.create.image_type {
            ImageType::Device => {
                if !is_root() {
                    return Err(Error::Unsupported(format!(
                        "image_type = \"device\" writes to {image} and needs root"
                    )));
                }
                if !self.force {
                    return Err(Error::Unsupported(format!(
                        "image_type = \"device\" overwrites the device {image}: pass --force"
                    )));
                }
            }
            ImageType::File => {
                if image.exists() && !self.force {
                    return Err(Error::ImageExists(image));
                }
            }
        }
        Ok(image)
    }

    fn requirements(&self, bootstrapper: &dyn bootstrap::Bootstrap) -> Vec<Requirement> {
        let create = &self.config.create;
        let mut requirements = bootstrapper.requirements();
        requirements.extend(disk::requirements());
        requirements.extend(GuestRoot::detect().requirements());
        if create.bootloader == Bootloader::Grub {
            requirements.extend(disk::grub_requirements());
        }
        if self.config.image.format == ImageFormat::Qcow2 {
            requirements.push(Requirement::program("qemu-img", "qemu-utils"));
        }
        requirements
    }

    fn work_dir(&self, image: &Utf8Path) -> Result<WorkDir> {
        let folder = match self.config.create.image_type {
            ImageType::File => image.parent().unwrap_or(Utf8Path::new(".")).to_owned(),
            ImageType::Device => self.paths.data.clone(),
        };
        WorkDir::new_in(&folder, ".kvmx-create-", GuestRoot::detect())
    }

    fn build_new(&self, runner: &Runner, timer: &mut Timer) -> Result<BuildReport> {
        let create = &self.config.create;
        let bootstrapper = bootstrap::for_method(create.method);
        let image = timer.run(Stage::Check, &self.cancel, || {
            let image = self.check_target()?;
            prerequisites::check(&self.requirements(bootstrapper.as_ref()))
                .map_err(Error::Missing)?;
            Ok((image, None))
        })?;
        let volumes = create.needs_builder().then(|| VolumePlan::new(create));
        let passphrase = self.luks_passphrase()?;
        let builder = match &volumes {
            Some(_) => Some(self.prepare_builder(runner, timer)?),
            None => None,
        };
        let hostname = self.hostname();

        let (client_public, host_key, password, extra) = self.new_secrets(timer, &hostname)?;

        let work = self.work_dir(&image)?;
        let mut spec = BootstrapSpec::from_config(create);
        if let Some((script, files)) = &self.extra_setup {
            spec.extra_setup = Some(script.clone());
            spec.extra_files = files.clone();
        }
        let key = cache::key(&spec);
        let (tarball, cache_use) = timer.run(Stage::Bootstrap, &self.cancel, || {
            let (tarball, cache_use) = if self.no_cache {
                let tarball = work.path().join("rootfs.tar");
                let scratch = work.path().join("scratch");
                std::fs::create_dir(&scratch).map_err(Error::io("create", &scratch))?;
                bootstrapper.bootstrap(&spec, &tarball, &scratch, runner)?;
                (tarball, CacheUse::Bypassed)
            } else {
                BootstrapCache::new(&self.cache_dir).get_or_make(
                    &spec,
                    bootstrapper.as_ref(),
                    runner,
                )?
            };
            let note = match cache_use {
                CacheUse::Hit => Some(format!("from the cache, key {key}")),
                CacheUse::Miss => Some(format!("stored in the cache, key {key}")),
                _ => None,
            };
            Ok(((tarball, cache_use), note))
        })?;

        let uuid = volumes
            .as_ref()
            .map_or_else(disk::random_uuid, |plan| plan.root_uuid.clone());
        let (overlay_tar, layout) = timer.run(Stage::GuestSetup, &self.cancel, || {
            let rootfs = Rootfs::read(&tarball)?;
            let layout = disk::layout(self.config.image.size.bytes(), rootfs.needed_bytes())?;
            let mut authorized_keys = vec![client_public.clone()];
            authorized_keys.extend(extra.clone());
            let network = &self.config.network;
            let setup = GuestSetup {
                hostname: hostname.clone(),
                domain: self.config.vm.domain.as_ref().map(ToString::to_string),
                user: self.config.vm.user.to_string(),
                // Lima's choice: the host user's ids, so that shares of its
                // folders are writable by the guest user.
                user_ids: Some((
                    nix::unistd::getuid().as_raw(),
                    nix::unistd::getgid().as_raw(),
                )),
                password_hash: password.hash.clone(),
                authorized_keys,
                host_key: host_key.clone(),
                root_uuid: uuid.clone(),
                discard: self.config.image.discard,
                bootloader: create.bootloader,
                network: network.into(),
                volumes: volumes.clone(),
            };
            let (overlay, user) = setup.overlay(&rootfs, grub_dir())?;
            let overlay_tar = work.path().join("overlay.tar");
            overlay.write_tar(&overlay_tar)?;
            let ids = format!("user {} has uid {} and gid {}", setup.user, user.uid, user.gid);
            let note = match (user.refused, setup.user_ids) {
                (None, _) => format!("{ids}, as on the host"),
                (Some(why), Some((host_uid, _))) if host_uid != user.uid => format!(
                    "{ids}: the host's {why}; it writes into shared host folders only where others may (or with sudo)"
                ),
                (Some(why), _) => format!("{ids}: the host's {why}"),
            };
            Ok(((overlay_tar, layout), Some(note)))
        })?;

        let raw = work.path().join("disk.raw");
        // The guest's kernel and initrd beside the image: the only way to
        // boot an image without a bootloader, and the fast way to boot one
        // with GRUB (kvmx refreshes the copy from the guest as it stops).
        let direct = (create.bootloader == Bootloader::Direct || volumes.is_none())
            .then(|| (work.path().join("vmlinuz"), work.path().join("initrd")));
        if let (Some(plan), Some((builder, image))) = (&volumes, &builder) {
            timer.run_observed(Stage::Volumes, &self.cancel, |observer| {
                let job = BuilderJob {
                    disks: vec![
                        BuilderDisk::writable(&raw, serials::TARGET),
                        BuilderDisk::read_only(&tarball, serials::ROOTFS),
                        BuilderDisk::read_only(&overlay_tar, serials::OVERLAY),
                    ],
                    script: plan.script(),
                    stdin: passphrase
                        .as_ref()
                        .map(|p| format!("{}\n", p.expose()).into_bytes())
                        .unwrap_or_default(),
                    timeout: VOLUMES_DEADLINE,
                };
                self.blank_disk(&raw)?;
                self.run_builder(builder.as_ref(), image, &job, runner, observer)?;
                Ok(((), None))
            })?;
        } else {
            timer.run(Stage::Filesystem, &self.cancel, || {
                std::fs::File::create(&raw).map_err(Error::io("create", &raw))?;
                let disk = disk::RawDisk {
                    rootfs: &tarball,
                    overlay: &overlay_tar,
                    work: work.path(),
                    raw: &raw,
                    size: self.config.image.size.bytes(),
                    uuid: &uuid,
                    direct: direct.as_ref().map(|(k, i)| (k.as_path(), i.as_path())),
                };
                disk::make_raw(&disk, layout, runner)?;
                Ok(((), None))
            })?;
        }

        timer.run(Stage::Bootloader, &self.cancel, || {
            if create.bootloader == Bootloader::Grub {
                let prefix = match volumes {
                    Some(_) => crate::volumes::GRUB_PREFIX,
                    None => disk::GRUB_PREFIX,
                };
                disk::install_grub(&raw, work.path(), prefix, runner)?
            }
            if direct.is_some() {
                let cmdline = work.path().join("cmdline");
                std::fs::write(&cmdline, format!("{}\n", kernel_cmdline(&uuid)))
                    .map_err(Error::io("write", &cmdline))?;
            }
            Ok(((), None))
        })?;

        // The finished image, still under a temporary name.
        let finished = match create.image_type {
            ImageType::File => self.convert_raw(&raw, &image, runner, timer)?,
            ImageType::Device => None,
        };

        timer.run(Stage::Finish, &self.cancel, || {
            match (create.image_type, finished) {
                (ImageType::Device, _) => disk::write_device(&raw, &image)?,
                (ImageType::File, Some(temp)) => temp.keep(&image)?,
                (ImageType::File, None) => std::fs::rename(&raw, &image)
                    .map_err(Error::io("rename the image to", &image))?,
            }
            let files = DirectBoot::beside(&image);
            if let Some((kernel, initrd)) = &direct {
                rename(kernel, &files.kernel)?;
                rename(initrd, &files.initrd)?;
                rename(&work.path().join("cmdline"), &files.cmdline)?;
            } else {
                for stale in [&files.kernel, &files.initrd, &files.cmdline] {
                    let _ = std::fs::remove_file(stale);
                }
            }
            self.keep_trust(&host_key.public, passphrase.as_ref(), &password)?;
            Ok(((), None))
        })?;
        drop(work);

        Ok(BuildReport {
            vm: self.name.to_string(),
            direct_boot: direct.map(|_| DirectBoot::beside(&image)),
            image,
            format: self.config.image.format,
            bootloader: create.bootloader,
            cache: cache_use,
            cache_key: (cache_use != CacheUse::Bypassed).then_some(key),
            base: None,
            backing: false,
            ssh_keys: keys::identities(&self.paths, None),
            known_hosts: self.paths.known_hosts(),
            host_key_alias: keys::host_key_alias(&self.name),
            password_file: password.random.map(|_| self.paths.password_file()),
            luks_passphrase_file: (passphrase.is_some()
                && create.passphrase == PassphraseSource::File)
                .then(|| self.paths.luks_passphrase_file()),
            log: self.paths.create_log(),
            stages: Vec::new(),
        })
    }

    /// The LUKS passphrase of an encrypted image: the one given, or a new
    /// random one for `passphrase = "file"`.
    fn luks_passphrase(&self) -> Result<Option<Passphrase>> {
        let create = &self.config.create;
        if create.encryption != Encryption::Luks {
            return Ok(None);
        }
        match (&self.passphrase, create.passphrase) {
            (Some(given), _) => Ok(Some(given.clone())),
            (None, PassphraseSource::File) => Ok(Some(Passphrase::random())),
            (None, PassphraseSource::Ask) => Err(Error::Unsupported(
                "create.passphrase = \"ask\" but no passphrase was given: run kvmx-create on a terminal, or set passphrase = \"file\"".into(),
            )),
        }
    }

    /// The builder VM's image, from the cache or built now; its own build
    /// shows as stages of "builder VM".
    fn prepare_builder(
        &self,
        runner: &Runner,
        timer: &mut Timer,
    ) -> Result<(Arc<dyn BuilderVm>, BuilderImage)> {
        let Some(builder) = self.builder.clone() else {
            return Err(Error::Unsupported(
                "LVM, LUKS and image-bootstrap images are made in a builder VM, and this program gave the image builder none: build it with kvmx-create or kvmx up".into(),
            ));
        };
        // Not inside a stage of its own: a build of the builder's image
        // shows its own stages.
        let start = Instant::now();
        let mut prefixed = Prefixed::new(timer.stages.observer(), "builder VM: ");
        let (image, built) = BuilderImage::ensure(
            &self.cache_dir,
            &self.config.create.mirror,
            &[],
            &mut prefixed,
            &self.cancel,
        )?;
        runner.note(&format!("# builder image {}", image.image));
        if !built {
            timer.stages.note("the builder VM's image is in the cache");
        }
        timer.times.push(StageTime {
            stage: Stage::Builder,
            seconds: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        });
        Ok((builder, image))
    }

    /// Runs `job` in the builder, its output into the create log and to
    /// `observer`.
    fn run_builder(
        &self,
        builder: &dyn BuilderVm,
        image: &BuilderImage,
        job: &BuilderJob,
        runner: &Runner,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        runner.note("# builder script:");
        runner.note(&job.script);
        let mut output = |line: &str| {
            runner.note(line);
            observer.event(kvmx_core::observe::Event::GuestOutput {
                vm: "builder",
                stream: kvmx_core::observe::Stream::Stdout,
                line,
            });
        };
        builder
            .run(image, job, &mut output, &self.cancel)
            .map_err(|error| {
                if error.cancelled {
                    Error::Interrupted
                } else {
                    Error::Builder(error)
                }
            })
    }

    /// A whole disk written by image-bootstrap in the builder VM (which
    /// partitions it and installs GRUB), then given what every kvmx guest
    /// has by its hooks ([`crate::image_bootstrap`]).
    fn build_with_image_bootstrap(
        &self,
        runner: &Runner,
        timer: &mut Timer,
    ) -> Result<BuildReport> {
        let create = &self.config.create;
        let image = timer.run(Stage::Check, &self.cancel, || {
            let image = self.check_target()?;
            let mut needs = vec![];
            if self.config.image.format == ImageFormat::Qcow2 {
                needs.push(Requirement::program("qemu-img", "qemu-utils"));
            }
            prerequisites::check(&needs).map_err(Error::Missing)?;
            Ok((image, None))
        })?;
        let hostname = self.hostname();
        let (client_public, host_key, password, extra) = self.new_secrets(timer, &hostname)?;
        let (builder, builder_image) = self.prepare_builder(runner, timer)?;
        let work = self.work_dir(&image)?;
        let raw = work.path().join("disk.raw");
        timer.run_observed(Stage::Bootstrap, &self.cancel, |observer| {
            let (uid, gid) = crate::accounts::host_ids_for_guest();
            let plan = image_bootstrap::plan(&image_bootstrap::PlanInput {
                distribution: create.distribution,
                hostname: hostname.clone(),
                user: self.config.vm.user.to_string(),
                uid,
                gid,
                authorized_keys: std::iter::once(client_public.clone())
                    .chain(extra.clone())
                    .collect(),
                host_key_private: host_key.private.clone(),
                host_key_public: host_key.public.clone(),
                mirror: Some(http_mirror(&create.mirror)),
                suite: create.suite.clone(),
                arch: create.arch.clone(),
                root_files: self.root_files()?,
            });
            let files = work.path().join("files.tar");
            let mut tar = crate::overlay::Overlay::new();
            for file in &plan.files {
                let path = Utf8Path::new(&file.path);
                let mut folders: Vec<&Utf8Path> = path
                    .ancestors()
                    .skip(1)
                    .filter(|folder| !folder.as_str().is_empty())
                    .collect();
                folders.reverse();
                for folder in folders {
                    if tar.get(folder.as_str()).is_none() {
                        tar.dir(folder.as_str(), 0o755, 0, 0);
                    }
                }
                tar.file(&file.path, file.mode, file.contents.as_bytes());
            }
            tar.write_tar(&files)?;
            self.blank_disk(&raw)?;
            let job = BuilderJob {
                disks: vec![
                    BuilderDisk::writable(&raw, serials::TARGET),
                    BuilderDisk::read_only(&files, serials::OVERLAY),
                ],
                script: format!(
                    "set -eu\n\
                     work=$(mktemp -d)\n\
                     trap 'rm -rf \"$work\"' EXIT\n\
                     tar -C \"$work\" -xf /dev/disk/by-id/virtio-{}\n\
                     cd \"$work\"\n\
                     sh -c {} image-bootstrap \"$work\" /dev/disk/by-id/virtio-{}\n",
                    serials::OVERLAY,
                    kvmx_core::process::shell_quote(&plan.script),
                    serials::TARGET
                ),
                // image-bootstrap wants a root password: a random one,
                // known to nobody, keeps root's login shut. The user's
                // password hash follows (an empty line: locked).
                stdin: format!(
                    "{}\n{}\n",
                    Passphrase::random().expose(),
                    password.hash.as_deref().unwrap_or_default()
                )
                .into_bytes(),
                timeout: IMAGE_BOOTSTRAP_DEADLINE,
            };
            self.run_builder(builder.as_ref(), &builder_image, &job, runner, observer)?;
            let note = format!("{:?} by image-bootstrap", create.distribution).to_lowercase();
            Ok(((), Some(note)))
        })?;
        let finished = self.convert_raw(&raw, &image, runner, timer)?;
        timer.run(Stage::Finish, &self.cancel, || {
            match finished {
                Some(temp) => temp.keep(&image)?,
                None => std::fs::rename(&raw, &image)
                    .map_err(Error::io("rename the image to", &image))?,
            }
            self.keep_trust(&host_key.public, None, &password)?;
            Ok(((), None))
        })?;
        drop(work);
        let password_file = password.random.map(|_| self.paths.password_file());
        Ok(self.whole_disk_report(image, password_file, self.paths.create_log()))
    }

    /// The guest network's files and the module blacklist, as a plain
    /// build writes them, for a system another tool made.
    fn root_files(&self) -> Result<Vec<image_bootstrap::PlanFile>> {
        let mut overlay = crate::overlay::Overlay::new();
        crate::guest::network_files(&mut overlay, &(&self.config.network).into())?;
        crate::guest::module_blacklist(&mut overlay);
        Ok(overlay
            .entries()
            .iter()
            .filter_map(|entry| match &entry.content {
                crate::overlay::Content::File(bytes) => Some(image_bootstrap::PlanFile {
                    path: entry.path.clone(),
                    mode: entry.mode,
                    contents: String::from_utf8_lossy(bytes).into_owned(),
                }),
                _ => None,
            })
            .collect())
    }

    /// The report of a whole disk written in a VM (image-bootstrap, an
    /// installer): GRUB, no cache, no base; `password_file` when a random
    /// password was kept.
    fn whole_disk_report(
        &self,
        image: Utf8PathBuf,
        password_file: Option<Utf8PathBuf>,
        log: Utf8PathBuf,
    ) -> BuildReport {
        BuildReport {
            vm: self.name.to_string(),
            direct_boot: None,
            image,
            format: self.config.image.format,
            bootloader: Bootloader::Grub,
            cache: CacheUse::NotNeeded,
            cache_key: None,
            base: None,
            backing: false,
            ssh_keys: keys::identities(&self.paths, None),
            known_hosts: self.paths.known_hosts(),
            host_key_alias: keys::host_key_alias(&self.name),
            password_file,
            luks_passphrase_file: None,
            log,
            stages: Vec::new(),
        }
    }

    /// The image converted to qcow2 beside `image` under a temporary
    /// name, when that is its format; `None` when the raw disk is it.
    fn convert_raw(
        &self,
        raw: &Utf8Path,
        image: &Utf8Path,
        runner: &Runner,
        timer: &mut Timer,
    ) -> Result<Option<TempFile>> {
        if self.config.image.format != ImageFormat::Qcow2 {
            return Ok(None);
        }
        timer.run(Stage::Convert, &self.cancel, || {
            let name = image.file_name().unwrap_or("image");
            let parent = image.parent().unwrap_or(Utf8Path::new("."));
            let temp = TempFile::new_in(parent, name)?;
            disk::convert(
                raw,
                temp.path(),
                ImageFormat::Qcow2,
                self.config.create.compression,
                runner,
            )?;
            Ok((Some(temp), None))
        })
    }

    /// A sparse raw file of `image.size` at `raw`, for the builder to fill.
    fn blank_disk(&self, raw: &Utf8Path) -> Result<()> {
        std::fs::File::create(raw)
            .and_then(|file| file.set_len(self.config.image.size.bytes()))
            .map_err(Error::io("create", raw))
    }

    fn hostname(&self) -> String {
        self.config
            .vm
            .hostname
            .as_ref()
            .map_or_else(|| self.name.to_string(), ToString::to_string)
    }

    /// The keys and password of a new image: the VM's client key (its
    /// public line), a new host key, the user's password and the extra
    /// authorized key of the config.
    fn new_secrets(
        &self,
        timer: &mut Timer,
        hostname: &str,
    ) -> Result<(String, keys::HostKey, GuestPassword, Option<String>)> {
        timer.run(Stage::Keys, &self.cancel, || {
            let client = keys::client_key(&self.paths, &self.name)?;
            let host = keys::new_host_key(hostname)?;
            let password = GuestPassword::from_config(&self.config.vm.password)?;
            let extra = match &self.config.ssh.authorized_key {
                Some(setting) => Some(keys::extra_authorized_key(setting)?),
                None => None,
            };
            Ok(((client, host, password, extra), None))
        })
    }

    /// What a new image's guest needs kept on the host: its host key in
    /// known_hosts, the LUKS passphrase when it lives in a file, the
    /// random password; a file of an earlier image that this one does
    /// not have is removed.
    fn keep_trust(
        &self,
        host_public: &str,
        passphrase: Option<&Passphrase>,
        password: &GuestPassword,
    ) -> Result<()> {
        self.write_trust(&keys::known_hosts(&self.name, host_public))?;
        match (passphrase, self.config.create.passphrase) {
            (Some(passphrase), PassphraseSource::File) => {
                passphrase.write(&self.paths.luks_passphrase_file())?
            }
            _ => {
                let _ = std::fs::remove_file(self.paths.luks_passphrase_file());
            }
        }
        match &password.random {
            Some(plain) => keys::write_private(&self.paths.password_file(), plain.as_bytes())?,
            None => {
                let _ = std::fs::remove_file(self.paths.password_file());
            }
        }
        Ok(())
    }

    /// Removes the password and passphrase files of an earlier image: the
    /// new one has neither.
    fn forget_secrets(&self) {
        for stale in [
            self.paths.password_file(),
            self.paths.luks_passphrase_file(),
        ] {
            let _ = std::fs::remove_file(stale);
        }
    }

    fn write_trust(&self, known_hosts: &str) -> Result<()> {
        let path = self.paths.known_hosts();
        kvmx_core::atomic_file::write(
            &path,
            known_hosts.as_bytes(),
            kvmx_core::atomic_file::Overwrite::Yes,
        )
        .map_err(Error::from)
    }

    fn build_from_base(
        &self,
        base: &BaseVm,
        runner: &Runner,
        timer: &mut Timer,
    ) -> Result<BuildReport> {
        let overlay = self.config.image.backing;
        let format = self.config.image.format;
        let image = timer.run(Stage::Check, &self.cancel, || {
            if self.config.create.image_type == ImageType::Device {
                return Err(Error::Unsupported(
                    "an image from a base VM is a file: set create.image_type = \"file\"".into(),
                ));
            }
            let image = self.check_target()?;
            if image == base.image {
                return Err(Error::Unsupported(
                    "the image and the base's image are the same file".into(),
                ));
            }
            prerequisites::check(&[Requirement::program("qemu-img", "qemu-utils")])
                .map_err(Error::Missing)?;
            base.check(overlay)?;
            Ok((image, None))
        })?;
        let parent = image.parent().unwrap_or(Utf8Path::new(".")).to_owned();
        std::fs::create_dir_all(&parent).map_err(Error::io("create", &parent))?;
        let known_hosts = base.known_hosts_for(&self.name)?;
        let temp = timer.run(Stage::Base, &self.cancel, || {
            let temp = TempFile::new_in(&parent, image.file_name().unwrap_or("image"))?;
            base.make_image(temp.path(), format, overlay, runner)?;
            let note = overlay.then(|| format!("overlay on {}", base.image));
            Ok((temp, note))
        })?;
        // The base's kernel, its only one or the copy of a GRUB image's.
        let direct = base.bootloader == Bootloader::Direct
            || DirectBoot::beside(&base.image).kernel.exists();
        timer.run(Stage::Finish, &self.cancel, || {
            let from = DirectBoot::beside(&base.image);
            let to = DirectBoot::beside(&image);
            if direct {
                for (a, b) in [
                    (&from.kernel, &to.kernel),
                    (&from.initrd, &to.initrd),
                    (&from.cmdline, &to.cmdline),
                ] {
                    std::fs::copy(a, b).map_err(Error::io("copy", a))?;
                }
            }
            temp.keep(&image)?;
            self.write_trust(&known_hosts)?;
            Ok(((), None))
        })?;
        Ok(BuildReport {
            vm: self.name.to_string(),
            direct_boot: direct.then(|| DirectBoot::beside(&image)),
            image,
            format,
            bootloader: base.bootloader,
            cache: CacheUse::NotNeeded,
            cache_key: None,
            base: Some(base.name.to_string()),
            backing: overlay,
            ssh_keys: keys::identities(&self.paths, Some(&base.paths)),
            known_hosts: self.paths.known_hosts(),
            host_key_alias: keys::host_key_alias(&self.name),
            password_file: None,
            luks_passphrase_file: None,
            log: self.paths.create_log(),
            stages: Vec::new(),
        })
    }
}

/// The mirror as image-bootstrap gets it: over plain HTTP. Its debootstrap
/// and apt run in the builder, which trusts Debian's certificate
/// authorities only, so an `https://` mirror behind a TLS-inspecting proxy
/// fails there; apt checks the archive's signatures either way, which is
/// why Debian's own installer defaults to HTTP.
fn http_mirror(mirror: &str) -> String {
    match mirror.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => mirror.to_owned(),
    }
}

/// How long the builder may take to make the volumes (the initramfs is
/// rebuilt there, which takes minutes under emulation).
const VOLUMES_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How long image-bootstrap may take: a whole debootstrap with a kernel
/// and GRUB in the builder, half an hour and more under emulation.
const IMAGE_BOOTSTRAP_DEADLINE: Duration = Duration::from_secs(90 * 60);

fn rename(from: &Utf8Path, to: &Utf8Path) -> Result<()> {
    std::fs::rename(from, to).map_err(Error::io("move into place", to))
}
