//! Engine table tests (each layer, report mode, quotas), monotonicity properties, reload.

use std::sync::{Arc, RwLock};

use portcullis_core::Subject;

use super::*;
use crate::capsule::CapsuleRules;
use crate::quota::{QuotaKey, QuotaStoreError};

const NOW: &str = "2026-01-15T12:00:00Z";

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn patterns(raw: &[&str]) -> Vec<GatePattern> {
    raw.iter().map(|p| GatePattern::parse(p).unwrap()).collect()
}

#[derive(serde::Deserialize)]
struct Fixture {
    #[serde(default)]
    policy: PolicyConfig,
    #[serde(default)]
    contracts: Vec<Contract>,
}

/// Builds an engine from a TOML fragment (`[policy]` and `[[contracts]]`) and Cedar text.
fn engine(toml_text: &str, cedar: &str) -> PolicyEngine {
    let mut fixture: Fixture = toml::from_str(toml_text).unwrap();
    let mut sources = Vec::new();
    if !cedar.is_empty() {
        fixture.policy.cedar_files.push("test.cedar".into());
        sources.push(("test.cedar".to_owned(), cedar.to_owned()));
    }
    PolicyEngine::build(&fixture.policy, &fixture.contracts, &sources).unwrap()
}

fn request(agent: &str, key: &str) -> Request {
    Request {
        subject: Subject {
            agent: agent.into(),
            roles: vec!["dev".into()],
            ..Subject::default()
        },
        action: portcullis_core::GateKey::parse(key).unwrap(),
        resource: String::new(),
        context: Default::default(),
    }
}

#[track_caller]
fn check_at(
    engine: &PolicyEngine,
    state: &PolicyState,
    key: &str,
    allow: &[&str],
    now: &str,
    expected: &str,
) {
    let answer = engine.decide(&request("coder", key), &patterns(allow), at(now), state);
    assert_eq!(serde_json::to_string(&answer).unwrap(), expected, "{key}");
}

#[track_caller]
fn check(engine: &PolicyEngine, key: &str, allow: &[&str], expected: &str) {
    check_at(engine, &PolicyState::in_memory(), key, allow, NOW, expected);
}

const ALLOW_TOOLS: &[&str] = &["tools:*"];

#[test]
fn default_and_allowlist() {
    let engine = engine("", "");
    check(
        &engine,
        "tools:call:a.b",
        &[],
        r#"{"decision":"deny","layer":"default","rule":null,"reason":"no_allow"}"#,
    );
    check(
        &engine,
        "tools:call:a.b",
        ALLOW_TOOLS,
        r#"{"decision":"allow","layer":"allowlist","rule":"tools:*","reason":"allowlist_allowed"}"#,
    );
    check(
        &engine,
        "tools:call:a.b",
        &["tools:call:a.b"],
        r#"{"decision":"allow","layer":"allowlist","rule":"tools:call:a.b","reason":"allowlist_allowed"}"#,
    );
    check(
        &engine,
        "tools:call:a.b",
        &["tools:call:A.b"],
        r#"{"decision":"deny","layer":"default","rule":null,"reason":"no_allow"}"#,
    );
    check(
        &engine,
        "tools:list",
        &["*"],
        r#"{"decision":"deny","layer":"default","rule":null,"reason":"unknown_gate_key"}"#,
    );
}

#[test]
fn immutable_denies_win() {
    let engine = engine(
        "[policy]\ndeny = [\"tools:call:shell.*\", \"tools:call:shell.exec\"]",
        "",
    );
    check(
        &engine,
        "tools:call:shell.exec",
        ALLOW_TOOLS,
        r#"{"decision":"deny","layer":"immutable","rule":"tools:call:shell.*","reason":"immutable_denied"}"#,
    );
    check(
        &engine,
        "tools:call:shellx",
        ALLOW_TOOLS,
        r#"{"decision":"allow","layer":"allowlist","rule":"tools:*","reason":"allowlist_allowed"}"#,
    );
}

const CONTRACTS: &str = r#"
[[contracts]]
id = "freeze"
patterns = ["tools:call:github.*"]
subject = { roles = ["dev"] }
valid_from = "2026-01-10T00:00:00Z"
valid_to = "2026-01-20T00:00:00Z"

[[contracts]]
id = "nightly"
patterns = ["llm:model:*"]
valid_from = "2026-01-01T00:00:00Z"
valid_to = "2026-01-01T01:00:00Z"
auto_renew_secs = 86400

[[contracts]]
id = "others"
patterns = ["tools:*"]
subject = { agents = ["someone-else"] }
"#;

#[test]
fn contracts_by_window_and_subject() {
    let engine = engine(CONTRACTS, "");
    let state = PolicyState::in_memory();
    let deny_freeze =
        r#"{"decision":"deny","layer":"contract","rule":"freeze","reason":"contract_denied"}"#;
    let allowed =
        r#"{"decision":"allow","layer":"allowlist","rule":"*","reason":"allowlist_allowed"}"#;
    check_at(
        &engine,
        &state,
        "tools:call:github.x",
        &["*"],
        NOW,
        deny_freeze,
    );
    check_at(
        &engine,
        &state,
        "tools:call:github.x",
        &["*"],
        "2026-01-20T00:00:00Z",
        allowed,
    );
    check_at(&engine, &state, "tools:call:gitlab.x", &["*"], NOW, allowed);
    // Auto-renewed: inside a later term, every time of day, as terms are back to back.
    let deny_nightly =
        r#"{"decision":"deny","layer":"contract","rule":"nightly","reason":"contract_denied"}"#;
    check_at(
        &engine,
        &state,
        "llm:model:m",
        &["*"],
        "2026-03-05T00:30:00Z",
        deny_nightly,
    );
    check_at(
        &engine,
        &state,
        "llm:model:m",
        &["*"],
        "2025-12-31T23:59:59Z",
        allowed,
    );
    // A subject the contract does not name is not denied.
    let answer = engine.decide(
        &request("other", "tools:call:github.x"),
        &patterns(&["*"]),
        at(NOW),
        &state,
    );
    assert_eq!(answer.layer, "contract");
    let mut intern = request("intern", "tools:call:github.x");
    intern.subject.roles.clear();
    let answer = engine.decide(&intern, &patterns(&["*"]), at(NOW), &state);
    assert_eq!(answer.layer, "allowlist");
}

const QUOTA: &str = r#"
[[contracts]]
id = "q"
patterns = ["net:port:*"]
quota = { limit = 2, window_secs = 60 }
"#;

#[test]
fn quotas_allow_limit_hits_per_window() {
    let engine = engine(QUOTA, "");
    let state = PolicyState::in_memory();
    let allowed =
        r#"{"decision":"allow","layer":"allowlist","rule":"net:*","reason":"allowlist_allowed"}"#;
    let exhausted =
        r#"{"decision":"deny","layer":"contract","rule":"q","reason":"contract_quota_exhausted"}"#;
    // A request denied elsewhere does not use the quota.
    check_at(
        &engine,
        &state,
        "net:port:443",
        &[],
        "2026-01-15T12:00:00Z",
        r#"{"decision":"deny","layer":"default","rule":null,"reason":"no_allow"}"#,
    );
    check_at(
        &engine,
        &state,
        "net:port:443",
        &["net:*"],
        "2026-01-15T12:00:01Z",
        allowed,
    );
    check_at(
        &engine,
        &state,
        "net:port:80",
        &["net:*"],
        "2026-01-15T12:00:59Z",
        allowed,
    );
    check_at(
        &engine,
        &state,
        "net:port:443",
        &["net:*"],
        "2026-01-15T12:00:59Z",
        exhausted,
    );
    check_at(
        &engine,
        &state,
        "net:port:443",
        &["net:*"],
        "2026-01-15T12:01:00Z",
        allowed,
    );
}

#[derive(Debug)]
struct BrokenCounters;

impl QuotaCounters for BrokenCounters {
    fn used(&self, _: &QuotaKey) -> Result<u64, QuotaStoreError> {
        Err(QuotaStoreError)
    }
    fn try_hit(&self, _: &QuotaKey, _: u64) -> Result<bool, QuotaStoreError> {
        Err(QuotaStoreError)
    }
}

#[test]
fn quota_store_failure_denies() {
    let engine = engine(QUOTA, "");
    let state = PolicyState {
        capsules: Arc::new(CapsuleLayer::new()),
        quotas: Arc::new(BrokenCounters),
    };
    check_at(
        &engine,
        &state,
        "net:port:443",
        &["*"],
        NOW,
        r#"{"decision":"deny","layer":"contract","rule":"q","reason":"policy_error"}"#,
    );
}

#[test]
fn capsule_layer_adds_and_removes() {
    let engine = engine("", "");
    let state = PolicyState::in_memory();
    let contract: Contract = toml::from_str("id = \"c1\"\npatterns = [\"llm:model:*\"]").unwrap();
    let rules = CapsuleRules {
        denies: patterns(&["tools:call:x.*"]),
        contracts: vec![contract],
    };
    state.capsules.adopt("cap-1", rules).unwrap();
    check_at(
        &engine,
        &state,
        "tools:call:x.y",
        &["*"],
        NOW,
        r#"{"decision":"deny","layer":"capsule","rule":"cap-1::tools:call:x.*","reason":"capsule_denied"}"#,
    );
    check_at(
        &engine,
        &state,
        "llm:model:m",
        &["*"],
        NOW,
        r#"{"decision":"deny","layer":"capsule","rule":"cap-1::c1","reason":"capsule_denied"}"#,
    );
    // The capsule layer outlives a rebuilt engine: it lives in the state.
    let rebuilt = self::engine("", "");
    check_at(
        &rebuilt,
        &state,
        "llm:model:m",
        &["*"],
        NOW,
        r#"{"decision":"deny","layer":"capsule","rule":"cap-1::c1","reason":"capsule_denied"}"#,
    );
    assert_eq!(state.capsules.capsule_ids(), vec!["cap-1".to_owned()]);
    assert!(state.capsules.remove("cap-1"));
    check_at(
        &engine,
        &state,
        "llm:model:m",
        &["*"],
        NOW,
        r#"{"decision":"allow","layer":"allowlist","rule":"*","reason":"allowlist_allowed"}"#,
    );
    let bad = CapsuleRules {
        denies: patterns(&["nothing:*"]),
        contracts: vec![],
    };
    assert!(state.capsules.adopt("cap-2", bad).is_err());
}

const CEDAR: &str = r#"
@id("permit-models")
permit (principal, action == Portcullis::Action::"llm:model", resource);
@id("no-shell")
forbid (principal, action == Portcullis::Action::"tools:call", resource in Portcullis::Upstream::"shell");
"#;

#[test]
fn cedar_combines_with_allowlist() {
    let engine = engine("", CEDAR);
    check(
        &engine,
        "llm:model:gpt",
        &[],
        r#"{"decision":"allow","layer":"cedar","rule":"permit-models","reason":"cedar_permitted"}"#,
    );
    check(
        &engine,
        "llm:model:gpt",
        &["llm:*"],
        r#"{"decision":"allow","layer":"allowlist","rule":"llm:*","reason":"allowlist_allowed"}"#,
    );
    check(
        &engine,
        "tools:call:shell.exec",
        ALLOW_TOOLS,
        r#"{"decision":"deny","layer":"cedar","rule":"no-shell","reason":"cedar_forbidden"}"#,
    );
    check(
        &engine,
        "tools:call:git.log",
        ALLOW_TOOLS,
        r#"{"decision":"allow","layer":"allowlist","rule":"tools:*","reason":"allowlist_allowed"}"#,
    );
    check(
        &engine,
        "tools:call:git.log",
        &[],
        r#"{"decision":"deny","layer":"default","rule":null,"reason":"no_allow"}"#,
    );
}

#[test]
fn report_mode_per_layer() {
    let toml_text = format!(
        "[policy]\ndeny = [\"tools:call:shell.*\"]\n[policy.mode]\ncontract = \"report\"\ncedar = \"report\"\n{CONTRACTS}"
    );
    let engine = engine(&toml_text, CEDAR);
    check(
        &engine,
        "tools:call:github.x",
        ALLOW_TOOLS,
        r#"{"decision":"allow","layer":"allowlist","rule":"tools:*","reason":"allowlist_allowed","report":{"layer":"contract","rule":"freeze","reason":"contract_denied"}}"#,
    );
    // An enforced layer still denies.
    check(
        &engine,
        "tools:call:shell.exec",
        ALLOW_TOOLS,
        r#"{"decision":"deny","layer":"immutable","rule":"tools:call:shell.*","reason":"immutable_denied"}"#,
    );
    let reporting_default = self::engine("[policy.mode]\ndefault = \"report\"", "");
    check(
        &reporting_default,
        "tools:call:a.b",
        &[],
        r#"{"decision":"allow","layer":"default","rule":null,"reason":"report_only","report":{"layer":"default","rule":null,"reason":"no_allow"}}"#,
    );
    let answer = reporting_default.decide(
        &request("a", "tools:call:a.b"),
        &[],
        at(NOW),
        &PolicyState::in_memory(),
    );
    assert_eq!(answer.event_decision(), portcullis_core::Decision::Report);
}

#[test]
fn immutable_layer_cannot_report() {
    let config: PolicyConfig =
        toml::from_str("deny = [\"tools:call:shell.*\"]\n[mode]\nimmutable = \"report\"").unwrap();
    let errors = PolicyEngine::build(&config, &[], &[]).unwrap_err();
    assert_eq!(errors, vec![PolicyLoadError::ImmutableReport]);
}

#[test]
fn build_reports_every_error() {
    let config: PolicyConfig =
        toml::from_str("deny = [\"tool:*\", \"net:host:A.com\"]\ncedar_files = [\"a.cedar\"]")
            .unwrap();
    let contract: Contract = toml::from_str("id = \"c\"\npatterns = [\"nope\"]").unwrap();
    let errors = PolicyEngine::build(
        &config,
        &[contract.clone(), contract],
        &[("b.cedar".into(), String::new())],
    )
    .unwrap_err();
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        vec![
            "`policy.deny`: pattern `tool:*` can match no gate key in the catalog",
            "`policy.deny`: pattern `net:host:A.com` can match no gate key in the catalog",
            "contract `c`: pattern `nope` can match no gate key in the catalog",
            "contract `c`: pattern `nope` can match no gate key in the catalog",
            "contract id `c` appears more than once",
            "cedar file `a.cedar` is listed in `policy.cedar_files` but no source was given",
            "cedar source `b.cedar` is not listed in `policy.cedar_files`",
        ]
    );
}

/// Reload as the gateway does it: parse and validate completely, then swap the `Arc`.
fn reload(
    current: &RwLock<Arc<PolicyEngine>>,
    config: &PolicyConfig,
    cedar: &str,
) -> Result<(), Vec<PolicyLoadError>> {
    let sources = [("test.cedar".to_owned(), cedar.to_owned())];
    let next = PolicyEngine::build(config, &[], &sources)?;
    *current.write().unwrap() = Arc::new(next);
    Ok(())
}

#[test]
fn failed_reload_keeps_old_policy_and_readers_see_whole_engines() {
    let config = PolicyConfig {
        cedar_files: vec!["test.cedar".into()],
        ..PolicyConfig::default()
    };
    let permit = "permit (principal, action, resource);";
    let forbid = "forbid (principal, action, resource);";
    let current = RwLock::new(Arc::new(engine("", "")));
    reload(&current, &config, permit).unwrap();
    assert!(
        reload(
            &current,
            &config,
            "permit (principal, action, resource) when { context.nope };"
        )
        .is_err()
    );
    let state = PolicyState::in_memory();
    let req = request("a", "tools:call:a.b");
    let decide_now = |engine: &PolicyEngine| engine.decide(&req, &[], at(NOW), &state);
    assert!(
        decide_now(&current.read().unwrap()).is_allow(),
        "old policy keeps serving"
    );

    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..300 {
                    let engine = Arc::clone(&current.read().unwrap());
                    let first = decide_now(&engine);
                    let second = decide_now(&engine);
                    // One engine answers consistently: all permit, or all forbid.
                    assert_eq!(first, second);
                    assert!(
                        matches!(first.reason, "cedar_permitted" | "cedar_forbidden"),
                        "{first:?}"
                    );
                }
            });
        }
        scope.spawn(|| {
            for round in 0..100 {
                let text = if round % 2 == 0 { forbid } else { permit };
                reload(&current, &config, text).unwrap();
            }
        });
    });
}
