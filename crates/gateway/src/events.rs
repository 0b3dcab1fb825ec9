//! Events: every decision is appended to the ledger, counted in metrics and streamed to
//! `/admin/events` subscribers.

use std::sync::Arc;

use portcullis_core::Event;
use portcullis_store::{AppendReceipt, Store, StoreError};
use tokio::sync::broadcast;

use crate::metrics::Metrics;

/// How many events a slow `/admin/events` subscriber may fall behind before it skips ahead.
const STREAM_BUFFER: usize = 1024;

/// The one way events leave a request: ledger, metrics, live stream.
#[derive(Clone, Debug)]
pub struct Events {
    store: Arc<dyn Store>,
    metrics: Metrics,
    stream: broadcast::Sender<Arc<serde_json::Value>>,
}

impl Events {
    pub fn new(store: Arc<dyn Store>, metrics: Metrics) -> Self {
        let (stream, _) = broadcast::channel(STREAM_BUFFER);
        Self {
            store,
            metrics,
            stream,
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

    /// A live stream of events appended from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<serde_json::Value>> {
        self.stream.subscribe()
    }
}
