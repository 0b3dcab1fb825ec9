//! Budgets through the `limit`, `settle` and `release` stages on the SQLite store, with a manual
//! clock: the zero-overshoot cap under 1,000 concurrent calls, refusals and their events, report
//! mode, thresholds, pauses, windows, the admin API and expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, HeaderValue};
use portcullis_budget::window::DayRange;
use portcullis_budget::{LineUsage, Meter, Unit};
use portcullis_core::{CorrelationId, ErrorCode};
use portcullis_ledger::LedgerRecord;

use crate::config::{self, Config};
use crate::identity::Identified;
use crate::pipeline::{self, Actual, Metered};
use crate::testing::{TestGateway, gateway};

const TOKEN: &str = "agent-token-for-budget-tests";

/// A configuration with one agent that may assert identity headers, plus `extra`.
fn config(extra: &str) -> Config {
    let text = format!(
        "[[agents]]\nid = \"coder\"\nproject = \"alpha\"\nmay_assert_identity = true\n\
         token_sha256 = \"{}\"\n{extra}",
        hex::encode(crate::tokens::sha256(TOKEN))
    );
    config::load_str(&text, "test.toml", &Default::default()).unwrap()
}

/// The agent, acting for `session` and `user` when given.
async fn identified(gw: &TestGateway, session: Option<&str>, user: Option<&str>) -> Identified {
    let mut headers = HeaderMap::new();
    if let Some(session) = session {
        headers.insert(
            crate::identity::SESSION_HEADER,
            HeaderValue::from_str(session).unwrap(),
        );
    }
    if let Some(user) = user {
        headers.insert(
            crate::identity::USER_HEADER,
            HeaderValue::from_str(user).unwrap(),
        );
    }
    gw.state
        .identity
        .identify_token(TOKEN, &headers)
        .await
        .unwrap()
}

fn correlation() -> CorrelationId {
    CorrelationId::from_header_or_generate(None)
}

fn tool(name: &str) -> Metered {
    Metered::Tool { name: name.into() }
}

fn llm(model: &str, input_tokens: u64, max_output_tokens: u64) -> Metered {
    Metered::Llm {
        model: model.into(),
        input_tokens,
        max_output_tokens,
    }
}

/// Spend and holds of `account` in `unit` over its lifetime.
async fn usage(gw: &TestGateway, account: &str, unit: Unit) -> LineUsage {
    let meter = Meter {
        key: String::new(),
        account: account.to_owned(),
        unit,
        days: DayRange::Lifetime,
        today: jiff::civil::date(2026, 1, 1),
        limit: 0,
    };
    gw.store.budget_usage(vec![meter]).await.unwrap().remove(0)
}

async fn records(gw: &TestGateway, kind: &str) -> Vec<LedgerRecord> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = gw.store.ledger_page(after, 1000).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = last.seq;
        out.extend(page.into_iter().filter(|record| record.kind == kind));
    }
}

/// One call through `limit` and then `settle` (or the refusal's code).
async fn call(
    gw: &TestGateway,
    who: &Identified,
    metered: &Metered,
    actual: &Actual,
) -> Result<(), ErrorCode> {
    let correlation = correlation();
    let grant = pipeline::limit(&gw.state, who, metered, &correlation)
        .await
        .map_err(|err| err.code)?;
    pipeline::settle(&gw.state, grant, actual, &correlation).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_calls_admit_exactly_the_cap() {
    // A `calls` cap of 137, and a `usd` cap of $1.37 at $0.01 a call: each admits exactly 137.
    // Every call is of one running session, so the 95% pause does not stop them.
    for budget in [
        "unit = \"calls\"\nlimit = 137",
        "unit = \"usd\"\nlimit = \"1.37\"",
    ] {
        let gw = gateway(config(&format!(
            "[budgets.prices.tools]\n\"fx.*\" = \"0.01\"\n\
             [[budgets.budgets]]\nid = \"cap\"\nscope = \"global\"\nwindow = \"day\"\ndelay = \"0s\"\n{budget}\n"
        )))
        .await;
        let who = Arc::new(identified(&gw, Some("s1"), None).await);
        let admitted = Arc::new(AtomicUsize::new(0));
        let gw = Arc::new(gw);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let (gw, who, admitted) = (gw.clone(), who.clone(), admitted.clone());
            tasks.spawn(async move {
                match call(&gw, &who, &tool("fx.echo"), &Actual::Tool).await {
                    Ok(()) => {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(code) => assert_eq!(code, ErrorCode::BudgetExceeded),
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 137, "{budget}");
        let calls = usage(&gw, "global", Unit::Calls).await;
        let usd = usage(&gw, "global", Unit::Usd).await;
        let (spent, limit) = if budget.contains("calls") {
            (calls.spent, 137)
        } else {
            (usd.spent, 1_370_000)
        };
        assert_eq!(spent, limit, "committed total is the cap, never past it");
        assert_eq!((calls.reserved, usd.reserved), (0, 0));
        let refused = records(&gw, "budget.refused").await;
        assert_eq!(refused.len(), 1000 - 137);
        assert!(
            refused
                .iter()
                .all(|record| record.reason == "budget_exceeded"
                    && record.decision.as_str() == "deny"
                    && record.data["budgets"][0]["id"] == "cap")
        );
    }
}

#[tokio::test]
async fn refusals_name_budgets_and_percentages_and_settle_records_the_actual() {
    let gw = gateway(config(
        "[budgets.prices.models.\"gpt-4o-mini\"]\ninput_per_1m = \"1\"\noutput_per_1m = \"2\"\n\
         [[budgets.budgets]]\nid = \"user-usd\"\nscope = \"user\"\nunit = \"usd\"\nwindow = \"day\"\nlimit = \"0.01\"\n\
         [[budgets.budgets]]\nid = \"agent-tokens\"\nscope = \"agent\"\nunit = \"tokens\"\nwindow = \"month\"\nlimit = 100000\n",
    ))
    .await;
    let alice = identified(&gw, Some("s1"), Some("alice")).await;
    let correlation = correlation();

    // 1000 in + 2000 out at $1/$2 per 1M: 5,000 micro-USD estimated.
    let grant = pipeline::limit(
        &gw.state,
        &alice,
        &llm("gpt-4o-mini", 1000, 2000),
        &correlation,
    )
    .await
    .unwrap();
    assert!(grant.reservation().is_some());
    assert_eq!(usage(&gw, "user:alice", Unit::Usd).await.reserved, 5_000);
    assert_eq!(
        usage(&gw, "agent:coder", Unit::Tokens).await.reserved,
        3_000
    );
    // The call used more than it estimated: recorded in full, the overage is an event.
    pipeline::settle(
        &gw.state,
        grant,
        &Actual::Llm {
            input_tokens: 3000,
            output_tokens: 2000,
        },
        &correlation,
    )
    .await;
    let spent = usage(&gw, "user:alice", Unit::Usd).await;
    assert_eq!((spent.spent, spent.reserved), (7_000, 0));
    assert_eq!(usage(&gw, "agent:coder", Unit::Tokens).await.spent, 5_000);
    let overage = records(&gw, "budget.overage").await;
    assert_eq!(overage.len(), 1);
    assert_eq!(overage[0].data["holds"][0]["overage"], 2_000);

    // 7,000 spent + 5,000 estimated passes the $0.01 limit: refused, nothing reserved.
    let err = pipeline::limit(
        &gw.state,
        &alice,
        &llm("gpt-4o-mini", 1000, 2000),
        &correlation,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::BudgetExceeded);
    let response = axum::response::IntoResponse::into_response(err);
    assert_eq!(response.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(usage(&gw, "user:alice", Unit::Usd).await.reserved, 0);
    let refused = records(&gw, "budget.refused").await;
    assert_eq!(refused.len(), 1);
    let data = &refused[0].data;
    assert_eq!(refused[0].reason, "budget_exceeded");
    assert_eq!(data["call"], "model");
    assert_eq!(data["budgets"][0]["id"], "user-usd");
    assert_eq!(data["budgets"][0]["percent"], 120);
    assert_eq!(data["budgets"][0]["exceeds"], true);
    assert_eq!(data["budgets"][1]["id"], "agent-tokens");
    assert_eq!(data["budgets"][1]["exceeds"], false);

    // Bob has his own user line; a released grant leaves no spend.
    let bob = identified(&gw, None, Some("bob")).await;
    let grant = pipeline::limit(&gw.state, &bob, &llm("gpt-4o-mini", 10, 10), &correlation)
        .await
        .unwrap();
    pipeline::release(&gw.state, grant, &correlation).await;
    let bob_usd = usage(&gw, "user:bob", Unit::Usd).await;
    assert_eq!((bob_usd.spent, bob_usd.reserved), (0, 0));

    // An unpriced model is refused while a USD budget applies, and fine without one.
    let err = pipeline::limit(&gw.state, &bob, &llm("mystery", 1, 1), &correlation)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BudgetUnpricedModel);
    let anonymous = identified(&gw, None, None).await;
    let grant = pipeline::limit(&gw.state, &anonymous, &llm("mystery", 1, 1), &correlation)
        .await
        .unwrap();
    pipeline::release(&gw.state, grant, &correlation).await;
}

#[tokio::test]
async fn report_mode_refuses_nothing_and_records_each_would_be_refusal() {
    let gw = gateway(config(
        "[budgets]\nmode = \"report\"\n[budgets.prices]\ndeny_unpriced_tools = true\n\
         [budgets.prices.tools]\n\"fx.*\" = \"1\"\n\
         [[budgets.budgets]]\nid = \"cap\"\nscope = \"agent\"\nunit = \"usd\"\nwindow = \"day\"\nlimit = \"2\"\n",
    ))
    .await;
    let who = identified(&gw, None, None).await;
    for _ in 0..3 {
        call(&gw, &who, &tool("fx.echo"), &Actual::Tool)
            .await
            .unwrap();
    }
    call(&gw, &who, &tool("other.tool"), &Actual::Tool)
        .await
        .unwrap();
    assert_eq!(
        usage(&gw, "agent:coder", Unit::Usd).await.spent,
        3_000_000,
        "report mode counts the spend"
    );
    let refused = records(&gw, "budget.refused").await;
    let reasons: Vec<(&str, &str)> = refused
        .iter()
        .map(|record| (record.reason.as_str(), record.decision.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            // The second call reached 100%: the 95% tier paused new sessions of the scope, and a
            // request without a session is a new one.
            ("budget_session_paused", "report"),
            ("budget_exceeded", "report"),
            ("budget_unpriced_tool", "report"),
            ("budget_session_paused", "report"),
            ("budget_exceeded", "report"),
        ]
    );
}

/// A config with one budget `cap` (no throttle delay) in `scope`/`unit`/`window` with `limit`.
fn one_budget(
    head: &str,
    scope: &str,
    unit: &str,
    window: &str,
    limit: &str,
    extra: &str,
) -> Config {
    config(&format!(
        "{head}\n[[budgets.budgets]]\nid = \"cap\"\nscope = \"{scope}\"\nunit = \"{unit}\"\n\
         window = \"{window}\"\nlimit = {limit}\ndelay = \"0s\"\n{extra}\n"
    ))
}

#[tokio::test]
async fn alert_tiers_fire_once_per_window_and_windows_roll_at_local_midnight() {
    // 2026-01-01T00:00Z is 01:00 in Berlin; the next local midnight is 2026-01-01T23:00Z.
    let gw = gateway(one_budget(
        "[budgets]\ntime_zone = \"Europe/Berlin\"",
        "agent",
        "calls",
        "day",
        "20",
        "throttle_at = 100",
    ))
    .await;
    let who = identified(&gw, Some("s1"), None).await;
    let tiers = |records: Vec<LedgerRecord>| -> Vec<(String, String)> {
        records
            .into_iter()
            .map(|r| (r.reason, r.data["window"].as_str().unwrap().to_owned()))
            .collect()
    };
    for _ in 0..20 {
        call(&gw, &who, &tool("t"), &Actual::Tool).await.unwrap();
    }
    assert_eq!(
        call(&gw, &who, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetExceeded)
    );
    let day1 = "day:2026-01-01".to_owned();
    assert_eq!(
        tiers(records(&gw, "budget.alert").await),
        [
            ("info".to_owned(), day1.clone()),
            ("warning".to_owned(), day1.clone()),
            ("critical".to_owned(), day1.clone()),
        ]
    );
    let alert = &records(&gw, "budget.alert").await[0].data;
    assert_eq!(
        (alert["budget"].as_str(), alert["percent"].as_u64()),
        (Some("cap"), Some(70))
    );
    assert_eq!(alert["resets_at"], "2026-01-01T23:00:00Z");

    // One second before local midnight: still the same day.
    gw.clock.set("2026-01-01T22:59:59Z".parse().unwrap());
    assert_eq!(
        call(&gw, &who, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetExceeded)
    );
    // At local midnight the window rolls: room again, and each tier fires again once.
    gw.clock.set("2026-01-01T23:00:00Z".parse().unwrap());
    for _ in 0..20 {
        call(&gw, &who, &tool("t"), &Actual::Tool).await.unwrap();
    }
    let day2 = "day:2026-01-02".to_owned();
    assert_eq!(
        tiers(records(&gw, "budget.alert").await),
        [
            ("info".to_owned(), day1.clone()),
            ("warning".to_owned(), day1.clone()),
            ("critical".to_owned(), day1),
            ("info".to_owned(), day2.clone()),
            ("warning".to_owned(), day2.clone()),
            ("critical".to_owned(), day2),
        ]
    );

    // A budget added on an account with spend counts that spend at once: the month holds 40.
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/budgets",
            Some(
                r#"{"id":"monthly","scope":"agent","unit":"calls","window":"month","limit":50,"delay":"0s","throttle_at":100}"#,
            ),
            &[],
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::CREATED);
    let (_, view) = gw.admin("GET", "/admin/budgets", None, &[]).await;
    let line = |key: &str| {
        view["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|line| line["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no line {key} in {view}"))
    };
    let monthly = line("monthly@agent:coder");
    assert_eq!(
        (monthly["spent"].as_u64(), monthly["percent"].as_u64()),
        (Some(40), Some(80))
    );
    assert_eq!(monthly["resets_at"], "2026-01-31T23:00:00Z");
    let daily = line("cap@agent:coder");
    assert_eq!(
        (daily["spent"].as_u64(), daily["limit"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(daily["resets_at"], "2026-01-02T23:00:00Z");
    assert_eq!(
        call(&gw, &who, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetExceeded),
        "the daily cap still binds"
    );
    let metrics = crate::http::app(gw.state.clone());
    let response = tower::ServiceExt::oneshot(
        metrics,
        axum::http::Request::builder()
            .uri("/metrics")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    let gauge = |name: &str, budget: &str| -> Option<String> {
        text.lines()
            .find(|line| {
                line.starts_with(&format!("{name}{{"))
                    && line.contains(&format!("budget=\"{budget}\""))
                    && line.contains("scope=\"agent\"")
                    && line.contains("unit=\"calls\"")
            })
            .and_then(|line| line.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert!(
        !text.contains("account=") && !text.contains("coder"),
        "metrics carry no scope values: {text}"
    );
    assert_eq!(
        gauge("portcullis_budget_spent", "monthly").as_deref(),
        Some("40"),
        "{text}"
    );
    assert_eq!(
        gauge("portcullis_budget_limit", "cap").as_deref(),
        Some("20"),
        "{text}"
    );
    assert_eq!(
        gauge("portcullis_budget_reserved", "cap").as_deref(),
        Some("0"),
        "{text}"
    );
}

/// Issue 17.7: a burst of reservations paused a shared budget for the rest of the month at 44%
/// actual spend. Alerts and the 95% pause count settled spend only.
#[tokio::test]
async fn regression_17_7_a_burst_of_reservations_never_pauses_the_line() {
    let gw = gateway(one_budget(
        "",
        "global",
        "calls",
        "day",
        "20",
        "throttle_at = 100",
    ))
    .await;
    let burst = identified(&gw, Some("s1"), None).await;
    let mut grants = Vec::new();
    for _ in 0..19 {
        grants.push(
            pipeline::limit(&gw.state, &burst, &tool("t"), &correlation())
                .await
                .unwrap(),
        );
    }
    // 95% held, nothing settled: no alert, no pause; a new session is admitted.
    let newcomer = identified(&gw, Some("s2"), None).await;
    let last = pipeline::limit(&gw.state, &newcomer, &tool("t"), &correlation())
        .await
        .unwrap();
    // The call that would pass the limit is refused by its reservation, and nothing pauses.
    assert_eq!(
        call(&gw, &newcomer, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetExceeded)
    );
    assert!(records(&gw, "budget.alert").await.is_empty());
    assert!(records(&gw, "budget.paused").await.is_empty());
    // The burst's calls fail and release their holds; 9 settle (45% spent): info tier at most.
    pipeline::release(&gw.state, last, &correlation()).await;
    for (n, grant) in grants.into_iter().enumerate() {
        if n < 9 {
            pipeline::settle(&gw.state, grant, &Actual::Tool, &correlation()).await;
        } else {
            pipeline::release(&gw.state, grant, &correlation()).await;
        }
    }
    assert!(records(&gw, "budget.alert").await.is_empty());
    assert!(records(&gw, "budget.paused").await.is_empty());
    let third = identified(&gw, Some("s3"), None).await;
    call(&gw, &third, &tool("t"), &Actual::Tool).await.unwrap();
    assert_eq!(usage(&gw, "global", Unit::Calls).await.spent, 10);
    // Settled spend at 95% pauses new sessions, as before.
    for _ in 0..9 {
        call(&gw, &third, &tool("t"), &Actual::Tool).await.unwrap();
    }
    assert_eq!(records(&gw, "budget.paused").await.len(), 1);
}

#[tokio::test]
async fn pause_blocks_new_sessions_and_lets_running_sessions_finish() {
    let gw = gateway(one_budget(
        "",
        "global",
        "calls",
        "day",
        "20",
        "throttle_at = 100",
    ))
    .await;
    let running = identified(&gw, Some("s1"), None).await;
    for _ in 0..19 {
        call(&gw, &running, &tool("t"), &Actual::Tool)
            .await
            .unwrap();
    }
    // 95% reached: new sessions, and requests without one, wait; s1 goes on.
    let newcomer = identified(&gw, Some("s2"), None).await;
    assert_eq!(
        call(&gw, &newcomer, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetPaused)
    );
    let anonymous = identified(&gw, None, None).await;
    assert_eq!(
        call(&gw, &anonymous, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetPaused)
    );
    let err = pipeline::limit(&gw.state, &newcomer, &tool("t"), &correlation())
        .await
        .unwrap_err();
    let response = axum::response::IntoResponse::into_response(err);
    assert_eq!(response.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
    call(&gw, &running, &tool("t"), &Actual::Tool)
        .await
        .unwrap();
    let paused = records(&gw, "budget.paused").await;
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].data["until"], "2026-01-02T00:00:00Z");

    // The admin view shows the pause; lifting it lets new sessions in (to a full budget here).
    let (_, view) = gw.admin("GET", "/admin/budgets", None, &[]).await;
    assert_eq!(view["lines"][0]["key"], "cap@global");
    assert_eq!(view["lines"][0]["paused"], true);
    assert_eq!(view["lines"][0]["paused_until"], "2026-01-02T00:00:00Z");
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/budgets/unpause",
            Some(r#"{"key":"cap@global"}"#),
            &[],
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/budgets/unpause",
            Some(r#"{"key":"cap@global"}"#),
            &[],
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::NOT_FOUND);
    assert_eq!(
        call(&gw, &newcomer, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetExceeded)
    );
    assert_eq!(records(&gw, "budget.unpaused").await.len(), 1);
}

#[tokio::test]
async fn downgrade_switches_the_model_and_approve_refuses() {
    let prices = "[budgets.prices.models]\n\"gpt-4o\" = { input_per_1m = \"10\", output_per_1m = \"10\" }\n\
                  \"gpt-4o-mini\" = { input_per_1m = \"1\", output_per_1m = \"1\" }";
    let gw = gateway(one_budget(
        prices,
        "user",
        "usd",
        "day",
        "\"0.01\"",
        "throttle_at = 50\nthrottle_action = \"downgrade\"\ndowngrade_to = \"gpt-4o-mini\"",
    ))
    .await;
    let alice = identified(&gw, None, Some("alice")).await;
    let correlation = correlation();
    // 200 tokens at $10/1M: 2,000 micro-USD of 10,000 (20%): the model asked for.
    let grant = pipeline::limit(&gw.state, &alice, &llm("gpt-4o", 100, 100), &correlation)
        .await
        .unwrap();
    assert_eq!((grant.model(), grant.downgraded()), (Some("gpt-4o"), false));
    pipeline::settle(
        &gw.state,
        grant,
        &Actual::Llm {
            input_tokens: 200,
            output_tokens: 200,
        },
        &correlation,
    )
    .await;
    // 4,000 spent + 2,000 estimated = 60%: past throttle_at, downgraded.
    let grant = pipeline::limit(&gw.state, &alice, &llm("gpt-4o", 100, 100), &correlation)
        .await
        .unwrap();
    assert_eq!(
        (grant.model(), grant.downgraded()),
        (Some("gpt-4o-mini"), true)
    );
    // Settled at the price of the model actually called: 200 tokens at $1/1M.
    pipeline::settle(
        &gw.state,
        grant,
        &Actual::Llm {
            input_tokens: 100,
            output_tokens: 100,
        },
        &correlation,
    )
    .await;
    assert_eq!(usage(&gw, "user:alice", Unit::Usd).await.spent, 4_200);
    let throttled = records(&gw, "budget.throttled").await;
    assert_eq!(throttled.len(), 1);
    assert_eq!(throttled[0].data["downgrade_to"], "gpt-4o-mini");
    assert_eq!(throttled[0].data["budgets"][0]["action"], "downgrade");

    // `approve` refuses until an approval stage exists, and leaves nothing reserved.
    let gw = gateway(one_budget(
        "",
        "agent",
        "calls",
        "day",
        "10",
        "throttle_at = 20\nthrottle_action = \"approve\"",
    ))
    .await;
    let who = identified(&gw, None, None).await;
    call(&gw, &who, &tool("t"), &Actual::Tool).await.unwrap();
    assert_eq!(
        call(&gw, &who, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::ApprovalRequired)
    );
    let calls = usage(&gw, "agent:coder", Unit::Calls).await;
    assert_eq!((calls.spent, calls.reserved), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn delay_waits_the_configured_time() {
    let gw = gateway(config(
        "[[budgets.budgets]]\nid = \"cap\"\nscope = \"agent\"\nunit = \"calls\"\nwindow = \"day\"\n\
         limit = 10\nthrottle_at = 50\nthrottle_action = \"delay\"\ndelay = \"30s\"\n",
    ))
    .await;
    let who = identified(&gw, None, None).await;
    let mut waits = Vec::new();
    for _ in 0..6 {
        let started = tokio::time::Instant::now();
        call(&gw, &who, &tool("t"), &Actual::Tool).await.unwrap();
        waits.push(started.elapsed().as_secs());
    }
    // Calls 5 and 6 reach 50%.
    assert_eq!(waits, [0, 0, 0, 0, 30, 30]);
}

#[tokio::test]
async fn admin_budgets_validate_persist_and_remove() {
    let gw = gateway(config("")).await;
    let (_, view) = gw.admin("GET", "/admin/budgets", None, &[]).await;
    let ids: Vec<&str> = view["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["session", "user-daily", "global-monthly"]);
    assert_eq!(view["mode"], "enforce");
    assert_eq!(view["lines"][0]["key"], "global-monthly@global");
    assert_eq!(view["lines"][0]["limit_usd"], "120.00");

    for bad in [
        r#"{"id":"x","scope":"user","unit":"usd","window":"lifetime","limit":"1"}"#,
        r#"{"id":"x y","scope":"user","unit":"usd","window":"day","limit":"1"}"#,
        r#"{"id":"x","scope":"user","unit":"usd","window":"day","limit":5}"#,
        r#"{"id":"x","scope":"user","unit":"calls","window":"day","limit":5,"throttle_action":"downgrade"}"#,
        r#"{"id":"x","scope":"user","unit":"calls","window":"day","limit":5,"extra":1}"#,
        r#"{"id":"x","scope":"planet","unit":"calls","window":"day","limit":5}"#,
    ] {
        let (status, body) = gw.admin("POST", "/admin/budgets", Some(bad), &[]).await;
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
    let (status, _) = gw
        .admin(
            "POST",
            "/admin/budgets",
            Some(r#"{"id":"bot","scope":"agent","subject":"coder","unit":"calls","window":"rolling_30d","limit":"3"}"#),
            &[],
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::CREATED);
    let (status, _) = gw
        .admin("DELETE", "/admin/budgets/user-daily", None, &[])
        .await;
    assert_eq!(status, axum::http::StatusCode::NO_CONTENT);
    let (status, _) = gw
        .admin("DELETE", "/admin/budgets/user-daily", None, &[])
        .await;
    assert_eq!(status, axum::http::StatusCode::NOT_FOUND);
    let kinds = gw.ledger_kinds().await;
    assert!(
        kinds.contains(&"budget.put".to_owned()) && kinds.contains(&"budget.deleted".to_owned())
    );

    // Both changes survive a restart on the same data dir.
    let TestGateway {
        state, dir, store, ..
    } = gw;
    let config = Config::clone(&state.config);
    drop((state, store));
    let gw = crate::testing::gateway_in(config, dir).await;
    let ids: Vec<String> = gw
        .state
        .guardrails
        .budgets
        .plan()
        .budgets
        .iter()
        .map(|b| b.id.clone())
        .collect();
    assert_eq!(ids, ["session", "global-monthly", "bot"]);
    // One running session, so the 95% pause of `bot` does not hide its hard stop.
    let who = identified(&gw, Some("s9"), None).await;
    for _ in 0..3 {
        call(&gw, &who, &tool("t"), &Actual::Tool).await.unwrap();
    }
    assert_eq!(
        call(&gw, &who, &tool("t"), &Actual::Tool).await,
        Err(ErrorCode::BudgetExceeded)
    );
}

#[tokio::test]
async fn expired_reservations_are_released_with_an_event_and_a_late_settle_is_charged() {
    let gw = gateway(one_budget(
        "[budgets]\nreservation_ttl = \"1m\"",
        "agent",
        "calls",
        "day",
        "10",
        "",
    ))
    .await;
    let who = identified(&gw, None, None).await;
    let correlation = correlation();
    let lost = pipeline::limit(&gw.state, &who, &tool("t"), &correlation)
        .await
        .unwrap();
    let late = pipeline::limit(&gw.state, &who, &tool("t"), &correlation)
        .await
        .unwrap();
    assert_eq!(usage(&gw, "agent:coder", Unit::Calls).await.reserved, 2);
    assert_eq!(pipeline::release_expired(&gw.state).await.unwrap(), 0);
    gw.clock.advance(jiff::SignedDuration::from_secs(60));
    assert_eq!(pipeline::release_expired(&gw.state).await.unwrap(), 2);
    let expired = records(&gw, "budget.expired").await;
    assert_eq!(expired.len(), 2);
    assert_eq!(expired[0].data["holds"][0]["account"], "agent:coder");
    // A settle after expiry still records the spend; a release after expiry is a no-op.
    pipeline::settle(&gw.state, late, &Actual::Tool, &correlation).await;
    pipeline::release(&gw.state, lost, &correlation).await;
    let calls = usage(&gw, "agent:coder", Unit::Calls).await;
    assert_eq!((calls.spent, calls.reserved), (1, 0));
    assert_eq!(records(&gw, "budget.settled_late").await.len(), 1);
}
