//! The `kvmx` binary: everything happens in [`kvmx_cli::main`].

fn main() -> std::process::ExitCode {
    kvmx_cli::main()
}
