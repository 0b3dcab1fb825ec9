//! Budget reservations on the SQLite store: zero overshoot under concurrency, settle and
//! overage, expiry across restarts, alert tiers per window, zone midnights, added budgets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use portcullis_budget::threshold::{self, AlertTier};
use portcullis_budget::{
    Amounts, BudgetDef, BudgetMode, BudgetPlan, BudgetsConfig, Meter, ReserveOutcome, Scope,
    ScopeLine, Unit, Window,
};
use portcullis_core::{MicroUsd, Subject};
use portcullis_store::{SqliteOptions, SqliteStore, Store, StoreError};
use portcullis_test_support::ManualClock;

fn open(dir: &Path) -> SqliteStore {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    SqliteStore::open(dir, SqliteOptions::new(clock)).unwrap()
}

fn plan(zone: &str, budgets: Vec<BudgetDef>) -> BudgetPlan {
    BudgetsConfig {
        time_zone: zone.to_owned(),
        budgets,
        ..BudgetsConfig::default()
    }
    .compile()
    .unwrap()
}

fn subject(user: &str) -> Subject {
    Subject {
        agent: "bot".to_owned(),
        user: Some(user.to_owned()),
        ..Subject::default()
    }
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn usd(micros: u64) -> Amounts {
    Amounts {
        usd: MicroUsd(micros),
        tokens: 0,
        calls: 1,
    }
}

fn meters(lines: &[ScopeLine]) -> Vec<Meter> {
    lines.iter().map(ScopeLine::meter).collect()
}

fn user_daily(limit: &str) -> BudgetDef {
    BudgetDef::new("user-daily", Scope::User, Unit::Usd, Window::Day, limit)
}

const NOW: &str = "2026-03-08T12:00:00Z";

/// Marks every tier `used` reached; returns the ones that fired for the first time.
async fn fire(store: &SqliteStore, line: &ScopeLine, used: u64) -> Vec<AlertTier> {
    let mut fired = Vec::new();
    for tier in threshold::tiers_reached(line.limit, used) {
        if store
            .budget_mark_alert(&line.key, &line.window.key, tier)
            .await
            .unwrap()
        {
            fired.push(tier);
        }
    }
    fired
}

/// 1,000 concurrent reservations against a cap that admits exactly `N`: exactly `N` succeed,
/// and the committed total never passes the cap, before and after settling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_admit_exactly_n_with_zero_overshoot() {
    const N: u64 = 137;
    const ESTIMATE: u64 = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(open(tmp.path()));
    // Cap: N estimates and a bit, so the (N+1)th never fits.
    let cap = format!("{}", (N * ESTIMATE + ESTIMATE - 1) as f64 / 1e6);
    let plan = plan(
        "UTC",
        vec![
            user_daily(&cap),
            BudgetDef::new(
                "global",
                Scope::Global,
                Unit::Calls,
                Window::Month,
                "100000",
            ),
        ],
    );
    let lines = plan.applicable(&subject("alice"), ts(NOW)).unwrap();
    let cap_micros = lines[0].limit;
    assert_eq!(cap_micros, N * ESTIMATE + ESTIMATE - 1);
    let meters = meters(&lines);
    let expires = ts(NOW) + SignedDuration::from_mins(15);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (store, meters) = (Arc::clone(&store), meters.clone());
        tasks.spawn(async move {
            store
                .budget_reserve(meters, usd(ESTIMATE), expires, BudgetMode::Enforce)
                .await
                .unwrap()
        });
    }
    let outcomes = tasks.join_all().await;
    let ids: Vec<_> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            ReserveOutcome::Reserved { id, lines } => {
                assert!(lines.iter().all(|line| !line.exceeds()));
                Some(*id)
            }
            ReserveOutcome::Exceeded { .. } => None,
        })
        .collect();
    assert_eq!(ids.len() as u64, N);
    let usage = store.budget_usage(meters.clone()).await.unwrap();
    assert_eq!(usage[0].used_before(), N * ESTIMATE);
    assert!(usage[0].used_before() <= cap_micros);
    assert_eq!(usage[1].reserved, N, "one call held per reservation");

    // Settle half low (actual below the estimate): their difference becomes room again.
    let (low, high) = ids.split_at(ids.len() / 2);
    let mut tasks = tokio::task::JoinSet::new();
    for id in low.iter().copied() {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.budget_settle(id, usd(ESTIMATE / 2)).await.unwrap() });
    }
    let settled = tasks.join_all().await;
    assert!(
        settled
            .iter()
            .all(|s| s.holds.iter().all(|h| h.overage() == 0))
    );
    let usage = store.budget_usage(meters.clone()).await.unwrap();
    let room = cap_micros - usage[0].used_before();
    assert_eq!(
        room,
        cap_micros - N * ESTIMATE + low.len() as u64 * ESTIMATE / 2
    );

    // Another 1,000 race for the room: exactly floor(room / estimate) get in.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (store, meters) = (Arc::clone(&store), meters.clone());
        tasks.spawn(async move {
            store
                .budget_reserve(meters, usd(ESTIMATE), expires, BudgetMode::Enforce)
                .await
                .unwrap()
        });
    }
    let second: Vec<_> = tasks
        .join_all()
        .await
        .into_iter()
        .filter_map(|outcome| match outcome {
            ReserveOutcome::Reserved { id, .. } => Some(id),
            ReserveOutcome::Exceeded { .. } => None,
        })
        .collect();
    assert_eq!(second.len() as u64, room / ESTIMATE);
    let usage = store.budget_usage(meters.clone()).await.unwrap();
    assert!(usage[0].used_before() <= cap_micros, "zero overshoot");

    // Settle the rest high: the actual is recorded in full and the overage reported.
    let mut overage = 0;
    for id in high.iter().chain(&second).copied() {
        let settled = store.budget_settle(id, usd(ESTIMATE + 7)).await.unwrap();
        overage += settled.holds[0].overage();
    }
    assert_eq!(overage, 7 * (high.len() + second.len()) as u64);
    let usage = store.budget_usage(meters.clone()).await.unwrap();
    assert_eq!(usage[0].reserved, 0);
    assert_eq!(
        usage[0].spent,
        low.len() as u64 * ESTIMATE / 2 + (high.len() + second.len()) as u64 * (ESTIMATE + 7)
    );
    // Over the cap by the reported overage at most; no further estimate fits.
    assert!(usage[0].spent <= cap_micros + overage);
    let refused = store
        .budget_reserve(meters.clone(), usd(ESTIMATE), expires, BudgetMode::Enforce)
        .await
        .unwrap();
    assert!(matches!(refused, ReserveOutcome::Exceeded { .. }));
    assert!(matches!(
        store.budget_settle(ids[0], usd(1)).await,
        Err(StoreError::NotFound)
    ));

    // The same totals after a restart.
    drop(Arc::into_inner(store).unwrap());
    let store = open(tmp.path());
    assert_eq!(store.budget_usage(meters).await.unwrap(), usage);
}

#[tokio::test]
async fn reservations_survive_a_restart_until_they_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan("UTC", vec![user_daily("1.00")]);
    let lines = plan.applicable(&subject("alice"), ts(NOW)).unwrap();
    let expires = ts(NOW) + SignedDuration::from_mins(15);
    let (kept, settled) = {
        let store = open(tmp.path());
        let reserve = |amount| {
            store.budget_reserve(meters(&lines), usd(amount), expires, BudgetMode::Enforce)
        };
        let ReserveOutcome::Reserved { id: kept, .. } = reserve(300_000).await.unwrap() else {
            panic!()
        };
        let ReserveOutcome::Reserved { id: settled, .. } = reserve(200_000).await.unwrap() else {
            panic!()
        };
        store.budget_settle(settled, usd(250_000)).await.unwrap();
        (kept, settled)
    };
    let store = open(tmp.path());
    let usage = &store.budget_usage(meters(&lines)).await.unwrap()[0];
    assert_eq!((usage.spent, usage.reserved), (250_000, 300_000));
    // Ids of a new run never collide with the old run's.
    let ReserveOutcome::Reserved { id: fresh, .. } = store
        .budget_reserve(meters(&lines), usd(1), expires, BudgetMode::Enforce)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(fresh != kept && fresh != settled);
    store.budget_release(fresh).await.unwrap();
    assert!(
        store
            .budget_release_expired(expires - SignedDuration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    let released = store.budget_release_expired(expires).await.unwrap();
    assert_eq!(released.iter().map(|r| r.id).collect::<Vec<_>>(), [kept]);
    drop(store);
    let store = open(tmp.path());
    let usage = &store.budget_usage(meters(&lines)).await.unwrap()[0];
    assert_eq!((usage.spent, usage.reserved), (250_000, 0));
    assert!(store.budget_reservations().await.unwrap().is_empty());
}

/// Each tier fires once per key per window (also across a restart), and again in the next
/// window, which starts at the zone's midnight.
#[tokio::test]
async fn alert_tiers_fire_once_per_window_and_windows_roll_at_local_midnight() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan("Europe/Berlin", vec![user_daily("1.00")]);
    // 22:30Z is 23:30 in Berlin: still 2026-03-08 there.
    let before_midnight = ts("2026-03-08T22:30:00Z");
    let after_midnight = ts("2026-03-08T23:00:00Z");
    let expires = after_midnight + SignedDuration::from_hours(1);

    {
        let store = open(tmp.path());
        let lines = plan.applicable(&subject("alice"), before_midnight).unwrap();
        assert_eq!(lines[0].window.key, "day:2026-03-08");
        assert_eq!(lines[0].window.resets_at, Some(after_midnight));
        let ReserveOutcome::Reserved { id, lines: usage } = store
            .budget_reserve(meters(&lines), usd(900_000), expires, BudgetMode::Enforce)
            .await
            .unwrap()
        else {
            panic!()
        };
        let assessment = usage[0].assess(lines[0].throttle_at);
        assert_eq!(assessment.crossed, [AlertTier::Info, AlertTier::Warning]);
        assert!(assessment.throttle && !assessment.pause);
        assert_eq!(
            fire(&store, &lines[0], usage[0].used_after()).await,
            [AlertTier::Info, AlertTier::Warning]
        );
        assert!(
            fire(&store, &lines[0], usage[0].used_after())
                .await
                .is_empty()
        );
        store.budget_settle(id, usd(960_000)).await.unwrap();
        assert_eq!(
            fire(&store, &lines[0], 960_000).await,
            [AlertTier::Critical]
        );
    }
    let store = open(tmp.path());
    let lines = plan.applicable(&subject("alice"), before_midnight).unwrap();
    assert!(
        fire(&store, &lines[0], 960_000).await.is_empty(),
        "fired before the restart"
    );
    // Local midnight: a new day window, nothing spent in it, tiers fire again.
    let lines = plan.applicable(&subject("alice"), after_midnight).unwrap();
    assert_eq!(lines[0].window.key, "day:2026-03-09");
    let usage = &store.budget_usage(meters(&lines)).await.unwrap()[0];
    assert_eq!(usage.spent, 0);
    let ReserveOutcome::Reserved { id, .. } = store
        .budget_reserve(meters(&lines), usd(710_000), expires, BudgetMode::Enforce)
        .await
        .unwrap()
    else {
        panic!("a new day admits again")
    };
    store.budget_settle(id, usd(710_000)).await.unwrap();
    assert_eq!(fire(&store, &lines[0], 710_000).await, [AlertTier::Info]);
}

/// Spend is recorded per account and unit, so a budget added later counts what the account
/// already spent in its window.
#[tokio::test]
async fn a_budget_added_later_counts_existing_spend() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let expires = ts(NOW) + SignedDuration::from_mins(15);
    let daily = plan("UTC", vec![user_daily("5.00")]);
    for day in ["2026-03-02T10:00:00Z", "2026-03-08T10:00:00Z"] {
        let lines = daily.applicable(&subject("alice"), ts(day)).unwrap();
        store
            .budget_charge(meters(&lines), usd(2_000_000))
            .await
            .unwrap();
    }
    // Added later: a monthly user budget and a fixed one for alice, beside the daily one.
    let mut alice = BudgetDef::new("alice-month", Scope::User, Unit::Usd, Window::Month, "4.50");
    alice.subject = Some("alice".to_owned());
    let later = plan(
        "UTC",
        vec![
            user_daily("5.00"),
            BudgetDef::new("user-month", Scope::User, Unit::Usd, Window::Month, "100"),
            alice,
        ],
    );
    let lines = later.applicable(&subject("alice"), ts(NOW)).unwrap();
    let usage = store.budget_usage(meters(&lines)).await.unwrap();
    assert_eq!(
        usage.iter().map(|line| line.spent).collect::<Vec<_>>(),
        [2_000_000, 4_000_000, 4_000_000]
    );
    // The new fixed budget refuses what the old daily one alone would admit.
    let outcome = store
        .budget_reserve(meters(&lines), usd(600_000), expires, BudgetMode::Enforce)
        .await
        .unwrap();
    let ReserveOutcome::Exceeded { lines: refused } = outcome else {
        panic!("alice's monthly budget is spent")
    };
    assert_eq!(
        refused
            .iter()
            .map(|line| line.exceeds())
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    // Nothing changed by the refusal; report mode admits it and says it is over.
    assert_eq!(store.budget_usage(meters(&lines)).await.unwrap(), usage);
    let ReserveOutcome::Reserved {
        lines: reported, ..
    } = store
        .budget_reserve(meters(&lines), usd(600_000), expires, BudgetMode::Report)
        .await
        .unwrap()
    else {
        panic!("report mode never refuses")
    };
    assert!(reported[2].exceeds());
    let accounts = store.budget_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        (
            accounts[0].account.as_str(),
            accounts[0].total,
            accounts[0].reserved
        ),
        ("user:alice", 4_000_000, 600_000)
    );
}

#[tokio::test]
async fn pauses_persist_until_lifted() {
    let tmp = tempfile::tempdir().unwrap();
    let reset = ts("2026-03-09T00:00:00Z");
    {
        let store = open(tmp.path());
        store
            .budget_pause("user-daily@user:alice", Some(reset))
            .await
            .unwrap();
        store
            .budget_pause("global-monthly@global", None)
            .await
            .unwrap();
    }
    let store = open(tmp.path());
    assert!(
        store
            .budget_is_paused("user-daily@user:alice", ts(NOW))
            .await
            .unwrap()
    );
    assert!(
        !store
            .budget_is_paused("user-daily@user:alice", reset)
            .await
            .unwrap()
    );
    assert!(store.budget_unpause("global-monthly@global").await.unwrap());
    assert!(!store.budget_unpause("global-monthly@global").await.unwrap());
    drop(store);
    let store = open(tmp.path());
    assert_eq!(
        store.budget_pauses().await.unwrap(),
        [("user-daily@user:alice".to_owned(), Some(reset))]
    );
}
