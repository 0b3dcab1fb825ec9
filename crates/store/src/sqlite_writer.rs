//! The writer thread: owns the write connection and commits appends in groups.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use jiff::{SignedDuration, Timestamp};
use portcullis_core::Clock;
use portcullis_ledger::{BodyTemplate, Checkpoint, LedgerError, chain_hash};
use rusqlite::{Connection, ErrorCode as SqliteCode, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::error::{BackendError, StoreError};
use crate::{AppendReceipt, QuotaCount, StoredAgent};

/// Most commands one transaction takes.
pub(crate) const DEFAULT_MAX_BATCH: usize = 1024;

/// A request to the writer thread; each carries its own reply channel.
pub(crate) enum Command {
    Append {
        template: BodyTemplate,
        reply: oneshot::Sender<Result<AppendReceipt, StoreError>>,
    },
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    InsertAgent {
        agent: StoredAgent,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeleteAgent {
        id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    PutPolicyRecord {
        kind: &'static str,
        id: String,
        body: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    DeletePolicyRecord {
        kind: &'static str,
        id: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// A quota counter; no reply: the next acknowledged append vouches for it.
    QuotaCount(QuotaCount),
}

/// The write connection with the chain state. Only the writer thread holds it.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) state: WriterState,
    /// Quota counts of a batch that failed, written first in the next one.
    // INVARIANT (quota-before-record): a count leaves this list only inside a committed batch.
    pub(crate) quota_retry: Vec<QuotaCount>,
}

/// The chain head and checkpoint state.
pub(crate) struct WriterState {
    pub(crate) key: SigningKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) head_seq: u64,
    pub(crate) head_hash: [u8; 32],
    pub(crate) checkpoint_seq: u64,
    pub(crate) checkpoint_time: Timestamp,
    pub(crate) checkpoint_every: u64,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) max_batch: usize,
}

/// What one command will be answered once the batch commits (or fails).
enum Pending {
    Append(
        oneshot::Sender<Result<AppendReceipt, StoreError>>,
        Result<AppendReceipt, StoreError>,
    ),
    Unit(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
    Bool(
        oneshot::Sender<Result<bool, StoreError>>,
        Result<bool, StoreError>,
    ),
}

/// Runs until every sender is gone, then writes a last checkpoint.
pub(crate) fn run(mut writer: Writer, commands: &Receiver<Command>) {
    let poll = writer
        .state
        .checkpoint_interval
        .clamp(Duration::from_millis(10), Duration::from_secs(60));
    loop {
        let first = match commands.recv_timeout(poll) {
            Ok(command) => command,
            Err(RecvTimeoutError::Timeout) => {
                if !writer.quota_retry.is_empty() {
                    writer.commit_batch(Vec::new());
                }
                // Errors here are retried on the next tick or append; appends report their own.
                let _ = writer.checkpoint_alone(false);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < writer.state.max_batch {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        writer.commit_batch(batch);
    }
    let _ = writer.checkpoint_alone(true);
}

impl Writer {
    /// Applies every command in one transaction, commits once, then answers them all.
    fn commit_batch(&mut self, batch: Vec<Command>) {
        let mut pending = Vec::with_capacity(batch.len());
        let mut seq = self.state.head_seq;
        let mut hash = self.state.head_hash;
        let mut flush = false;
        // Quota counts go first, out of the batch, so that a failure part-way through the batch
        // cannot drop one unseen: every count of the batch is written or kept for a retry.
        let mut quota_counts = std::mem::take(&mut self.quota_retry);
        let batch: Vec<Command> = batch
            .into_iter()
            .filter_map(|command| match command {
                Command::QuotaCount(count) => {
                    quota_counts.push(count);
                    None
                }
                other => Some(other),
            })
            .collect();
        let outcome = (|| -> Result<Option<Checkpoint>, Arc<rusqlite::Error>> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for count in &quota_counts {
                crate::quota::upsert(&tx, count)?;
            }
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO ledger (seq, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for command in batch {
                    match command {
                        Command::Append { template, reply } => {
                            let next = seq.saturating_add(1);
                            match template.with_seq(next) {
                                Ok(body) => {
                                    let next_hash = chain_hash(&hash, &body);
                                    insert.execute(params![
                                        i64::try_from(next).unwrap_or(i64::MAX),
                                        body,
                                        hash.as_slice(),
                                        next_hash.as_slice()
                                    ])?;
                                    seq = next;
                                    hash = next_hash;
                                    let receipt = AppendReceipt { seq, hash };
                                    pending.push(Pending::Append(reply, Ok(receipt)));
                                }
                                Err(err) => {
                                    pending.push(Pending::Append(reply, Err(refused(err))));
                                }
                            }
                        }
                        Command::Flush { reply } => {
                            flush = true;
                            pending.push(Pending::Unit(reply, Ok(())));
                        }
                        Command::InsertAgent { agent, reply } => {
                            let result = insert_agent(&tx, &agent)?;
                            pending.push(Pending::Unit(reply, result));
                        }
                        Command::DeleteAgent { id, reply } => {
                            let n_deleted = tx.execute("DELETE FROM agents WHERE id = ?1", [id])?;
                            pending.push(Pending::Bool(reply, Ok(n_deleted > 0)));
                        }
                        Command::PutPolicyRecord {
                            kind,
                            id,
                            body,
                            reply,
                        } => {
                            tx.execute(
                                "INSERT INTO policy_records (kind, id, body) VALUES (?1, ?2, ?3)
                                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                                params![kind, id, body],
                            )?;
                            pending.push(Pending::Unit(reply, Ok(())));
                        }
                        Command::DeletePolicyRecord { kind, id, reply } => {
                            let n_deleted = tx.execute(
                                "DELETE FROM policy_records WHERE kind = ?1 AND id = ?2",
                                params![kind, id],
                            )?;
                            pending.push(Pending::Bool(reply, Ok(n_deleted > 0)));
                        }
                        // Taken out of the batch above.
                        Command::QuotaCount(_) => {}
                    }
                }
            }
            let checkpoint = self.state.due_checkpoint(seq, hash, flush);
            if let Some(checkpoint) = &checkpoint {
                self.state.insert_checkpoint(&tx, checkpoint)?;
            }
            tx.commit()?;
            Ok(checkpoint)
        })();
        match outcome {
            Ok(checkpoint) => {
                // INVARIANT (durable-before-ack): the head moves and replies go out only after
                // the commit returned, with synchronous = FULL.
                self.state.head_seq = seq;
                self.state.head_hash = hash;
                if let Some(checkpoint) = checkpoint {
                    self.state.checkpoint_seq = checkpoint.seq;
                    self.state.checkpoint_time = checkpoint.time;
                }
                for entry in pending {
                    answer(entry);
                }
            }
            Err(err) => {
                // The batch is gone; its quota counts (and the retried ones) are kept for the
                // next batch, so a later acknowledged append still vouches for them.
                self.quota_retry = quota_counts;
                for entry in pending {
                    answer(fail(entry, &err));
                }
            }
        }
    }

    /// Writes a checkpoint outside any batch: on shutdown (`force`) or when the interval passed.
    fn checkpoint_alone(&mut self, force: bool) -> Result<(), rusqlite::Error> {
        let state = &mut self.state;
        let Some(checkpoint) = state.due_checkpoint(state.head_seq, state.head_hash, force) else {
            return Ok(());
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        state.insert_checkpoint(&tx, &checkpoint)?;
        tx.commit()?;
        state.checkpoint_seq = checkpoint.seq;
        state.checkpoint_time = checkpoint.time;
        Ok(())
    }
}

impl WriterState {
    /// The checkpoint to write for head `seq`, if one is due.
    fn due_checkpoint(&self, seq: u64, hash: [u8; 32], force: bool) -> Option<Checkpoint> {
        if seq <= self.checkpoint_seq {
            return None;
        }
        let now = self.clock.now();
        let interval =
            SignedDuration::try_from(self.checkpoint_interval).unwrap_or(SignedDuration::MAX);
        let due = force
            || seq - self.checkpoint_seq >= self.checkpoint_every
            || now.duration_since(self.checkpoint_time) >= interval;
        due.then_some(Checkpoint {
            seq,
            hash,
            time: now,
        })
    }

    fn insert_checkpoint(
        &self,
        tx: &rusqlite::Transaction<'_>,
        checkpoint: &Checkpoint,
    ) -> Result<(), rusqlite::Error> {
        let signed = checkpoint
            .sign(&self.key)
            .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
        tx.execute(
            "INSERT INTO ledger_checkpoints (seq, signed, signature) VALUES (?1, ?2, ?3)",
            params![
                i64::try_from(checkpoint.seq).unwrap_or(i64::MAX),
                signed.signed_bytes,
                signed.signature.as_slice()
            ],
        )?;
        Ok(())
    }
}

/// Inserts an agent; a duplicate id or token hash is a [`StoreError::Conflict`] for this command
/// only (SQLite undoes just the failed statement).
fn insert_agent(
    tx: &rusqlite::Transaction<'_>,
    agent: &StoredAgent,
) -> Result<Result<(), StoreError>, rusqlite::Error> {
    let json = |list: &[String]| serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned());
    let inserted = tx.execute(
        "INSERT INTO agents (id, token_sha256, roles, tags, project, allow, may_assert_identity,
         created_at, catalog) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            agent.id,
            agent.token_sha256.as_slice(),
            json(&agent.roles),
            json(&agent.tags),
            agent.project,
            json(&agent.allow),
            agent.may_assert_identity,
            agent.created_at.to_string(),
            agent.catalog
        ],
    );
    match inserted {
        Ok(_) => Ok(Ok(())),
        Err(rusqlite::Error::SqliteFailure(err, _))
            if err.code == SqliteCode::ConstraintViolation =>
        {
            Ok(Err(StoreError::Conflict))
        }
        Err(err) => Err(err),
    }
}

/// The store's answer to an event the ledger format cannot hold.
pub(crate) fn refused(err: LedgerError) -> StoreError {
    match err {
        LedgerError::TooLarge { size, limit } => StoreError::TooLarge { size, limit },
        other => StoreError::Unencodable(other),
    }
}

fn answer(entry: Pending) {
    // A caller that went away (cancelled future) no longer needs its answer.
    match entry {
        Pending::Append(reply, result) => drop(reply.send(result)),
        Pending::Unit(reply, result) => drop(reply.send(result)),
        Pending::Bool(reply, result) => drop(reply.send(result)),
    }
}

/// Turns a command's answer into the batch's failure (commands refused on their own stay so).
fn fail(entry: Pending, err: &Arc<rusqlite::Error>) -> Pending {
    let unavailable =
        || StoreError::Unavailable(BackendError::new("commit ledger batch", Arc::clone(err)));
    match entry {
        Pending::Append(reply, result) => Pending::Append(reply, result.and(Err(unavailable()))),
        Pending::Unit(reply, result) => Pending::Unit(reply, result.and(Err(unavailable()))),
        Pending::Bool(reply, result) => Pending::Bool(reply, result.and(Err(unavailable()))),
    }
}
