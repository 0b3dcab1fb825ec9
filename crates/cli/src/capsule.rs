//! `portcullis capsule ...`: offline capsule keys, signing, verification and inspection.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum CapsuleCommand {
    /// Print a capsule body template.
    Template,
}

pub fn run(cmd: CapsuleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CapsuleCommand::Template => {
            anyhow::bail!("`capsule template` is not available in this build yet")
        }
    }
}
