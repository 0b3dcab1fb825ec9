//! `portcullis policy eval`: the explain endpoint's answer, computed offline from a config file.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use jiff::Timestamp;
use portcullis_core::{Clock as _, SystemClock};
use portcullis_gateway::{config, policy};

use crate::{environment, print_line};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Explain the decision for one request, exactly as `POST /admin/policy/explain` would
    /// (without stored contracts or adopted capsules).
    Eval {
        /// Configuration file (default: ./portcullis.toml when present, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The request JSON `{subject, action, resource, context}`; `-` reads stdin.
        #[arg(long)]
        request: PathBuf,
        /// Decide at this instant (RFC 3339) instead of now; overrides the request's `at`.
        #[arg(long)]
        at: Option<Timestamp>,
    },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Eval {
            config: path,
            request,
            at,
        } => {
            let env = environment();
            let source = config::resolve_source(path.as_deref(), &env);
            let config = config::load(&source, &env)?;
            let limit = u64::try_from(policy::MAX_EXPLAIN_BYTES)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            let mut body = Vec::new();
            if request.as_os_str() == "-" {
                std::io::stdin().take(limit).read_to_end(&mut body)?;
            } else {
                std::fs::File::open(&request)
                    .with_context(|| format!("cannot read {}", request.display()))?
                    .take(limit)
                    .read_to_end(&mut body)?;
            }
            let body = with_at(body, at)?;
            let explanation = policy::eval_offline(&config, &body, SystemClock.now())?;
            print_line(&serde_json::to_string(&explanation)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sets `at` in the request body when `--at` is given.
fn with_at(body: Vec<u8>, at: Option<Timestamp>) -> anyhow::Result<Vec<u8>> {
    let Some(at) = at else {
        return Ok(body);
    };
    let mut value: serde_json::Value =
        serde_json::from_slice(&body).context("the request is not JSON")?;
    let object = value
        .as_object_mut()
        .context("the request is not a JSON object")?;
    object.insert("at".into(), at.to_string().into());
    Ok(serde_json::to_vec(&value)?)
}
