//! `portcullis pii scan|redact`: offline PII and secret detection on stdin.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PiiCommand {
    /// Print the detected spans of each input as JSON.
    Scan,
}

pub fn run(cmd: PiiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PiiCommand::Scan => anyhow::bail!("`pii scan` is not available in this build yet"),
    }
}
