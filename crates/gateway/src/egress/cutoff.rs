//! Cuts live proxy traffic (open tunnels, in-flight forwarded requests) of agents that a kill
//! switch now covers or that were revoked, within one second.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use portcullis_egress::{CutReason, LiveCaller, LiveConnections};

use crate::http::AppState;

/// How often live connections are checked; a cut takes at most this long plus the check.
pub const CUT_INTERVAL: Duration = Duration::from_millis(250);

/// Checks the live connections every [`CUT_INTERVAL`] and cuts those whose agent a kill switch
/// covers or no longer exists. Each cut connection writes its close record (the event).
pub async fn cut_off(state: AppState, live: Arc<LiveConnections>) {
    let mut tick = tokio::time::interval(CUT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if live.is_empty() {
            continue;
        }
        let callers = live.callers();
        let existing = stored_agents(&state, &callers).await;
        let n_cut = live.cut(|caller| verdict(&state, existing.as_ref(), caller));
        if n_cut > 0 {
            tracing::warn!(n_cut, "egress connections cut");
        }
    }
}

/// The ids of run-time agents in the store, read only when a live caller is one. `None` when
/// none is or the store does not answer (then revocations wait for the next check).
async fn stored_agents(state: &AppState, callers: &[LiveCaller]) -> Option<HashSet<String>> {
    if callers
        .iter()
        .all(|caller| state.identity.is_config_agent(&caller.agent))
    {
        return None;
    }
    match state.store.list_agents().await {
        Ok(agents) => Some(agents.into_iter().map(|agent| agent.id).collect()),
        Err(error) => {
            tracing::warn!(%error, "cannot list agents to check live egress connections");
            None
        }
    }
}

fn verdict(
    state: &AppState,
    existing: Option<&HashSet<String>>,
    caller: &LiveCaller,
) -> Option<CutReason> {
    if state
        .guardrails
        .killswitch
        .engaged_for(&caller.agent, caller.project.as_deref())
        .is_some()
    {
        return Some(CutReason::KillSwitch);
    }
    let revoked = !state.identity.is_config_agent(&caller.agent)
        && existing.is_some_and(|ids| !ids.contains(&caller.agent));
    revoked.then_some(CutReason::Revoked)
}
