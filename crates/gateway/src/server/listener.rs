//! The HTTP listener: a listen backlog, connection caps per listener and per peer address,
//! header-read and idle timeouts, accept-error backoff and graceful stop.
//!
//! A connection is *busy* from a request's head until its response body is written out (a
//! stream included); otherwise it is waiting. A waiting connection is closed when a request head
//! does not arrive complete within `header_read_timeout` of its first byte (or of the accept),
//! and when nothing moves on it for `idle_timeout` (a kept-alive connection between requests). A
//! busy connection whose writes have been blocked for `idle_timeout` (a client that stopped
//! reading its response) is closed too; a quiet stream is not. At a cap, the waiting connection with the oldest activity is closed to make room
//! (of the same peer at the per-peer cap); only when every connection is busy is the new one
//! refused. So a flood of half-open connections and slow senders, even from the address a probe
//! uses, never keeps `/healthz` from answering.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// First pause after a failed accept (descriptors exhausted, say); doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Descriptors kept for the store, upstreams and the other listeners when the connection cap is
/// fitted to the descriptor limit: connections get at most three quarters of it.
const FD_SHARE_NUM: u64 = 3;
const FD_SHARE_DEN: u64 = 4;

/// How the listener treats connections (from `[server]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// The descriptor limit (`RLIMIT_NOFILE`) before and after start-up raised it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    pub before: Option<u64>,
    pub now: Option<u64>,
    pub hard: Option<u64>,
}

/// Raises the soft descriptor limit to the hard one, where the system allows it.
pub fn raise_fd_limit() -> FdLimit {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let before = limit.current;
        if limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if let Err(err) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(error = %err, "cannot raise the open-file limit");
            }
        }
        let now = getrlimit(Resource::Nofile);
        FdLimit {
            before,
            now: now.current,
            hard: now.maximum,
        }
    }
    #[cfg(not(unix))]
    FdLimit {
        before: None,
        now: None,
        hard: None,
    }
}

/// The connection cap that fits in `fd_limit` descriptors (three quarters of them).
pub fn fitted_cap(configured: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(limit) => {
            let share = limit.saturating_mul(FD_SHARE_NUM) / FD_SHARE_DEN;
            configured.min(usize::try_from(share).unwrap_or(usize::MAX).max(1))
        }
        None => configured,
    }
}

/// Binds `addr` with a listen backlog of `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `router` on `listener` until `stop` turns true, then stops accepting, lets each
/// connection finish its request and waits for all of them (the caller bounds the wait).
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let table = Arc::new(Table::new(limits, metrics));
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = MIN_BACKOFF;
                let Some(conn) = table.admit(peer.ip()) else {
                    drop(stream);
                    continue;
                };
                // Responses go out in several small writes (headers, SSE events): without
                // TCP_NODELAY, Nagle's algorithm holds each later write until the peer's
                // delayed ACK, tens of ms.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    conn,
                    Arc::clone(&table),
                    router.clone(),
                    stop.clone(),
                ));
            }
            Err(err) => {
                tracing::warn!(error = %err, pause_ms = backoff.as_millis() as u64, "accept failed; pausing");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
            }
        }
    }
    drop(listener);
    let mut live = table.live.subscribe();
    let _ = live.wait_for(|n_live| *n_live == 0).await;
}

/// Why the listener closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// The open connections, by peer address.
struct Table {
    limits: ListenerLimits,
    metrics: Metrics,
    inner: Mutex<TableInner>,
    /// How many connection tasks run.
    live: watch::Sender<usize>,
}

#[derive(Default)]
struct TableInner {
    next_id: u64,
    total: usize,
    by_ip: HashMap<IpAddr, Vec<Arc<ConnState>>>,
}

/// One connection's activity, shared by its stream, its service and its watchdog.
struct ConnState {
    id: u64,
    activity: Mutex<Activity>,
    /// Signalled when the connection is evicted to make room.
    evict: Notify,
    /// Signalled when the deadline may have appeared: no longer busy, or a write blocked.
    changed: Notify,
}

struct Activity {
    /// Requests being handled.
    busy: usize,
    /// Last byte read or written, or the last request finished.
    last: Instant,
    /// When the head being awaited started arriving (the accept, for a new connection).
    head_since: Option<Instant>,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
}

impl Table {
    fn new(limits: ListenerLimits, metrics: Metrics) -> Self {
        Self {
            limits,
            metrics,
            inner: Mutex::new(TableInner::default()),
            live: watch::Sender::new(0),
        }
    }

    /// Registers a connection from `ip`, closing the stalest waiting connection when a cap is
    /// reached; `None` when every connection in the way is busy (the new one is refused).
    fn admit(&self, ip: IpAddr) -> Option<Arc<ConnState>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let per_ip = inner.by_ip.get(&ip).map_or(0, Vec::len);
        if per_ip >= self.limits.max_connections_per_ip {
            if !inner.evict_stalest(Some(ip)) {
                drop(inner);
                self.refused("per_ip_cap");
                return None;
            }
            self.evicted();
        } else if inner.total >= self.limits.max_connections {
            if !inner.evict_stalest(None) {
                drop(inner);
                self.refused("listener_cap");
                return None;
            }
            self.evicted();
        }
        inner.next_id = inner.next_id.wrapping_add(1);
        let now = Instant::now();
        let conn = Arc::new(ConnState {
            id: inner.next_id,
            activity: Mutex::new(Activity {
                busy: 0,
                last: now,
                head_since: Some(now),
                write_blocked_since: None,
            }),
            evict: Notify::new(),
            changed: Notify::new(),
        });
        inner.by_ip.entry(ip).or_default().push(Arc::clone(&conn));
        inner.total += 1;
        let total = inner.total;
        drop(inner);
        self.live.send_modify(|n_live| *n_live += 1);
        self.metrics
            .set_gauge("portcullis_http_connections_open", &[], total as f64);
        Some(conn)
    }

    fn remove(&self, ip: IpAddr, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.forget(ip, id);
        let total = inner.total;
        drop(inner);
        self.live
            .send_modify(|n_live| *n_live = n_live.saturating_sub(1));
        self.metrics
            .set_gauge("portcullis_http_connections_open", &[], total as f64);
    }

    fn refused(&self, reason: &'static str) {
        tracing::debug!(reason, "connection refused");
        self.metrics.increment(
            "portcullis_http_connections_refused_total",
            &[("reason", reason.to_owned())],
        );
    }

    fn evicted(&self) {
        self.closed(CloseReason::Evicted);
    }

    fn closed(&self, reason: CloseReason) {
        self.metrics.increment(
            "portcullis_http_connections_closed_total",
            &[("reason", reason.as_str().to_owned())],
        );
    }
}

impl TableInner {
    /// Evicts the waiting connection with the oldest activity: of `ip`, or else of the peer with
    /// the most connections. False when there is none.
    fn evict_stalest(&mut self, ip: Option<IpAddr>) -> bool {
        let ip = match ip {
            Some(ip) => ip,
            None => match self
                .by_ip
                .iter()
                .max_by_key(|(_, conns)| conns.len())
                .map(|(ip, _)| *ip)
            {
                Some(ip) => ip,
                None => return false,
            },
        };
        let Some(conns) = self.by_ip.get(&ip) else {
            return false;
        };
        let stalest = conns
            .iter()
            .filter_map(|conn| {
                let activity = conn.activity.lock().unwrap_or_else(PoisonError::into_inner);
                (activity.busy == 0).then_some((activity.last, Arc::clone(conn)))
            })
            .min_by_key(|(last, _)| *last)
            .map(|(_, conn)| conn);
        match stalest {
            Some(conn) => {
                conn.evict.notify_one();
                self.forget(ip, conn.id);
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, ip: IpAddr, id: u64) {
        let Some(conns) = self.by_ip.get_mut(&ip) else {
            return;
        };
        let before = conns.len();
        conns.retain(|conn| conn.id != id);
        if conns.len() < before {
            self.total = self.total.saturating_sub(1);
        }
        if conns.is_empty() {
            self.by_ip.remove(&ip);
        }
    }
}

impl ConnState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed, and why; `None` while busy with its writes flowing.
    fn deadline(&self, limits: &ListenerLimits) -> Option<(Instant, CloseReason)> {
        let activity = self.lock();
        if activity.busy > 0 {
            return activity
                .write_blocked_since
                .map(|since| (since + limits.idle_timeout, CloseReason::IdleTimeout));
        }
        let idle = (
            activity.last + limits.idle_timeout,
            CloseReason::IdleTimeout,
        );
        Some(match activity.head_since {
            Some(since) => {
                let head = (
                    since + limits.header_read_timeout,
                    CloseReason::HeaderTimeout,
                );
                if head.0 <= idle.0 { head } else { idle }
            }
            None => idle,
        })
    }

    fn read(&self) {
        let now = Instant::now();
        let mut activity = self.lock();
        activity.last = now;
        if activity.busy == 0 && activity.head_since.is_none() {
            activity.head_since = Some(now);
        }
    }

    fn wrote(&self) {
        let mut activity = self.lock();
        activity.last = Instant::now();
        activity.write_blocked_since = None;
    }

    fn write_blocked(&self) {
        let mut activity = self.lock();
        if activity.write_blocked_since.is_none() {
            activity.write_blocked_since = Some(Instant::now());
            drop(activity);
            self.changed.notify_one();
        }
    }

    fn begin_request(&self) {
        let mut activity = self.lock();
        activity.busy += 1;
        activity.head_since = None;
    }

    fn end_request(&self) {
        let mut activity = self.lock();
        activity.busy = activity.busy.saturating_sub(1);
        activity.last = Instant::now();
        if activity.busy == 0 {
            drop(activity);
            self.changed.notify_one();
        }
    }
}

/// Resolves when the connection is to be closed: evicted, or past its deadline while waiting.
async fn watchdog(conn: &ConnState, limits: &ListenerLimits) -> CloseReason {
    loop {
        match conn.deadline(limits) {
            Some((deadline, reason)) => {
                if deadline <= Instant::now() {
                    return reason;
                }
                tokio::select! {
                    () = conn.evict.notified() => return CloseReason::Evicted,
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => tokio::select! {
                () = conn.evict.notified() => return CloseReason::Evicted,
                () = conn.changed.notified() => {}
            },
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<ConnState>,
    table: Arc<Table>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let limits = table.limits;
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        conn: Arc::clone(&conn),
    });
    let service = ConnService {
        router,
        peer,
        conn: Arc::clone(&conn),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No hyper timer: the watchdog below keeps the header-read and idle deadlines.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                break;
            }
            reason = watchdog(&conn, &limits) => {
                if reason != CloseReason::Evicted {
                    table.closed(reason);
                }
                tracing::debug!(reason = reason.as_str(), "connection closed by the listener");
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                connection.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
    table.remove(peer.ip(), conn.id);
}

/// The router for one connection: adds the peer address and keeps the busy count.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    conn: Arc<ConnState>,
}

/// Ends a request's busy time when dropped: with its response body, once written out (also when
/// the connection is cut mid-request).
struct BusyGuard(Arc<ConnState>);

/// A response body that keeps its request busy until hyper is done with it.
struct TrackedBody {
    inner: axum::body::Body,
    _busy: BusyGuard,
}

impl hyper::body::Body for TrackedBody {
    type Data = hyper::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = hyper::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.conn.begin_request();
        let busy = BusyGuard(Arc::clone(&self.conn));
        let mut router = self.router.clone();
        Box::pin(async move {
            // A `Router` is always ready; `call` needs no `poll_ready` first.
            let Ok(response) = tower::Service::call(&mut router, req).await;
            Ok(response.map(|inner| TrackedBody { inner, _busy: busy }))
        })
    }
}

/// A TCP stream that records when bytes move.
struct WatchedStream {
    inner: TcpStream,
    conn: Arc<ConnState>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read();
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        match &polled {
            Poll::Ready(Ok(written)) if *written > 0 => self.conn.wrote(),
            Poll::Pending => self.conn.write_blocked(),
            _ => {}
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        match &polled {
            Poll::Ready(Ok(written)) if *written > 0 => self.conn.wrote(),
            Poll::Pending => self.conn.write_blocked(),
            _ => {}
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: usize, total: usize) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: total,
            max_connections_per_ip: per_ip,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn caps_evict_the_stalest_waiting_connection_and_refuse_when_all_are_busy() {
        let table = Table::new(limits(2, 3), Metrics::new());
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = table.admit(a).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = table.admit(a).unwrap();
        second.begin_request();
        // Per-peer cap: the waiting first connection makes room.
        let third = table.admit(a).unwrap();
        assert_eq!(watchdog(&first, &table.limits).await, CloseReason::Evicted);
        third.begin_request();
        // Both of `a`'s connections are busy: refused.
        assert!(table.admit(a).is_none());
        // Listener cap: `b` fits once, then only by evicting a waiting one, and none is.
        let _b1 = table.admit(b).unwrap();
        _b1.begin_request();
        assert!(table.admit(b).is_none());
        second.end_request();
        assert!(table.admit(b).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_head_and_idle_timeouts() {
        let table = Table::new(limits(8, 8), Metrics::new());
        let conn = table.admit([127, 0, 0, 1].into()).unwrap();
        let started = Instant::now();
        assert_eq!(
            watchdog(&conn, &table.limits).await,
            CloseReason::HeaderTimeout
        );
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        conn.begin_request();
        conn.end_request();
        let idle_from = Instant::now();
        assert_eq!(
            watchdog(&conn, &table.limits).await,
            CloseReason::IdleTimeout
        );
        assert_eq!(idle_from.elapsed(), Duration::from_secs(60));
        conn.read();
        let head_from = Instant::now();
        assert_eq!(
            watchdog(&conn, &table.limits).await,
            CloseReason::HeaderTimeout
        );
        assert_eq!(head_from.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_closes_only_when_its_writes_stay_blocked() {
        let table = Table::new(limits(8, 8), Metrics::new());
        let conn = table.admit([127, 0, 0, 1].into()).unwrap();
        conn.begin_request();
        assert_eq!(
            conn.deadline(&table.limits),
            None,
            "a quiet stream stays open"
        );
        conn.write_blocked();
        let blocked_from = Instant::now();
        assert_eq!(
            watchdog(&conn, &table.limits).await,
            CloseReason::IdleTimeout
        );
        assert_eq!(blocked_from.elapsed(), Duration::from_secs(60));
        conn.wrote();
        assert_eq!(conn.deadline(&table.limits), None);
    }

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        assert_eq!(fitted_cap(4096, Some(1024)), 768);
        assert_eq!(fitted_cap(4096, Some(1_048_576)), 4096);
        assert_eq!(fitted_cap(4096, None), 4096);
    }
}
