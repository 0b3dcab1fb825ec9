//! Failed authentication, limited per peer address and globally, with refusals above the limit
//! recorded in aggregate.
//!
//! Every surface that authenticates (agents' bearer tokens, the admin token, the metrics token)
//! answers a bad credential with 401. Up to `auth_failures_per_peer` such failures per peer, and
//! `auth_failures_global` in all, per window, are answered (and recorded) one by one; past either
//! limit a request without a valid credential is refused with 429 before anything looks at it,
//! and those refusals are counted, then recorded as one `auth.refused` event per peer and window
//! with the count ([`AuthFailures::drain_ended`]). A valid credential is never limited by others'
//! failures. A window starts at the first failure after the previous one ended, per peer and for
//! the global count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Peers tracked one by one; failures and refusals of further peers count only globally (and
/// their refusals in one tally without an address).
pub const MAX_TRACKED_PEERS: usize = 10_000;

/// The limits (from `[server]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureLimits {
    pub per_peer: u32,
    pub global: u32,
    pub window: Duration,
}

/// Failed authentications in the current windows.
#[derive(Debug)]
pub struct AuthFailures {
    limits: FailureLimits,
    inner: Mutex<Windows>,
}

/// Refusals of one peer (or of peers past [`MAX_TRACKED_PEERS`], `peer: None`) in one window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalTally {
    pub peer: Option<IpAddr>,
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Windows {
    global: Option<Count>,
    peers: HashMap<IpAddr, Count>,
    untracked_refused: u64,
    /// Tallies of windows that ended while a new failure started the next one.
    ended: Vec<RefusalTally>,
}

#[derive(Clone, Copy, Debug)]
struct Count {
    started: Instant,
    failures: u32,
    refused: u64,
}

impl AuthFailures {
    pub fn new(limits: FailureLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Windows::default()),
        }
    }

    pub fn limits(&self) -> FailureLimits {
        self.limits
    }

    /// Whether requests from `peer` without a valid credential are refused now; `Some(seconds)`
    /// until the window that limits it ends.
    pub fn limited(&self, peer: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let windows = self.lock();
        let live = |count: &&Count| now < count.started + self.limits.window;
        let peer_end = peer
            .and_then(|ip| windows.peers.get(&ip))
            .filter(live)
            .filter(|count| count.failures >= self.limits.per_peer)
            .map(|count| count.started + self.limits.window);
        let global_end = windows
            .global
            .as_ref()
            .filter(live)
            .filter(|count| count.failures >= self.limits.global)
            .map(|count| count.started + self.limits.window);
        let end = match (peer_end, global_end) {
            (Some(peer), Some(global)) => peer.max(global),
            (Some(end), None) | (None, Some(end)) => end,
            (None, None) => return None,
        };
        let left = end.saturating_duration_since(now);
        Some((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }

    /// Counts one refusal past a limit (recorded in aggregate when the peer's window ends).
    pub fn refused(&self, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut windows = self.lock();
        match peer.and_then(|ip| self.entry(&mut windows, ip, now)) {
            Some(count) => count.refused = count.refused.saturating_add(1),
            None => windows.untracked_refused = windows.untracked_refused.saturating_add(1),
        }
    }

    /// Counts one failed authentication of `peer`.
    pub fn failed(&self, peer: Option<IpAddr>) {
        let now = Instant::now();
        let mut windows = self.lock();
        let window = self.limits.window;
        let global = windows.global.get_or_insert(Count {
            started: now,
            failures: 0,
            refused: 0,
        });
        if now >= global.started + window {
            *global = Count {
                started: now,
                failures: 0,
                refused: 0,
            };
        }
        global.failures = global.failures.saturating_add(1);
        if let Some(count) = peer.and_then(|ip| self.entry(&mut windows, ip, now)) {
            count.failures = count.failures.saturating_add(1);
        }
    }

    /// The refusals of every window that has ended (forgetting those windows).
    pub fn drain_ended(&self) -> Vec<RefusalTally> {
        let now = Instant::now();
        let window = self.limits.window;
        let mut windows = self.lock();
        let mut res = std::mem::take(&mut windows.ended);
        let mut ended_peers: Vec<IpAddr> = Vec::new();
        for (ip, count) in &windows.peers {
            if now >= count.started + window {
                ended_peers.push(*ip);
                if count.refused > 0 {
                    res.push(RefusalTally {
                        peer: Some(*ip),
                        refused: count.refused,
                    });
                }
            }
        }
        for ip in ended_peers {
            windows.peers.remove(&ip);
        }
        let global_ended = windows
            .global
            .as_ref()
            .is_none_or(|count| now >= count.started + window);
        if global_ended && windows.untracked_refused > 0 {
            res.push(RefusalTally {
                peer: None,
                refused: windows.untracked_refused,
            });
            windows.untracked_refused = 0;
        }
        res.sort_by_key(|tally| tally.peer);
        res
    }

    /// The live window of `ip`, started now when it had none (or it ended); `None` when too many
    /// peers are tracked.
    fn entry<'a>(
        &self,
        windows: &'a mut Windows,
        ip: IpAddr,
        now: Instant,
    ) -> Option<&'a mut Count> {
        let window = self.limits.window;
        if !windows.peers.contains_key(&ip) && windows.peers.len() >= MAX_TRACKED_PEERS {
            return None;
        }
        let fresh = Count {
            started: now,
            failures: 0,
            refused: 0,
        };
        let count = windows.peers.entry(ip).or_insert(fresh);
        if now >= count.started + window {
            let ended = std::mem::replace(count, fresh);
            if ended.refused > 0 {
                windows.ended.push(RefusalTally {
                    peer: Some(ip),
                    refused: ended.refused,
                });
            }
            return windows.peers.get_mut(&ip);
        }
        windows.peers.get_mut(&ip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    fn failures(per_peer: u32, global: u32) -> AuthFailures {
        AuthFailures::new(FailureLimits {
            per_peer,
            global,
            window: Duration::from_secs(60),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_is_limited_after_its_failures_and_others_are_not() {
        let limiter = failures(3, 100);
        for _ in 0..3 {
            assert_eq!(limiter.limited(A), None);
            limiter.failed(A);
        }
        assert_eq!(limiter.limited(A), Some(60));
        assert_eq!(limiter.limited(B), None);
        limiter.refused(A);
        limiter.refused(A);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(limiter.limited(A), Some(45));
        assert!(
            limiter.drain_ended().is_empty(),
            "the window is still running"
        );
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(limiter.limited(A), None, "the window ended");
        assert_eq!(
            limiter.drain_ended(),
            vec![RefusalTally {
                peer: A,
                refused: 2
            }]
        );
        assert!(limiter.drain_ended().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn rotating_addresses_meet_the_global_limit() {
        let limiter = failures(3, 10);
        for last in 0..10u8 {
            let peer = Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, last)));
            assert_eq!(limiter.limited(peer), None);
            limiter.failed(peer);
        }
        assert!(limiter.limited(B).is_some());
        assert!(limiter.limited(None).is_some());
    }
}
