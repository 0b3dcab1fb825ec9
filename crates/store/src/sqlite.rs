//! The SQLite store: WAL, `synchronous = FULL`, one writer thread doing group commit.

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;
use portcullis_budget::threshold::AlertTier;
use portcullis_budget::{
    AccountSnapshot, Amounts, BudgetMode, LineUsage, Meter, Reservation, ReservationId,
    ReserveOutcome, Settlement,
};
use portcullis_core::{Clock, Event};
use portcullis_ledger::{BodyTemplate, LedgerRecord, decode_record, verify_checkpoint};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::agent_cache::AgentCache;
use crate::error::{BackendError, CorruptError, StoreError, sqlite_error};
use crate::files::{DB_FILE, ensure_data_dir, ensure_private_file, load_or_create_node_key};
use crate::sqlite_budget::SqliteBudgets;
use crate::sqlite_writer::{self, Command, DEFAULT_MAX_BATCH, Writer, WriterState, refused};
use crate::wal::{Checkpointer, Durability, open_connection};
use crate::{AppendReceipt, MAX_PAGE, PolicyRecordKind, QuotaCount, Store, StoredAgent, schema};

/// Tuning of the SQLite store. See [`SqliteOptions::new`] for the defaults.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Write a signed checkpoint after this many records (default 1000).
    pub checkpoint_every: u64,
    /// Write a signed checkpoint when this much time passed since the last one and records were
    /// appended (default 60 s).
    pub checkpoint_interval: Duration,
    /// The clock that stamps records and checkpoints.
    pub clock: Arc<dyn Clock>,
}

impl SqliteOptions {
    /// The defaults: a checkpoint every 1000 records or 60 s.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            clock,
        }
    }
}

/// The embedded store in `<data dir>/portcullis.db`, with budget counters in
/// `<data dir>/budgets.db`.
///
/// Dropping it stops the writer thread after it wrote a last checkpoint.
#[derive(Debug)]
pub struct SqliteStore {
    node_public_key: [u8; 32],
    clock: Arc<dyn Clock>,
    commands: Option<Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Checkpointer,
    reader: Arc<Mutex<Connection>>,
    agents: AgentCache,
    budgets: SqliteBudgets,
}

impl SqliteStore {
    /// Opens (creating when missing) the store in `data_dir`: the dir 0700, `portcullis.db` 0600 in
    /// WAL mode, the node key; runs migrations and resumes the chain from the last row.
    pub fn open(data_dir: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        Self::open_with_max_batch(data_dir, options, DEFAULT_MAX_BATCH)
    }

    /// [`SqliteStore::open`] with another group-commit bound; `1` commits every append on its
    /// own (the naive baseline the benchmark compares against).
    pub fn open_with_max_batch(
        data_dir: &Path,
        options: SqliteOptions,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        ensure_data_dir(data_dir)?;
        let key = load_or_create_node_key(data_dir)?;
        let db_path = data_dir.join(DB_FILE);
        ensure_private_file(&db_path)?;
        let mut conn = open_connection(&db_path, Durability::Full)?;
        schema::migrate(&mut conn)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = db_path.clone().into_os_string();
            side.push(suffix);
            if Path::new(&side).exists() {
                ensure_private_file(Path::new(&side))?;
            }
        }
        let reader = open_connection(&db_path, Durability::Full)?;
        let checkpointer = Checkpointer::start(
            "portcullis-ledger-wal",
            open_connection(&db_path, Durability::Full)?,
        )?;
        let budgets = SqliteBudgets::open(data_dir)?;

        let (head_seq, head_hash) = read_head(&conn)?;
        let public_key = key.verifying_key();
        let last_checkpoint = read_last_checkpoint(&conn, &public_key)?;
        let (checkpoint_seq, checkpoint_time) = last_checkpoint.unwrap_or((0, options.clock.now()));
        let clock = options.clock;
        let writer = Writer {
            conn,
            state: WriterState {
                key,
                clock: Arc::clone(&clock),
                head_seq,
                head_hash,
                checkpoint_seq,
                checkpoint_time,
                checkpoint_every: options.checkpoint_every.max(1),
                checkpoint_interval: options.checkpoint_interval,
                max_batch: max_batch.max(1),
            },
            quota_retry: Vec::new(),
        };
        let (commands, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("portcullis-ledger-writer".to_owned())
            .spawn(move || sqlite_writer::run(writer, &receiver))
            .map_err(|err| {
                StoreError::Unavailable(BackendError::new("start writer thread", err))
            })?;
        Ok(Self {
            node_public_key: public_key.to_bytes(),
            clock,
            commands: Some(commands),
            writer: Some(handle),
            checkpointer,
            reader: Arc::new(Mutex::new(reader)),
            agents: AgentCache::default(),
            budgets,
        })
    }

    /// The node's ed25519 public key (also in `<data dir>/node.pub`, hex).
    pub fn node_public_key(&self) -> [u8; 32] {
        self.node_public_key
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.commands.as_ref().ok_or_else(writer_stopped)?;
        sender.send(make(reply)).map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|poison| poison.into_inner());
            query(&conn)
        })
        .await
        .map_err(|err| StoreError::Unavailable(BackendError::new("join reader task", err)))?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop; joining waits for its last checkpoint.
        drop(self.commands.take());
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        self.checkpointer.stop();
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.as_ref().is_none_or(JoinHandle::is_finished)
            || !self.budgets.writer_running()
        {
            return Err(writer_stopped());
        }
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sqlite_error("ping"))
        })
        .await
    }

    async fn append(&self, event: Event) -> Result<AppendReceipt, StoreError> {
        // Encoding happens here, off the writer thread; the writer only fills in the seq.
        let template = BodyTemplate::new(self.clock.now(), &event).map_err(refused)?;
        self.call(|reply| Command::Append { template, reply }).await
    }

    async fn ledger_page(&self, after: u64, limit: u32) -> Result<Vec<LedgerRecord>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, body, prev_hash, hash FROM ledger WHERE seq > ?1
                     ORDER BY seq LIMIT ?2",
                )
                .map_err(sqlite_error("prepare ledger page"))?;
            let mut rows = stmt
                .query(params![after, limit])
                .map_err(sqlite_error("read ledger page"))?;
            let mut records = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error("read ledger page"))? {
                records.push(decode_row(row)?);
            }
            Ok(records)
        })
        .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.call(|reply| Command::Flush { reply }).await
    }

    async fn insert_agent(&self, agent: StoredAgent) -> Result<(), StoreError> {
        self.call(|reply| Command::InsertAgent { agent, reply })
            .await
    }

    async fn delete_agent(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = {
            let id = id.to_owned();
            self.call(|reply| Command::DeleteAgent { id, reply }).await
        };
        // Also after a failed delete: whether it committed is not known.
        self.agents.forget(id);
        deleted
    }

    async fn agent_by_token_hash(
        &self,
        token_sha256: [u8; 32],
    ) -> Result<Option<StoredAgent>, StoreError> {
        let generation = match self.agents.get(&token_sha256) {
            Ok(agent) => return Ok(Some(agent)),
            Err(generation) => generation,
        };
        let found = self
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("{AGENT_COLUMNS} WHERE token_sha256 = ?1"))
                    .map_err(sqlite_error("prepare agent lookup"))?;
                let mut rows = stmt
                    .query([token_sha256.as_slice()])
                    .map_err(sqlite_error("look up agent"))?;
                match rows.next().map_err(sqlite_error("look up agent"))? {
                    Some(row) => agent_from_row(row).map(Some),
                    None => Ok(None),
                }
            })
            .await?;
        if let Some(agent) = &found {
            self.agents.remember(generation, agent);
        }
        Ok(found)
    }

    async fn list_agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!("{AGENT_COLUMNS} ORDER BY id"))
                .map_err(sqlite_error("prepare agent list"))?;
            let mut rows = stmt.query([]).map_err(sqlite_error("list agents"))?;
            let mut agents = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error("list agents"))? {
                agents.push(agent_from_row(row)?);
            }
            Ok(agents)
        })
        .await
    }

    async fn put_policy_record(
        &self,
        kind: PolicyRecordKind,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        let (id, body) = (id.to_owned(), body.to_owned());
        self.call(|reply| Command::PutPolicyRecord {
            kind: kind.as_str(),
            id,
            body,
            reply,
        })
        .await
    }

    async fn delete_policy_record(
        &self,
        kind: PolicyRecordKind,
        id: &str,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(|reply| Command::DeletePolicyRecord {
            kind: kind.as_str(),
            id,
            reply,
        })
        .await
    }

    fn quota_count(&self, count: QuotaCount) -> Result<(), StoreError> {
        let sender = self.commands.as_ref().ok_or_else(writer_stopped)?;
        sender
            .send(Command::QuotaCount(count))
            .map_err(|_| writer_stopped())
    }

    async fn quota_counts(&self) -> Result<Vec<QuotaCount>, StoreError> {
        self.read(crate::quota::read_all).await
    }

    async fn list_policy_records(
        &self,
        kind: PolicyRecordKind,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, body FROM policy_records WHERE kind = ?1 ORDER BY id")
                .map_err(sqlite_error("prepare policy record list"))?;
            let mut rows = stmt
                .query([kind.as_str()])
                .map_err(sqlite_error("list policy records"))?;
            let mut records = Vec::new();
            while let Some(row) = rows.next().map_err(sqlite_error("list policy records"))? {
                let id: String = row.get(0).map_err(sqlite_error("read policy record"))?;
                let body: String = row.get(1).map_err(sqlite_error("read policy record"))?;
                records.push((id, body));
            }
            Ok(records)
        })
        .await
    }
    async fn budget_reserve(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
        expires_at: Timestamp,
        mode: BudgetMode,
    ) -> Result<ReserveOutcome, StoreError> {
        self.budgets
            .reserve(meters, amounts, expires_at, mode)
            .await
    }

    async fn budget_settle(
        &self,
        id: ReservationId,
        actual: Amounts,
    ) -> Result<Settlement, StoreError> {
        self.budgets.settle(id, actual).await
    }

    async fn budget_release(&self, id: ReservationId) -> Result<Reservation, StoreError> {
        self.budgets.release(id).await
    }

    async fn budget_release_expired(&self, now: Timestamp) -> Result<Vec<Reservation>, StoreError> {
        self.budgets.release_expired(now).await
    }

    async fn budget_charge(
        &self,
        meters: Vec<Meter>,
        amounts: Amounts,
    ) -> Result<Vec<LineUsage>, StoreError> {
        self.budgets.charge(meters, amounts).await
    }

    async fn budget_usage(&self, meters: Vec<Meter>) -> Result<Vec<LineUsage>, StoreError> {
        Ok(self.budgets.usage(&meters))
    }

    async fn budget_accounts(&self) -> Result<Vec<AccountSnapshot>, StoreError> {
        Ok(self.budgets.accounts())
    }

    async fn budget_reservations(&self) -> Result<Vec<Reservation>, StoreError> {
        Ok(self.budgets.reservations())
    }

    async fn budget_mark_alert(
        &self,
        key: &str,
        window: &str,
        tier: AlertTier,
    ) -> Result<bool, StoreError> {
        self.budgets.mark_alert(key, window, tier).await
    }

    async fn budget_pause(&self, key: &str, until: Option<Timestamp>) -> Result<(), StoreError> {
        self.budgets.pause(key, until).await
    }

    async fn budget_unpause(&self, key: &str) -> Result<bool, StoreError> {
        self.budgets.unpause(key).await
    }

    async fn budget_is_paused(&self, key: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self.budgets.is_paused(key, now))
    }

    async fn budget_pauses(&self) -> Result<Vec<(String, Option<Timestamp>)>, StoreError> {
        Ok(self.budgets.pauses())
    }
}

const AGENT_COLUMNS: &str = "SELECT id, token_sha256, roles, tags, project, allow, \
                             may_assert_identity, created_at, catalog FROM agents";

fn read_head(conn: &Connection) -> Result<(u64, [u8; 32]), StoreError> {
    let head = conn
        .query_row(
            "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .optional()
        .map_err(sqlite_error("read ledger head"))?;
    match head {
        None => Ok((0, portcullis_ledger::GENESIS_PREV_HASH)),
        Some((seq, hash)) => {
            let seq =
                u64::try_from(seq).map_err(|_| StoreError::Corrupt(CorruptError::Seq { seq }))?;
            let hash = hash
                .try_into()
                .map_err(|_| StoreError::Corrupt(CorruptError::HashColumn { seq }))?;
            Ok((seq, hash))
        }
    }
}

/// The last checkpoint this node signed, if any. One that does not verify is ignored: the next
/// checkpoint is written as if none existed, and `ledger verify` reports the bad one.
fn read_last_checkpoint(
    conn: &Connection,
    public_key: &ed25519_dalek::VerifyingKey,
) -> Result<Option<(u64, jiff::Timestamp)>, StoreError> {
    let last = conn
        .query_row(
            "SELECT signed, signature FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )
        .optional()
        .map_err(sqlite_error("read last checkpoint"))?;
    Ok(last
        .and_then(|(signed, signature)| verify_checkpoint(public_key, &signed, &signature).ok())
        .map(|checkpoint| (checkpoint.seq, checkpoint.time)))
}

fn decode_row(row: &rusqlite::Row<'_>) -> Result<LedgerRecord, StoreError> {
    let seq: i64 = row.get(0).map_err(sqlite_error("read ledger row"))?;
    let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt(CorruptError::Seq { seq }))?;
    let blob = |idx: usize| {
        row.get_ref(idx)
            .and_then(|value| value.as_blob().map_err(Into::into))
            .map_err(sqlite_error("read ledger row"))
    };
    let hash_column = |idx: usize| -> Result<[u8; 32], StoreError> {
        blob(idx)?
            .try_into()
            .map_err(|_| StoreError::Corrupt(CorruptError::HashColumn { seq }))
    };
    decode_record(seq, blob(1)?, hash_column(2)?, hash_column(3)?)
        .map_err(|source| StoreError::Corrupt(CorruptError::Record { seq, source }))
}

fn agent_from_row(row: &rusqlite::Row<'_>) -> Result<StoredAgent, StoreError> {
    let id: String = row.get(0).map_err(sqlite_error("read agent"))?;
    let corrupt = |column| {
        StoreError::Corrupt(CorruptError::Agent {
            id: id.clone(),
            column,
        })
    };
    let text = |idx: usize, column| row.get::<_, String>(idx).map_err(|_| corrupt(column));
    let list = |idx: usize, column| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(&text(idx, column)?).map_err(|_| corrupt(column))
    };
    let token: Vec<u8> = row.get(1).map_err(|_| corrupt("token_sha256"))?;
    Ok(StoredAgent {
        token_sha256: token.try_into().map_err(|_| corrupt("token_sha256"))?,
        roles: list(2, "roles")?,
        tags: list(3, "tags")?,
        project: row.get(4).map_err(|_| corrupt("project"))?,
        allow: list(5, "allow")?,
        may_assert_identity: row.get(6).map_err(|_| corrupt("may_assert_identity"))?,
        created_at: text(7, "created_at")?
            .parse()
            .map_err(|_| corrupt("created_at"))?,
        catalog: Some(text(8, "catalog")?)
            .filter(|catalog| crate::AGENT_CATALOGS.contains(&catalog.as_str()))
            .ok_or_else(|| corrupt("catalog"))?,
        id,
    })
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable(BackendError::bare("ledger writer stopped"))
}
