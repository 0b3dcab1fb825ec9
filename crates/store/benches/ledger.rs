//! Ledger benchmarks, each beside its baseline from the same run:
//! (a) durable appends under 64 concurrent writers, group commit vs one transaction per append
//!     (and group commit under 256 writers, to show the batch growing with concurrency; and with a
//!     contract quota count queued before each append, as the gate does for quota contracts);
//! (b) verifying 1,000,000 records vs plain SHA-256 over the same bytes, in memory and from disk.
//!
//! Run: `cargo bench -p portcullis-store --bench ledger -- --warm-up-time 1 --measurement-time 3`
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use portcullis_core::{Decision, Event, SystemClock};
use portcullis_ledger::{Checkpoint, GENESIS_PREV_HASH, Verifier, chain_hash, encode_body};
use portcullis_store::{QuotaCount, SqliteOptions, SqliteStore, Store, verify_data_dir};
use sha2::{Digest, Sha256};

const VERIFY_RECORDS: u64 = 1_000_000;

fn event(n: u64) -> Event {
    Event::new("tool.call", Decision::Allow, "allowed")
        .subject("agent-chat-bridge")
        .correlation(format!("01J9Z3K7Q8M2N4P6R8T0V2X4Z{n:06}"))
        .data(serde_json::json!({
            "tool": "github.create_issue",
            "args_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "args_bytes": 1234,
            "layer": "allowlist",
        }))
}

/// `writers` tasks each appending `per_writer` events one after another, all awaited; with
/// `quota`, each append follows a quota count of the writer's contract (the gate's order).
async fn concurrent_appends(store: &Arc<SqliteStore>, writers: u64, per_writer: u64, quota: bool) {
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let store = Arc::clone(store);
        tasks.spawn(async move {
            for idx in 0..per_writer {
                if quota {
                    let count = QuotaCount {
                        contract: format!("contract-{writer}"),
                        window_start: Timestamp::UNIX_EPOCH,
                        count: idx + 1,
                    };
                    store.quota_count(count).unwrap();
                }
                store
                    .append(event(writer * per_writer + idx))
                    .await
                    .unwrap();
            }
        });
    }
    tasks.join_all().await;
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    // The last case shows how group commit scales when more writers share each commit.
    for (name, max_batch, writers, per_writer, quota) in [
        ("group_commit_64_writers", 1024, 64, 100, false),
        ("group_commit_64_writers_quota_counts", 1024, 64, 100, true),
        ("one_txn_per_append_64_writers", 1, 64, 4, false),
        ("group_commit_256_writers", 1024, 256, 50, false),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let options = SqliteOptions::new(Arc::new(SystemClock));
        let store =
            Arc::new(SqliteStore::open_with_max_batch(tmp.path(), options, max_batch).unwrap());
        group.throughput(Throughput::Elements(writers * per_writer));
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(concurrent_appends(&store, writers, per_writer, quota)));
        });
    }
    group.finish();
}

struct Row {
    seq: u64,
    body: Vec<u8>,
    prev: [u8; 32],
    hash: [u8; 32],
}

fn build_rows(n: u64) -> Vec<Row> {
    let time = Timestamp::from_second(1_767_225_600).unwrap();
    let mut prev = GENESIS_PREV_HASH;
    (1..=n)
        .map(|seq| {
            let body = encode_body(seq, time, &event(seq)).unwrap();
            let hash = chain_hash(&prev, &body);
            let row = Row {
                seq,
                body,
                prev,
                hash,
            };
            prev = hash;
            row
        })
        .collect()
}

/// A data dir holding `rows`, with a signed checkpoint every 1000 records and at the end.
fn build_data_dir(dir: &Path, rows: &[Row]) {
    let options = SqliteOptions::new(Arc::new(SystemClock));
    drop(SqliteStore::open(dir, options).unwrap());
    let secret = std::fs::read_to_string(dir.join("node.key")).unwrap();
    let mut secret_bytes = [0u8; 32];
    hex::decode_to_slice(secret.trim(), &mut secret_bytes).unwrap();
    let key = SigningKey::from_bytes(&secret_bytes);
    let mut conn = rusqlite::Connection::open(dir.join("portcullis.db")).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO ledger (seq, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        let mut insert_cp = tx
            .prepare("INSERT INTO ledger_checkpoints (seq, signed, signature) VALUES (?1, ?2, ?3)")
            .unwrap();
        for (idx, row) in rows.iter().enumerate() {
            let seq = i64::try_from(row.seq).unwrap();
            insert
                .execute(rusqlite::params![
                    seq,
                    row.body,
                    &row.prev[..],
                    &row.hash[..]
                ])
                .unwrap();
            if row.seq % 1000 == 0 || idx + 1 == rows.len() {
                let signed = Checkpoint {
                    seq: row.seq,
                    hash: row.hash,
                    time: Timestamp::from_second(1_767_225_600).unwrap(),
                }
                .sign(&key)
                .unwrap();
                insert_cp
                    .execute(rusqlite::params![
                        seq,
                        signed.signed_bytes,
                        &signed.signature[..]
                    ])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

#[expect(clippy::print_stdout, reason = "the benchmark reports its corpus size")]
fn verify(c: &mut Criterion) {
    let rows = build_rows(VERIFY_RECORDS);
    let n_bytes: usize = rows.iter().map(|row| 32 + row.body.len()).sum();
    let tmp = tempfile::tempdir().unwrap();
    build_data_dir(tmp.path(), &rows);
    println!(
        "verify corpus: {VERIFY_RECORDS} records, {n_bytes} hashed bytes ({:.0} bytes/record)",
        n_bytes as f64 / VERIFY_RECORDS as f64
    );

    let mut group = c.benchmark_group("verify_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(VERIFY_RECORDS));
    group.bench_function("plain_sha256", |b| {
        b.iter(|| {
            let mut last = [0u8; 32];
            for row in &rows {
                let mut hasher = Sha256::new();
                hasher.update(row.prev);
                hasher.update(&row.body);
                last = hasher.finalize().into();
            }
            black_box(last)
        });
    });
    group.bench_function("verifier_in_memory", |b| {
        b.iter(|| {
            // No checkpoints here: the in-memory figure isolates the per-record work.
            let mut verifier = Verifier::new([0; 32]);
            for row in &rows {
                verifier
                    .push(row.seq, &row.body, &row.prev, &row.hash)
                    .unwrap();
            }
            black_box(verifier.finish().unwrap())
        });
    });
    group.bench_function("verify_data_dir", |b| {
        b.iter(|| black_box(verify_data_dir(tmp.path()).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, appends, verify);
criterion_main!(benches);
