//! Explain, offline eval, reload, contracts and the gate stage, at router level.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;
use crate::config::{self, ConfigSource};
use crate::testing::{TestGateway, gateway, gateway_in};
use portcullis_core::Clock as _;

const CEDAR: &str = r#"@id("no-delete-repo")
forbid (principal, action == Portcullis::Action::"tools:call", resource == Portcullis::Tool::"github.delete_repo");
"#;

const CONFIG: &str = r#"
[policy]
deny = ["tools:call:shell.*"]
cedar_files = ["base.cedar"]

[[agents]]
id = "coder"
token_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
allow = ["tools:call:github.*"]
"#;

/// Writes the config and Cedar file into a fresh dir and loads it as `serve` would.
fn write_config(dir: &tempfile::TempDir, toml_text: &str, cedar: &str) -> Config {
    std::fs::write(dir.path().join("base.cedar"), cedar).unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml_text).unwrap();
    config::load(&ConfigSource::File(path), &BTreeMap::new()).unwrap()
}

async fn setup() -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, CONFIG, CEDAR);
    gateway_in(config, dir).await
}

fn request(action: &str, resource: &str) -> String {
    json!({"subject": {"agent": "coder"}, "action": action, "resource": resource, "context": {}})
        .to_string()
}

#[track_caller]
fn check(explanation: &Value, decision: &str, layer: &str, reason: &str) {
    assert_eq!(
        (
            explanation["decision"].as_str(),
            explanation["layer"].as_str(),
            explanation["reason"].as_str()
        ),
        (Some(decision), Some(layer), Some(reason)),
        "{explanation}"
    );
}

#[tokio::test]
async fn explain_endpoint_and_offline_eval_answer_the_same() {
    let gw = setup().await;
    let cases = [
        (
            "tools:call:github.create_issue",
            "github.create_issue",
            "allow",
            "allowlist",
            "allowlist_allowed",
        ),
        (
            "tools:call:github.delete_repo",
            "github.delete_repo",
            "deny",
            "cedar",
            "cedar_forbidden",
        ),
        (
            "tools:call:shell.exec",
            "shell.exec",
            "deny",
            "immutable",
            "immutable_denied",
        ),
        ("llm:model:gpt-x", "gpt-x", "deny", "default", "no_allow"),
    ];
    for (action, resource, decision, layer, reason) in cases {
        let body = request(action, resource);
        let (status, online) = gw
            .admin("POST", "/admin/policy/explain", Some(&body), &[])
            .await;
        assert_eq!(status, StatusCode::OK, "{online}");
        check(&online, decision, layer, reason);
        let now = gw.clock.now();
        let offline = eval_offline(&gw.state.config, body.as_bytes(), now).unwrap();
        assert_eq!(serde_json::to_value(&offline).unwrap(), online, "{action}");
        // The answer is exactly the Explanation JSON.
        let keys: Vec<&str> = online
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["decision", "layer", "rule", "reason"]);
    }
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/policy/explain",
            Some("{\"subject\":1}"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn explain_takes_an_instant() {
    let gw = setup().await;
    let contract = json!({"id": "freeze", "patterns": ["tools:call:github.*"],
        "valid_from": "2026-01-02T00:00:00Z"});
    let (status, _) = gw
        .admin("POST", "/admin/contracts", Some(&contract.to_string()), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut body: Value =
        serde_json::from_str(&request("tools:call:github.x", "github.x")).unwrap();
    let (_, now) = gw
        .admin(
            "POST",
            "/admin/policy/explain",
            Some(&body.to_string()),
            &[],
        )
        .await;
    check(&now, "allow", "allowlist", "allowlist_allowed");
    body["at"] = json!("2026-01-03T00:00:00Z");
    let (_, later) = gw
        .admin(
            "POST",
            "/admin/policy/explain",
            Some(&body.to_string()),
            &[],
        )
        .await;
    check(&later, "deny", "contract", "contract_denied");
    body["at"] = json!("yesterday");
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/policy/explain",
            Some(&body.to_string()),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn a_bad_cedar_file_refuses_the_load_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        CONFIG,
        "permit (principal, action, resource) when { context.nope };",
    );
    let issues = build_from_config(&config).unwrap_err();
    assert!(
        issues.iter().all(|issue| !issue.message.is_empty()),
        "{issues:?}"
    );
    assert!(!issues.is_empty());
    std::fs::remove_file(dir.path().join("base.cedar")).unwrap();
    let issues = build_from_config(&config).unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].file, "base.cedar");
}

#[tokio::test]
async fn start_up_refuses_a_bad_policy_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, CONFIG, "forbid (principal, action, resource");
    let store = gateway(Config::default()).await.store;
    let err = crate::server::load_policy(&config, &store)
        .await
        .unwrap_err();
    let line = err.to_string();
    assert!(
        line.starts_with("the policy does not load: base.cedar"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
}

#[tokio::test]
async fn reload_swaps_a_good_policy_and_keeps_the_old_one_on_failure() {
    let gw = setup().await;
    let body = request("tools:call:github.delete_repo", "github.delete_repo");
    let cedar_path = gw.dir.path().join("base.cedar");

    std::fs::write(&cedar_path, "forbid (principal, action, resource").unwrap();
    let (status, answer) = gw.admin("POST", "/admin/policy/reload", None, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "config_invalid");
    assert_eq!(answer["error"]["errors"][0]["file"], "base.cedar");
    let (_, still) = gw
        .admin("POST", "/admin/policy/explain", Some(&body), &[])
        .await;
    check(&still, "deny", "cedar", "cedar_forbidden");

    std::fs::write(&cedar_path, "").unwrap();
    let (status, answer) = gw.admin("POST", "/admin/policy/reload", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, now) = gw
        .admin("POST", "/admin/policy/explain", Some(&body), &[])
        .await;
    check(&now, "allow", "allowlist", "allowlist_allowed");
    let kinds = gw.ledger_kinds().await;
    assert!(
        kinds.contains(&"policy.reload_failed".to_owned()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"policy.reloaded".to_owned()), "{kinds:?}");
}

/// Decisions keep flowing while the policy is reloaded underneath them: every answer comes whole
/// from either the old or the new policy, never an error, and once the last reload returns, every
/// decision sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_concurrent_decisions_answers_from_one_whole_policy() {
    let gw = std::sync::Arc::new(setup().await);
    let cedar_path = gw.dir.path().join("base.cedar");
    let deciders: Vec<_> = (0..8)
        .map(|_| {
            let gw = std::sync::Arc::clone(&gw);
            tokio::spawn(async move {
                let body = request("tools:call:github.delete_repo", "github.delete_repo");
                let mut seen = BTreeMap::new();
                for _ in 0..40 {
                    let (status, answer) = gw
                        .admin("POST", "/admin/policy/explain", Some(&body), &[])
                        .await;
                    assert_eq!(status, StatusCode::OK, "{answer}");
                    let outcome = (
                        answer["decision"].as_str().unwrap_or_default().to_owned(),
                        answer["layer"].as_str().unwrap_or_default().to_owned(),
                        answer["reason"].as_str().unwrap_or_default().to_owned(),
                    );
                    *seen.entry(outcome).or_insert(0u32) += 1;
                }
                seen
            })
        })
        .collect();
    for round in 0..10 {
        let cedar = if round % 2 == 0 { "" } else { CEDAR };
        std::fs::write(&cedar_path, cedar).unwrap();
        let (status, answer) = gw.admin("POST", "/admin/policy/reload", None, &[]).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        tokio::task::yield_now().await;
    }
    let allowed = (
        "allow".to_owned(),
        "allowlist".to_owned(),
        "allowlist_allowed".to_owned(),
    );
    let forbidden = (
        "deny".to_owned(),
        "cedar".to_owned(),
        "cedar_forbidden".to_owned(),
    );
    for decider in deciders {
        for (outcome, _) in decider.await.unwrap() {
            assert!(
                outcome == allowed || outcome == forbidden,
                "an answer from neither policy: {outcome:?}"
            );
        }
    }
    // The last reload put the forbidding file back: every decision from now on denies.
    let body = request("tools:call:github.delete_repo", "github.delete_repo");
    let (_, now) = gw
        .admin("POST", "/admin/policy/explain", Some(&body), &[])
        .await;
    check(&now, "deny", "cedar", "cedar_forbidden");
}

#[tokio::test]
async fn contracts_are_added_listed_guarded_and_persisted() {
    let gw = setup().await;
    let immutable = json!({"id": "lock", "patterns": ["tools:call:github.*"], "immutable": true,
        "valid_to": "2026-02-01T00:00:00Z"});
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/contracts",
            Some(&immutable.to_string()),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let body = request("tools:call:github.x", "github.x");
    let (_, answer) = gw
        .admin("POST", "/admin/policy/explain", Some(&body), &[])
        .await;
    check(&answer, "deny", "contract", "contract_denied");
    assert_eq!(answer["rule"], "lock");

    // Shortening or deleting an active immutable contract: 409.
    let shorter = json!({"id": "lock", "patterns": ["tools:call:github.*"], "immutable": true,
        "valid_to": "2026-01-15T00:00:00Z"});
    let (status, _) = gw
        .admin("POST", "/admin/contracts", Some(&shorter.to_string()), &[])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = gw.admin("DELETE", "/admin/contracts/lock", None, &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Lengthening is fine.
    let longer = json!({"id": "lock", "patterns": ["tools:call:github.*"], "immutable": true,
        "valid_to": "2026-03-01T00:00:00Z"});
    let (status, _) = gw
        .admin("POST", "/admin/contracts", Some(&longer.to_string()), &[])
        .await;
    assert_eq!(status, StatusCode::OK);

    let plain = json!({"id": "soft", "patterns": ["llm:model:*"]});
    let (status, _) = gw
        .admin("POST", "/admin/contracts", Some(&plain.to_string()), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bad = json!({"id": "bad", "patterns": ["nothing:here"]});
    let (status, _) = gw
        .admin("POST", "/admin/contracts", Some(&bad.to_string()), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, list) = gw.admin("GET", "/admin/contracts", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["lock", "soft"]);
    assert_eq!(list["contracts"][0]["active"], true);

    let (status, _) = gw.admin("DELETE", "/admin/contracts/soft", None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = gw.admin("DELETE", "/admin/contracts/soft", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let kinds = gw.ledger_kinds().await;
    for kind in ["contract.created", "contract.replaced", "contract.deleted"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind}: {kinds:?}");
    }

    // After expiry the immutable contract may go.
    gw.clock.set("2026-03-02T00:00:00Z".parse().unwrap());
    let (status, _) = gw.admin("DELETE", "/admin/contracts/lock", None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Persisted: a restart on the same data dir loads the stored contracts.
    let again = json!({"id": "kept", "patterns": ["llm:model:*"]});
    gw.admin("POST", "/admin/contracts", Some(&again.to_string()), &[])
        .await;
    let TestGateway {
        state, dir, store, ..
    } = gw;
    let config = Config::clone(&state.config);
    drop((state, store));
    let gw = gateway_in(config, dir).await;
    let (_, list) = gw.admin("GET", "/admin/contracts", None, &[]).await;
    assert_eq!(list["contracts"][0]["id"], "kept");
    assert_eq!(list["contracts"][0]["origin"], "admin");
}

#[tokio::test]
async fn gate_records_every_decision_and_answers_the_registry_code() {
    let gw = setup().await;
    let agent = gw.state.identity.config_agents().next().unwrap().clone();
    let identified = crate::identity::Identified {
        subject: portcullis_core::Subject {
            agent: agent.id.clone(),
            ..Default::default()
        },
        agent,
    };
    let correlation = portcullis_core::CorrelationId::from_header_or_generate(None);
    let gate = |action: &str| {
        crate::pipeline::gate(
            &gw.state,
            &identified,
            portcullis_core::GateKey::parse(action).unwrap(),
            String::new(),
            portcullis_core::request::RequestContext::default(),
            &correlation,
        )
    };
    let allowed = gate("tools:call:github.x").await.unwrap();
    assert!(allowed.is_allow());
    let denied = gate("tools:call:shell.x").await.unwrap_err();
    assert_eq!(denied.code, portcullis_core::ErrorCode::PolicyDenied);
    let records = gw.store.ledger_page(0, 100).await.unwrap();
    let decisions: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.kind == "policy.decision")
        .map(|r| (r.decision.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        decisions,
        [("allow", "allowlist_allowed"), ("deny", "immutable_denied")]
    );
    let last = records.last().unwrap();
    assert_eq!(last.data["layer"], "immutable");
    assert_eq!(last.data["rule"], "tools:call:shell.*");
}

/// The gate stage and `/admin/policy/explain` answer alike for the same request, context
/// included (arguments, risk tier), and explaining never uses up a quota the gate then lacks.
#[tokio::test]
async fn explain_answers_what_the_live_gate_answered_without_counting() {
    let dir = tempfile::tempdir().unwrap();
    let cedar = r#"@id("no-prod-deploys")
forbid (principal, action == Portcullis::Action::"tools:call", resource)
when { context.arguments.hasTag("env") && context.arguments.getTag("env") == "prod" };
@id("no-critical")
forbid (principal, action, resource) when { context.risk_level >= 3 };
"#;
    let quota = "\n[[contracts]]\nid = \"two-deploys\"\npatterns = [\"tools:call:github.deploy\"]\n\
                 quota = { limit = 2, window_secs = 3600 }\n";
    let config = write_config(&dir, &format!("{CONFIG}{quota}"), cedar);
    let gw = gateway_in(config, dir).await;
    let agent = gw.state.identity.config_agents().next().unwrap().clone();
    let identified = crate::identity::Identified {
        subject: portcullis_core::Subject {
            agent: agent.id.clone(),
            ..Default::default()
        },
        agent,
    };
    let correlation = portcullis_core::CorrelationId::from_header_or_generate(None);
    let rows = [
        ("tools:call:github.deploy", json!({"env": "staging"}), "low"),
        ("tools:call:github.deploy", json!({"env": "prod"}), "low"),
        ("tools:call:github.issue", json!({"title": "x"}), "critical"),
        ("tools:call:github.deploy", json!({"env": "staging"}), "low"),
        // The quota's two hits are used: explain and the gate now both refuse.
        ("tools:call:github.deploy", json!({"env": "staging"}), "low"),
    ];
    for (action, arguments, risk) in rows {
        let body = json!({"subject": {"agent": "coder"}, "action": action,
            "context": {"arguments": arguments, "risk": risk}});
        // Explaining twice first: it must not count.
        for _ in 0..2 {
            gw.admin(
                "POST",
                "/admin/policy/explain",
                Some(&body.to_string()),
                &[],
            )
            .await;
        }
        let (_, explained) = gw
            .admin(
                "POST",
                "/admin/policy/explain",
                Some(&body.to_string()),
                &[],
            )
            .await;
        let request: portcullis_core::Request = serde_json::from_value(body.clone()).unwrap();
        let live = crate::pipeline::gate(
            &gw.state,
            &identified,
            request.action,
            request.resource,
            request.context,
            &correlation,
        )
        .await;
        let records = gw.store.ledger_page(0, 1000).await.unwrap();
        let recorded = records
            .iter()
            .rev()
            .find(|record| record.kind == "policy.decision")
            .unwrap();
        assert_eq!(
            (
                explained["decision"].as_str().unwrap(),
                explained["reason"].as_str().unwrap(),
                &explained["rule"],
            ),
            (
                recorded.decision.as_str(),
                recorded.reason.as_str(),
                &recorded.data["rule"],
            ),
            "{body}"
        );
        assert_eq!(live.is_ok(), explained["decision"] == "allow", "{body}");
    }
    let decisions: Vec<String> = gw
        .store
        .ledger_page(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|record| record.kind == "policy.decision")
        .map(|record| record.reason.clone())
        .collect();
    assert_eq!(
        decisions,
        [
            "allowlist_allowed",
            "cedar_forbidden",
            "cedar_forbidden",
            "allowlist_allowed",
            "contract_quota_exhausted",
        ]
    );
}
