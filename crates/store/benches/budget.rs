//! Budget reservations on the SQLite store under 64 concurrent callers, beside the naive
//! check-then-spend path (read usage, compare, then add) measured in the same run:
//! (a) throughput and per-pair latency (p50/p99) of reserve + settle vs usage + charge;
//! (b) overshoot: both paths race for a cap that admits exactly 1,000 requests.
//!
//! Run: `cargo bench -p portcullis-store --bench budget`
#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "a benchmark binary: setup fails loudly, reports on stdout, and reads the wall clock"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use portcullis_budget::{
    Amounts, BudgetDef, BudgetMode, BudgetsConfig, Meter, ReserveOutcome, Scope, Unit, Window,
};
use portcullis_core::{MicroUsd, Subject, SystemClock};
use portcullis_store::{SqliteOptions, SqliteStore, Store};

const CALLERS: usize = 64;
const PAIRS_PER_CALLER: usize = 200;
const ROUNDS: usize = 5;
const ESTIMATE: u64 = 10_000;
const CAP_REQUESTS: u64 = 1_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// reserve (atomic check) then settle.
    Reserve,
    /// read usage, compare, then charge: the naive baseline.
    Naive,
}

/// The meters of caller `idx`: its own session, one of 8 users, the global account.
fn meters(global_limit: &str, idx: usize, now: Timestamp) -> Vec<Meter> {
    let plan = BudgetsConfig {
        budgets: vec![
            BudgetDef::new(
                "session",
                Scope::Session,
                Unit::Usd,
                Window::Lifetime,
                "1000",
            ),
            BudgetDef::new("user-daily", Scope::User, Unit::Usd, Window::Day, "100000"),
            BudgetDef::new(
                "global",
                Scope::Global,
                Unit::Usd,
                Window::Month,
                global_limit,
            ),
        ],
        ..BudgetsConfig::default()
    }
    .compile()
    .unwrap();
    let subject = Subject {
        agent: "bench".to_owned(),
        user: Some(format!("user-{}", idx % 8)),
        session: Some(format!("session-{idx}")),
        ..Subject::default()
    };
    plan.applicable(&subject, now)
        .unwrap()
        .iter()
        .map(|line| line.meter())
        .collect()
}

fn amounts(micros: u64) -> Amounts {
    Amounts {
        usd: MicroUsd(micros),
        tokens: 0,
        calls: 1,
    }
}

/// One request on `path`: `true` when admitted.
async fn request(store: &SqliteStore, path: Path, meters: &[Meter], expires: Timestamp) -> bool {
    match path {
        Path::Reserve => {
            let outcome = store
                .budget_reserve(
                    meters.to_vec(),
                    amounts(ESTIMATE),
                    expires,
                    BudgetMode::Enforce,
                )
                .await
                .unwrap();
            match outcome {
                ReserveOutcome::Reserved { id, .. } => {
                    store.budget_settle(id, amounts(ESTIMATE)).await.unwrap();
                    true
                }
                ReserveOutcome::Exceeded { .. } => false,
            }
        }
        Path::Naive => {
            let usage = store.budget_usage(meters.to_vec()).await.unwrap();
            if usage
                .iter()
                .any(|line| line.used_before() + ESTIMATE > line.limit)
            {
                return false;
            }
            store
                .budget_charge(meters.to_vec(), amounts(ESTIMATE))
                .await
                .unwrap();
            true
        }
    }
}

/// 64 callers, each doing `PAIRS_PER_CALLER` requests one after another: (pairs/s, latencies).
async fn throughput(store: &Arc<SqliteStore>, path: Path, round: usize) -> (f64, Vec<Duration>) {
    let now = Timestamp::now();
    let expires = now + SignedDuration::from_mins(15);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..CALLERS {
        let store = Arc::clone(store);
        let meters = meters("1000000000", round * CALLERS + idx, now);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(PAIRS_PER_CALLER);
            for _ in 0..PAIRS_PER_CALLER {
                let begin = Instant::now();
                assert!(request(&store, path, &meters, expires).await);
                latencies.push(begin.elapsed());
            }
            latencies
        });
    }
    let latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    let secs = started.elapsed().as_secs_f64();
    (latencies.len() as f64 / secs, latencies)
}

/// 64 callers race (each until refused) for a global cap admitting `CAP_REQUESTS`:
/// (admitted, recorded spend + holds over the cap in micro-USD).
async fn overshoot(store: &Arc<SqliteStore>, path: Path, round: usize) -> (u64, i128) {
    let now = Timestamp::now();
    let expires = now + SignedDuration::from_mins(15);
    let cap = portcullis_budget::format_usd(MicroUsd(CAP_REQUESTS * ESTIMATE));
    // Each run gets a fresh global account: a distinct month is not needed, a fresh store is.
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..CALLERS {
        let store = Arc::clone(store);
        let meters = meters(&cap, 1_000_000 + round * CALLERS + idx, now);
        tasks.spawn(async move {
            let mut admitted = 0u64;
            while request(&store, path, &meters, expires).await {
                admitted += 1;
            }
            admitted
        });
    }
    let admitted: u64 = tasks.join_all().await.into_iter().sum();
    let global = meters(&cap, 0, now).pop().unwrap();
    let used = store.budget_usage(vec![global]).await.unwrap()[0].used_before();
    (
        admitted,
        i128::from(used) - i128::from(CAP_REQUESTS * ESTIMATE),
    )
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let idx = (sorted.len() * pct / 100).min(sorted.len().saturating_sub(1));
    sorted[idx]
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it short then.
    let quick = !std::env::args().any(|arg| arg == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "budget bench: {CALLERS} concurrent callers x {PAIRS_PER_CALLER} requests, \
         3 lines each (session, user, global), {rounds} rounds"
    );
    for path in [Path::Reserve, Path::Naive] {
        let name = match path {
            Path::Reserve => "reserve+settle (atomic)",
            Path::Naive => "check-then-spend (naive)",
        };
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(tmp.path(), SqliteOptions::new(Arc::new(SystemClock))).unwrap(),
        );
        let mut rates = Vec::new();
        let mut all = Vec::new();
        for round in 0..rounds {
            let (rate, latencies) = runtime.block_on(throughput(&store, path, round));
            rates.push(rate);
            all.extend(latencies);
        }
        all.sort_unstable();
        println!(
            "{name:<26} median {:>8.0} pairs/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            median(&mut rates),
            percentile(&all, 50).as_secs_f64() * 1e3,
            percentile(&all, 99).as_secs_f64() * 1e3,
        );
        drop(Arc::into_inner(store));

        let mut results = Vec::new();
        for round in 0..rounds {
            let tmp = tempfile::tempdir().unwrap();
            let store = Arc::new(
                SqliteStore::open(tmp.path(), SqliteOptions::new(Arc::new(SystemClock))).unwrap(),
            );
            results.push(runtime.block_on(overshoot(&store, path, round)));
        }
        let worst = results.iter().map(|(_, over)| *over).max().unwrap_or(0);
        let admitted: Vec<u64> = results.iter().map(|(admitted, _)| *admitted).collect();
        println!(
            "{name:<26} cap admits {CAP_REQUESTS}: admitted {admitted:?}, worst overshoot {} requests ({worst} micro-USD)",
            worst / i128::from(ESTIMATE),
        );
    }
}
