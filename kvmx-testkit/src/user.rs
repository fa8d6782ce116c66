//! The unprivileged user `kvmx-test` and hermetic homes it owns.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};

/// The name of the user the tests run kvmx as.
pub const USER: &str = "kvmx-test";
/// Its subordinate id range (given only if it has none).
const SUBIDS: &str = "300000-365535";

/// The unprivileged test user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// What every end-to-end test shares: the user and the bootstrap cache.
#[derive(Debug)]
pub struct Runtime {
    /// The user.
    pub user: TestUser,
    /// The bootstrap cache shared by all tests (and kept between runs):
    /// `KVMX_TEST_CACHE`, or a folder under /var/tmp.
    pub cache: Utf8PathBuf,
    /// Where homes are made.
    pub scratch: Utf8PathBuf,
}

fn run_root(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

impl TestUser {
    fn ensure() -> TestUser {
        let find = || nix::unistd::User::from_name(USER).ok().flatten();
        if find().is_none() {
            run_root("useradd", &["--create-home", "--shell", "/bin/bash", USER]);
        }
        let listed = |file: &str| {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with(&format!("{USER}:")))
        };
        if !listed("/etc/subuid") || !listed("/etc/subgid") {
            run_root(
                "usermod",
                &["--add-subuids", SUBIDS, "--add-subgids", SUBIDS, USER],
            );
        }
        let user = find().expect("the test user exists");
        TestUser {
            name: USER.into(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }

    /// Gives `path` (recursively) to the user.
    pub fn chown(&self, path: &Utf8Path) {
        run_root(
            "chown",
            &["-R", &format!("{}:{}", self.uid, self.gid), path.as_str()],
        );
    }
}

impl Runtime {
    /// The shared runtime. The tests need root to make the user, and
    /// fail (never pass silently) without it.
    pub fn get() -> &'static Runtime {
        static RUNTIME: OnceLock<Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            assert!(
                nix::unistd::geteuid().is_root(),
                "end-to-end tests run as root, as .ci/run does: they make an unprivileged test user"
            );
            let user = TestUser::ensure();
            let cache = std::env::var("KVMX_TEST_CACHE")
                .map(Utf8PathBuf::from)
                .unwrap_or_else(|_| "/var/tmp/kvmx-test-cache".into());
            std::fs::create_dir_all(&cache).expect("make the test cache");
            user.chown(&cache);
            let scratch = Utf8PathBuf::from("/var/tmp/kvmx-test-homes");
            std::fs::create_dir_all(&scratch).expect("make the homes folder");
            std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755))
                .expect("open the homes folder");
            Runtime {
                user,
                cache,
                scratch,
            }
        })
    }

    /// A new hermetic home (`KVMX_HOME`) owned by the user.
    pub fn home(&'static self, name: &str) -> Home {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(&self.scratch)
            .expect("make a home");
        let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("UTF-8 path");
        self.user.chown(&root);
        Home {
            runtime: self,
            root,
            _dir: dir,
            path: None,
        }
    }
}

/// A hermetic home: `KVMX_HOME` and project folders, removed when dropped.
#[derive(Debug)]
pub struct Home {
    runtime: &'static Runtime,
    /// Its folder (`KVMX_HOME` is `<root>/kvmx`).
    pub root: Utf8PathBuf,
    _dir: tempfile::TempDir,
    path: Option<String>,
}

impl Home {
    /// `KVMX_HOME`.
    pub fn kvmx_home(&self) -> Utf8PathBuf {
        self.root.join("kvmx")
    }

    /// The VM data folder of `vm`.
    pub fn data(&self, vm: &str) -> Utf8PathBuf {
        self.kvmx_home().join("data").join(vm)
    }

    /// Writes a project folder `name` with this `kvmx.toml`.
    pub fn project(&self, name: &str, toml: &str) -> Utf8PathBuf {
        let dir = self.root.join("projects").join(name);
        std::fs::create_dir_all(&dir).expect("make the project");
        std::fs::write(dir.join("kvmx.toml"), toml).expect("write kvmx.toml");
        self.runtime.user.chown(&self.root.join("projects"));
        dir
    }

    /// Runs commands with this `PATH` instead of the usual one.
    pub fn with_path(mut self, path: &str) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The command running `program` as the test user in `cwd`, with a
    /// clean environment.
    pub fn command(&self, program: &Utf8Path, cwd: &Utf8Path) -> Command {
        let user = &self.runtime.user;
        let mut command = Command::new("runuser");
        command
            .args(["-u", &user.name, "--", "env", "-i"])
            .arg(format!(
                "PATH={}",
                self.path
                    .as_deref()
                    .unwrap_or("/usr/local/bin:/usr/bin:/bin")
            ))
            .arg(format!("HOME={}", self.root))
            .arg(format!("KVMX_HOME={}", self.kvmx_home()))
            .arg(format!("KVMX_CACHE_DIR={}", self.runtime.cache))
            .arg("LANG=C.UTF-8")
            .arg(program)
            .current_dir(cwd);
        command
    }

    /// Runs `program args` as the test user in `cwd`.
    pub fn run(&self, program: &Utf8Path, cwd: &Utf8Path, args: &[&str]) -> Output {
        self.command(program, cwd)
            .args(args)
            .output()
            .expect("run the command")
    }
}
