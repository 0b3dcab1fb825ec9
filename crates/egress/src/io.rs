//! Byte counting around the target's socket, the idle watch, and per-agent tunnel slots.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes moved to (`up`) and from (`down`) the target.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    up: AtomicU64,
    down: AtomicU64,
}

impl Counters {
    pub(crate) fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn add_up(&self, n: usize) {
        add(&self.up, n);
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn up_counter(&self) -> &AtomicU64 {
        &self.up
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn down_counter(&self) -> &AtomicU64 {
        &self.down
    }

    fn total(&self) -> u64 {
        self.up().wrapping_add(self.down())
    }
}

/// The target's socket, counting every byte written (up) and read (down).
#[derive(Debug)]
pub(crate) struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        add(
            &this.counters.down,
            buf.filled().len().saturating_sub(before),
        );
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        add(&this.counters.up, n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        add(&this.counters.up, n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Returns once a whole `idle` period passes with no byte moving either way.
pub(crate) async fn idle_watch(counters: &Counters, idle: Duration) {
    let mut last = counters.total();
    loop {
        tokio::time::sleep(idle).await;
        let now = counters.total();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Open client connections of the proxy, in all and per address.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted client connection; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Admitted {
    counts: Arc<ConnectionCounts>,
    peer: IpAddr,
}

impl ConnectionCounts {
    /// Admits a connection from `peer`, or `None` when `max` are open in all or `per_ip` from
    /// this address.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        max: usize,
        per_ip: usize,
    ) -> Option<Admitted> {
        let peer = peer.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (total, by_peer) = &mut *open;
        let from_peer = by_peer.get(&peer).copied().unwrap_or(0);
        if *total >= max || from_peer >= per_ip {
            return None;
        }
        *total += 1;
        by_peer.insert(peer, from_peer + 1);
        Some(Admitted {
            counts: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (total, by_peer) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(count) = by_peer.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// Open tunnels per agent.
#[derive(Debug, Default)]
pub(crate) struct TunnelSlots {
    open: Mutex<HashMap<String, usize>>,
}

/// One open tunnel; gives its slot back when dropped.
#[derive(Debug)]
pub(crate) struct TunnelSlot {
    slots: Arc<TunnelSlots>,
    agent: String,
}

impl TunnelSlots {
    /// Takes a slot for `agent`, or `None` when it already holds `max`.
    pub(crate) fn acquire(self: &Arc<Self>, agent: &str, max: usize) -> Option<TunnelSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(agent.to_owned()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(TunnelSlot {
            slots: Arc::clone(self),
            agent: agent.to_owned(),
        })
    }

    #[cfg(test)]
    fn open(&self, agent: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(agent).copied().unwrap_or(0)
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.agent) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.agent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_address() {
        let counts = Arc::new(ConnectionCounts::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:127.0.0.3".parse().unwrap();
        let a1 = counts.admit(a, 3, 2).unwrap();
        let _a2 = counts.admit(a, 3, 2).unwrap();
        assert!(counts.admit(a, 3, 2).is_none(), "per address");
        let _b1 = counts.admit(b, 3, 2).unwrap();
        assert!(
            counts.admit("127.0.0.4".parse().unwrap(), 3, 2).is_none(),
            "in all"
        );
        drop(a1);
        assert!(counts.admit(a, 3, 2).is_some());
    }

    #[test]
    fn slots_are_per_agent_and_returned_on_drop() {
        let slots = Arc::new(TunnelSlots::default());
        let a1 = slots.acquire("a", 2).unwrap();
        let a2 = slots.acquire("a", 2).unwrap();
        assert!(slots.acquire("a", 2).is_none());
        let b1 = slots.acquire("b", 2).unwrap();
        assert_eq!(slots.open("a"), 2);
        drop(a1);
        assert_eq!(slots.open("a"), 1);
        let _a3 = slots.acquire("a", 2).unwrap();
        drop((a2, b1));
        assert_eq!(slots.open("b"), 0);
    }

    #[tokio::test]
    async fn counted_counts_both_ways() {
        let (near, mut far) = tokio::io::duplex(64);
        let counters = Arc::new(Counters::default());
        let mut counted = Counted::new(near, Arc::clone(&counters));
        counted.write_all(b"hello").await.unwrap();
        far.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        counted.read_exact(&mut buf).await.unwrap();
        assert_eq!((counters.up(), counters.down()), (5, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_watch_fires_only_when_nothing_moves() {
        let counters = Counters::default();
        let start = tokio::time::Instant::now();
        add(&counters.up, 1);
        let watch = idle_watch(&counters, Duration::from_secs(10));
        tokio::pin!(watch);
        // Bytes move during the first period, so the watch needs a second quiet one.
        tokio::select! {
            () = &mut watch => panic!("fired too early"),
            () = async { tokio::time::sleep(Duration::from_secs(5)).await; add(&counters.down, 1); std::future::pending::<()>().await } => {}
            () = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
        watch.await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }
}
