//! Budget reservations on the SQLite store under 64 concurrent callers, beside the naive
//! check-then-spend path measured in the same run. The naive path is what earlier systems did:
//! read the usage with a query, compare it with the limit, then add the spend with a separate
//! statement, awaiting in between (its own SQLite file, WAL with `synchronous = NORMAL` like
//! `budgets.db`):
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

use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use portcullis_budget::{
    Amounts, BudgetDef, BudgetMode, BudgetsConfig, Meter, ReserveOutcome, Scope, Unit, Window,
};
use portcullis_core::{MicroUsd, Subject, SystemClock};
use portcullis_store::{SqliteOptions, SqliteStore, Store};
use rusqlite::{Connection, params};

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

/// The naive baseline's counters: spend per account and unit in a table, read and added by
/// separate statements.
struct NaiveDb {
    conn: Mutex<Connection>,
}

impl NaiveDb {
    fn open(dir: &FsPath) -> Arc<Self> {
        let conn = Connection::open(dir.join("naive.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE spend (account TEXT NOT NULL, unit TEXT NOT NULL,
                                 amount INTEGER NOT NULL, PRIMARY KEY (account, unit));",
        )
        .unwrap();
        Arc::new(Self {
            conn: Mutex::new(conn),
        })
    }

    /// `SELECT` each meter's recorded spend.
    async fn used(self: &Arc<Self>, meters: &[Meter]) -> Vec<u64> {
        let db = Arc::clone(self);
        let keys: Vec<(String, &'static str)> = meters
            .iter()
            .map(|meter| (meter.account.clone(), meter.unit.as_str()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let conn = db.conn.lock().unwrap();
            let mut query = conn
                .prepare_cached("SELECT amount FROM spend WHERE account = ?1 AND unit = ?2")
                .unwrap();
            keys.iter()
                .map(|(account, unit)| {
                    query
                        .query_row(params![account, unit], |row| row.get::<_, i64>(0))
                        .map_or(0, |amount| u64::try_from(amount).unwrap())
                })
                .collect()
        })
        .await
        .unwrap()
    }

    /// Adds `amount` to every meter's account in one transaction.
    async fn add(self: &Arc<Self>, meters: &[Meter], amount: u64) {
        let db = Arc::clone(self);
        let keys: Vec<(String, &'static str)> = meters
            .iter()
            .map(|meter| (meter.account.clone(), meter.unit.as_str()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.conn.lock().unwrap();
            let tx = conn.transaction().unwrap();
            for (account, unit) in &keys {
                tx.execute(
                    "INSERT INTO spend (account, unit, amount) VALUES (?1, ?2, ?3)
                     ON CONFLICT (account, unit) DO UPDATE SET amount = amount + excluded.amount",
                    params![account, unit, i64::try_from(amount).unwrap()],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        })
        .await
        .unwrap();
    }
}

/// One side of the comparison: the store (reserve path) and the naive table, in one data dir.
struct Bench {
    store: SqliteStore,
    naive: Arc<NaiveDb>,
}

impl Bench {
    fn open(dir: &FsPath) -> Arc<Self> {
        Arc::new(Self {
            store: SqliteStore::open(dir, SqliteOptions::new(Arc::new(SystemClock))).unwrap(),
            naive: NaiveDb::open(dir),
        })
    }
}

/// One request on `path`: `true` when admitted.
async fn request(bench: &Bench, path: Path, meters: &[Meter], expires: Timestamp) -> bool {
    let store = &bench.store;
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
            // Check...
            let used = bench.naive.used(meters).await;
            if meters
                .iter()
                .zip(&used)
                .any(|(meter, used)| used + ESTIMATE > meter.limit)
            {
                return false;
            }
            // ...then spend, in a separate statement: others may have checked meanwhile.
            bench.naive.add(meters, ESTIMATE).await;
            true
        }
    }
}

/// 64 callers, each doing `PAIRS_PER_CALLER` requests one after another: (pairs/s, latencies).
async fn throughput(bench: &Arc<Bench>, path: Path, round: usize) -> (f64, Vec<Duration>) {
    let now = Timestamp::now();
    let expires = now + SignedDuration::from_mins(15);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..CALLERS {
        let bench = Arc::clone(bench);
        let meters = meters("1000000000", round * CALLERS + idx, now);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(PAIRS_PER_CALLER);
            for _ in 0..PAIRS_PER_CALLER {
                let begin = Instant::now();
                assert!(request(&bench, path, &meters, expires).await);
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
async fn overshoot(bench: &Arc<Bench>, path: Path, round: usize) -> (u64, i128) {
    let now = Timestamp::now();
    let expires = now + SignedDuration::from_mins(15);
    let cap = portcullis_budget::format_usd(MicroUsd(CAP_REQUESTS * ESTIMATE));
    // Each run gets a fresh global account: a distinct month is not needed, a fresh store is.
    let mut tasks = tokio::task::JoinSet::new();
    for idx in 0..CALLERS {
        let bench = Arc::clone(bench);
        let meters = meters(&cap, 1_000_000 + round * CALLERS + idx, now);
        tasks.spawn(async move {
            let mut admitted = 0u64;
            while request(&bench, path, &meters, expires).await {
                admitted += 1;
            }
            admitted
        });
    }
    let admitted: u64 = tasks.join_all().await.into_iter().sum();
    let global = meters(&cap, 0, now).pop().unwrap();
    let used = match path {
        Path::Reserve => bench.store.budget_usage(vec![global]).await.unwrap()[0].used_before(),
        Path::Naive => bench.naive.used(&[global]).await[0],
    };
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
        let bench = Bench::open(tmp.path());
        let mut rates = Vec::new();
        let mut all = Vec::new();
        for round in 0..rounds {
            let (rate, latencies) = runtime.block_on(throughput(&bench, path, round));
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
        drop(Arc::into_inner(bench));

        let mut results = Vec::new();
        for round in 0..rounds {
            let tmp = tempfile::tempdir().unwrap();
            let bench = Bench::open(tmp.path());
            results.push(runtime.block_on(overshoot(&bench, path, round)));
        }
        let worst = results.iter().map(|(_, over)| *over).max().unwrap_or(0);
        let admitted: Vec<u64> = results.iter().map(|(admitted, _)| *admitted).collect();
        println!(
            "{name:<26} cap admits {CAP_REQUESTS}: admitted {admitted:?}, worst overshoot {} requests ({worst} micro-USD)",
            worst / i128::from(ESTIMATE),
        );
    }
}
