//! `portcullis tools list|pin`: the MCP catalog and its pins, through the admin API.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::admin_client::{AdminClient, ServerArgs};
use crate::print_line;

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// List upstreams and tools with their pin state (JSON).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pin the tool definitions the upstreams offer now (all, or one upstream's).
    Pin {
        #[arg(long)]
        upstream: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(cmd: ToolsCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cmd {
            ToolsCommand::List { server } => {
                let client = AdminClient::connect(&server)?;
                let answer = client
                    .send(reqwest::Method::GET, "/admin/tools", None)
                    .await?;
                print_line(&serde_json::to_string_pretty(&answer)?)?;
            }
            ToolsCommand::Pin { upstream, server } => {
                let client = AdminClient::connect(&server)?;
                let answer = client
                    .send(
                        reqwest::Method::POST,
                        "/admin/tools/pin",
                        Some(serde_json::json!({"upstream": upstream})),
                    )
                    .await?;
                let pinned = answer
                    .get("pinned")
                    .and_then(serde_json::Value::as_array)
                    .map_or(0, Vec::len);
                print_line(&format!("pinned {pinned} tools"))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
