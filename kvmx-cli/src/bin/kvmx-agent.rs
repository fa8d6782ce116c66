//! `kvmx-agent`: kvmx's command channel in a guest (see `kvmx_agent`).
//! kvmx copies it into a warm disposable's guest and starts it there as
//! `kvmx-agent serve /dev/virtio-ports/org.kvmx.agent`; it runs itself as
//! `kvmx-agent launch ...` to start each command as the guest user.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((first, rest)) if first == kvmx_agent::LAUNCH => {
            eprintln!("kvmx-agent: {}", kvmx_agent::launch(rest));
            ExitCode::from(127)
        }
        Some((first, [port])) if first == "serve" => {
            match kvmx_agent::guest::serve(port.as_ref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("kvmx-agent: {port}: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: kvmx-agent serve PORT");
            ExitCode::from(2)
        }
    }
}
