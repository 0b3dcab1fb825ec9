//! SIGKILL during concurrent appends loses no acknowledged record and leaves a verifiable ledger.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use portcullis_core::{Decision, Event, SystemClock};
use portcullis_store::{SqliteOptions, SqliteStore, Store, verify_data_dir};

/// Set to a data dir, it makes `sigkill_child_role` the appending child.
const CHILD_ENV: &str = "PORTCULLIS_STORE_SIGKILL_CHILD_DIR";
const N_APPENDS: u64 = 10_000;
const KILL_AFTER: usize = 3_000;

/// The child: 10,000 concurrent appends, printing `ack SEQ N end` once each is durable. Without
/// the environment variable (an ordinary test run) it does nothing.
#[test]
fn sigkill_child_role() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let options = SqliteOptions::new(Arc::new(SystemClock));
        let store = Arc::new(SqliteStore::open(dir.as_ref(), options).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for n in 1..=N_APPENDS {
            let store = store.clone();
            tasks.spawn(async move {
                let event = Event::new("test.append", Decision::Info, "ok")
                    .data(serde_json::json!({ "n": n }));
                let receipt = store.append(event).await.unwrap();
                println!("ack {} {n} end", receipt.seq);
            });
        }
        tasks.join_all().await;
    });
}

#[tokio::test]
async fn sigkill_during_concurrent_appends_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child_role",
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
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let mut killed_at = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        // A line cut by the kill lacks its `end` marker and is not counted.
        let fields: Vec<&str> = line.split(' ').collect();
        if let ["ack", seq, n, "end"] = fields[..] {
            acked.insert(seq.parse().unwrap(), n.parse().unwrap());
        }
        if acked.len() >= KILL_AFTER && killed_at.is_none() {
            // SIGKILL; it fails only when the child already exited on its own.
            let _ = child.kill();
            killed_at = Some(acked.len());
        }
    }
    let status = child.wait().unwrap();
    println!(
        "child exit {status}; killed after {killed_at:?} acks; {} acks read in all",
        acked.len()
    );
    assert!(
        acked.len() >= KILL_AFTER,
        "child acknowledged only {}",
        acked.len()
    );

    // Offline verify on the killed data dir (read-only, as `portcullis ledger verify` does).
    let report = verify_data_dir(tmp.path()).unwrap();
    assert!(report.last_seq >= *acked.keys().max().unwrap());

    // Reopen: every acknowledged seq holds its record; the chain continues.
    let store = SqliteStore::open(tmp.path(), SqliteOptions::new(Arc::new(SystemClock))).unwrap();
    let mut stored: HashMap<u64, u64> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.ledger_page(after, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in page {
            stored.insert(record.seq, record.data["n"].as_u64().unwrap());
        }
    }
    assert_eq!(stored.len() as u64, report.records);
    for (seq, n) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(n),
            "acknowledged seq {seq} lost or changed"
        );
    }
    let next = store
        .append(Event::new("test.append", Decision::Info, "ok"))
        .await
        .unwrap();
    assert_eq!(next.seq, report.last_seq + 1);
    drop(store);
    verify_data_dir(tmp.path()).unwrap();
}
