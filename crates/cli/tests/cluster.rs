//! End-to-end capsule propagation: three `portcullis serve` nodes on loopback (port 0), keys made
//! with `portcullis capsule keygen`, peers learnt through `POST /admin/cluster/reload` once every
//! node's address is known from its `listening.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Gateway, portcullis};

/// Node `nN`'s admin token (known before start, so every node's secrets can hold its peers').
fn admin_token(n: usize) -> String {
    format!("pcl_admin_cluster_test_node_{n}_0123456789abcdef")
}

fn run(args: &[&str]) -> String {
    let output = portcullis().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `portcullis capsule keygen`; answers the printed trust-store entry.
fn keygen(dir: &Path, alg: &str, kid: &str, id: &str, node: bool) -> Value {
    let out = dir.to_str().unwrap();
    let mut args = vec![
        "capsule", "keygen", "--alg", alg, "--kid", kid, "--out", out, "--id", id,
    ];
    if node {
        args.push("--node");
    } else {
        args.extend(["--scopes", "none,peers,all", "--patterns", "tools:*"]);
    }
    serde_json::from_str(&run(&args)).unwrap()
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Node `n`'s configuration; `peers` are `(node number, address)`.
fn config(keys: &Path, n: usize, peers: &[(usize, String)]) -> String {
    let keys = keys.display();
    let mut text = format!(
        "[admin]\nrate_limit = \"1000/60\"\n\n\
         [capsules]\ntrust_store = \"{keys}/trust.json\"\nmax_ttl = \"1d\"\n\n\
         [secrets]\nfile = \"{keys}/secrets.toml\"\n\n\
         [[agents]]\nid = \"coder\"\n\
         token_sha256 = \"0000000000000000000000000000000000000000000000000000000000000001\"\n\
         allow = [\"tools:call:*\"]\n\n\
         [cluster]\nid = \"n{n}\"\nkid = \"n{n}-key\"\nkey_file = \"{keys}/n{n}-key.key\"\n\
         relay_timeout = \"10s\"\nrelay_attempts = 3\nrelay_backoff = \"100ms\"\n"
    );
    for (peer, addr) in peers {
        text.push_str(&format!(
            "\n[[cluster.peers]]\nid = \"n{peer}\"\nurl = \"http://{addr}\"\n\
             token_secret = \"n{peer}_admin\"\n"
        ));
    }
    text
}

struct Node {
    gateway: Gateway,
    token: String,
}

impl Node {
    async fn start(keys: &Path, n: usize) -> Self {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().join("data");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&data_dir)
            .unwrap();
        write_private(&data_dir.join("admin.token"), &admin_token(n));
        let gateway = Gateway::start_in(
            data,
            &config(keys, n, &[]),
            &[],
            &[
                ("PORTCULLIS_EGRESS_PROXY_BIND", ""),
                ("PORTCULLIS_EGRESS_DNS_BIND", ""),
            ],
        )
        .await;
        assert_eq!(gateway.admin_token, admin_token(n));
        Self {
            gateway,
            token: admin_token(n),
        }
    }

    fn client(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, self.gateway.url(path))
            .bearer_auth(&self.token)
    }

    async fn post(&self, path: &str, header: Option<(&str, &str)>, body: &str) -> (u16, Value) {
        let mut request = self
            .client(reqwest::Method::POST, path)
            .body(body.to_owned());
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every ledger record of `kind`.
    async fn ledger(&self, kind: &str) -> Vec<Value> {
        let page = self.gateway.admin_get("/admin/ledger?limit=1000").await;
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|record| record["kind"] == kind)
            .cloned()
            .collect()
    }

    /// The explanation for agent `coder` calling `tool` at `at` (RFC 3339, or now).
    async fn explain(&self, tool: &str, at: Option<&str>) -> Value {
        let mut body = json!({"subject": {"agent": "coder"},
            "action": format!("tools:call:{tool}"), "context": {}});
        if let Some(at) = at {
            body["at"] = json!(at);
        }
        let (status, answer) = self
            .post("/admin/policy/explain", None, &body.to_string())
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The stream of this node's events from now on (`GET /admin/events`).
    async fn subscribe(&self) -> Events {
        let response = self
            .client(reqwest::Method::GET, "/admin/events")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Events {
            response,
            buffer: String::new(),
        }
    }
}

/// Server-Sent Events of one node.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// Waits for `n` final `capsule.relay` events (any outcome but `retrying`) of capsule `id`.
    async fn relays(&mut self, id: &str, n: usize) -> Vec<Value> {
        let mut found = Vec::new();
        let wait = async {
            while found.len() < n {
                while let Some(end) = self.buffer.find("\n\n") {
                    let frame: String = self.buffer.drain(..end + 2).collect();
                    for line in frame.lines() {
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        let event: Value = serde_json::from_str(data.trim()).unwrap();
                        if event["kind"] == "capsule.relay"
                            && event["data"]["capsule"] == id
                            && event["data"]["outcome"] != "retrying"
                        {
                            found.push(event);
                        }
                    }
                }
                if found.len() >= n {
                    break;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        // A bound against hanging on a broken build, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .expect("relay events arrive");
        found
    }
}

/// Signs a capsule as issuer `ops` with the CLI (`capsule template` sets `iat` to now).
fn sign(keys: &Path, id: &str, max_hops: u64) -> String {
    let mut body: Value = serde_json::from_str(&run(&["capsule", "template"])).unwrap();
    for (key, value) in [
        ("id", json!(id)),
        ("iss", json!("ops")),
        ("kid", json!("ops-1")),
        ("ttl", json!(3600)),
        ("max_hops", json!(max_hops)),
        ("scope", json!("peers")),
        ("denies", json!(["tools:call:danger.*"])),
        (
            "contracts",
            json!([{"id": "no-shell", "patterns": ["tools:call:shell.*"]}]),
        ),
    ] {
        body[key] = value;
    }
    let path = keys.join(format!("{id}.json"));
    std::fs::write(&path, body.to_string()).unwrap();
    let key = keys.join("ops-1.key");
    run(&[
        "capsule",
        "sign",
        "--key",
        key.to_str().unwrap(),
        "--kid",
        "ops-1",
        path.to_str().unwrap(),
    ])
}

async fn three_nodes() -> (tempfile::TempDir, Vec<Node>) {
    let keys = tempfile::tempdir().unwrap();
    let issuer = keygen(keys.path(), "ed25519", "ops-1", "ops", false);
    let nodes: Vec<Value> = [(1, "ed25519"), (2, "secp256k1"), (3, "ed25519")]
        .iter()
        .map(|(n, alg)| {
            keygen(
                keys.path(),
                alg,
                &format!("n{n}-key"),
                &format!("n{n}"),
                true,
            )
        })
        .collect();
    std::fs::write(
        keys.path().join("trust.json"),
        json!({"issuers": [issuer], "nodes": nodes}).to_string(),
    )
    .unwrap();
    let secrets: String = (1..=3)
        .map(|n| format!("n{n}_admin = \"{}\"\n", admin_token(n)))
        .collect();
    write_private(&keys.path().join("secrets.toml"), &secrets);

    let mut started = Vec::new();
    for n in 1..=3 {
        started.push(Node::start(keys.path(), n).await);
    }
    // Ports were 0: now that every address is known, each node learns its two peers.
    for (idx, node) in started.iter().enumerate() {
        let n = idx + 1;
        let peers: Vec<(usize, String)> = (1..=3)
            .filter(|peer| *peer != n)
            .map(|peer| (peer, started[peer - 1].gateway.http.clone()))
            .collect();
        let path = node
            .gateway
            .data_dir()
            .parent()
            .unwrap()
            .join("portcullis.toml");
        std::fs::write(path, config(keys.path(), n, &peers)).unwrap();
        let (status, answer) = node.post("/admin/cluster/reload", None, "").await;
        assert_eq!((status, &answer["neighbors"]), (200, &json!(2)), "{answer}");
    }
    (keys, started)
}

#[tokio::test]
async fn a_capsule_reaches_every_peer_once_stops_at_max_hops_and_denies_until_expiry() {
    let (keys, nodes) = three_nodes().await;
    let cluster = nodes[0].gateway.admin_get("/admin/cluster").await;
    assert_eq!(cluster["node"]["id"], "n1", "{cluster}");
    assert_eq!(
        cluster["neighbors"].as_array().unwrap().len(),
        2,
        "{cluster}"
    );

    // 1. scope = peers, max_hops 2, adopted on n1: it reaches n2 and n3 exactly once each.
    let token = sign(keys.path(), "freeze-shell", 2);
    let mut streams = Vec::new();
    for node in &nodes {
        streams.push(node.subscribe().await);
    }
    let (status, answer) = nodes[0]
        .post(
            "/admin/capsules",
            Some(("x-portcullis-capsule", &token)),
            "",
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    // Each node settles two relays (one per peer): delivered, or skipped for a node already
    // among the hops; the second copy a node receives is a no-op and relays nothing.
    let mut relays = Vec::new();
    for stream in &mut streams {
        relays.push(stream.relays("freeze-shell", 2).await);
    }
    let reasons = |node: usize| -> Vec<String> {
        let mut reasons: Vec<String> = relays[node]
            .iter()
            .map(|event| {
                format!(
                    "{}:{}",
                    event["data"]["target"].as_str().unwrap(),
                    event["reason"].as_str().unwrap()
                )
            })
            .collect();
        reasons.sort();
        reasons
    };
    assert_eq!(reasons(0), ["n2:adopted", "n3:adopted"]);
    // n2 and n3 got it from n1 (one hop: n1 is skipped as already among the hops) or, when the
    // other peer was faster, with two hops (no further hop allowed).
    for node in 1..3 {
        let got = reasons(node);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0] == "n1:target_among_hops" || got[0] == "n1:hop_limit_reached",
            "{got:?}"
        );
    }
    for node in &nodes {
        let adopted = node.ledger("capsule.adopted").await;
        let new: Vec<&Value> = adopted.iter().filter(|r| r["reason"] == "ok").collect();
        assert_eq!(new.len(), 1, "adopted exactly once: {adopted:?}");
        for event in node.ledger("capsule.relay").await {
            assert!(
                !event.to_string().contains(&token),
                "no token in the ledger"
            );
        }
    }

    // 2. The capsule's denies hold on all three until its expiry, and only until then.
    let mut expiries = Vec::new();
    for node in &nodes {
        let list = node.gateway.admin_get("/admin/capsules").await;
        let capsule = &list["capsules"][0];
        assert_eq!(capsule["id"], "freeze-shell", "{list}");
        assert_eq!(capsule["status"], "active", "{list}");
        expiries.push(capsule["expires_at"].as_i64().unwrap());
        let denied = node.explain("danger.exec", None).await;
        assert_eq!(
            (&denied["decision"], &denied["layer"]),
            (&json!("deny"), &json!("capsule")),
            "{denied}"
        );
    }
    assert!(expiries.iter().all(|at| *at == expiries[0]), "{expiries:?}");
    let at = |secs: i64| jiff::Timestamp::from_second(secs).unwrap().to_string();
    for node in &nodes {
        let before = node.explain("shell.exec", Some(&at(expiries[0] - 1))).await;
        assert_eq!(before["decision"], "deny", "{before}");
        assert_eq!(before["rule"], "freeze-shell::no-shell", "{before}");
        let after = node.explain("shell.exec", Some(&at(expiries[0]))).await;
        assert_eq!(after["decision"], "allow", "{after}");
    }

    // 3. max_hops 1: n1 relays once; n2 and n3 do not relay a second hop, and say why.
    let token = sign(keys.path(), "one-hop", 1);
    let (status, answer) = nodes[0]
        .post(
            "/admin/capsules",
            Some(("x-portcullis-capsule", &token)),
            "",
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    let first = streams[0].relays("one-hop", 2).await;
    assert!(
        first.iter().all(|event| event["reason"] == "adopted"),
        "{first:?}"
    );
    for stream in &mut streams[1..] {
        for event in stream.relays("one-hop", 2).await {
            assert_eq!(
                (
                    &event["reason"],
                    &event["data"]["outcome"],
                    &event["data"]["hops"]
                ),
                (&json!("hop_limit_reached"), &json!("skipped"), &json!(1)),
                "{event}"
            );
        }
    }
    for node in &nodes {
        let list = node.gateway.admin_get("/admin/capsules").await;
        let one_hop: Vec<&Value> = list["capsules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|capsule| capsule["id"] == "one-hop")
            .collect();
        assert_eq!(one_hop.len(), 1, "{list}");
    }
    let cluster = nodes[1].gateway.admin_get("/admin/cluster").await;
    let last: Vec<&Value> = cluster["neighbors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|neighbor| &neighbor["last_relay"]["reason"])
        .collect();
    assert_eq!(
        last,
        [&json!("hop_limit_reached"), &json!("hop_limit_reached")]
    );
}
