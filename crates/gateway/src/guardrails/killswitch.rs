//! The kill switch: while engaged, every new request of every front (or of one agent or project)
//! is refused with 503 `killswitch_engaged`. Engagements are stored, restored at start-up, and
//! every toggle is a ledger event.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event};
use portcullis_store::{PolicyRecordKind, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::admin::AdminCaller;
use crate::admin::routes::{admin_subject, store_error};
use crate::error::{ApiError, ApiJson};
use crate::http::AppState;

/// Most scopes engaged at once; one more is refused with `conflict`.
pub const MAX_SCOPES: usize = 1000;
/// Longest project name a scope may carry.
const MAX_PROJECT_LEN: usize = 128;

/// What an engagement covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillScope {
    /// Every agent.
    Global,
    /// One agent, by id.
    Agent(String),
    /// Every agent of one project.
    Project(String),
}

impl KillScope {
    /// `None` or `global`, `agent:<id>`, `project:<name>`.
    pub fn parse(raw: Option<&str>) -> Result<Self, ScopeError> {
        let Some(raw) = raw else {
            return Ok(KillScope::Global);
        };
        if raw == "global" {
            return Ok(KillScope::Global);
        }
        if let Some(agent) = raw.strip_prefix("agent:") {
            return if crate::identity::is_valid_agent_id(agent) {
                Ok(KillScope::Agent(agent.to_owned()))
            } else {
                Err(ScopeError)
            };
        }
        if let Some(project) = raw.strip_prefix("project:") {
            let valid = !project.is_empty()
                && project.len() <= MAX_PROJECT_LEN
                && project.bytes().all(|b| b.is_ascii_graphic());
            return if valid {
                Ok(KillScope::Project(project.to_owned()))
            } else {
                Err(ScopeError)
            };
        }
        Err(ScopeError)
    }
}

impl fmt::Display for KillScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillScope::Global => f.write_str("global"),
            KillScope::Agent(agent) => write!(f, "agent:{agent}"),
            KillScope::Project(project) => write!(f, "project:{project}"),
        }
    }
}

/// A scope that is not `global`, `agent:<id>` or `project:<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a kill switch scope is `global`, `agent:<id>` or `project:<name>`")]
pub struct ScopeError;

/// One engaged scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engagement {
    pub scope: String,
    pub since: Timestamp,
    pub by: String,
}

/// The engaged scopes. Checking costs one atomic load while nothing is engaged.
#[derive(Debug, Default)]
pub struct KillSwitch {
    any: AtomicBool,
    engaged: RwLock<BTreeMap<KillScope, Engagement>>,
}

impl KillSwitch {
    /// The engaged scope that covers `agent` (of `project`), if any; global first.
    pub fn engaged_for(&self, agent: &str, project: Option<&str>) -> Option<KillScope> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let engaged = self.engaged.read().unwrap_or_else(PoisonError::into_inner);
        let candidates = [
            Some(KillScope::Global),
            Some(KillScope::Agent(agent.to_owned())),
            project.map(|project| KillScope::Project(project.to_owned())),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|scope| engaged.contains_key(scope))
    }

    /// Every engagement, global first.
    pub fn snapshot(&self) -> Vec<Engagement> {
        self.engaged
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Engages `scope`; `Ok(false)` when it already was. Refuses past [`MAX_SCOPES`].
    fn engage(&self, scope: KillScope, engagement: Engagement) -> Result<bool, ErrorCode> {
        let mut engaged = self.engaged.write().unwrap_or_else(PoisonError::into_inner);
        if engaged.contains_key(&scope) {
            return Ok(false);
        }
        if engaged.len() >= MAX_SCOPES {
            return Err(ErrorCode::Conflict);
        }
        engaged.insert(scope, engagement);
        self.any.store(true, Ordering::Release);
        Ok(true)
    }

    /// Releases `scope`; `false` when it was not engaged.
    fn release(&self, scope: &KillScope) -> bool {
        let mut engaged = self.engaged.write().unwrap_or_else(PoisonError::into_inner);
        let removed = engaged.remove(scope).is_some();
        self.any.store(!engaged.is_empty(), Ordering::Release);
        removed
    }

    /// Re-engages the scopes kept in the store; returns how many. A stored record that does not
    /// parse engages the global scope (fail closed) and is logged.
    pub async fn restore(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let records = store
            .list_policy_records(PolicyRecordKind::KillSwitch)
            .await?;
        let n_records = records.len();
        for (id, body) in records {
            let parsed = KillScope::parse(Some(&id))
                .ok()
                .zip(serde_json::from_str::<Engagement>(&body).ok());
            let (scope, engagement) = match parsed {
                Some(pair) => pair,
                None => {
                    tracing::error!(
                        record = %id,
                        "a stored kill switch record does not parse; engaging the global kill switch"
                    );
                    let engagement = Engagement {
                        scope: KillScope::Global.to_string(),
                        since: Timestamp::UNIX_EPOCH,
                        by: "restore".to_owned(),
                    };
                    (KillScope::Global, engagement)
                }
            };
            // INVARIANT (fail-closed-restore): an over-full table still engages what it can;
            // `engage` only refuses new scopes past the cap, and the global scope covers all.
            if self.engage(scope, engagement).is_err() {
                let _ = self.engage(
                    KillScope::Global,
                    Engagement {
                        scope: KillScope::Global.to_string(),
                        since: Timestamp::UNIX_EPOCH,
                        by: "restore".to_owned(),
                    },
                );
            }
        }
        Ok(n_records)
    }
}

/// `GET|POST /admin/killswitch` — mounted under the admin router.
pub fn admin_router() -> Router<AppState> {
    Router::new().route("/killswitch", get(show).post(toggle))
}

/// `POST /admin/killswitch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub on: bool,
    /// Absent or `global`, `agent:<id>`, `project:<name>`.
    #[serde(default)]
    pub scope: Option<String>,
}

fn state_json(killswitch: &KillSwitch) -> serde_json::Value {
    let engaged = killswitch.snapshot();
    serde_json::json!({
        "global": engaged.iter().any(|e| e.scope == "global"),
        "engaged": engaged,
    })
}

async fn show(State(state): State<AppState>) -> Response {
    Json(state_json(&state.guardrails.killswitch)).into_response()
}

/// Engages or releases a scope. Engaging takes effect before it is stored (fail closed: a store
/// failure answers an error but leaves the switch on); releasing is recorded and stored first and
/// takes effect only then.
async fn toggle(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(body): ApiJson<Toggle>,
) -> Result<Response, ApiError> {
    let scope = KillScope::parse(body.scope.as_deref())
        .map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    let killswitch = &state.guardrails.killswitch;
    let by = admin_subject(&caller);
    let key = scope.to_string();
    let event = |changed: bool| {
        let (kind, reason) = if body.on {
            ("killswitch.engaged", "killswitch_engaged")
        } else {
            ("killswitch.released", "killswitch_released")
        };
        Event::new(kind, Decision::Info, reason)
            .subject(by)
            .correlation(correlation.as_str())
            .data(serde_json::json!({"scope": key, "changed": changed}))
    };
    if body.on {
        let engagement = Engagement {
            scope: key.clone(),
            since: state.clock.now(),
            by: by.to_owned(),
        };
        let record =
            serde_json::to_string(&engagement).map_err(|_| ApiError::new(ErrorCode::Internal))?;
        let changed = killswitch
            .engage(scope, engagement)
            .map_err(ApiError::new)?;
        tracing::warn!(scope = %key, "kill switch engaged");
        state
            .store
            .put_policy_record(PolicyRecordKind::KillSwitch, &key, &record)
            .await
            .map_err(store_error)?;
        state
            .events
            .emit(event(changed))
            .await
            .map_err(store_error)?;
    } else {
        let changed = killswitch.snapshot().iter().any(|e| e.scope == key);
        state
            .events
            .emit(event(changed))
            .await
            .map_err(store_error)?;
        state
            .store
            .delete_policy_record(PolicyRecordKind::KillSwitch, &key)
            .await
            .map_err(store_error)?;
        killswitch.release(&scope);
        tracing::warn!(scope = %key, "kill switch released");
    }
    Ok(Json(state_json(killswitch)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_scope(raw: Option<&str>, expected: Option<&str>) {
        let parsed = KillScope::parse(raw).ok().map(|scope| scope.to_string());
        assert_eq!(parsed.as_deref(), expected);
    }

    #[test]
    fn scopes_parse_strictly() {
        check_scope(None, Some("global"));
        check_scope(Some("global"), Some("global"));
        check_scope(Some("agent:bot-1"), Some("agent:bot-1"));
        check_scope(Some("project:alpha"), Some("project:alpha"));
        check_scope(Some("agent:"), None);
        check_scope(Some("agent:a b"), None);
        check_scope(Some("project:"), None);
        check_scope(Some("project:a b"), None);
        check_scope(Some("Global"), None);
        check_scope(Some("room:x"), None);
        check_scope(Some(""), None);
    }

    #[test]
    fn engaged_for_covers_global_agent_and_project() {
        let switch = KillSwitch::default();
        assert_eq!(switch.engaged_for("a", Some("p")), None);
        let engagement = |scope: &str| Engagement {
            scope: scope.to_owned(),
            since: Timestamp::UNIX_EPOCH,
            by: "admin".to_owned(),
        };
        let project = KillScope::Project("p".into());
        assert_eq!(
            switch.engage(project.clone(), engagement("project:p")),
            Ok(true)
        );
        assert_eq!(
            switch.engage(project.clone(), engagement("project:p")),
            Ok(false)
        );
        assert_eq!(switch.engaged_for("a", Some("p")), Some(project.clone()));
        assert_eq!(switch.engaged_for("a", Some("q")), None);
        assert_eq!(switch.engaged_for("a", None), None);
        let agent = KillScope::Agent("b".into());
        switch.engage(agent.clone(), engagement("agent:b")).unwrap();
        assert_eq!(switch.engaged_for("b", None), Some(agent));
        switch
            .engage(KillScope::Global, engagement("global"))
            .unwrap();
        assert_eq!(switch.engaged_for("z", None), Some(KillScope::Global));
        assert!(switch.release(&KillScope::Global));
        assert!(!switch.release(&KillScope::Global));
        assert!(switch.release(&project));
        assert!(switch.release(&KillScope::Agent("b".into())));
        assert_eq!(switch.engaged_for("b", Some("p")), None);
        assert!(switch.snapshot().is_empty());
    }
}
