//! Embedding kvmx: start a project's VM, run a command in it over SSH, and
//! power it off, with the same libraries the `kvmx` command uses.
//!
//! ```sh
//! cargo run -p kvmx-provision --example vm_lifecycle -- examples/hello
//! ```

use camino::Utf8PathBuf;
use kvmx_core::{Layout, Project};
use kvmx_provision::{Progress, Vm};

/// Prints each stage as it begins.
struct PrintStages;

impl Progress for PrintStages {
    fn stage(&mut self, name: &str) {
        eprintln!("-- {name}");
    }
    fn note(&mut self, text: &str) {
        eprintln!("note: {text}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let folder = Utf8PathBuf::from(folder).canonicalize_utf8()?;
    let layout = Layout::from_env()?;
    let loaded = Project::find(&folder)?.load(&layout)?;
    let vm = Vm::new(&layout, loaded.name, loaded.config);

    let report = vm.up(true, &mut PrintStages)?;
    println!(
        "up under {} in {:.1}s",
        report.accelerator.as_str(),
        report.seconds
    );

    // Words are an argv; output comes back as bytes, each stream capped.
    let uname = vm
        .guest()?
        .exec(&["uname", "-a"])
        .timeout(std::time::Duration::from_secs(60))
        .output()?;
    print!("{}", String::from_utf8_lossy(&uname.stdout));
    println!("uname exited with {}", uname.code);

    let step = vm.stop(false, &mut PrintStages)?;
    println!("stopped by {step:?}");
    Ok(())
}
