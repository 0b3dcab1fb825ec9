//! The `portcullis` binary: argument parsing and glue only.
//!
//! Invariant: no logic lives here that a library crate could own; every command maps to one call
//! into a library and its result to an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod capsule;
mod pii;

/// Portcullis: a fail-closed security gateway for AI agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect and sanitize PII and secrets in text on stdin.
    #[command(subcommand)]
    Pii(pii::PiiCommand),
    /// Create, sign, verify and inspect signed policy capsules.
    #[command(subcommand)]
    Capsule(capsule::CapsuleCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pii(cmd) => pii::run(cmd),
        Command::Capsule(cmd) => capsule::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            #[expect(clippy::print_stderr, reason = "the CLI reports failures on stderr")]
            {
                eprintln!("portcullis: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}
