//! `portcullis egress preview` (offline) and `portcullis lease grant|list|revoke` (admin API).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use portcullis_core::Clock as _;
use portcullis_egress::{FixtureResolver, Resolver, SystemResolver};
use portcullis_gateway::config;
use portcullis_gateway::egress::{PreviewGate, PreviewRequest, anonymous_subject, preview};
use portcullis_netpolicy::{DnsFixture, EgressPolicy};

use crate::admin_client::{AdminClient, ServerArgs};
use crate::{environment, print_line};

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Print the decision the proxy would make for TARGET, as JSON; exits 1 when denied.
    Preview {
        /// An absolute URL, or with --connect a CONNECT authority `host:port`.
        target: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        project: Option<String>,
        /// Decide the policy engine's `net:*` keys for this agent declared in the configuration
        /// (its allowlist, roles, tags and project); without it, for the anonymous subject.
        #[arg(long)]
        agent: Option<String>,
        /// JSON object mapping names to {"A":[...],"AAAA":[...]} or {"rcode":"NXDOMAIN"}; no real
        /// lookup is made.
        #[arg(long)]
        dns_fixture: Option<PathBuf>,
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease (`net:host:<h>`, `net:domain:<d>`, `net:port:<p>`) to an agent or a project.
    Grant {
        key: String,
        /// How long, e.g. `15m`.
        #[arg(long)]
        ttl: String,
        #[arg(long, conflicts_with = "project", required_unless_present = "project")]
        agent: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the running leases.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a lease by id.
    Revoke {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn run(cmd: EgressCommand) -> anyhow::Result<ExitCode> {
    let EgressCommand::Preview {
        target,
        config: path,
        project,
        agent,
        dns_fixture,
        connect,
    } = cmd;
    let env = environment();
    let source = config::resolve_source(path.as_deref(), &env);
    let config = config::load(&source, &env)?;
    let policy = EgressPolicy::from_config(&config.egress)?;
    let resolver: Arc<dyn Resolver> = match dns_fixture {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Arc::new(FixtureResolver::new(DnsFixture::parse(&text)?))
        }
        None => Arc::new(SystemResolver::from_system()?),
    };
    let (_, engine) = portcullis_gateway::policy::build_from_config(&config).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the policy does not load:\n  {}", lines.join("\n  "))
    })?;
    let (subject, allow) = match agent {
        Some(id) => {
            let declared = config
                .agents
                .iter()
                .find(|declared| declared.id == id)
                .with_context(|| format!("agent `{id}` is not declared in the configuration"))?;
            let allow = portcullis_gateway::policy::config_allowlists(&config)
                .remove(&id)
                .unwrap_or_default();
            let subject = portcullis_core::Subject {
                agent: id,
                project: declared.project.clone(),
                roles: declared.roles.clone(),
                tags: declared.tags.clone(),
                ..portcullis_core::Subject::default()
            };
            (subject, allow)
        }
        None => (anonymous_subject(project.clone()), Vec::new()),
    };
    let project = subject.project.clone().or(project);
    let request = PreviewRequest {
        target,
        connect,
        project,
    };
    let policy_state = portcullis_gateway::egress::offline_policy_state();
    let gate = PreviewGate {
        engine: &engine,
        state: &policy_state,
        subject,
        allow: &allow,
    };
    let (result, _events) = runtime()?.block_on(preview(
        &policy,
        &request,
        &gate,
        &[],
        portcullis_core::SystemClock.now(),
        resolver.as_ref(),
    ));
    print_line(&serde_json::to_string(&result)?)?;
    Ok(if result.allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn run_lease(cmd: LeaseCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match cmd {
            LeaseCommand::Grant {
                key,
                ttl,
                agent,
                project,
                server,
            } => {
                let client = AdminClient::connect(&server)?;
                let answer = client
                    .send(
                        reqwest::Method::POST,
                        "/admin/leases",
                        Some(serde_json::json!({
                            "key": key, "ttl": ttl, "agent": agent, "project": project,
                        })),
                    )
                    .await?;
                print_line(&answer.to_string())?;
            }
            LeaseCommand::List { server } => {
                let client = AdminClient::connect(&server)?;
                let answer = client
                    .send(reqwest::Method::GET, "/admin/leases", None)
                    .await?;
                print_line(&answer.to_string())?;
            }
            LeaseCommand::Revoke { id, server } => {
                let client = AdminClient::connect(&server)?;
                client
                    .send(
                        reqwest::Method::DELETE,
                        &format!("/admin/leases/{id}"),
                        None,
                    )
                    .await?;
                print_line(&format!("revoked lease `{id}`"))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
