//! `kvmx completions` and `kvmx man`: generated from the clap definitions.

use crate::error::CommandError;

pub fn completions(shell: clap_complete::Shell) -> Result<(), CommandError> {
    clap_complete::generate(shell, &mut crate::command(), "kvmx", &mut std::io::stdout());
    Ok(())
}

pub fn man() -> Result<(), CommandError> {
    clap_mangen::Man::new(crate::command()).render(&mut std::io::stdout())?;
    Ok(())
}
