//! Events: every decision is appended to the ledger, counted in metrics and streamed to
//! `/admin/events` subscribers.

use std::sync::Arc;

use portcullis_core::Event;
use portcullis_store::{AppendReceipt, Store, StoreError};
use tokio::sync::{RwLock, broadcast};

use crate::metrics::Metrics;

/// How many events a slow `/admin/events` subscriber may fall behind before it skips ahead.
const STREAM_BUFFER: usize = 1024;

/// The one way events leave a request: ledger, metrics, live stream.
#[derive(Clone, Debug)]
pub struct Events {
    store: Arc<dyn Store>,
    metrics: Metrics,
    stream: broadcast::Sender<Arc<serde_json::Value>>,
    /// Held shared by every trailing append until it is durable (or failed); taken exclusively
    /// by [`Events::settle_trailing`]. Tokio's lock queues new readers behind a waiting writer,
    /// so a barrier waits for the appends issued before it, never for later ones.
    trailing: Arc<RwLock<()>>,
}

impl Events {
    pub fn new(store: Arc<dyn Store>, metrics: Metrics) -> Self {
        let (stream, _) = broadcast::channel(STREAM_BUFFER);
        Self {
            store,
            metrics,
            stream,
            trailing: Arc::default(),
        }
    }

    /// Appends `event` durably, then counts and streams it. An append failure is returned so the
    /// caller can refuse the action it was recording (nothing acknowledged goes unrecorded).
    pub async fn emit(&self, event: Event) -> Result<AppendReceipt, StoreError> {
        let labels = [
            ("kind", event.kind.clone()),
            ("decision", event.decision.as_str().to_owned()),
            ("reason", event.reason.clone()),
        ];
        match self.store.append(event.clone()).await {
            Ok(receipt) => {
                self.metrics
                    .increment("portcullis_ledger_appends_total", &[]);
                self.metrics
                    .increment("portcullis_decisions_total", &labels);
                let mut json = serde_json::to_value(&event).unwrap_or(serde_json::Value::Null);
                if let Some(object) = json.as_object_mut() {
                    object.insert("seq".into(), receipt.seq.into());
                    object.insert("hash".into(), hex::encode(receipt.hash).into());
                }
                // No subscribers is fine: the ledger already has the event.
                let _ = self.stream.send(Arc::new(json));
                Ok(receipt)
            }
            Err(err) => {
                self.metrics
                    .increment("portcullis_ledger_append_failures_total", &[]);
                tracing::error!(kind = %event.kind, error = %err, "ledger append failed");
                Err(err)
            }
        }
    }

    /// Records `event`, logging (not returning) a failure: for events about requests that are
    /// being refused anyway.
    pub async fn emit_best_effort(&self, event: Event) {
        let _ = self.emit(event).await;
    }

    /// Appends `events` in the background, in the next group commit, without waiting for it: for
    /// outcome records of actions whose admission is already durable (the answer waits on one
    /// fsync, not two). A failure is logged and counted like any append's. Readers of the ledger
    /// call [`Events::settle_trailing`] first, so they see every trailing record issued before.
    pub fn emit_trailing(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let this = self.clone();
        self.trail(async move {
            futures::future::join_all(events.into_iter().map(|event| this.emit(event))).await;
        });
    }

    /// Runs `work` (a settlement and the records that follow it) in the background as a trailing
    /// write: [`Events::settle_trailing`] waits for it.
    pub fn trail(&self, work: impl Future<Output = ()> + Send + 'static) {
        // Taken now, before the answer leaves, so a barrier started later waits for this work.
        let held = Arc::clone(&self.trailing).try_read_owned();
        let trailing = Arc::clone(&self.trailing);
        tokio::spawn(async move {
            let _held = match held {
                Ok(held) => held,
                // A barrier is waiting: it was started before this work and need not wait for it.
                Err(_) => trailing.read_owned().await,
            };
            work.await;
        });
    }

    /// Waits until every trailing append issued before this call is durable (or has failed).
    pub async fn settle_trailing(&self) {
        drop(self.trailing.write().await);
    }

    /// A live stream of events appended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<serde_json::Value>> {
        self.stream.subscribe()
    }
}
