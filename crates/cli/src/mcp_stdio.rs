//! `portcullis mcp-stdio`: bridges an MCP client that speaks stdio to the gateway's `/mcp`.
//!
//! Messages pass through unchanged both ways: rmcp's stdio transport reads the client's JSON-RPC
//! lines, and its Streamable HTTP client transport carries them to the gateway with the agent's
//! bearer token, keeping the session id and protocol version and reading SSE answers. The bridge
//! decides nothing itself: every request crosses the gateway's pipeline like any other.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport as _};
use rmcp::{RoleClient, RoleServer};

use crate::admin_client::ServerArgs;

#[derive(Debug, Args)]
pub struct McpStdioArgs {
    /// Environment variable holding the agent's bearer token (never an argument, so the token
    /// stays out of process listings).
    #[arg(long, value_name = "VAR")]
    agent_token_env: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: McpStdioArgs) -> anyhow::Result<ExitCode> {
    let token = std::env::var(&args.agent_token_env)
        .ok()
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .with_context(|| {
            format!(
                "the environment variable `{}` (the agent token) is unset or empty",
                args.agent_token_env
            )
        })?;
    let url = format!("{}/mcp", args.server.base_url()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(bridge(url, token))?;
    Ok(ExitCode::SUCCESS)
}

/// Pumps messages until the client closes stdin (success) or the gateway ends the session.
async fn bridge(url: String, token: String) -> anyhow::Result<()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    config.auth_header = Some(token);
    let mut gateway = StreamableHttpClientTransport::from_config(config);
    let mut client = <_ as rmcp::transport::IntoTransport<RoleServer, _, _>>::into_transport(
        rmcp::transport::stdio(),
    );
    let outcome = loop {
        tokio::select! {
            from_client = client.receive() => match from_client {
                Some(message) => {
                    if let Err(err) =
                        rmcp::transport::Transport::<RoleClient>::send(&mut gateway, message).await
                    {
                        break Err(anyhow::Error::new(err).context("the gateway did not take a message"));
                    }
                }
                None => break Ok(()),
            },
            from_gateway = rmcp::transport::Transport::<RoleClient>::receive(&mut gateway) => match from_gateway {
                Some(message) => {
                    if let Err(err) = client.send(message).await {
                        break Err(anyhow::Error::new(err).context("cannot write to stdout"));
                    }
                }
                None => break Err(anyhow::anyhow!("the gateway ended the session (is the agent token valid?)")),
            },
        }
    };
    let _ = rmcp::transport::Transport::<RoleClient>::close(&mut gateway).await;
    let _ = client.close().await;
    match outcome {
        Ok(()) => Ok(()),
        Err(err) => bail!("{err:#}"),
    }
}
