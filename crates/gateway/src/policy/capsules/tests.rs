//! Capsule adoption at router level, with keys made in the test.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use portcullis_capsule::{Algorithm, SigningKey, encode_b64, sign_capsule, template};
use serde_json::{Value, json};

use super::*;
use crate::config::ConfigSource;
use crate::testing::{TestGateway, gateway_in};
use portcullis_core::Clock as _;

const KID: &str = "ops-1";

fn key() -> SigningKey {
    SigningKey::from_secret_bytes(Algorithm::Ed25519, &[7; 32]).unwrap()
}

fn trust_json(revoked: bool) -> String {
    json!({"issuers": [{
        "id": "ops", "kid": KID, "alg": "ed25519",
        "key_b64": encode_b64(&key().public_key().to_bytes()),
        "scopes": ["none", "peers"], "patterns": ["tools:*"], "revoked": revoked,
    }], "nodes": []})
    .to_string()
}

async fn setup() -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trust.json"), trust_json(false)).unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[capsules]\ntrust_store = \"trust.json\"\nmax_ttl = \"1d\"\n\n[[agents]]\nid = \"coder\"\n\
         token_sha256 = \"0000000000000000000000000000000000000000000000000000000000000001\"\n\
         allow = [\"tools:call:*\"]\n",
    )
    .unwrap();
    let config = crate::config::load(&ConfigSource::File(path), &BTreeMap::new()).unwrap();
    gateway_in(config, dir).await
}

/// A token for capsule `id` issued now, denying `deny`, living `ttl` seconds.
fn token(gw: &TestGateway, id: &str, deny: &str, ttl: u64) -> String {
    let mut body = template(gw.clock.now());
    body["id"] = json!(id);
    body["iss"] = json!("ops");
    body["kid"] = json!(KID);
    body["ttl"] = json!(ttl);
    body["scope"] = json!("none");
    body["denies"] = json!([deny]);
    body["contracts"] = json!([{"id": "slow", "patterns": ["tools:call:github.*"],
        "quota": {"limit": 1, "window_secs": 60}}]);
    sign_capsule(body.to_string().as_bytes(), KID, &key()).unwrap()
}

async fn explain(gw: &TestGateway, action: &str) -> Value {
    let body = json!({"subject": {"agent": "coder"}, "action": action, "context": {}});
    gw.admin(
        "POST",
        "/admin/policy/explain",
        Some(&body.to_string()),
        &[],
    )
    .await
    .1
}

async fn post_token(gw: &TestGateway, token: &str) -> (StatusCode, Value) {
    gw.admin(
        "POST",
        "/admin/capsules",
        None,
        &[("x-portcullis-capsule", token)],
    )
    .await
}

#[tokio::test]
async fn adopt_is_idempotent_conflicts_on_another_hash_and_denies() {
    let gw = setup().await;
    let first = token(&gw, "cap-1", "tools:call:shell.*", 3600);
    let (status, answer) = post_token(&gw, &first).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"], "active");
    let denied = explain(&gw, "tools:call:shell.exec").await;
    assert_eq!(
        (denied["layer"].as_str(), denied["rule"].as_str()),
        (Some("capsule"), Some("cap-1::tools:call:shell.*"))
    );
    let quota = explain(&gw, "tools:call:github.x").await;
    assert_eq!(quota["decision"], "allow", "{quota}");

    // Same token again (in the body this time): a no-op.
    let (status, _) = gw.admin("POST", "/admin/capsules", Some(&first), &[]).await;
    assert_eq!(status, StatusCode::OK);
    // Same id, other content: conflict.
    let other = token(&gw, "cap-1", "tools:call:other.*", 3600);
    let (status, answer) = post_token(&gw, &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");

    let (_, list) = gw.admin("GET", "/admin/capsules", None, &[]).await;
    assert_eq!(list["capsules"].as_array().unwrap().len(), 1);
    let kinds = gw.ledger_kinds().await;
    assert!(kinds.contains(&"capsule.adopted".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"capsule.refused".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn refusals_answer_their_reason_and_adopt_nothing() {
    let gw = setup().await;
    let good = token(&gw, "cap-2", "tools:call:shell.*", 3600);
    let mut flipped = good.clone().into_bytes();
    let at = flipped.len() - 3;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let outside = token(&gw, "cap-3", "net:host:example.com", 3600);
    let too_long = token(&gw, "cap-4", "tools:call:shell.*", 7 * 86_400);
    let huge = format!("v1.{}", "A".repeat(4100));
    let cases: [(&str, StatusCode, &str); 4] = [
        (
            &flipped,
            StatusCode::UNPROCESSABLE_ENTITY,
            "capsule_invalid",
        ),
        (
            &outside,
            StatusCode::UNPROCESSABLE_ENTITY,
            "capsule_invalid",
        ),
        (
            &too_long,
            StatusCode::UNPROCESSABLE_ENTITY,
            "capsule_invalid",
        ),
        (
            &huge,
            StatusCode::from_u16(431).unwrap(),
            "header_too_large",
        ),
    ];
    for (token, status, code) in cases {
        let (got, answer) = gw.admin("POST", "/admin/capsules", Some(token), &[]).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
        assert!(answer["error"]["reason"].is_string(), "{answer}");
    }
    let (_, list) = gw.admin("GET", "/admin/capsules", None, &[]).await;
    assert_eq!(list["capsules"], json!([]));
    let allowed = explain(&gw, "tools:call:shell.exec").await;
    assert_eq!(allowed["decision"], "allow");
}

#[tokio::test]
async fn capsules_expire_tear_down_persist_and_fall_to_revocation() {
    let gw = setup().await;
    let short = token(&gw, "short", "tools:call:shell.*", 600);
    let long = token(&gw, "long", "tools:call:rm.*", 7200);
    assert_eq!(post_token(&gw, &short).await.0, StatusCode::CREATED);
    assert_eq!(post_token(&gw, &long).await.0, StatusCode::CREATED);
    let (_, list) = gw.admin("GET", "/admin/capsules", None, &[]).await;
    let statuses: Vec<&str> = list["capsules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["active", "active"]);

    gw.clock.advance(jiff::SignedDuration::from_secs(400));
    let (_, list) = gw.admin("GET", "/admin/capsules", None, &[]).await;
    assert_eq!(list["capsules"][1]["status"], "expiring");
    gw.clock.advance(jiff::SignedDuration::from_secs(200));
    assert_eq!(sweep(&gw.state).await, 1);
    assert_eq!(
        explain(&gw, "tools:call:shell.exec").await["decision"],
        "allow"
    );
    assert_eq!(explain(&gw, "tools:call:rm.x").await["decision"], "deny");
    assert!(
        gw.ledger_kinds()
            .await
            .contains(&"capsule.expired".to_owned())
    );

    // Restart: the stored capsule is re-verified and adopted again.
    let TestGateway {
        state,
        dir,
        store,
        clock,
    } = gw;
    let config = Config::clone(&state.config);
    drop((state, store));
    let gw = gateway_in(config, dir).await;
    gw.clock.set(clock.now());
    assert_eq!(restore(&gw.state).await.unwrap(), 1);
    assert_eq!(explain(&gw, "tools:call:rm.x").await["decision"], "deny");

    // Revoking the issuer key and reloading the trust store tears it down.
    std::fs::write(gw.dir.path().join("trust.json"), trust_json(true)).unwrap();
    let (status, answer) = gw.admin("POST", "/admin/trust/reload", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["torn_down"], 1);
    assert_eq!(explain(&gw, "tools:call:rm.x").await["decision"], "allow");
    let kinds = gw.ledger_kinds().await;
    assert!(kinds.contains(&"capsule.teardown".to_owned()), "{kinds:?}");

    // A broken trust store keeps the old one and answers 422.
    std::fs::write(gw.dir.path().join("trust.json"), "{").unwrap();
    let (status, answer) = gw.admin("POST", "/admin/trust/reload", None, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
}

#[tokio::test]
async fn delete_tears_one_down() {
    let gw = setup().await;
    let capsule = token(&gw, "gone", "tools:call:shell.*", 3600);
    assert_eq!(post_token(&gw, &capsule).await.0, StatusCode::CREATED);
    let (status, _) = gw.admin("DELETE", "/admin/capsules/gone", None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = gw.admin("DELETE", "/admin/capsules/gone", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        explain(&gw, "tools:call:shell.exec").await["decision"],
        "allow"
    );
    assert!(
        gw.store
            .list_policy_records(PolicyRecordKind::Capsule)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An active immutable contract keeps its capsule: DELETE answers 409 and changes nothing until
/// the contract's term (clamped to the capsule's life) is over.
#[tokio::test]
async fn delete_honours_an_immutable_capsule_contract() {
    let gw = setup().await;
    let mut body = template(gw.clock.now());
    body["id"] = json!("held");
    body["iss"] = json!("ops");
    body["kid"] = json!(KID);
    body["ttl"] = json!(3600);
    body["scope"] = json!("none");
    body["denies"] = json!([]);
    let valid_to = gw.clock.now().as_second() + 600;
    body["contracts"] = json!([{"id": "lock", "patterns": ["tools:call:github.*"],
        "immutable": true, "valid_to": valid_to}]);
    let capsule = sign_capsule(body.to_string().as_bytes(), KID, &key()).unwrap();
    assert_eq!(post_token(&gw, &capsule).await.0, StatusCode::CREATED);
    let (status, answer) = gw.admin("DELETE", "/admin/capsules/held", None, &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "conflict");
    assert_eq!(
        explain(&gw, "tools:call:github.x").await["layer"],
        "capsule"
    );
    assert_eq!(
        gw.store
            .list_policy_records(PolicyRecordKind::Capsule)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        !gw.ledger_kinds()
            .await
            .contains(&"capsule.teardown".to_owned())
    );
    // Past the contract's term the capsule may go, and its teardown is on record first.
    gw.clock.advance(jiff::SignedDuration::from_secs(601));
    let (status, _) = gw.admin("DELETE", "/admin/capsules/held", None, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let records = gw.store.ledger_page(0, 100).await.unwrap();
    let teardown = records
        .iter()
        .find(|record| record.kind == "capsule.teardown")
        .unwrap();
    assert_eq!(teardown.data["capsule"], "held");
    assert_eq!(teardown.subject.as_deref(), Some("admin"));
    // The adoption was on record before it answered, with who adopted it.
    let adopted = records
        .iter()
        .find(|record| record.kind == "capsule.adopted")
        .unwrap();
    assert_eq!(
        (adopted.reason.as_str(), adopted.subject.as_deref()),
        ("ok", Some("admin"))
    );
}

/// Durable or refused: with the store failing, adoption answers 503 `store_unavailable` and adopts
/// nothing; a teardown answers 503 and the capsule keeps denying.
#[tokio::test]
async fn adoption_and_teardown_are_durable_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trust.json"), trust_json(false)).unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[capsules]\ntrust_store = \"trust.json\"\nmax_ttl = \"1d\"\n\n[[agents]]\nid = \"coder\"\n\
         token_sha256 = \"0000000000000000000000000000000000000000000000000000000000000001\"\n\
         allow = [\"tools:call:*\"]\n",
    )
    .unwrap();
    let config = crate::config::load(&ConfigSource::File(path), &BTreeMap::new()).unwrap();
    let mut faulty = None;
    let gw = crate::testing::gateway_wrapped(config, dir, |store| {
        let wrapped = std::sync::Arc::new(portcullis_store::faulty::FaultyStore::new(store));
        faulty = Some(std::sync::Arc::clone(&wrapped));
        wrapped
    })
    .await;
    let faulty = faulty.unwrap();
    let capsule = token(&gw, "durable", "tools:call:shell.*", 3600);

    faulty.fail(true);
    let (status, answer) = post_token(&gw, &capsule).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "store_unavailable");
    assert_eq!(answer["error"]["reason"], "store_unavailable");
    faulty.fail(false);
    assert_eq!(
        explain(&gw, "tools:call:shell.exec").await["decision"],
        "allow"
    );
    let (_, list) = gw.admin("GET", "/admin/capsules", None, &[]).await;
    assert_eq!(list["capsules"], json!([]));
    assert!(
        !gw.ledger_kinds()
            .await
            .contains(&"capsule.adopted".to_owned())
    );

    assert_eq!(post_token(&gw, &capsule).await.0, StatusCode::CREATED);
    faulty.fail(true);
    let (status, answer) = gw
        .admin("DELETE", "/admin/capsules/durable", None, &[])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    faulty.fail(false);
    assert_eq!(
        explain(&gw, "tools:call:shell.exec").await["layer"],
        "capsule"
    );
    let (status, _) = gw
        .admin("DELETE", "/admin/capsules/durable", None, &[])
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[test]
fn every_adoption_reason_is_in_a_table() {
    let errors = [
        AdoptError::Refused(VerifyError::Expired),
        AdoptError::NoTrustStore,
        AdoptError::Conflict,
        AdoptError::Rules,
        AdoptError::Store,
    ];
    for err in errors {
        let info = REASONS
            .iter()
            .chain(portcullis_capsule::REASONS)
            .chain(portcullis_store::REASONS)
            .find(|info| info.code == err.reason());
        assert_eq!(
            info.map(|info| info.maps_to),
            Some(err.error_code()),
            "{err:?}"
        );
    }
}
