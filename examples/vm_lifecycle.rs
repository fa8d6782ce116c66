//! Embedding kvmx: bring a project's VM up exactly as `kvmx up` does
//! (image built when missing, hooks, provisioning), run a command in it,
//! and power it off as `kvmx stop` does, through the libraries alone.
//!
//! ```sh
//! cargo run -p kvmx-provision --example vm_lifecycle -- examples/hello
//! ```

use camino::Utf8PathBuf;
use kvmx_core::{Event, Layout, Observer};
use kvmx_provision::{StopOptions, UpOptions, Vm};

/// Prints each finished stage and each note.
struct PrintStages;

impl Observer for PrintStages {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::StageFinished { stage, elapsed, .. } => {
                eprintln!("-- {stage} ({:.1}s)", elapsed.as_secs_f64())
            }
            Event::Note { text } | Event::Warning { text } => eprintln!("note: {text}"),
            Event::GuestOutput { vm, line, .. } => eprintln!("[{vm}] {line}"),
            _ => {}
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let folder = Utf8PathBuf::from(folder).canonicalize_utf8()?;
    let layout = Layout::from_env()?;
    let vm = Vm::find(&layout, Some(folder.as_str()), &folder)?.vm;

    let up = vm.up_with(&UpOptions::new(), &mut PrintStages)?;
    println!(
        "up under {} in {:.1}s",
        up.start.accelerator.as_str(),
        up.start.seconds
    );

    // Words are an argv; output comes back as bytes, each stream capped.
    let uname = vm
        .guest()?
        .exec(&["uname", "-a"])
        .timeout(std::time::Duration::from_secs(60))
        .output()?;
    print!("{}", String::from_utf8_lossy(&uname.stdout));
    println!("uname exited with {}", uname.code);

    let step = vm.stop_with(&StopOptions::new(), &mut PrintStages)?;
    println!("stopped by {step:?}");
    Ok(())
}
