//! `portcullis fixture-server` and `portcullis fixture-llm`: the project's MCP test server and
//! fake LLM provider (hidden; for tests, demo, benchmarks).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use portcullis_mcp_fixture::{Fixture, FixtureOptions};
use tokio_util::sync::CancellationToken;

use crate::print_line;

#[derive(Debug, Args)]
pub struct FixtureArgs {
    /// Serve Streamable HTTP on this address (port 0 picks one) instead of stdio; prints
    /// `{"event":"listening","http":ADDR}` once listening.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Serve one session on stdin/stdout (the default).
    #[arg(long, conflicts_with = "http")]
    pub stdio: bool,
    /// The directory `read_file` is confined to.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Append every received tools/call as one JSON line to FILE.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Change `echo`'s description after N tools/list calls.
    #[arg(long, value_name = "N")]
    pub rug_pull_after: Option<u64>,
    /// Change `echo`'s description after N tools/call calls and tell the client its tools
    /// changed (`notifications/tools/list_changed`).
    #[arg(long, value_name = "N")]
    pub rug_pull_after_calls: Option<u64>,
    /// Also serve the MCP conformance suite's tools, prompts and resources.
    #[arg(long)]
    pub conformance: bool,
    /// The name announced in `serverInfo`.
    #[arg(long, value_name = "TEXT")]
    pub server_name: Option<String>,
    /// The `instructions` announced at initialization.
    #[arg(long, value_name = "TEXT")]
    pub instructions: Option<String>,
}

pub fn run(args: FixtureArgs) -> anyhow::Result<ExitCode> {
    let fixture = Fixture::new(FixtureOptions {
        root: args.root,
        record: args.record,
        rug_pull_after: args.rug_pull_after,
        rug_pull_after_calls: args.rug_pull_after_calls,
        conformance: args.conformance,
        server_name: args.server_name,
        instructions: args.instructions,
        clock: Arc::new(portcullis_core::SystemClock),
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match args.http {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                print_line(
                    &serde_json::json!({ "event": "listening", "http": local }).to_string(),
                )?;
                let shutdown = CancellationToken::new();
                let on_signal = shutdown.clone();
                tokio::spawn(async move {
                    portcullis_gateway::server::shutdown_signal().await;
                    on_signal.cancel();
                });
                portcullis_mcp_fixture::serve_http(listener, fixture, shutdown).await?;
            }
            None => portcullis_mcp_fixture::serve_stdio(fixture).await?,
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct FixtureLlmArgs {
    /// Port on 127.0.0.1 (0 picks one); prints `{"event":"listening","http":ADDR}` once
    /// listening.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How streamed text is cut: `words` (each word in two halves), `whole`, or a byte count.
    #[arg(long, default_value = "words")]
    pub split: portcullis_llm_fixture::Split,
}

pub fn run_llm(args: FixtureLlmArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        print_line(&serde_json::json!({ "event": "listening", "http": local }).to_string())?;
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            portcullis_gateway::server::shutdown_signal().await;
            on_signal.cancel();
        });
        let fixture = portcullis_llm_fixture::LlmFixture::new(args.split);
        portcullis_llm_fixture::serve(listener, fixture, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
