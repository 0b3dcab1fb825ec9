//! `portcullis killswitch on|off|status [--scope S]`: the kill switch, through the admin API.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::admin_client::{AdminClient, ServerArgs};
use crate::print_line;

#[derive(Debug, Subcommand)]
pub enum KillswitchCommand {
    /// Refuse every new request (or a scope's) with 503 `killswitch_engaged`.
    On {
        /// `global` (default), `agent:<id>` or `project:<name>`.
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Lift the kill switch of a scope.
    Off {
        /// `global` (default), `agent:<id>` or `project:<name>`.
        #[arg(long)]
        scope: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the engaged scopes as JSON.
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(cmd: KillswitchCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (server, body) = match &cmd {
            KillswitchCommand::On { scope, server } => (
                server,
                Some(serde_json::json!({"on": true, "scope": scope})),
            ),
            KillswitchCommand::Off { scope, server } => (
                server,
                Some(serde_json::json!({"on": false, "scope": scope})),
            ),
            KillswitchCommand::Status { server } => (server, None),
        };
        let client = AdminClient::connect(server)?;
        let method = if body.is_some() {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let answer = client.send(method, "/admin/killswitch", body).await?;
        print_line(&answer.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}
