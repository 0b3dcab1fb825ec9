//! Cluster settings (the node key against the trust store, neighbour secrets), relay-once, and a
//! relay between two in-process gateways over loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use axum::http::StatusCode;
use portcullis_capsule::{Algorithm, SigningKey, encode_b64, sign_capsule, template};
use portcullis_core::Clock as _;
use serde_json::{Value, json};

use super::*;
use crate::config::ConfigSource;
use crate::testing::{ADMIN_TOKEN, TestGateway, gateway_in};

const ISSUER_KID: &str = "ops-1";
const PEER_SECRET: &str = "peer_admin";

fn issuer_key() -> SigningKey {
    SigningKey::from_secret_bytes(Algorithm::Ed25519, &[7; 32]).unwrap()
}

/// Node `nN` has kid `nN-key` and an Ed25519 key with seed `10 + N`.
fn node_key(n: u8) -> SigningKey {
    SigningKey::from_secret_bytes(Algorithm::Ed25519, &[10 + n; 32]).unwrap()
}

fn node_entry(n: u8, revoked: bool) -> Value {
    json!({"id": format!("n{n}"), "kid": format!("n{n}-key"), "alg": "ed25519",
        "key_b64": encode_b64(&node_key(n).public_key().to_bytes()), "revoked": revoked})
}

fn trust_json(nodes: &[Value]) -> String {
    json!({"issuers": [{"id": "ops", "kid": ISSUER_KID, "alg": "ed25519",
        "key_b64": encode_b64(&issuer_key().public_key().to_bytes()),
        "scopes": ["none", "peers", "all"], "patterns": ["tools:*"], "revoked": false}],
        "nodes": nodes})
    .to_string()
}

fn trust(nodes: &[Value]) -> TrustStore {
    TrustStore::from_json(trust_json(nodes).as_bytes()).unwrap()
}

fn write_private(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Writes `n<n>-key.key` into `dir` (mode `mode`), holding node `key_n`'s key under kid `kid`.
fn write_key(dir: &Path, kid: &str, key_n: u8, mode: u32) {
    let file = KeyFile {
        kid: kid.to_owned(),
        key: node_key(key_n),
    };
    write_private(&dir.join("node.key"), &file.to_json(), mode);
}

/// A configuration file in `dir` naming node `n1` with `extra` appended to `[cluster]`.
fn cluster_config(dir: &Path, extra: &str) -> Config {
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[capsules]\ntrust_store = \"trust.json\"\n\n[[agents]]\nid = \"coder\"\n\
             token_sha256 = \"0000000000000000000000000000000000000000000000000000000000000001\"\n\
             allow = [\"tools:call:*\"]\n\n\
             [cluster]\nid = \"n1\"\nkid = \"n1-key\"\nkey_file = \"node.key\"\n{extra}"
        ),
    )
    .unwrap();
    crate::config::load(&ConfigSource::File(path), &BTreeMap::new()).unwrap()
}

fn peer(url: &str) -> String {
    format!("[[cluster.peers]]\nid = \"n2\"\nurl = \"{url}\"\ntoken_secret = \"{PEER_SECRET}\"\n")
}

fn secrets() -> Secrets {
    Secrets::from_values(BTreeMap::from([(
        PEER_SECRET.to_owned(),
        ADMIN_TOKEN.to_owned(),
    )]))
    .unwrap()
}

#[test]
fn builds_with_a_trusted_node_key_and_known_secrets() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path(), "n1-key", 1, 0o600);
    let config = cluster_config(dir.path(), &peer("http://127.0.0.1:9/gw/"));
    let settings =
        ClusterSettings::build(&config, &secrets(), Some(&trust(&[node_entry(1, false)]))).unwrap();
    assert_eq!(settings.node.as_ref().unwrap().node, "n1");
    let target = settings.neighbors.first().unwrap();
    assert_eq!(
        (target.id.as_str(), target.kind, target.endpoint.as_str()),
        ("n2", Neighbor::Peer, "http://127.0.0.1:9/gw/admin/capsules")
    );
    let described = ClusterRuntime::new(settings).describe().to_string();
    assert!(!described.contains(ADMIN_TOKEN), "{described}");
    assert!(
        !described.contains(&encode_b64(&node_key(1).secret_bytes())),
        "{described}"
    );

    // No `[cluster]`: no node, nothing relayed, no trust store needed.
    let settings = ClusterSettings::build(&Config::default(), &Secrets::default(), None).unwrap();
    assert!(settings.node.is_none() && settings.neighbors.is_empty());
}

#[test]
fn refuses_node_keys_the_trust_store_does_not_vouch_for() {
    #[track_caller]
    fn check(kid: &str, key_n: u8, mode: u32, nodes: &[Value], secret: bool, expected: &str) {
        let dir = tempfile::tempdir().unwrap();
        write_key(dir.path(), kid, key_n, mode);
        let config = cluster_config(dir.path(), &peer("http://127.0.0.1:9"));
        let secrets = if secret {
            secrets()
        } else {
            Secrets::default()
        };
        let trust = (!nodes.is_empty()).then(|| trust(nodes));
        let err = ClusterSettings::build(&config, &secrets, trust.as_ref()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains(ADMIN_TOKEN), "{message}");
    }
    let good = [node_entry(1, false)];
    check("n1-key", 1, 0o600, &[], true, "no trust store");
    check(
        "n1-key",
        1,
        0o600,
        &[node_entry(2, false)],
        true,
        "not a node key",
    );
    check("n1-key", 1, 0o600, &[node_entry(1, true)], true, "revoked");
    check(
        "n1-key",
        2,
        0o600,
        &good,
        true,
        "not the key the trust store lists",
    );
    check("other", 1, 0o600, &good, true, "holds kid `other`");
    check("n1-key", 1, 0o644, &good, true, "chmod 600");
    check(
        "n1-key",
        1,
        0o600,
        &good,
        false,
        "cluster.peers[0].token_secret",
    );
    let mut renamed = node_entry(1, false);
    renamed["id"] = json!("n9");
    check("n1-key", 1, 0o600, &[renamed], true, "to node `n9`");
}

async fn setup(dir: tempfile::TempDir, nodes: &[Value]) -> TestGateway {
    std::fs::write(dir.path().join("trust.json"), trust_json(nodes)).unwrap();
    let config = cluster_config(dir.path(), "");
    let mut config = config;
    // The receiving gateways of these tests have no cluster identity of their own.
    config.cluster = crate::config::cluster::ClusterConfig::default();
    gateway_in(config, dir).await
}

/// A capsule issued now by `ops`: scope `scope`, `max_hops`, denying `tools:call:shell.*`.
fn token(gw: &TestGateway, id: &str, scope: &str, max_hops: u64) -> String {
    let mut body = template(gw.clock.now());
    body["id"] = json!(id);
    body["iss"] = json!("ops");
    body["kid"] = json!(ISSUER_KID);
    body["scope"] = json!(scope);
    body["max_hops"] = json!(max_hops);
    body["denies"] = json!(["tools:call:shell.*"]);
    body["contracts"] = json!([]);
    sign_capsule(body.to_string().as_bytes(), ISSUER_KID, &issuer_key()).unwrap()
}

fn verified(gw: &TestGateway, token: &str) -> VerifiedCapsule {
    let trust = gw.state.policy.capsules.trust_store().unwrap();
    portcullis_capsule::verify(
        token.as_bytes(),
        &trust,
        &portcullis_capsule::CapsuleLimits::default(),
        gw.clock.now(),
    )
    .unwrap()
}

#[tokio::test]
async fn each_capsule_is_claimed_once_per_neighbour() {
    let gw = setup(tempfile::tempdir().unwrap(), &[node_entry(1, false)]).await;
    let capsule = verified(&gw, &token(&gw, "cap-1", "peers", 2));
    let runtime = ClusterRuntime::new(ClusterSettings::default());
    let now = gw.clock.now();
    assert_eq!(runtime.claim(&capsule, "n2", now), Ok(()));
    assert_eq!(runtime.claim(&capsule, "n3", now), Ok(()));
    assert_eq!(runtime.claim(&capsule, "n2", now), Err("already_relayed"));
    let other = verified(&gw, &token(&gw, "cap-2", "peers", 2));
    assert_eq!(runtime.claim(&other, "n2", now), Ok(()));
}

/// Waits (on the event stream, not a timer) for the next `capsule.relay` event.
async fn next_relay(events: &mut tokio::sync::broadcast::Receiver<Arc<Value>>) -> Arc<Value> {
    let wait = async {
        loop {
            let event = events.recv().await.unwrap();
            if event["kind"] == "capsule.relay" {
                return event;
            }
        }
    };
    // A bound against hanging on a broken build, not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap()
}

#[tokio::test]
async fn relays_to_a_peer_over_loopback_once_and_stops_at_the_hop_limit() {
    let nodes = [node_entry(1, false), node_entry(3, false)];
    // n2: a real listener on loopback.
    let receiver = setup(tempfile::tempdir().unwrap(), &nodes).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = crate::http::app(receiver.state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // n1: relays to n2.
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path(), "n1-key", 1, 0o600);
    let sender = setup(dir, &nodes).await;
    let config = cluster_config(sender.dir.path(), &peer(&format!("http://{addr}")));
    let trust = sender.state.policy.capsules.trust_store();
    sender
        .state
        .cluster
        .swap(ClusterSettings::build(&config, &secrets(), trust.as_deref()).unwrap());
    let mut events = sender.state.events.subscribe();

    let first = token(&sender, "cap-peers", "peers", 2);
    let (status, answer) = sender
        .admin("POST", "/admin/capsules", Some(&first), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let relayed = next_relay(&mut events).await;
    assert_eq!(
        (
            &relayed["reason"],
            &relayed["data"]["outcome"],
            &relayed["data"]["target"]
        ),
        (&json!("adopted"), &json!("delivered"), &json!("n2")),
        "{relayed}"
    );
    assert!(!relayed.to_string().contains(&first), "no token in events");
    let (_, list) = receiver.admin("GET", "/admin/capsules", None, &[]).await;
    assert_eq!(list["capsules"][0]["id"], "cap-peers", "{list}");
    assert_eq!(list["capsules"][0]["hops"], 1, "{list}");
    let (_, cluster) = sender.admin("GET", "/admin/cluster", None, &[]).await;
    assert_eq!(cluster["node"]["id"], "n1", "{cluster}");
    assert_eq!(
        cluster["neighbors"][0]["last_relay"]["reason"], "adopted",
        "{cluster}"
    );

    // Scope `none` is never relayed, and a re-adoption (same hash) relays nothing: the next
    // relay event is the hop-limit skip below.
    let local = token(&sender, "cap-local", "none", 2);
    let (status, _) = sender
        .admin("POST", "/admin/capsules", Some(&local), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = sender
        .admin("POST", "/admin/capsules", Some(&first), &[])
        .await;
    assert_eq!(status, StatusCode::OK);

    // A capsule that already made its one allowed hop (relayed by n3) stops here.
    let one_hop = token(&sender, "cap-one-hop", "peers", 1);
    let signer = NodeSigner {
        node: "n3".into(),
        kid: "n3-key".into(),
        key: node_key(3),
    };
    let hopped = verified(&sender, &one_hop).relay(&signer).unwrap();
    let (status, answer) = sender
        .admin("POST", "/admin/capsules", Some(&hopped), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let skipped = next_relay(&mut events).await;
    assert_eq!(
        (
            &skipped["data"]["capsule"],
            &skipped["reason"],
            &skipped["data"]["outcome"]
        ),
        (
            &json!("cap-one-hop"),
            &json!("hop_limit_reached"),
            &json!("skipped")
        ),
        "{skipped}"
    );
    let (_, list) = receiver.admin("GET", "/admin/capsules", None, &[]).await;
    assert_eq!(list["capsules"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn reload_reads_the_cluster_section_again_and_keeps_it_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path(), "n1-key", 1, 0o600);
    // Started without `[cluster]`; the file on disk names node n1.
    let gw = setup(dir, &[node_entry(1, false)]).await;
    assert!(gw.state.cluster.describe()["node"].is_null());
    let (status, answer) = gw.admin("POST", "/admin/cluster/reload", None, &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(gw.state.cluster.describe()["node"]["id"], "n1");

    let path = gw.dir.path().join("portcullis.toml");
    std::fs::write(&path, "[cluster]\nid = \"n1\"\n").unwrap();
    let (status, answer) = gw.admin("POST", "/admin/cluster/reload", None, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "config_invalid");
    assert_eq!(gw.state.cluster.describe()["node"]["id"], "n1", "kept");
    let kinds = gw.ledger_kinds().await;
    assert!(kinds.contains(&"cluster.reloaded".to_owned()), "{kinds:?}");
    assert!(
        kinds.contains(&"cluster.reload_failed".to_owned()),
        "{kinds:?}"
    );
}
