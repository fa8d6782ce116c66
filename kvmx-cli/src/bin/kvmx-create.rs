//! The `kvmx-create` binary: everything happens in [`kvmx_cli::create::main`].

fn main() -> std::process::ExitCode {
    kvmx_cli::create::main()
}
