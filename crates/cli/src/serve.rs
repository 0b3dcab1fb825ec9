//! `portcullis serve` and `portcullis doctor`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use portcullis_gateway::config;
use portcullis_gateway::doctor::{self, HostFacts, Status};
use portcullis_gateway::server::{self, ServeOptions};

use crate::{environment, print_line};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./portcullis.toml when present, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (default: $PORTCULLIS_DATA_DIR, else ./portcullis-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Answer every egress lookup from this DNS fixture instead of the system resolver (tests).
    #[arg(long)]
    pub dns_fixture: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let env = environment();
    let source = config::resolve_source(args.config.as_deref(), &env);
    let config = config::load(&source, &env)?;
    server::init_logging(&config.observability, &env);
    let options = ServeOptions {
        data_dir: server::resolve_data_dir(args.data_dir.as_deref(), &env),
        debug: env
            .get("PORTCULLIS_DEBUG")
            .is_some_and(|v| v == "1" || v == "true"),
        config,
        clock: Arc::new(portcullis_core::SystemClock),
        dns_fixture: args.dns_fixture,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(server::serve(options, server::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let env = environment();
    let source = config::resolve_source(args.config.as_deref(), &env);
    let config = config::load(&source, &env)?;
    let data_dir = server::resolve_data_dir(args.data_dir.as_deref(), &env);
    let debug = env
        .get("PORTCULLIS_DEBUG")
        .is_some_and(|v| v == "1" || v == "true");
    let checks = doctor::audit(&config, &HostFacts::gather(&data_dir, debug));
    if args.json {
        print_line(&serde_json::to_string_pretty(&checks)?)?;
    } else {
        for check in &checks {
            let label = match check.status {
                Status::Pass => "pass",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            print_line(&format!("{label:<5} {:<22} {}", check.id, check.detail))?;
        }
    }
    let failed = checks.iter().any(|check| check.status == Status::Fail);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
