//! The kill switch through the admin API and the identify stage, and rate limits through the
//! `limit` stage, on a router with a manual clock.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jiff::SignedDuration;
use portcullis_core::{CorrelationId, ErrorCode};
use serde_json::json;
use tower::ServiceExt as _;

use crate::config::{self, Config};
use crate::http::app;
use crate::identity::Identified;
use crate::pipeline::{self, Metered};
use crate::testing::{TestGateway, gateway, gateway_in};

const TOKEN: &str = "agent-token-for-guardrail-tests";

fn config(extra: &str) -> Config {
    let text = format!(
        "[[agents]]\nid = \"coder\"\nproject = \"alpha\"\ntoken_sha256 = \"{}\"\n{extra}",
        hex::encode(crate::tokens::sha256(TOKEN))
    );
    config::load_str(&text, "test.toml", &Default::default()).unwrap()
}

/// `GET /whoami` as the agent: the status and the error code.
async fn whoami(gw: &TestGateway) -> (StatusCode, String) {
    let request = Request::builder()
        .uri("/whoami")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let response = app(gw.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    (
        status,
        json["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn toggle(gw: &TestGateway, body: serde_json::Value) -> (StatusCode, serde_json::Value) {
    gw.admin("POST", "/admin/killswitch", Some(&body.to_string()), &[])
        .await
}

async fn identified(gw: &TestGateway) -> Identified {
    gw.state
        .identity
        .identify_token(TOKEN, &Default::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn killswitch_scopes_refuse_the_identify_stage_and_persist() {
    let gw = gateway(config("")).await;
    let open = (StatusCode::OK, String::new());
    let refused = (
        StatusCode::SERVICE_UNAVAILABLE,
        "killswitch_engaged".to_owned(),
    );
    assert_eq!(whoami(&gw).await, open);

    for (scope, covers) in [
        ("agent:other", false),
        ("project:beta", false),
        ("agent:coder", true),
        ("project:alpha", true),
        ("global", true),
    ] {
        let (status, state) = toggle(&gw, json!({"on": true, "scope": scope})).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            state["engaged"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["scope"] == scope)
        );
        assert_eq!(
            whoami(&gw).await,
            if covers {
                refused.clone()
            } else {
                open.clone()
            }
        );
        let (status, _) = toggle(&gw, json!({"on": false, "scope": scope})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(whoami(&gw).await, open);
    }

    // Bad bodies change nothing.
    for body in [
        json!({"on": true, "scope": "room:x"}),
        json!({"on": true, "scope": "agent:"}),
        json!({"on": "yes"}),
        json!({"on": true, "extra": 1}),
    ] {
        let (status, answer) = toggle(&gw, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer["error"]["code"], "bad_request");
    }
    let (_, state) = gw.admin("GET", "/admin/killswitch", None, &[]).await;
    assert_eq!(state, json!({"global": false, "engaged": []}));

    // Engaged state survives a restart on the same data dir.
    toggle(&gw, json!({"on": true})).await;
    toggle(&gw, json!({"on": true, "scope": "project:alpha"})).await;
    toggle(&gw, json!({"on": true})).await;
    let kinds = gw.ledger_kinds().await;
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(count("killswitch.engaged"), 8);
    assert_eq!(count("killswitch.released"), 5);
    assert_eq!(count("killswitch.refused"), 3);
    let TestGateway {
        state, dir, store, ..
    } = gw;
    let config = Config::clone(&state.config);
    drop((state, store));
    let gw = gateway_in(config, dir).await;
    assert_eq!(whoami(&gw).await, refused);
    let (_, state) = gw.admin("GET", "/admin/killswitch", None, &[]).await;
    assert_eq!(state["global"], true);
    assert_eq!(state["engaged"][0]["since"], "2026-01-01T00:00:00Z");
    assert_eq!(state["engaged"][1]["scope"], "project:alpha");
    toggle(&gw, json!({"on": false})).await;
    // The project scope still covers the agent.
    assert_eq!(whoami(&gw).await, refused);
    toggle(&gw, json!({"on": false, "scope": "project:alpha"})).await;
    assert_eq!(whoami(&gw).await, open);
}

#[tokio::test]
async fn limit_stage_refuses_over_the_rate_with_retry_after() {
    let gw = gateway(config(
        "[budgets]\nbudgets = []\n[[limits.rates]]\nid = \"per-agent\"\ncalls = 2\nwindow = \"1m\"\n\
         [[limits.rates]]\nid = \"expensive\"\napplies_to = \"models\"\npattern = \"gpt-4o\"\nper = []\ncalls = 1\nwindow = \"1h\"\n",
    ))
    .await;
    let who = identified(&gw).await;
    let correlation = CorrelationId::from_header_or_generate(None);
    let tool = Metered::Tool {
        name: "fs.read".into(),
    };
    let llm = |model: &str| Metered::Llm {
        model: model.into(),
        input_tokens: 10,
        max_output_tokens: 10,
    };

    let grant = pipeline::limit(&gw.state, &who, &llm("gpt-4o"), &correlation)
        .await
        .unwrap();
    assert_eq!(grant.model(), Some("gpt-4o"));
    assert!(!grant.downgraded());
    pipeline::release(&gw.state, grant, &correlation).await;
    // The model rule is used up for an hour.
    let err = pipeline::limit(&gw.state, &who, &llm("gpt-4o"), &correlation)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert_eq!(err.retry_after, Some(3600));
    // The per-agent rule had room for one more call (the refused one counted against it).
    let err = pipeline::limit(&gw.state, &who, &tool, &correlation)
        .await
        .unwrap_err();
    assert_eq!(err.retry_after, Some(30));

    gw.clock.advance(SignedDuration::from_secs(30));
    let grant = pipeline::limit(&gw.state, &who, &tool, &correlation)
        .await
        .unwrap();
    assert_eq!(grant.model(), None);
    pipeline::settle(&gw.state, grant, &pipeline::Actual::Tool, &correlation).await;

    // The HTTP answer carries Retry-After.
    let response = axum::response::IntoResponse::into_response(err);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "30");

    let records = gw.store.ledger_page(0, 100).await.unwrap();
    let refusals: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.kind == "limit.rate")
        .map(|r| (r.decision.as_str(), r.data["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(refusals, [("deny", "expensive"), ("deny", "per-agent")]);
}

#[tokio::test]
async fn report_mode_records_and_lets_calls_through() {
    let gw = gateway(config(
        "[limits]\nmode = \"report\"\n[[limits.rates]]\nid = \"one\"\ncalls = 1\nwindow = \"1m\"\n",
    ))
    .await;
    let who = identified(&gw).await;
    let correlation = CorrelationId::from_header_or_generate(None);
    let tool = Metered::Tool { name: "t".into() };
    for _ in 0..3 {
        let grant = pipeline::limit(&gw.state, &who, &tool, &correlation)
            .await
            .unwrap();
        pipeline::settle(&gw.state, grant, &pipeline::Actual::Tool, &correlation).await;
    }
    let records = gw.store.ledger_page(0, 100).await.unwrap();
    let reports = records
        .iter()
        .filter(|r| r.kind == "limit.rate" && r.decision.as_str() == "report")
        .count();
    assert_eq!(reports, 2);
}

#[test]
fn rate_rules_are_validated_with_their_key() {
    for (rule, path, needle) in [
        (
            "id = \"a b\"\ncalls = 1\nwindow = \"1m\"",
            "limits.rates[0].id",
            "valid id",
        ),
        (
            "id = \"a\"\ncalls = 0\nwindow = \"1m\"",
            "limits.rates[0].calls",
            "between",
        ),
        (
            "id = \"a\"\ncalls = 1\nwindow = \"0s\"",
            "limits.rates[0].window",
            "second",
        ),
        (
            "id = \"a\"\ncalls = 1\nwindow = \"1m\"\npattern = \"a*b\"",
            "limits.rates[0].pattern",
            "end in",
        ),
        (
            "id = \"a\"\ncalls = 1\nwindow = \"1m\"\nper = [\"agent\", \"agent\"]",
            "limits.rates[0].per",
            "twice",
        ),
    ] {
        let text = format!("[[limits.rates]]\n{rule}\n");
        let err = config::load_str(&text, "t", &Default::default()).unwrap_err();
        let issue = err
            .issues
            .iter()
            .find(|i| i.path == path)
            .unwrap_or_else(|| panic!("{err}"));
        assert!(issue.message.contains(needle), "{err}");
        assert!(issue.line.is_some(), "{err}");
    }
    let err = config::load_str(
        "[[limits.rates]]\nid = \"a\"\ncalls = 1\nwindow = \"1m\"\n[[limits.rates]]\nid = \"a\"\ncalls = 1\nwindow = \"1m\"\n",
        "t",
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("declared twice"), "{err}");
}

/// A loopback webhook receiver: refuses the first `refuse_first` posts with 500, then answers
/// 200; every post's signature header and body go to the returned channel.
async fn receiver(
    refuse_first: usize,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    let signature = headers
                        .get(super::alerts::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    tx.send((signature, body.to_vec())).unwrap();
                    if seen.fetch_add(1, Ordering::SeqCst) < refuse_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, rx)
}

#[tokio::test]
async fn webhook_posts_signed_alerts_and_retries_within_bounds() {
    use super::alerts::{AlertSender, Webhook, signature};
    let gw = gateway(config("")).await;
    let (url, mut posts) = receiver(1).await;
    let secret = b"webhook-secret".to_vec();
    let sender = AlertSender::start(
        Webhook {
            url,
            secret: secret.clone(),
            timeout: std::time::Duration::from_secs(10),
            attempts: 3,
            backoff: std::time::Duration::ZERO,
        },
        gw.state.events.clone(),
        gw.state.metrics.clone(),
    );
    let alert = json!({"event": "budget.alert", "tier": "warning", "budget": "b"});
    sender.send(&alert);
    // Refused once, delivered on the second attempt, each post signed over its exact bytes.
    for _ in 0..2 {
        let (header, body) = posts.recv().await.unwrap();
        assert_eq!(header, signature(&secret, &body));
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, alert);
    }

    // A receiver that always refuses gets exactly `attempts` posts, then a failure event.
    let (url, mut posts) = receiver(usize::MAX).await;
    let sender = AlertSender::start(
        Webhook {
            url,
            secret,
            timeout: std::time::Duration::from_secs(10),
            attempts: 2,
            backoff: std::time::Duration::ZERO,
        },
        gw.state.events.clone(),
        gw.state.metrics.clone(),
    );
    let mut stream = gw.state.events.subscribe();
    sender.send(&alert);
    let failed = loop {
        let event = stream.recv().await.unwrap();
        if event["kind"] == "alert.webhook_failed" {
            break event;
        }
    };
    assert_eq!(failed["data"]["attempts"], 2);
    assert!(posts.recv().await.is_some());
    assert!(posts.recv().await.is_some());
    assert!(posts.try_recv().is_err());
}
