//! MCP sessions belong to the agent that opened them.
//!
//! rmcp's session manager knows sessions by id only; the gateway remembers which agent each id
//! was issued to. A request that names a session the caller did not open (or one that does not
//! exist) answers exactly as rmcp answers an unknown session (404 `Not Found: Session not
//! found`), for POST, GET and DELETE alike, so another agent can neither use, nor end, nor learn
//! of a session. An agent holds at most [`MAX_SESSIONS_PER_AGENT`] sessions: opening one more
//! closes its least recently used one (an `mcp.session_evicted` event). Sessions idle for
//! [`SESSION_IDLE`] are closed by rmcp and forgotten here. Every [`CUT_INTERVAL`], [`cut_off`]
//! closes the sessions of agents a kill switch now covers or that were revoked (one
//! `mcp.session_closed` event each): their next request answers as an unknown session and an
//! open GET stream ends.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use portcullis_core::{CorrelationId, Decision, Event};
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::time::Instant;

use crate::guardrails::killswitch::KillScope;
use crate::http::AppState;

/// Most MCP sessions one agent holds at once.
pub const MAX_SESSIONS_PER_AGENT: usize = 64;
/// A session with no request for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);
/// The header that names a session.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// How often live sessions are checked against the kill switch and the stored agents; a cut
/// takes at most this long plus the check.
pub const CUT_INTERVAL: Duration = Duration::from_millis(250);

/// Checks the live sessions every [`CUT_INTERVAL`] and closes those whose agent a kill switch
/// covers or no longer exists, each closure an `mcp.session_closed` event (reason
/// `killswitch_engaged` with the scope, or `agent_revoked`; never the session id).
pub async fn cut_off(state: AppState) {
    let sessions = Arc::clone(state.mcp.sessions());
    let mut tick = tokio::time::interval(CUT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let live = sessions.live();
        if live.is_empty() {
            continue;
        }
        let existing = stored_agents(&state, &live).await;
        for session in live {
            if let Some(cause) = verdict(&state, existing.as_ref(), &session) {
                sessions.cut(&state, session, cause).await;
            }
        }
    }
}

/// Who opened each live session, and when each was last used.
#[derive(Debug)]
pub struct Sessions {
    manager: Arc<LocalSessionManager>,
    owners: Mutex<HashMap<String, Owner>>,
}

#[derive(Debug)]
struct Owner {
    agent: String,
    project: Option<String>,
    last_used: Instant,
}

/// One live session as the cut-off sees it.
#[derive(Debug)]
struct LiveSession {
    id: String,
    agent: String,
    project: Option<String>,
}

/// Why a live session is cut.
#[derive(Debug)]
enum Cause {
    KillSwitch(KillScope),
    Revoked,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    /// No sessions yet, over a session manager whose sessions close after [`SESSION_IDLE`]
    /// without a request.
    pub fn new() -> Self {
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(SESSION_IDLE);
        Self {
            manager: Arc::new(manager),
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// rmcp's session manager, which holds the sessions themselves.
    pub fn manager(&self) -> Arc<LocalSessionManager> {
        Arc::clone(&self.manager)
    }

    /// Whether `agent` opened the live session `id`; marks it used.
    pub fn owned_by(&self, id: &str, agent: &str) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        match owners.get_mut(id) {
            Some(owner) if owner.agent == agent && owner.last_used.elapsed() < SESSION_IDLE => {
                owner.last_used = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Records that `agent` (of `project`) opened the session `id`; answers the sessions to
    /// close to keep the agent within its cap (its least recently used ones).
    fn opened(&self, id: String, agent: &str, project: Option<String>) -> Vec<String> {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, owner| owner.last_used.elapsed() < SESSION_IDLE);
        owners.insert(
            id,
            Owner {
                agent: agent.to_owned(),
                project,
                last_used: Instant::now(),
            },
        );
        let mut held: Vec<(&String, Instant)> = owners
            .iter()
            .filter(|(_, owner)| owner.agent == agent)
            .map(|(id, owner)| (id, owner.last_used))
            .collect();
        let excess = held.len().saturating_sub(MAX_SESSIONS_PER_AGENT);
        held.sort_by_key(|(_, used)| *used);
        let evicted: Vec<String> = held
            .into_iter()
            .take(excess)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &evicted {
            owners.remove(id);
        }
        evicted
    }

    /// Forgets the session `id`; whether it was known.
    fn closed(&self, id: &str) -> bool {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some()
    }

    /// The sessions not idle past [`SESSION_IDLE`] (the others are forgotten).
    fn live(&self) -> Vec<LiveSession> {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, owner| owner.last_used.elapsed() < SESSION_IDLE);
        owners
            .iter()
            .map(|(id, owner)| LiveSession {
                id: id.clone(),
                agent: owner.agent.clone(),
                project: owner.project.clone(),
            })
            .collect()
    }

    /// Closes `session` for `cause`: forgotten first (its next request answers as unknown),
    /// then ended in rmcp (an open GET stream ends), then recorded.
    async fn cut(&self, state: &AppState, session: LiveSession, cause: Cause) {
        if !self.closed(&session.id) {
            return;
        }
        let _ = self
            .manager
            .close_session(&session.id.as_str().into())
            .await;
        let event = match cause {
            Cause::KillSwitch(scope) => Event::new(
                "mcp.session_closed",
                Decision::Deny,
                portcullis_core::ErrorCode::KillswitchEngaged.as_str(),
            )
            .data(serde_json::json!({ "scope": scope.to_string() })),
            Cause::Revoked => Event::new("mcp.session_closed", Decision::Deny, "agent_revoked"),
        };
        let correlation = CorrelationId::generate();
        state
            .events
            .emit_best_effort(
                event
                    .subject(session.agent)
                    .correlation(correlation.as_str()),
            )
            .await;
    }

    /// After rmcp answered a request of `agent` (of `project`): remembers a session it opened
    /// (`issued`, the answer's session header, closing what passes the cap) or forgets one it
    /// ended.
    pub async fn after(
        &self,
        state: &AppState,
        (agent, project): (&str, Option<String>),
        ended: Option<&str>,
        issued: Option<String>,
        correlation: &CorrelationId,
    ) {
        if let Some(id) = ended {
            self.closed(id);
            return;
        }
        let Some(id) = issued else {
            return;
        };
        for evicted in self.opened(id, agent, project) {
            let _ = self.manager.close_session(&evicted.as_str().into()).await;
            state
                .events
                .emit_best_effort(
                    Event::new("mcp.session_evicted", Decision::Deny, "session_limit")
                        .subject(agent.to_owned())
                        .correlation(correlation.as_str())
                        .data(serde_json::json!({ "max_sessions": MAX_SESSIONS_PER_AGENT })),
                )
                .await;
        }
    }
}

/// The ids of run-time agents in the store, read only when a live session is one's. `None` when
/// none is or the store does not answer (then revocations wait for the next check).
async fn stored_agents(state: &AppState, live: &[LiveSession]) -> Option<HashSet<String>> {
    if live
        .iter()
        .all(|session| state.identity.is_config_agent(&session.agent))
    {
        return None;
    }
    match state.store.list_agents().await {
        Ok(agents) => Some(agents.into_iter().map(|agent| agent.id).collect()),
        Err(error) => {
            tracing::warn!(%error, "cannot list agents to check live MCP sessions");
            None
        }
    }
}

fn verdict(
    state: &AppState,
    existing: Option<&HashSet<String>>,
    session: &LiveSession,
) -> Option<Cause> {
    if let Some(scope) = state
        .guardrails
        .killswitch
        .engaged_for(&session.agent, session.project.as_deref())
    {
        return Some(Cause::KillSwitch(scope));
    }
    let revoked = !state.identity.is_config_agent(&session.agent)
        && existing.is_some_and(|ids| !ids.contains(&session.agent));
    revoked.then_some(Cause::Revoked)
}

/// The session a response opened (its session header), for a request that named none.
pub fn issued(asked: Option<&str>, response: &Response) -> Option<String> {
    if asked.is_some() {
        return None;
    }
    response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The session a successful DELETE ended.
pub fn ended<'a>(asked: Option<&'a str>, method: &Method, response: &Response) -> Option<&'a str> {
    (*method == Method::DELETE && response.status().is_success())
        .then_some(asked)
        .flatten()
}

/// The answer to a request naming a session that is not the caller's: byte for byte what rmcp
/// answers for a session that does not exist.
pub fn unknown_session() -> Response {
    let mut response = Response::new(Body::from("Not Found: Session not found"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
