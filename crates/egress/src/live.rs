//! The proxy's live connections (open tunnels and in-flight forwarded requests) by caller, so
//! that the gateway can cut an agent's traffic when the kill switch engages or the agent is
//! revoked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::Notify;

use crate::reason::ProxyReason;

/// Every live connection of the proxy. The gateway holds it (through `ProxyDeps::live`) and
/// calls [`LiveConnections::cut`].
#[derive(Debug, Default)]
pub struct LiveConnections {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// Why a live connection was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// A kill switch covering the caller was engaged.
    KillSwitch,
    /// The caller's agent was revoked or deleted.
    Revoked,
}

impl CutReason {
    pub(crate) const fn proxy_reason(self) -> ProxyReason {
        match self {
            CutReason::KillSwitch => ProxyReason::KillSwitchClosed,
            CutReason::Revoked => ProxyReason::AgentRevoked,
        }
    }
}

/// The agent and project of a live connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LiveCaller {
    pub agent: String,
    pub project: Option<String>,
}

#[derive(Debug)]
struct Entry {
    caller: LiveCaller,
    cut: Arc<Cut>,
}

/// The cut signal of one connection: set once, then every waiter wakes.
#[derive(Debug, Default)]
pub(crate) struct Cut {
    reason: OnceLock<ProxyReason>,
    notify: Notify,
}

impl Cut {
    /// Cuts with `reason` (the first reason wins).
    fn fire(&self, reason: ProxyReason) {
        let _ = self.reason.set(reason);
        self.notify.notify_waiters();
        // A waiter that has not polled yet finds the permit.
        self.notify.notify_one();
    }

    /// Why the connection was cut, if it was.
    pub(crate) fn reason(&self) -> Option<ProxyReason> {
        self.reason.get().copied()
    }

    /// Resolves once the connection is cut.
    pub(crate) async fn cut(&self) -> ProxyReason {
        loop {
            if let Some(reason) = self.reason() {
                return reason;
            }
            self.notify.notified().await;
        }
    }
}

/// A registered live connection; unregisters when dropped.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    live: Arc<LiveConnections>,
    id: u64,
}

impl LiveConnections {
    /// Registers a connection of `caller` cut through `cut`.
    pub(crate) fn register(self: &Arc<Self>, caller: LiveCaller, cut: Arc<Cut>) -> LiveGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Entry { caller, cut });
        LiveGuard {
            live: Arc::clone(self),
            id,
        }
    }

    /// The distinct callers with live connections now.
    pub fn callers(&self) -> Vec<LiveCaller> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut res: Vec<LiveCaller> = entries.values().map(|e| e.caller.clone()).collect();
        res.sort_by(|a, b| (&a.agent, &a.project).cmp(&(&b.agent, &b.project)));
        res.dedup();
        res
    }

    /// Cuts every live connection for which `verdict` answers a reason; returns how many. Each
    /// cut connection ends with a close record carrying the reason.
    pub fn cut(&self, verdict: impl Fn(&LiveCaller) -> Option<CutReason>) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut n_cut = 0;
        for entry in entries.values() {
            if entry.cut.reason().is_some() {
                continue;
            }
            if let Some(reason) = verdict(&entry.caller) {
                entry.cut.fire(reason.proxy_reason());
                n_cut += 1;
            }
        }
        n_cut
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.live
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cut_wakes_the_connection_and_the_guard_unregisters() {
        let live = Arc::new(LiveConnections::default());
        let caller = |agent: &str| LiveCaller {
            agent: agent.to_owned(),
            project: None,
        };
        let cut_a = Arc::new(Cut::default());
        let guard_a = live.register(caller("a"), Arc::clone(&cut_a));
        let _guard_b = live.register(caller("b"), Arc::new(Cut::default()));
        assert_eq!(live.callers(), [caller("a"), caller("b")]);
        let waiter = tokio::spawn({
            let cut_a = Arc::clone(&cut_a);
            async move { cut_a.cut().await }
        });
        let n_cut = live.cut(|c| (c.agent == "a").then_some(CutReason::Revoked));
        assert_eq!(n_cut, 1);
        assert_eq!(waiter.await.unwrap(), ProxyReason::AgentRevoked);
        // Cut once: a second verdict changes nothing.
        assert_eq!(live.cut(|_| Some(CutReason::KillSwitch)), 1);
        assert_eq!(cut_a.reason(), Some(ProxyReason::AgentRevoked));
        drop(guard_a);
        assert_eq!(live.len(), 1);
    }
}
