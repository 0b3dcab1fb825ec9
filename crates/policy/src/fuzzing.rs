//! The property the `policy_decide` fuzz target and its corpus replay test check.

use jiff::Timestamp;
use portcullis_core::{GatePattern, Request};

use crate::config::PolicyConfig;
use crate::contract::Contract;
use crate::engine::{PolicyEngine, PolicyState};
use crate::explain::{ALLOW_REASONS, REASONS, Verdict, layer};

/// Two engines built from a fixed policy: a realistic one, and one that denies every key.
#[derive(Debug)]
pub struct FuzzFixture {
    engine: PolicyEngine,
    deny_all: PolicyEngine,
    state: PolicyState,
    allow: Vec<GatePattern>,
}

const FIXTURE_CEDAR: &str = r#"
@id("permit-models")
permit (principal, action == Portcullis::Action::"llm:model", resource);
@id("forbid-critical")
forbid (principal, action, resource) when { context.risk_level >= 3 };
@id("needs-repo")
forbid (principal, action == Portcullis::Action::"tools:call", resource in Portcullis::Upstream::"github")
unless { context.arguments.hasTag("repo") && context.arguments.getTag("repo") == "acme/web" };
@id("project-web")
permit (principal, action == Portcullis::Action::"net:host", resource)
when { principal has project && principal.project == "web" };
@id("overflow-on-risk")
forbid (principal, action == Portcullis::Action::"io:ingress", resource)
when { context.risk_level * 4611686018427387904 > 0 };
"#;

impl FuzzFixture {
    /// Builds the fixture; `None` only if the fixed policy stopped building (a bug).
    pub fn new() -> Option<Self> {
        let pattern = |raw: &str| GatePattern::parse(raw).ok();
        let config = PolicyConfig {
            deny: vec![
                pattern("net:host:169.254.169.254")?,
                pattern("tools:call:shell.*")?,
            ],
            cedar_files: vec!["fixture.cedar".into()],
            mode: Default::default(),
        };
        let contracts = vec![Contract {
            id: "quota".into(),
            patterns: vec![pattern("net:port:*")?],
            subject: Default::default(),
            valid_from: None,
            valid_to: None,
            auto_renew_secs: None,
            immutable: false,
            quota: Some(crate::contract::Quota {
                limit: 3,
                window_secs: 60,
            }),
        }];
        let sources = vec![("fixture.cedar".to_owned(), FIXTURE_CEDAR.to_owned())];
        let engine = PolicyEngine::build(&config, &contracts, &sources).ok()?;
        let deny_all_config = PolicyConfig {
            deny: vec![pattern("*")?],
            ..config
        };
        let deny_all = PolicyEngine::build(&deny_all_config, &contracts, &sources).ok()?;
        Some(Self {
            engine,
            deny_all,
            state: PolicyState::in_memory(),
            allow: vec![pattern("tools:*")?, pattern("io:*")?],
        })
    }

    /// Feeds `data` as request JSON. Returns a description of the first broken property; bytes
    /// that are not a request are fine (`Ok`).
    pub fn check(&self, data: &[u8]) -> Result<(), String> {
        let Ok(request) = serde_json::from_slice::<Request>(data) else {
            return Ok(());
        };
        let now = Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH);
        let answer = self.engine.decide(&request, &self.allow, now, &self.state);
        if !layer::ALL.contains(&answer.layer) {
            return Err(format!("unknown layer {}", answer.layer));
        }
        let known = REASONS.iter().any(|info| info.code == answer.reason)
            || ALLOW_REASONS.iter().any(|(code, _)| *code == answer.reason);
        if !known {
            return Err(format!("unknown reason {}", answer.reason));
        }
        if answer.is_allow() && answer.report.is_some() {
            return Err("report without report mode".to_owned());
        }
        let text = serde_json::to_string(&answer).map_err(|error| error.to_string())?;
        if !text.starts_with(r#"{"decision":""#) {
            return Err(format!("bad explanation shape {text}"));
        }
        let denied = self
            .deny_all
            .decide(&request, &self.allow, now, &self.state);
        if denied.decision != Verdict::Deny {
            return Err("adding a deny of every key allowed".to_owned());
        }
        Ok(())
    }
}
