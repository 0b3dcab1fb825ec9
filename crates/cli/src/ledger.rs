//! `portcullis ledger verify`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use portcullis_gateway::server;

use crate::{environment, print_line};

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every record's hash chain and the signed checkpoints; names the first bad sequence
    /// number and exits non-zero when anything was edited, deleted, reordered or truncated.
    Verify {
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: LedgerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LedgerCommand::Verify { data_dir } => {
            let dir = server::resolve_data_dir(data_dir.as_deref(), &environment());
            match portcullis_store::verify_data_dir(&dir) {
                Ok(report) => {
                    print_line(&format!(
                        "ledger ok: {} records, {} checkpoints, last seq {}",
                        report.records, report.checkpoints, report.last_seq
                    ))?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(err) => {
                    #[expect(clippy::print_stderr, reason = "errors go to stderr")]
                    {
                        eprintln!("portcullis: {err}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
