//! The road's order: every kind crosses exactly its table's stages, in road order, and stops at
//! the first refusal with its record; the executor never runs for a refused action.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey};

use super::*;
use crate::config;
use crate::identity::Identified;
use crate::testing::{TestGateway, gateway};

const TOKEN: &str = "agent-token-for-road-tests";

async fn setup() -> (TestGateway, Identified) {
    let text = format!(
        "[policy]\ndeny = [\"tools:call:up.denied_in\", \"io:egress:tools.sealed\"]\n\
         [budgets]\nbudgets = []\n\
         [[agents]]\nid = \"coder\"\ntoken_sha256 = \"{}\"\nallow = [\"tools:*\", \"io:*\"]\n",
        hex::encode(crate::tokens::sha256(TOKEN))
    );
    let config = config::load_str(&text, "test.toml", &Default::default()).unwrap();
    let gw = gateway(config).await;
    let identified = gw
        .state
        .identity
        .identify_token(TOKEN, &Default::default())
        .await
        .unwrap();
    (gw, identified)
}

/// A front that refuses at one chosen stage (or none) and counts executions.
#[derive(Default)]
struct Probe {
    refuse_at: Option<Stage>,
    executed: Arc<AtomicUsize>,
    /// Whether the probe names what it consumes (a metered kind without it is refused).
    unmetered: bool,
    /// Whether the output is still running when the road hands it back (a stream).
    streams: bool,
}

impl Probe {
    fn check(&self, stage: Stage) -> Result<(), Refusal> {
        match self.refuse_at {
            Some(at) if at == stage => Err(Refusal::new(stage, ErrorCode::PolicyDenied, "probe")),
            _ => Ok(()),
        }
    }
}

impl Front for Probe {
    type Output = ();

    async fn validate(&mut self, _action: &Action) -> Result<(), Refusal> {
        self.check(Stage::Validate)
    }

    fn sanitize_in(&mut self) -> Result<(), Refusal> {
        self.check(Stage::SanitizeIn)
    }

    async fn execute(&mut self, _pass: Pass) -> Result<(), Refusal> {
        self.executed.fetch_add(1, Ordering::SeqCst);
        self.check(Stage::Execute)
    }

    fn sanitize_out(&mut self, output: ()) -> Result<(), Refusal> {
        self.check(Stage::SanitizeOut).map(|()| output)
    }

    fn meter(&self) -> Option<crate::pipeline::Metered> {
        (!self.unmetered).then(|| crate::pipeline::Metered::Tool {
            name: "up.tool".to_owned(),
        })
    }

    fn admission(&self) -> Option<Event> {
        Some(Event::new("probe.admitted", Decision::Allow, "admitted"))
    }

    fn ends_later(&self, _output: &()) -> bool {
        self.streams
    }

    fn record(&self, decision: Decision, reason: &str) -> Event {
        Event::new("probe", decision, reason)
    }
}

/// The action of `kind`, refused at gate in or gate out by policy when asked to.
fn action(kind: Kind, refuse_at: Option<Stage>) -> Action {
    let tool = match refuse_at {
        Some(Stage::GateIn) => "tools:call:up.denied_in",
        _ => "tools:call:up.ok",
    };
    let out = match refuse_at {
        Some(Stage::GateOut) => "io:egress:tools.sealed",
        _ => "io:egress:tools.up",
    };
    Action {
        kind,
        gates_in: vec![GateKey::parse(tool).unwrap()],
        gates_out: vec![GateKey::parse(out).unwrap()],
        resource: "up.tool".to_owned(),
        context: RequestContext::default(),
    }
}

#[tokio::test]
async fn every_kind_crosses_its_stages_in_order_and_stops_at_the_first_refusal() {
    let (gw, identified) = setup().await;
    let correlation = CorrelationId::generate();
    for kind in Kind::ALL {
        let table = kind.stages();
        assert!(
            table.windows(2).all(|w| w[0] < w[1]),
            "{kind:?} out of road order"
        );
        assert_eq!(table.first(), Some(&Stage::Identify));
        assert_eq!(table.last(), Some(&Stage::Record));
        // Stages a front or the policy can refuse at, and no refusal at all.
        let refusable = [
            Stage::GateIn,
            Stage::Validate,
            Stage::SanitizeIn,
            Stage::Execute,
            Stage::GateOut,
            Stage::SanitizeOut,
        ];
        let cases = refusable
            .into_iter()
            .filter(|stage| kind.crosses(*stage))
            .map(Some)
            .chain([None]);
        for refuse_at in cases {
            let executed = Arc::new(AtomicUsize::new(0));
            let mut probe = Probe {
                refuse_at,
                executed: Arc::clone(&executed),
                ..Probe::default()
            };
            let ran = run(
                &gw.state.core,
                &identified,
                action(kind, refuse_at),
                &mut probe,
                &correlation,
            )
            .await;
            let (trail, stopped_at) = match ran {
                Ok(ran) => (ran.trail, None),
                Err(stopped) => (stopped.trail, Some(stopped.refusal.stage)),
            };
            let crossed: Vec<Stage> = trail.stages().collect();
            let expected: Vec<Stage> = match refuse_at {
                // Refused before anything ran: the road ends at the refusing stage.
                Some(at) if at < Stage::Execute => {
                    table.iter().copied().filter(|s| *s <= at).collect()
                }
                // Refused at or after execute: the outcome is still settled and recorded.
                Some(Stage::Execute) => table
                    .iter()
                    .copied()
                    .filter(|s| *s <= Stage::Execute)
                    .collect(),
                Some(Stage::GateOut) => table
                    .iter()
                    .copied()
                    .filter(|s| *s != Stage::SanitizeOut)
                    .collect(),
                _ => table.to_vec(),
            };
            assert_eq!(crossed, expected, "{kind:?} refused at {refuse_at:?}");
            assert_eq!(stopped_at, refuse_at, "{kind:?}");
            let ran_executor = refuse_at.is_none_or(|at| at >= Stage::Execute);
            assert_eq!(
                executed.load(Ordering::SeqCst),
                usize::from(ran_executor),
                "{kind:?} refused at {refuse_at:?}"
            );
        }
    }
    // Every action left its record: one `probe` event per case, allow only when nothing refused.
    gw.state.events.settle_trailing().await;
    let records = gw.store.ledger_page(0, 1000).await.unwrap();
    let probes: Vec<&str> = records
        .iter()
        .filter(|r| r.kind == "probe")
        .map(|r| r.decision.as_str())
        .collect();
    let cases: usize = Kind::ALL
        .iter()
        .map(|kind| {
            1 + [
                Stage::GateIn,
                Stage::Validate,
                Stage::SanitizeIn,
                Stage::Execute,
                Stage::GateOut,
                Stage::SanitizeOut,
            ]
            .iter()
            .filter(|s| kind.crosses(**s))
            .count()
        })
        .sum();
    assert_eq!(probes.len(), cases);
    assert_eq!(
        probes.iter().filter(|d| **d == "allow").count(),
        Kind::ALL.len()
    );
}

#[tokio::test]
async fn a_metered_kind_without_its_meter_is_refused_at_limit() {
    let (gw, identified) = setup().await;
    let executed = Arc::new(AtomicUsize::new(0));
    let mut probe = Probe {
        executed: Arc::clone(&executed),
        unmetered: true,
        ..Probe::default()
    };
    let stopped = run(
        &gw.state.core,
        &identified,
        action(Kind::ToolCall, None),
        &mut probe,
        &CorrelationId::generate(),
    )
    .await
    .unwrap_err();
    assert_eq!(stopped.refusal.stage, Stage::Limit);
    assert_eq!(stopped.refusal.error.code, ErrorCode::Internal);
    assert_eq!(executed.load(Ordering::SeqCst), 0);
}

/// A gateway whose store fails on command, with the agent of [`setup`] (also allowed models).
async fn faulty_setup() -> (
    TestGateway,
    Identified,
    Arc<portcullis_store::faulty::FaultyStore>,
) {
    // The provider's port is closed: reaching it would answer 502, not the store's 503.
    let text = format!(
        "[budgets]\nbudgets = []\n\
         [[llm.providers]]\nname = \"closed\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"any-model\"]\n\
         [[agents]]\nid = \"coder\"\ntoken_sha256 = \"{}\"\nallow = [\"tools:*\", \"io:*\", \"llm:*\"]\n",
        hex::encode(crate::tokens::sha256(TOKEN))
    );
    let config = config::load_str(&text, "test.toml", &Default::default()).unwrap();
    let mut faulty = None;
    let gw = crate::testing::gateway_wrapped(config, tempfile::tempdir().unwrap(), |store| {
        let wrapped = Arc::new(portcullis_store::faulty::FaultyStore::new(store));
        faulty = Some(Arc::clone(&wrapped));
        wrapped
    })
    .await;
    let identified = gw
        .state
        .identity
        .identify_token(TOKEN, &Default::default())
        .await
        .unwrap();
    (gw, identified, faulty.unwrap())
}

#[tokio::test]
async fn a_store_failing_mid_run_refuses_every_action_and_nothing_runs_unrecorded() {
    let (gw, identified, faulty) = faulty_setup().await;
    let executed = Arc::new(AtomicUsize::new(0));
    let mut refused = Vec::new();
    for round in 0..8 {
        if round == 4 {
            // The outcomes so far trail their answers: let them land before the store fails.
            gw.state.events.settle_trailing().await;
            faulty.fail(true);
        }
        for kind in Kind::ALL {
            let mut probe = Probe {
                executed: Arc::clone(&executed),
                ..Probe::default()
            };
            let ran = run(
                &gw.state.core,
                &identified,
                action(kind, None),
                &mut probe,
                &CorrelationId::generate(),
            )
            .await;
            if let Err(stopped) = ran {
                refused.push((round, stopped.refusal.stage, stopped.refusal.error.code));
            }
        }
    }
    // Before the failure everything ran; after it nothing did, each refused when its admission
    // could not be made durable, before the executor.
    assert_eq!(executed.load(Ordering::SeqCst), 4 * Kind::ALL.len());
    assert_eq!(refused.len(), 4 * Kind::ALL.len());
    assert!(
        refused.iter().all(|(round, stage, code)| *round >= 4
            && *stage == Stage::Execute
            && *code == ErrorCode::StoreUnavailable),
        "{refused:?}"
    );
    // Every execution has its admission on record: the gate's allow, durable before it ran.
    let records = gw.store.ledger_page(0, 1000).await.unwrap();
    let admitted = records
        .iter()
        .filter(|r| r.kind == "policy.decision" && r.decision == Decision::Allow)
        .filter(|r| r.data["action"] == "tools:call:up.ok")
        .count();
    let outcomes = records
        .iter()
        .filter(|r| r.kind == "probe" && r.decision == Decision::Allow)
        .count();
    let fronts_admitted = records
        .iter()
        .filter(|r| r.kind == "probe.admitted")
        .count();
    assert_eq!(admitted, executed.load(Ordering::SeqCst));
    assert_eq!(fronts_admitted, executed.load(Ordering::SeqCst));
    assert_eq!(outcomes, executed.load(Ordering::SeqCst));

    // The LLM front refuses too, before any provider is asked.
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/chat/completions")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            serde_json::json!({"model": "any-model", "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        ))
        .unwrap();
    let response = tower::ServiceExt::oneshot(crate::http::app(gw.state.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
}

/// The stages an action of `kind` refused at `refuse_at` crosses, by the documented rule: the
/// table up to the refusing stage before execute; once the executor ran, the outcome is still
/// settled and recorded (a gate-out refusal skips sanitize out); without a refusal, the table.
fn expected_trail(kind: Kind, refuse_at: Option<Stage>) -> Vec<Stage> {
    let table = kind.stages();
    match refuse_at.filter(|at| kind.crosses(*at)) {
        Some(at) if at < Stage::Execute => table.iter().copied().filter(|s| *s <= at).collect(),
        Some(Stage::Execute) => table
            .iter()
            .copied()
            .filter(|s| *s <= Stage::Execute)
            .collect(),
        Some(Stage::GateOut) => table
            .iter()
            .copied()
            .filter(|s| *s != Stage::SanitizeOut)
            .collect(),
        _ => table.to_vec(),
    }
}

#[test]
fn random_actions_cross_exactly_their_documented_stages_in_order() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (gw, identified) = runtime.block_on(setup());
    let refusable = prop_oneof![
        Just(None),
        Just(Some(Stage::GateIn)),
        Just(Some(Stage::Validate)),
        Just(Some(Stage::SanitizeIn)),
        Just(Some(Stage::Execute)),
        Just(Some(Stage::GateOut)),
        Just(Some(Stage::SanitizeOut)),
    ];
    let strategy = (
        proptest::sample::select(Kind::ALL.to_vec()),
        refusable,
        0usize..4,
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    runner
        .run(&strategy, |(kind, refuse_at, extra_keys, streams)| {
            let executed = Arc::new(AtomicUsize::new(0));
            let mut probe = Probe {
                refuse_at,
                executed: Arc::clone(&executed),
                streams,
                ..Probe::default()
            };
            let mut action = action(kind, refuse_at);
            // More keys that allow, before the one that may deny: order and count do not change
            // the stages crossed.
            for n in 0..extra_keys {
                let key = GateKey::parse(&format!("tools:call:up.extra{n}")).unwrap();
                action.gates_in.insert(0, key);
            }
            let ran = runtime.block_on(run(
                &gw.state.core,
                &identified,
                action,
                &mut probe,
                &CorrelationId::generate(),
            ));
            let (crossed, stopped_at): (Vec<Stage>, _) = match ran {
                Ok(ran) => {
                    let trail = match ran.open {
                        Some(open) => {
                            // A stream: the road hands it back before settle and record.
                            prop_assert!(streams);
                            let event = Event::new("probe", Decision::Allow, "ok");
                            runtime.block_on(open.finish(Actual::Tool, event))
                        }
                        None => ran.trail,
                    };
                    (trail.stages().collect(), None)
                }
                Err(stopped) => (
                    stopped.trail.stages().collect(),
                    Some(stopped.refusal.stage),
                ),
            };
            let refused = refuse_at.filter(|at| kind.crosses(*at));
            prop_assert_eq!(crossed, expected_trail(kind, refused));
            prop_assert_eq!(stopped_at, refused);
            let ran_executor = refused.is_none_or(|at| at >= Stage::Execute);
            prop_assert_eq!(executed.load(Ordering::SeqCst), usize::from(ran_executor));
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_stream_is_settled_and_recorded_at_its_end_or_recorded_abandoned() {
    let (gw, identified) = setup().await;
    let executed = Arc::new(AtomicUsize::new(0));
    let mut probe = Probe {
        executed: Arc::clone(&executed),
        streams: true,
        ..Probe::default()
    };
    let ran = run(
        &gw.state.core,
        &identified,
        action(Kind::LlmChat, None),
        &mut probe,
        &CorrelationId::generate(),
    )
    .await
    .unwrap();
    assert_eq!(ran.trail.stages().last(), Some(Stage::SanitizeOut));
    let open = ran.open.unwrap();
    let trail = open
        .finish(
            Actual::Tool,
            Event::new("probe.finished", Decision::Allow, "ok"),
        )
        .await;
    assert_eq!(
        trail.stages().collect::<Vec<_>>(),
        Kind::LlmChat.stages().to_vec()
    );

    // A stream dropped before its end (the client went away) is recorded as abandoned.
    let ran = run(
        &gw.state.core,
        &identified,
        action(Kind::LlmChat, None),
        &mut probe,
        &CorrelationId::generate(),
    )
    .await
    .unwrap();
    drop(ran);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        gw.state.events.settle_trailing().await;
        let records = gw.store.ledger_page(0, 1000).await.unwrap();
        let finished = records
            .iter()
            .filter(|r| r.kind == "probe.finished")
            .count();
        let abandoned = records
            .iter()
            .filter(|r| r.kind == "llm.chat" && r.reason == "abandoned")
            .count();
        if abandoned == 1 {
            assert_eq!(finished, 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no abandoned record"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(executed.load(Ordering::SeqCst), 2);
}

/// ARCHITECTURE.md prints the stage table exactly as [`Kind::stages`] has it
/// (`PORTCULLIS_BLESS=1` rewrites it).
#[test]
fn architecture_prints_the_stage_table() {
    let mut table = String::from("| kind |");
    for stage in Stage::ALL {
        table.push_str(&format!(" {} |", stage.as_str().replace('_', " ")));
    }
    table.push_str("\n|---|");
    table.push_str(&"---|".repeat(Stage::ALL.len()));
    table.push('\n');
    for kind in Kind::ALL {
        let what = match kind {
            Kind::ToolCall => "MCP `tools/call`",
            Kind::PromptGet => "MCP `prompts/get`",
            Kind::ResourceRead => "MCP `resources/read`",
            Kind::LlmChat => "`/v1/chat/completions`",
            Kind::LlmEmbed => "`/v1/embeddings`",
            Kind::ProxyHttp => "forward proxy, HTTP",
            Kind::ProxyConnect => "forward proxy, CONNECT",
            Kind::DnsAnswer => "DNS guard",
        };
        table.push_str(&format!("| `{}` ({what}) |", kind.as_str()));
        for stage in Stage::ALL {
            table.push_str(if kind.crosses(stage) { " x |" } else { "  |" });
        }
        table.push('\n');
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let (before, rest) = text.split_once("| kind | identify |").unwrap();
    let (printed, after) = rest.split_once("\n\n").unwrap();
    let printed = format!("| kind | identify |{printed}\n");
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(&path, format!("{before}{table}\n{after}")).unwrap();
        return;
    }
    assert_eq!(
        printed, table,
        "ARCHITECTURE.md's stage table is stale; run with PORTCULLIS_BLESS=1"
    );
}
