//! MCP sessions belong to the agent that opened them.
//!
//! rmcp's session manager knows sessions by id only; the gateway remembers which agent each id
//! was issued to. A request that names a session the caller did not open (or one that does not
//! exist) answers exactly as rmcp answers an unknown session (404 `Not Found: Session not
//! found`), for POST, GET and DELETE alike, so another agent can neither use, nor end, nor learn
//! of a session. An agent holds at most [`MAX_SESSIONS_PER_AGENT`] sessions: opening one more
//! closes its least recently used one (an `mcp.session_evicted` event). Sessions idle for
//! [`SESSION_IDLE`] are closed by rmcp and forgotten here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use portcullis_core::{CorrelationId, Decision, Event};
use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::time::Instant;

use crate::http::AppState;

/// Most MCP sessions one agent holds at once.
pub const MAX_SESSIONS_PER_AGENT: usize = 64;
/// A session with no request for this long is closed.
pub const SESSION_IDLE: Duration = Duration::from_secs(300);
/// The header that names a session.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Who opened each live session, and when each was last used.
#[derive(Debug)]
pub struct Sessions {
    manager: Arc<LocalSessionManager>,
    owners: Mutex<HashMap<String, Owner>>,
}

#[derive(Debug)]
struct Owner {
    agent: String,
    last_used: Instant,
}

impl Sessions {
    /// Ownership over `manager`'s sessions (whose idle timeout is set to [`SESSION_IDLE`]).
    pub fn new(manager: Arc<LocalSessionManager>) -> Self {
        Self {
            manager,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// A session manager whose sessions close after [`SESSION_IDLE`] without a request.
    pub fn manager() -> LocalSessionManager {
        let mut manager = LocalSessionManager::default();
        manager.session_config.keep_alive = Some(SESSION_IDLE);
        manager
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

    /// Records that `agent` opened the session `id`; answers the sessions to close to keep the
    /// agent within its cap (its least recently used ones).
    fn opened(&self, id: String, agent: &str) -> Vec<String> {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners.retain(|_, owner| owner.last_used.elapsed() < SESSION_IDLE);
        owners.insert(
            id,
            Owner {
                agent: agent.to_owned(),
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

    fn closed(&self, id: &str) {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// After rmcp answered a request of `agent`: remembers a session it opened (`issued`, the
    /// answer's session header, closing what passes the cap) or forgets one it ended.
    pub async fn after(
        &self,
        state: &AppState,
        agent: &str,
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
        for evicted in self.opened(id, agent) {
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
