//! Immutable holds: reload refusals item by item, and the start-up record of changes.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::config::{self, Config, ConfigSource};
use crate::testing::{TestGateway, gateway_in};

const AGENT: &str = r#"
[[agents]]
id = "coder"
token_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
allow = ["tools:*", "llm:model:*"]
"#;

const HELD: &str = r#"
[policy]
deny = ["tools:call:shell.*", "llm:model:gpt-5*"]

[[contracts]]
id = "freeze"
patterns = ["tools:call:github.*"]
immutable = true
valid_to = "2026-06-01T00:00:00Z"

[[contracts]]
id = "soft"
patterns = ["tools:call:jira.*"]
"#;

fn write(dir: &tempfile::TempDir, policy: &str) -> Config {
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, format!("{policy}\n{AGENT}")).unwrap();
    config::load(&ConfigSource::File(path), &BTreeMap::new()).unwrap()
}

async fn setup(policy: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let config = write(&dir, policy);
    gateway_in(config, dir).await
}

async fn decision(gw: &TestGateway, action: &str) -> (String, String) {
    let body = json!({"subject": {"agent": "coder"}, "action": action, "context": {}});
    let (status, answer) = gw
        .admin(
            "POST",
            "/admin/policy/explain",
            Some(&body.to_string()),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    (
        answer["decision"].as_str().unwrap().to_owned(),
        answer["layer"].as_str().unwrap().to_owned(),
    )
}

async fn reload(gw: &TestGateway, policy: &str) -> (StatusCode, Value) {
    let path = gw.dir.path().join("portcullis.toml");
    std::fs::write(&path, format!("{policy}\n{AGENT}")).unwrap();
    gw.admin("POST", "/admin/policy/reload", None, &[]).await
}

/// The messages of a 422 answer, each `file: message`.
fn issues(answer: &Value) -> Vec<String> {
    assert_eq!(answer["error"]["code"], "config_invalid", "{answer}");
    answer["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| {
            format!(
                "{}: {}",
                issue["file"].as_str().unwrap(),
                issue["message"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_reload_cannot_drop_or_weaken_what_is_immutable() {
    let gw = setup(HELD).await;
    let held = [
        ("tools:call:shell.exec", "immutable"),
        ("llm:model:gpt-5-mini", "immutable"),
        ("tools:call:github.x", "contract"),
    ];
    // Each row: a reload and the issues it must name; none of them changes what serves.
    let rows: &[(&str, &[&str])] = &[
        (
            "[policy]\ndeny = []\n",
            &[
                "policy.deny: the immutable deny `tools:call:shell.*` cannot be dropped or narrowed by a reload; restart to change it",
                "policy.deny: the immutable deny `llm:model:gpt-5*` cannot be dropped or narrowed by a reload; restart to change it",
                "contracts: the active immutable contract `freeze` cannot be dropped by a reload; restart to change it",
            ],
        ),
        (
            // Narrowed deny; the contract shortened.
            "[policy]\ndeny = [\"tools:call:shell.exec\", \"llm:model:gpt-5*\"]\n\
             [[contracts]]\nid = \"freeze\"\npatterns = [\"tools:call:github.*\"]\nimmutable = true\n\
             valid_to = \"2026-02-01T00:00:00Z\"\n",
            &[
                "policy.deny: the immutable deny `tools:call:shell.*` cannot be dropped or narrowed by a reload; restart to change it",
                "contracts: contract `freeze`: an active immutable contract cannot be shortened by a reload; restart to change it",
            ],
        ),
        (
            // The contract made mutable; the contract layer put in report mode.
            "[policy]\ndeny = [\"tools:call:shell.*\", \"llm:model:gpt-5*\"]\n\
             [policy.mode]\ncontract = \"report\"\n\
             [[contracts]]\nid = \"freeze\"\npatterns = [\"tools:call:github.*\"]\n\
             valid_to = \"2026-06-01T00:00:00Z\"\n",
            &[
                "contracts: contract `freeze`: an active immutable contract cannot be weakened by a reload; restart to change it",
                "policy.mode.contract: `report` would weaken the active immutable contracts `freeze`; restart to change it",
            ],
        ),
    ];
    for (policy, expected) in rows {
        let (status, answer) = reload(&gw, policy).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{policy}: {answer}"
        );
        assert_eq!(issues(&answer), *expected, "{policy}");
        for (action, layer) in held {
            assert_eq!(
                decision(&gw, action).await,
                ("deny".to_owned(), layer.to_owned()),
                "{policy}: {action}"
            );
        }
    }
    // Report mode for the immutable layer is refused by the configuration itself.
    let (status, answer) = reload(
        &gw,
        "[policy]\ndeny = [\"tools:*\", \"llm:*\"]\n[policy.mode]\nimmutable = \"report\"\n",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let refused = issues(&answer);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("`policy.mode.immutable` cannot be `report`"),
        "{refused:?}"
    );
    for (action, layer) in held {
        assert_eq!(decision(&gw, action).await.1, layer);
    }
    // Widening a deny, dropping a mutable contract and lengthening the immutable one are fine.
    let stronger = "[policy]\ndeny = [\"tools:call:shell*\", \"llm:model:*\"]\n\
        [[contracts]]\nid = \"freeze\"\npatterns = [\"tools:*\"]\nimmutable = true\n";
    let (status, answer) = reload(&gw, stronger).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(decision(&gw, "tools:call:jira.x").await.1, "contract");
    let kinds = gw.ledger_kinds().await;
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| *kind == "policy.reload_failed")
            .count(),
        rows.len() + 1
    );
    // Once its term is over, the immutable contract may go with a reload.
    let gw2 = setup(HELD).await;
    gw2.clock.set("2026-06-02T00:00:00Z".parse().unwrap());
    let (status, answer) = reload(
        &gw2,
        "[policy]\ndeny = [\"tools:call:shell.*\", \"llm:model:gpt-5*\"]\n",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[test]
fn report_mode_for_capsules_is_refused_while_a_capsule_contract_is_immutable() {
    let sources = |capsule: portcullis_policy::Mode| Sources {
        policy: portcullis_policy::PolicyConfig {
            mode: portcullis_policy::LayerModes {
                capsule,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let contract: Contract = serde_json::from_value(
        json!({"id": "c1::lock", "patterns": ["tools:*"], "immutable": true}),
    )
    .unwrap();
    let now = "2026-01-01T00:00:00Z".parse().unwrap();
    let issues = reload_issues(
        &sources(Mode::Enforce),
        &sources(Mode::Report),
        std::slice::from_ref(&contract),
        now,
    );
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].file, "policy.mode.capsule");
    let mutable = Contract {
        immutable: false,
        ..contract
    };
    assert!(
        reload_issues(
            &sources(Mode::Enforce),
            &sources(Mode::Report),
            &[mutable],
            now
        )
        .is_empty()
    );
}

/// A start records what changed since the store last saw the immutable policy, once.
#[tokio::test]
async fn a_restart_that_changes_immutable_items_is_recorded() {
    let gw = setup(HELD).await;
    assert!(record_at_start(&gw.state).await.unwrap());
    assert!(
        !record_at_start(&gw.state).await.unwrap(),
        "nothing changed"
    );
    // The same denies in another order are no change either.
    let reordered = HELD.replace(
        "deny = [\"tools:call:shell.*\", \"llm:model:gpt-5*\"]",
        "deny = [\"llm:model:gpt-5*\", \"tools:call:shell.*\"]",
    );
    assert_ne!(reordered, HELD);
    let TestGateway {
        state, dir, store, ..
    } = gw;
    drop((state, store));
    let gw = gateway_in(write(&dir, &reordered), dir).await;
    assert!(!record_at_start(&gw.state).await.unwrap(), "only reordered");
    let TestGateway {
        state, dir, store, ..
    } = gw;
    drop((state, store));
    let changed = "[policy]\ndeny = [\"tools:call:shell.*\"]\n\
        [[contracts]]\nid = \"freeze\"\npatterns = [\"tools:*\"]\nimmutable = true\n\
        [[contracts]]\nid = \"new\"\npatterns = [\"llm:model:*\"]\nimmutable = true\n";
    let config = write(&dir, changed);
    let gw = gateway_in(config, dir).await;
    assert!(record_at_start(&gw.state).await.unwrap());
    let records = gw.store.ledger_page(0, 100).await.unwrap();
    let events: Vec<&portcullis_ledger::LedgerRecord> = records
        .iter()
        .filter(|record| record.kind == "policy.immutable_changed")
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].data,
        json!({
            "denies_added": [],
            "denies_removed": ["llm:model:gpt-5*"],
            "contracts_added": ["new"],
            "contracts_removed": [],
            "contracts_changed": ["freeze"],
        })
    );
}
