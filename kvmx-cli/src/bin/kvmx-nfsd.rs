//! `kvmx-nfsd`: the NFS server of one `nfs` share, started by `kvmx up`
//! (see `kvmx_provision::nfs`). The secret comes in `KVMX_NFS_SECRET`.

use clap::Parser;
use kvmx_provision::nfs::{SECRET_VARIABLE, ServeOptions, serve};

/// Serves a host folder over NFSv3 on 127.0.0.1 to clients that know the secret.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The folder to serve.
    folder: std::path::PathBuf,
    /// Port on 127.0.0.1 (MOUNT and NFS both).
    #[arg(long)]
    port: u16,
    /// Refuse writes.
    #[arg(long)]
    read_only: bool,
    /// Exit once this process is gone.
    #[arg(long)]
    watch_pid: Option<i32>,
    /// The secret clients mount with, hexadecimal.
    #[arg(long, env = SECRET_VARIABLE, hide_env_values = true)]
    secret: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let options = ServeOptions {
        folder: args.folder,
        port: args.port,
        read_only: args.read_only,
        secret: args.secret,
        watch_pid: args.watch_pid,
    };
    match serve(&options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kvmx-nfsd: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
