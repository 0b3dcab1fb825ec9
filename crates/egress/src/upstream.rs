//! Target-side state of the proxy: the close-record guard, the forwarded body, the keep-alive pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use crate::deps::{CloseRecord, EgressEvents};
use crate::io::Counters;
use crate::live::{Cut, LiveGuard};
use crate::reason::ProxyReason;
use crate::road::OpenEnd;

/// Sends the close record when dropped: at the end of a tunnel or of a forwarded response body.
/// It finishes the action's road ([`OpenEnd`]); a connection whose road was dropped before it
/// handed back its end (the client went away during the dial) sends it to `events`.
#[derive(Debug)]
pub(crate) struct CloseOnDrop {
    pub(crate) events: Arc<dyn EgressEvents>,
    /// The end of the action's road, once the road handed it back.
    pub(crate) end: Option<Box<dyn OpenEnd>>,
    pub(crate) record: Option<CloseRecord>,
    pub(crate) counters: Arc<Counters>,
    /// The counters' values when this request started using the connection.
    pub(crate) base: (u64, u64),
    pub(crate) started: Instant,
    /// The connection's registration as live and its cut signal; a cut's reason replaces the
    /// record's.
    pub(crate) live: Option<(LiveGuard, Arc<Cut>)>,
}

impl CloseOnDrop {
    /// Counts this request's bytes on `counters` (a pooled connection's, say) from now on.
    pub(crate) fn measure(&mut self, counters: &Arc<Counters>) {
        self.counters = Arc::clone(counters);
        self.base = (counters.up(), counters.down());
    }

    pub(crate) fn set_reason(&mut self, reason: ProxyReason) {
        if let Some(record) = &mut self.record {
            record.reason = reason.as_str();
        }
    }

    /// Ends a connection that failed before it served anything: its close record with
    /// `reason`, for the road to write as the refusal's record (nothing is sent from here).
    pub(crate) fn failed(mut self, reason: ProxyReason) -> Option<CloseRecord> {
        self.set_reason(reason);
        self.take_record()
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.flush();
    }
}

impl CloseOnDrop {
    /// Sends the close record (once).
    pub(crate) fn flush(&mut self) {
        let Some(record) = self.take_record() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match self.end.take() {
            Some(end) => {
                runtime.spawn(end.finish(record));
            }
            None => {
                let events = Arc::clone(&self.events);
                runtime.spawn(async move { events.close(record).await });
            }
        }
    }

    /// The close record with its final reason, bytes and duration (once); the connection is no
    /// longer live.
    fn take_record(&mut self) -> Option<CloseRecord> {
        let mut record = self.record.take()?;
        if let Some((guard, cut)) = self.live.take() {
            if let Some(reason) = cut.reason() {
                record.reason = reason.as_str();
            }
            drop(guard);
        }
        record.bytes_up = self.counters.up().wrapping_sub(self.base.0);
        record.bytes_down = self.counters.down().wrapping_sub(self.base.1);
        record.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(record)
    }
}

/// A forwarded response body that sends the close record once it is finished or dropped, and
/// gives a fully read connection back to the pool.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub(crate) inner: Incoming,
    pub(crate) close: CloseOnDrop,
    pub(crate) reuse: Option<(Arc<Pool>, PoolKey, Upstream)>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish(true),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Tracked {
    /// The body ended: send the close record now, and pool the connection if it is reusable.
    fn finish(&mut self, complete: bool) {
        if let Some((pool, key, mut upstream)) = self.reuse.take() {
            // Close with this request's bytes before another request can add to them.
            self.close.flush();
            if complete && !upstream.sender.is_closed() {
                upstream.idle_since = Instant::now();
                pool.put(key, upstream);
            }
        }
    }
}

/// Which pooled connections a request may reuse: same agent, same vetted address, same host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub(crate) agent: String,
    pub(crate) dialed: SocketAddr,
    pub(crate) authority: String,
}

/// An HTTP/1.1 connection to a target, with its byte counters.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) sender: hyper::client::conn::http1::SendRequest<Incoming>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) idle_since: Instant,
}

/// Idle keep-alive connections to targets, reused only under the same [`PoolKey`].
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Upstream>>>,
}

/// Most idle connections kept per key, and most keys.
const POOL_PER_KEY: usize = 64;
const POOL_KEYS: usize = 1024;

impl Pool {
    pub(crate) fn take(&self, key: &PoolKey, idle_timeout: Duration) -> Option<Upstream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        let mut found = None;
        while let Some(upstream) = list.pop() {
            if !upstream.sender.is_closed() && upstream.idle_since.elapsed() < idle_timeout {
                found = Some(upstream);
                break;
            }
        }
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    pub(crate) fn put(&self, key: PoolKey, upstream: Upstream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= POOL_KEYS && !idle.contains_key(&key) {
            return;
        }
        let list = idle.entry(key).or_default();
        if list.len() < POOL_PER_KEY {
            list.push(upstream);
        }
    }
}
