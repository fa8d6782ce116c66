//! NFS shares: one `kvmx-nfsd` per share, a userspace NFSv3 server (MOUNT
//! and NFS on one TCP port, no portmapper, no root) on the host's
//! 127.0.0.1, which the guest reaches as 10.0.2.2 through QEMU's user
//! networking. `up` starts it once QEMU runs and records its pid, port and
//! secret in the runtime folder; `stop` and `kill` end it, and it ends by
//! itself when QEMU is gone.

pub mod mirror;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use kvmx_core::atomic_file::{self, Overwrite};
use kvmx_core::config::Share;
use nfsserve::tcp::{NFSTcp, NFSTcpListener};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Names the kvmx-nfsd binary to use instead of searching for one.
pub const NFSD_VARIABLE: &str = "KVMX_NFSD";
/// Hands the secret to kvmx-nfsd (not on its command line, which every
/// local user can read).
pub const SECRET_VARIABLE: &str = "KVMX_NFS_SECRET";
/// How long a server gets to exit after SIGTERM, then SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// The host as the guest sees it.
const HOST_FROM_GUEST: &str = "10.0.2.2";

/// A running NFS server of a share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsServer {
    /// Its pid.
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The secret a client must mount with, hexadecimal.
    pub secret: String,
}

impl NfsServer {
    /// The guest's `mount -o` options.
    pub fn mount_options(&self) -> String {
        let port = self.port;
        format!("vers=3,proto=tcp,port={port},mountport={port},nolock")
    }

    /// The guest's mount source, `10.0.2.2:/SECRET`.
    pub fn source(&self) -> String {
        format!("{HOST_FROM_GUEST}:/{}", self.secret)
    }
}

fn record(runtime: &Utf8Path, id: &str) -> Utf8PathBuf {
    crate::files::nfs_record(runtime, id)
}

/// The kvmx-nfsd binary: `KVMX_NFSD`, else the one beside kvmx, on PATH or
/// in cargo's bin folder.
pub fn find_nfsd() -> Result<PathBuf, Error> {
    crate::daemon::find("kvmx-nfsd", NFSD_VARIABLE).ok_or_else(|| Error::MissingTool {
        program: "kvmx-nfsd".into(),
        needed_by: "NFS shares".into(),
        provider: crate::Provider::Instructions(
            "kvmx-nfsd comes with kvmx: install both with `cargo install --path kvmx-cli`, or set KVMX_NFSD to its path",
        ),
    })
}

/// Starts the server of `share` for the QEMU of pid `qemu`, and records it
/// in `runtime`.
pub fn start(runtime: &Utf8Path, share: &Share, qemu: i32) -> Result<NfsServer, Error> {
    let binary = find_nfsd()?;
    let mut secret = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let secret = hex::encode(secret);
    let port = crate::host::free_port()?;
    let mut command = Command::new(&binary);
    command
        .arg(share.host.as_str())
        .args([
            "--port",
            &port.to_string(),
            "--watch-pid",
            &qemu.to_string(),
        ])
        .env(SECRET_VARIABLE, &secret);
    if share.read_only {
        command.arg("--read-only");
    }
    let log = crate::files::nfs_log(runtime, share.id.as_str());
    let what = format!("the NFS server of share {}", share.id);
    let pid = crate::daemon::start(command, &what, &log, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    let server = NfsServer { pid, port, secret };
    let text = serde_json::to_vec(&server).expect("records serialize");
    atomic_file::write(&record(runtime, share.id.as_str()), &text, Overwrite::Yes)?;
    Ok(server)
}

/// The server of share `id`, if one was started for this run.
pub fn server(runtime: &Utf8Path, id: &str) -> Option<NfsServer> {
    let text = std::fs::read(record(runtime, id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Ends every NFS server started for this run.
pub fn stop_all(runtime: &Utf8Path) {
    let Ok(entries) = runtime.read_dir_utf8() else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .strip_prefix("nfs-")
            .and_then(|rest| rest.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(server) = server(runtime, id) {
            let pid = server.pid as i32;
            for signal in [Signal::SIGTERM, Signal::SIGKILL] {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                if crate::host::wait_exit(pid, STOP_DEADLINE) {
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

/// What `kvmx-nfsd` is asked to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The host folder.
    pub folder: PathBuf,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Refuse writes.
    pub read_only: bool,
    /// The secret clients mount with, hexadecimal.
    pub secret: String,
    /// Exit once this process (QEMU) is gone.
    pub watch_pid: Option<i32>,
}

/// Serves `options.folder` until the watched process ends (the body of
/// `kvmx-nfsd`).
pub fn serve(options: &ServeOptions) -> Result<(), Error> {
    let secret = hex::decode(&options.secret)
        .ok()
        .filter(|s| s.len() >= 16)
        .ok_or_else(|| Error::BadVariable {
            variable: SECRET_VARIABLE,
            problem: "it must hold at least 16 hexadecimal bytes".into(),
        })?;
    let folder = Utf8Path::from_path(&options.folder).unwrap_or(Utf8Path::new("."));
    let fs = mirror::MirrorFs::new(&options.folder, options.read_only, &secret)
        .map_err(Error::io("open", folder))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("start a runtime for", folder))?;
    runtime.block_on(async {
        let address = format!("127.0.0.1:{}", options.port);
        let listener = NFSTcpListener::bind(&address, fs)
            .await
            .map_err(Error::io("listen on", Utf8Path::new(&address)))?;
        let watch = watch(options.watch_pid);
        tokio::select! {
            served = listener.handle_forever() => served.map_err(Error::io("serve", folder)),
            () = watch => Ok(()),
        }
    })
}

/// Returns once `pid` is gone (never without one).
async fn watch(pid: Option<i32>) {
    loop {
        if pid.is_some_and(|pid| !crate::state::process_alive(pid)) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
