//! `portcullis agent token create|revoke`: run-time agents, through the admin API.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::admin_client::{AdminClient, ServerArgs};
use crate::print_line;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Agent tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an agent and print its token (shown once; only its SHA-256 is kept).
    Create(CreateArgs),
    /// Revoke an agent: its token stops working at once.
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub id: String,
    #[arg(long = "role")]
    pub roles: Vec<String>,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long)]
    pub project: Option<String>,
    /// Gate-key pattern the agent may use (repeatable).
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// Let the agent state whom it acts for (X-Portcullis-User/Room/Session).
    #[arg(long)]
    pub may_assert_identity: bool,
    /// Print the whole answer as JSON instead of the bare token.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(cmd: AgentCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cmd {
            AgentCommand::Token(TokenCommand::Create(args)) => {
                let client = AdminClient::connect(&args.server)?;
                let answer = client
                    .send(
                        reqwest::Method::POST,
                        "/admin/agents",
                        Some(serde_json::json!({
                            "id": args.id,
                            "roles": args.roles,
                            "tags": args.tags,
                            "project": args.project,
                            "allow": args.allow,
                            "may_assert_identity": args.may_assert_identity,
                        })),
                    )
                    .await?;
                if args.json {
                    print_line(&answer.to_string())?;
                } else {
                    let token = answer
                        .get("token")
                        .and_then(serde_json::Value::as_str)
                        .context("the gateway answered without a token")?;
                    print_line(token)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            AgentCommand::Token(TokenCommand::Revoke { id, server }) => {
                let client = AdminClient::connect(&server)?;
                client
                    .send(
                        reqwest::Method::DELETE,
                        &format!("/admin/agents/{id}"),
                        None,
                    )
                    .await?;
                print_line(&format!("revoked agent `{id}`"))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
