//! The open LLM streams, and the cut-off that closes those of agents a kill switch now covers or
//! that were revoked, within one second.
//!
//! Each streamed answer registers while it is open ([`LiveStreams::open`]). While any is open, one
//! watcher checks them every [`CUT_INTERVAL`] (the kill switch in memory; the stored agents, read
//! once per check, only when a run-time agent has a stream open) and signals each stream to cut;
//! the stream ends itself (`super::stream`). The watcher stops when the last stream closes, so an
//! idle gateway runs no task for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_core::ErrorCode;
use tokio::sync::watch;

use crate::guardrails::killswitch::KillScope;
use crate::http::AppState;

/// How often open streams are checked; a cut takes at most this long plus the check.
pub(super) const CUT_INTERVAL: Duration = Duration::from_millis(250);

/// Why an open stream is cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    KillSwitch(KillScope),
    Revoked,
}

impl Cause {
    /// The reason recorded (`llm.stream_cut`, `llm.call`).
    pub fn reason(&self) -> &'static str {
        match self {
            Cause::KillSwitch(_) => "llm_killswitch_closed",
            Cause::Revoked => "llm_agent_revoked",
        }
    }

    /// The code of the stream's last (error) event.
    pub fn code(&self) -> ErrorCode {
        match self {
            Cause::KillSwitch(_) => ErrorCode::KillswitchEngaged,
            Cause::Revoked => ErrorCode::Unauthorized,
        }
    }

    /// The kill switch's scope, for the record.
    pub fn scope(&self) -> Option<String> {
        match self {
            Cause::KillSwitch(scope) => Some(scope.to_string()),
            Cause::Revoked => None,
        }
    }
}

/// The open streams.
#[derive(Debug, Default)]
pub(super) struct LiveStreams {
    streams: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Whether a watcher runs.
    watching: AtomicBool,
}

#[derive(Debug)]
struct Entry {
    agent: String,
    project: Option<String>,
    /// Declared at run time (so it can be revoked), not in configuration.
    stored: bool,
    cut: watch::Sender<Option<Cause>>,
}

/// One open stream's registration; dropping it unregisters the stream.
#[derive(Debug)]
pub(super) struct LiveStream {
    id: u64,
    streams: Arc<LiveStreams>,
    cut: watch::Receiver<Option<Cause>>,
}

impl LiveStreams {
    /// Registers a stream of `agent` (of `project`), starting the watcher if none runs.
    pub fn open(
        self: &Arc<Self>,
        state: &AppState,
        agent: &str,
        project: Option<&str>,
    ) -> LiveStream {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (cut, receiver) = watch::channel(None);
        let entry = Entry {
            agent: agent.to_owned(),
            project: project.map(str::to_owned),
            stored: !state.identity.is_config_agent(agent),
            cut,
        };
        self.lock().insert(id, entry);
        // INVARIANT (watched-while-open): registered first, then the watcher started if none
        // runs; a watcher that found no stream re-checks after it stops (see `watch`).
        if !self.watching.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch(state.clone(), Arc::clone(self)));
        }
        LiveStream {
            id,
            streams: Arc::clone(self),
            cut: receiver,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Signals every stream `verdict` says to cut; how many.
    fn cut(&self, verdict: impl Fn(&Entry) -> Option<Cause>) -> usize {
        let streams = self.lock();
        let mut n_cut = 0;
        for entry in streams.values() {
            if entry.cut.borrow().is_some() {
                continue;
            }
            if let Some(cause) = verdict(entry) {
                entry.cut.send_replace(Some(cause));
                n_cut += 1;
            }
        }
        n_cut
    }

    /// The run-time agents with an open stream.
    fn stored_agents(&self) -> HashSet<String> {
        self.lock()
            .values()
            .filter(|entry| entry.stored)
            .map(|entry| entry.agent.clone())
            .collect()
    }
}

impl LiveStream {
    /// Waits until the stream is to be cut.
    pub async fn cut(&mut self) -> Cause {
        loop {
            if let Some(cause) = self.cut.borrow_and_update().clone() {
                return cause;
            }
            if self.cut.changed().await.is_err() {
                // Unregistered: never cut.
                return std::future::pending().await;
            }
        }
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.id);
    }
}

/// Checks the open streams every [`CUT_INTERVAL`] until none is open.
async fn watch(state: AppState, live: Arc<LiveStreams>) {
    let mut tick = tokio::time::interval(CUT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if live.is_empty() {
            live.watching.store(false, Ordering::SeqCst);
            // A stream opened meanwhile saw this watcher running: take it on again, unless a new
            // watcher already did.
            if live.is_empty() || live.watching.swap(true, Ordering::SeqCst) {
                return;
            }
            continue;
        }
        let stored = live.stored_agents();
        let existing = if stored.is_empty() {
            None
        } else {
            match state.store.list_agents().await {
                Ok(agents) => Some(
                    agents
                        .into_iter()
                        .map(|agent| agent.id)
                        .collect::<HashSet<_>>(),
                ),
                Err(error) => {
                    // Revocations wait for the next check; the kill switch does not.
                    tracing::warn!(%error, "cannot list agents to check open LLM streams");
                    None
                }
            }
        };
        let killswitch = &state.guardrails.killswitch;
        let n_cut = live.cut(|entry| {
            if let Some(scope) = killswitch.engaged_for(&entry.agent, entry.project.as_deref()) {
                return Some(Cause::KillSwitch(scope));
            }
            let revoked = entry.stored
                && existing
                    .as_ref()
                    .is_some_and(|ids| !ids.contains(&entry.agent));
            revoked.then_some(Cause::Revoked)
        });
        if n_cut > 0 {
            tracing::warn!(n_cut, "open LLM streams cut");
        }
    }
}
