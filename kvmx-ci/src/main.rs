//! The `kvmx-ci` binary: everything happens in [`kvmx_ci::cli::main`].

fn main() -> std::process::ExitCode {
    kvmx_ci::cli::main()
}
