//! The `portcullis` binary: argument parsing and glue only.
//!
//! Invariant: no logic lives here that a library crate could own; every command maps to one call
//! into a library and its result to an exit code.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin_client;
mod agent;
mod capsule;
mod config_cmd;
mod demo;
mod egress;
mod fixture;
mod killswitch;
mod ledger;
mod mcp_stdio;
mod pii;
mod policy;
mod serve;
mod tools;

/// Portcullis: a fail-closed security gateway for AI agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Run the gateway with a built-in demo tool server and a demo agent; prints how to call it.
    Demo(demo::DemoArgs),
    /// Check the configuration, print its JSON Schema or a commented example.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Audit the hardening checklist; exits non-zero when any item fails.
    Doctor(serve::DoctorArgs),
    /// Verify the hash-chained ledger.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Manage run-time agents on a running gateway.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Detect and sanitize PII and secrets in text on stdin.
    #[command(subcommand)]
    Pii(pii::PiiCommand),
    /// Create, sign, verify and inspect signed policy capsules.
    #[command(subcommand)]
    Capsule(capsule::CapsuleCommand),
    /// Explain policy decisions offline.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Preview egress decisions offline.
    #[command(subcommand)]
    Egress(egress::EgressCommand),
    /// Grant, list and revoke egress leases on a running gateway.
    #[command(subcommand)]
    Lease(egress::LeaseCommand),
    /// List and pin the MCP tools of a running gateway.
    #[command(subcommand)]
    Tools(tools::ToolsCommand),
    /// Bridge an MCP client that speaks stdio to the gateway's `/mcp`, as an agent.
    McpStdio(mcp_stdio::McpStdioArgs),
    /// Serve the project's MCP test server (tests, demo and benchmarks).
    #[command(hide = true)]
    FixtureServer(fixture::FixtureArgs),
    /// Serve the project's fake OpenAI-compatible provider (tests and benchmarks).
    #[command(hide = true)]
    FixtureLlm(fixture::FixtureLlmArgs),
    /// Engage or lift the kill switch on a running gateway.
    #[command(subcommand)]
    Killswitch(killswitch::KillswitchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Demo(args) => demo::run(args),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Doctor(args) => serve::doctor(args),
        Command::Ledger(cmd) => ledger::run(cmd),
        Command::Agent(cmd) => agent::run(cmd),
        Command::Pii(cmd) => pii::run(cmd),
        Command::Capsule(cmd) => capsule::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Egress(cmd) => egress::run(cmd),
        Command::Lease(cmd) => egress::run_lease(cmd),
        Command::Tools(cmd) => tools::run(cmd),
        Command::McpStdio(args) => mcp_stdio::run(args),
        Command::FixtureServer(args) => fixture::run(args),
        Command::FixtureLlm(args) => fixture::run_llm(args),
        Command::Killswitch(cmd) => killswitch::run(cmd),
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

/// The process environment as a map (non-UTF-8 variables are skipped).
fn environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

/// Writes `text` and a newline to stdout.
fn print_line(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(())
}
