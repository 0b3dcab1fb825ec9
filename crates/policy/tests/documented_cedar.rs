//! Every Cedar example of docs/POLICY.md, taken from the generated text itself, decides as the
//! document says once the request carries its real context (arguments as tags, risk tier, time,
//! room): the context a live front passes, and the one `/admin/policy/explain` takes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_core::request::{RequestContext, RiskTier};
use portcullis_core::{GateKey, GatePattern, Request, Subject};
use portcullis_policy::{PolicyConfig, PolicyEngine, PolicyState};
use serde_json::json;

/// The ```cedar blocks of POLICY.md, in order.
fn documented_cedar() -> Vec<String> {
    portcullis_policy::docs::policy_markdown()
        .split("```cedar\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(str::to_owned)
        .collect()
}

fn engine() -> PolicyEngine {
    let blocks = documented_cedar();
    assert_eq!(blocks.len(), 2, "POLICY.md's Cedar examples");
    let sources: Vec<(String, String)> = blocks
        .into_iter()
        .enumerate()
        .map(|(idx, text)| (format!("example-{idx}.cedar"), text))
        .collect();
    let config = PolicyConfig {
        cedar_files: sources.iter().map(|(name, _)| name.into()).collect(),
        ..PolicyConfig::default()
    };
    PolicyEngine::build(&config, &[], &sources).unwrap()
}

/// One row: who, which key, room, risk, arguments, when, the agent's allowlist, and the expected
/// `(decision, layer, rule)`.
struct Row {
    agent: &'static str,
    key: &'static str,
    room: Option<&'static str>,
    risk: RiskTier,
    arguments: serde_json::Value,
    at: &'static str,
    allow: &'static [&'static str],
    expected: (&'static str, &'static str, Option<&'static str>),
}

const MONDAY_10: &str = "2026-01-05T10:00:00Z";
const MONDAY_20: &str = "2026-01-05T20:00:00Z";
const SATURDAY_10: &str = "2026-01-10T10:00:00Z";

fn row(agent: &'static str, key: &'static str) -> Row {
    Row {
        agent,
        key,
        room: None,
        risk: RiskTier::Low,
        arguments: json!({}),
        at: MONDAY_10,
        allow: &[],
        expected: ("allow", "allowlist", Some("tools:*")),
    }
}

#[track_caller]
fn check(engine: &PolicyEngine, row: &Row) {
    let request = Request {
        subject: Subject {
            agent: row.agent.to_owned(),
            room: row.room.map(str::to_owned),
            ..Subject::default()
        },
        action: GateKey::parse(row.key).unwrap(),
        // What the fronts pass: the tool's `<upstream>.<tool>`, the key's tail.
        resource: String::new(),
        context: RequestContext {
            arguments: row.arguments.clone(),
            risk: row.risk,
        },
    };
    let allow: Vec<GatePattern> = row
        .allow
        .iter()
        .map(|pattern| GatePattern::parse(pattern).unwrap())
        .collect();
    let answer = engine.decide(
        &request,
        &allow,
        row.at.parse().unwrap(),
        &PolicyState::in_memory(),
    );
    assert_eq!(
        (
            if answer.is_allow() { "allow" } else { "deny" },
            answer.layer,
            answer.rule.as_deref()
        ),
        row.expected,
        "{} {} room={:?} risk={:?} args={} at {}",
        row.agent,
        row.key,
        row.room,
        row.risk,
        row.arguments,
        row.at
    );
    // The explain route's JSON form of the same request decides the same.
    let json = serde_json::to_string(&request).unwrap();
    let parsed: Request = serde_json::from_str(&json).unwrap();
    let again = engine.decide(
        &parsed,
        &allow,
        row.at.parse().unwrap(),
        &PolicyState::in_memory(),
    );
    assert_eq!(again, answer, "{json}");
}

/// "Allow the chat bridge to call GitHub tools in office hours."
#[test]
fn office_hours_permit() {
    let engine = engine();
    let permitted = ("allow", "cedar", Some("bridge-github-office-hours"));
    let nothing = ("deny", "default", None);
    for row in [
        Row {
            expected: permitted,
            ..row("bridge", "tools:call:github.list_issues")
        },
        Row {
            at: MONDAY_20,
            expected: nothing,
            ..row("bridge", "tools:call:github.list_issues")
        },
        Row {
            at: SATURDAY_10,
            expected: nothing,
            ..row("bridge", "tools:call:github.list_issues")
        },
        Row {
            expected: nothing,
            ..row("bridge", "tools:call:jira.create")
        },
        Row {
            expected: nothing,
            ..row("coder", "tools:call:github.list_issues")
        },
    ] {
        check(&engine, &row);
    }
}

/// "Forbid high-risk actions in one room": the live risk tier and room decide.
#[test]
fn high_risk_in_lobby_forbid() {
    let engine = engine();
    let forbidden = ("deny", "cedar", Some("no-high-risk-in-lobby"));
    let allowed = ("allow", "allowlist", Some("tools:*"));
    for (room, risk, expected) in [
        (Some("lobby"), RiskTier::High, forbidden),
        (Some("lobby"), RiskTier::Critical, forbidden),
        (Some("lobby"), RiskTier::Medium, allowed),
        (Some("ops"), RiskTier::Critical, allowed),
        (None, RiskTier::Critical, allowed),
    ] {
        check(
            &engine,
            &Row {
                room,
                risk,
                allow: &["tools:*"],
                expected,
                ..row("chat", "tools:call:jira.create")
            },
        );
    }
}

/// "... and writes outside one repository": the live arguments decide; `unless` admits exactly
/// the documented repository and nothing else.
#[test]
fn only_acme_web_unless() {
    let engine = engine();
    let forbidden = ("deny", "cedar", Some("only-acme-web"));
    let allowed = ("allow", "allowlist", Some("tools:*"));
    for (key, arguments, expected) in [
        (
            "tools:call:github.create_issue",
            json!({"repo": "acme/web", "title": "bug"}),
            allowed,
        ),
        (
            "tools:call:github.create_issue",
            json!({"repo": "acme/api"}),
            forbidden,
        ),
        ("tools:call:github.create_issue", json!({}), forbidden),
        // Other JSON values are their JSON text: the string "acme/web" only as a string.
        (
            "tools:call:github.create_issue",
            json!({"repo": ["acme/web"]}),
            forbidden,
        ),
        // Another tool is not the policy's resource.
        ("tools:call:github.list_issues", json!({}), allowed),
    ] {
        check(
            &engine,
            &Row {
                arguments,
                allow: &["tools:*"],
                expected,
                ..row("coder", key)
            },
        );
    }
}
