//! The SQLite store through its public API, on temporary data dirs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use portcullis_core::{Decision, Event};
use portcullis_ledger::FailureReason;
use portcullis_store::{
    PolicyRecordKind, QuotaCount, SqliteOptions, SqliteStore, Store, StoreError, StoredAgent,
    VerifyDataDirError, verify_data_dir,
};
use portcullis_test_support::ManualClock;

fn options(clock: &Arc<ManualClock>, checkpoint_every: u64) -> SqliteOptions {
    SqliteOptions {
        checkpoint_every,
        checkpoint_interval: Duration::from_secs(60),
        clock: clock.clone(),
    }
}

fn open(dir: &Path, checkpoint_every: u64) -> SqliteStore {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    SqliteStore::open(dir, options(&clock, checkpoint_every)).unwrap()
}

fn event(n: u64) -> Event {
    Event::new("tool.call", Decision::Allow, "allowed")
        .subject("agent-1")
        .correlation(format!("req-{n}"))
        .data(serde_json::json!({ "n": n }))
}

async fn append_n(store: &SqliteStore, range: std::ops::RangeInclusive<u64>) {
    for n in range {
        let receipt = store.append(event(n)).await.unwrap();
        assert_eq!(receipt.seq, n);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs SQL as an attacker with write access would (dropping the append-only triggers first).
fn tamper(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("portcullis.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS ledger_no_update; DROP TRIGGER IF EXISTS ledger_no_delete;",
    )
    .unwrap();
    conn.execute_batch(sql).unwrap();
}

#[track_caller]
fn check_verify_fails(dir: &Path, seq: u64, reason: FailureReason) {
    match verify_data_dir(dir) {
        Err(VerifyDataDirError::Failed(failure)) => {
            assert_eq!((failure.seq, failure.reason), (seq, reason), "{failure}");
        }
        other => panic!("expected a verify failure, got {other:?}"),
    }
}

#[tokio::test]
async fn appends_and_pages_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), 1000);
    store.ping().await.unwrap();
    assert!(store.ledger_page(0, 10).await.unwrap().is_empty());
    append_n(&store, 1..=25).await;

    let page = store.ledger_page(0, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(page[0].prev_hash, [0; 32]);
    assert_eq!(page[1].prev_hash, page[0].hash);
    assert_eq!(page[3].data, serde_json::json!({"n": 4}));
    assert_eq!(page[3].correlation_id.as_deref(), Some("req-4"));
    assert_eq!(
        page[3].time,
        jiff::Timestamp::from_second(1_767_225_600).unwrap()
    );
    let rest = store.ledger_page(20, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![21, 22, 23, 24, 25]
    );
    assert!(store.ledger_page(25, 10).await.unwrap().is_empty());
    assert!(store.ledger_page(0, 0).await.unwrap().is_empty());
    assert!(store.ledger_page(u64::MAX, 10).await.unwrap().is_empty());

    store.flush().await.unwrap();
    let report = verify_data_dir(tmp.path()).unwrap();
    assert_eq!(
        (report.records, report.last_seq, report.checkpoints),
        (25, 25, 1)
    );
    assert_eq!(report.last_hash, rest[4].hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_page_limit_is_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(open(tmp.path(), 100_000));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=1005 {
        let store = store.clone();
        tasks.spawn(async move { store.append(event(n)).await.unwrap().seq });
    }
    let mut seqs: Vec<u64> = tasks.join_all().await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1005).collect::<Vec<_>>());
    assert_eq!(store.ledger_page(0, u32::MAX).await.unwrap().len(), 1000);
    drop(Arc::into_inner(store));
    assert_eq!(verify_data_dir(tmp.path()).unwrap().records, 1005);
}

#[tokio::test]
async fn restart_resumes_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let first_key = {
        let store = open(tmp.path(), 1000);
        append_n(&store, 1..=3).await;
        store.node_public_key()
    };
    let store = open(tmp.path(), 1000);
    assert_eq!(store.node_public_key(), first_key);
    append_n(&store, 4..=6).await;
    let page = store.ledger_page(0, 100).await.unwrap();
    assert_eq!(page.len(), 6);
    assert_eq!(page[3].prev_hash, page[2].hash);
    drop(store);
    let report = verify_data_dir(tmp.path()).unwrap();
    assert_eq!((report.records, report.checkpoints), (6, 2));
}

#[tokio::test]
async fn checkpoints_every_n_records_and_after_the_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let store = SqliteStore::open(tmp.path(), options(&clock, 5)).unwrap();
    let count = || {
        let conn = rusqlite::Connection::open(tmp.path().join("portcullis.db")).unwrap();
        conn.query_row(
            "SELECT count(*), max(seq) FROM ledger_checkpoints",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
        )
        .unwrap()
    };
    append_n(&store, 1..=4).await;
    assert_eq!(count(), (0, None));
    append_n(&store, 5..=5).await;
    assert_eq!(count(), (1, Some(5)));
    append_n(&store, 6..=6).await;
    assert_eq!(count(), (1, Some(5)));
    clock.advance(SignedDuration::from_secs(61));
    append_n(&store, 7..=7).await;
    assert_eq!(count(), (2, Some(7)));
    store.flush().await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(count(), (2, Some(7)));
    append_n(&store, 8..=8).await;
    store.flush().await.unwrap();
    assert_eq!(count(), (3, Some(8)));
}

#[tokio::test]
async fn agents_crud() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), 1000);
    let agent = |id: &str, token: u8| StoredAgent {
        id: id.to_owned(),
        token_sha256: [token; 32],
        roles: vec!["dev".to_owned()],
        tags: vec!["team-a".to_owned(), "x".to_owned()],
        project: Some("p1".to_owned()),
        allow: vec!["tools:*".to_owned()],
        may_assert_identity: true,
        catalog: "full".to_owned(),
        created_at: jiff::Timestamp::from_second(1_767_225_600).unwrap(),
    };
    store.insert_agent(agent("b", 2)).await.unwrap();
    store
        .insert_agent(StoredAgent {
            project: None,
            roles: vec![],
            may_assert_identity: false,
            catalog: "meta".to_owned(),
            ..agent("a", 1)
        })
        .await
        .unwrap();
    assert!(matches!(
        store.insert_agent(agent("b", 3)).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.insert_agent(agent("c", 2)).await,
        Err(StoreError::Conflict)
    ));

    let found = store.agent_by_token_hash([2; 32]).await.unwrap().unwrap();
    assert_eq!(found, agent("b", 2));
    assert_eq!(store.agent_by_token_hash([9; 32]).await.unwrap(), None);
    let ids: Vec<String> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    let a = store.agent_by_token_hash([1; 32]).await.unwrap().unwrap();
    assert_eq!(
        (
            a.project,
            a.may_assert_identity,
            a.roles.len(),
            a.catalog.as_str()
        ),
        (None, false, 0, "meta")
    );

    assert!(store.delete_agent("b").await.unwrap());
    assert!(!store.delete_agent("b").await.unwrap());
    assert_eq!(store.agent_by_token_hash([2; 32]).await.unwrap(), None);
    // Agent writes do not disturb the ledger.
    append_n(&store, 1..=2).await;
    drop(store);
    let store = open(tmp.path(), 1000);
    assert_eq!(store.list_agents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn policy_records_upsert_list_delete_and_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), 1000);
    let (contract, capsule) = (PolicyRecordKind::Contract, PolicyRecordKind::Capsule);
    store.put_policy_record(contract, "b", "{}").await.unwrap();
    store.put_policy_record(contract, "a", "1").await.unwrap();
    store.put_policy_record(contract, "a", "2").await.unwrap();
    store
        .put_policy_record(capsule, "a", "v1.x.y")
        .await
        .unwrap();
    let list = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(id, body)| ((*id).to_owned(), (*body).to_owned()))
            .collect()
    };
    assert_eq!(
        store.list_policy_records(contract).await.unwrap(),
        list(&[("a", "2"), ("b", "{}")])
    );
    assert!(store.delete_policy_record(contract, "b").await.unwrap());
    assert!(!store.delete_policy_record(contract, "b").await.unwrap());
    drop(store);
    let store = open(tmp.path(), 1000);
    assert_eq!(
        store.list_policy_records(contract).await.unwrap(),
        list(&[("a", "2")])
    );
    assert_eq!(
        store.list_policy_records(capsule).await.unwrap(),
        list(&[("a", "v1.x.y")])
    );
}

/// Quota counts ride the next append's commit, survive a reopen, and only move forward.
#[tokio::test]
async fn quota_counts_are_durable_with_the_next_append_and_only_grow() {
    let dir = tempfile::tempdir().unwrap();
    let count = |contract: &str, window: i64, count: u64| QuotaCount {
        contract: contract.to_owned(),
        window_start: jiff::Timestamp::from_second(window).unwrap(),
        count,
    };
    {
        let store = open(dir.path(), 1000);
        for (contract, window, n) in [
            ("a", 60, 1),
            ("a", 60, 2),
            // Lower in the same window, or an older window: ignored.
            ("a", 60, 1),
            ("a", 0, 9),
            ("b", 0, 5),
            ("b", 60, 1),
        ] {
            store.quota_count(count(contract, window, n)).unwrap();
        }
        store.append(event(1)).await.unwrap();
        assert_eq!(
            store.quota_counts().await.unwrap(),
            [count("a", 60, 2), count("b", 60, 1)]
        );
    }
    let store = open(dir.path(), 1000);
    assert_eq!(
        store.quota_counts().await.unwrap(),
        [count("a", 60, 2), count("b", 60, 1)]
    );
}

#[tokio::test]
async fn permissions_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("data");
    let store = open(&dir, 1000);
    append_n(&store, 1..=1).await;
    assert_eq!(mode(&dir), 0o700);
    for file in [
        "portcullis.db",
        "portcullis.db-wal",
        "portcullis.db-shm",
        "budgets.db",
        "budgets.db-wal",
        "budgets.db-shm",
        "node.key",
        "node.pub",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    drop(store);

    // A data dir others may write to is refused, and left as it is.
    let open_dir = tmp.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let err = SqliteStore::open(&open_dir, options(&clock, 1000)).unwrap_err();
    assert_eq!(err.code(), "store_insecure");
    assert_eq!(mode(&open_dir), 0o777);

    // A node.pub that does not match node.key is refused.
    std::fs::write(dir.join("node.pub"), "00".repeat(32)).unwrap();
    let err = SqliteStore::open(&dir, options(&clock, 1000)).unwrap_err();
    assert_eq!(err.code(), "store_insecure");
}

#[tokio::test]
async fn refuses_oversized_events_without_using_a_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), 1000);
    let big = event(1).data(serde_json::json!("x".repeat(70 * 1024)));
    let err = store.append(big).await.unwrap_err();
    assert!(
        matches!(err, StoreError::TooLarge { limit: 65536, .. }),
        "{err:?}"
    );
    assert_eq!(store.append(event(1)).await.unwrap().seq, 1);
}

#[tokio::test]
async fn verify_names_an_edited_row() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), 1000);
    append_n(&store, 1..=10).await;
    store.flush().await.unwrap();
    drop(store);
    verify_data_dir(tmp.path()).unwrap();
    tamper(
        tmp.path(),
        "UPDATE ledger SET body = CAST(replace(CAST(body AS TEXT), 'allowed', 'denied!') AS BLOB)
         WHERE seq = 4",
    );
    check_verify_fails(tmp.path(), 4, FailureReason::HashMismatch);
}

#[tokio::test]
async fn verify_detects_deleted_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), 1000);
    append_n(&store, 1..=10).await;
    store.flush().await.unwrap();
    drop(store);

    let middle = tempfile::tempdir().unwrap();
    copy_dir(tmp.path(), middle.path());
    tamper(middle.path(), "DELETE FROM ledger WHERE seq = 6");
    check_verify_fails(middle.path(), 6, FailureReason::SeqGap);

    tamper(tmp.path(), "DELETE FROM ledger WHERE seq > 7");
    check_verify_fails(tmp.path(), 8, FailureReason::TruncatedTail);
}

#[test]
fn verify_refuses_a_missing_data_dir_without_creating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("absent");
    assert!(matches!(
        verify_data_dir(&dir),
        Err(VerifyDataDirError::Missing { .. })
    ));
    assert!(!dir.exists());
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
