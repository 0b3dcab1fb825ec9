//! SIGKILL with budget reservations in flight: after reopening, nothing settled is lost, every
//! acknowledged reservation is back, and none outlives its expiry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use portcullis_budget::{
    Amounts, BudgetDef, BudgetMode, BudgetsConfig, Meter, ReserveOutcome, Scope, Unit, Window,
};
use portcullis_core::{MicroUsd, Subject};
use portcullis_store::{SqliteOptions, SqliteStore, Store};
use portcullis_test_support::ManualClock;

/// Set to a data dir, it makes `budget_sigkill_child_role` the reserving child.
const CHILD_ENV: &str = "PORTCULLIS_BUDGET_SIGKILL_CHILD_DIR";
const N_REQUESTS: u64 = 20_000;
const KILL_AFTER: usize = 3_000;
const RESERVED: u64 = 100;
const ACTUAL: u64 = 150;

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn expires() -> Timestamp {
    now() + SignedDuration::from_mins(15)
}

fn meters() -> Vec<Meter> {
    let plan = BudgetsConfig {
        budgets: vec![BudgetDef::new(
            "user-daily",
            Scope::User,
            Unit::Usd,
            Window::Day,
            "1000000",
        )],
        ..BudgetsConfig::default()
    }
    .compile()
    .unwrap();
    let subject = Subject {
        agent: "bot".to_owned(),
        user: Some("alice".to_owned()),
        ..Subject::default()
    };
    plan.applicable(&subject, now())
        .unwrap()
        .iter()
        .map(|line| line.meter())
        .collect()
}

fn usd(micros: u64) -> Amounts {
    Amounts {
        usd: MicroUsd(micros),
        tokens: 0,
        calls: 1,
    }
}

fn open(dir: &std::path::Path) -> SqliteStore {
    let clock = Arc::new(ManualClock::new(now()));
    SqliteStore::open(dir, SqliteOptions::new(clock)).unwrap()
}

/// The child: 20,000 concurrent requests; each reserves (`reserved ID end` once committed) and
/// the even ones settle above the estimate (`settled ID end`); the odd ones stay live. Without
/// the environment variable (an ordinary test run) it does nothing.
#[test]
fn budget_sigkill_child_role() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(open(dir.as_ref()));
        let meters = meters();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 1..=N_REQUESTS {
            let (store, meters) = (Arc::clone(&store), meters.clone());
            tasks.spawn(async move {
                let outcome = store
                    .budget_reserve(meters, usd(RESERVED), expires(), BudgetMode::Enforce)
                    .await
                    .unwrap();
                let ReserveOutcome::Reserved { id, .. } = outcome else {
                    panic!("the cap is far away")
                };
                println!("reserved {} {} end", id.0, n % 2);
                if n % 2 == 0 {
                    store.budget_settle(id, usd(ACTUAL)).await.unwrap();
                    println!("settled {} end", id.0);
                }
            });
        }
        tasks.join_all().await;
    });
}

#[tokio::test]
async fn sigkill_with_reservations_in_flight_loses_nothing_settled() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "budget_sigkill_child_role",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut live_acked: HashSet<u64> = HashSet::new();
    let mut even_acked: HashSet<u64> = HashSet::new();
    let mut settled_acked: HashSet<u64> = HashSet::new();
    let mut killed_at = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // A line cut by the kill lacks its `end` marker and is not counted.
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["reserved", id, "1", "end"] => {
                live_acked.insert(id.parse().unwrap());
            }
            ["reserved", id, "0", "end"] => {
                even_acked.insert(id.parse().unwrap());
            }
            ["settled", id, "end"] => {
                settled_acked.insert(id.parse().unwrap());
            }
            _ => {}
        }
        if settled_acked.len() >= KILL_AFTER && killed_at.is_none() {
            // SIGKILL; it fails only when the child already exited on its own.
            let _ = child.kill();
            killed_at = Some(settled_acked.len());
        }
    }
    let status = child.wait().unwrap();
    println!(
        "child exit {status}; killed after {killed_at:?} settles; acked {} live, {} settled",
        live_acked.len(),
        settled_acked.len()
    );
    assert!(settled_acked.len() >= KILL_AFTER);

    let store = open(tmp.path());
    let live: HashSet<u64> = store
        .budget_reservations()
        .await
        .unwrap()
        .iter()
        .map(|reservation| {
            assert_eq!(reservation.expires_at, expires());
            reservation.id.0
        })
        .collect();
    // Every acknowledged reservation that was never to be settled is back.
    assert!(
        live_acked.is_subset(&live),
        "an acknowledged reservation was lost"
    );
    // Every acknowledged settle is recorded: its reservation is gone and its spend counted.
    assert!(settled_acked.is_disjoint(&live));
    let usage = &store.budget_usage(meters()).await.unwrap()[0];
    assert_eq!(usage.reserved, RESERVED * live.len() as u64);
    assert_eq!(usage.spent % ACTUAL, 0);
    let n_settled = usage.spent / ACTUAL;
    assert!(
        n_settled >= settled_acked.len() as u64,
        "settled spend lost"
    );
    // Even reservations acknowledged but not live were settled (and counted).
    let even_gone = even_acked.difference(&live).count() as u64;
    assert!(n_settled >= even_gone);

    // No reservation outlives its expiry.
    let early = store
        .budget_release_expired(expires() - SignedDuration::from_secs(1))
        .await
        .unwrap();
    assert!(early.is_empty());
    let released = store.budget_release_expired(expires()).await.unwrap();
    assert_eq!(released.len(), live.len());
    assert!(store.budget_reservations().await.unwrap().is_empty());
    drop(store);
    let store = open(tmp.path());
    assert!(store.budget_reservations().await.unwrap().is_empty());
    let after = &store.budget_usage(meters()).await.unwrap()[0];
    assert_eq!((after.spent, after.reserved), (usage.spent, 0));
}
