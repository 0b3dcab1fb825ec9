//! `/admin/*` handlers: ledger pages, the live event stream and run-time agents.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use futures::Stream;
use futures::StreamExt as _;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GatePattern};
use portcullis_ledger::LedgerRecord;
use portcullis_store::{StoreError, StoredAgent};
use serde::Deserialize;
use tokio_stream::wrappers::BroadcastStream;

use crate::admin::AdminCaller;
use crate::config::CatalogView;
use crate::error::{ApiError, ApiJson};
use crate::http::{AppState, peer_of};
use crate::identity::is_valid_agent_id;
use crate::tokens;

/// Largest page of ledger records.
pub const MAX_LEDGER_PAGE: u32 = 1000;
const MAX_LIST_ITEMS: usize = 64;
const MAX_LABEL_LEN: usize = 128;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ledger", get(ledger))
        .route("/events", get(events))
        .route("/agents", get(list_agents).post(create_agent))
        .route("/agents/{id}", delete(delete_agent))
        .merge(crate::egress::admin_router())
        .merge(crate::mcp::admin::router())
        .merge(crate::admin::policy_routes::router())
        .merge(crate::cluster::admin_router())
        .merge(crate::guardrails::killswitch::admin_router())
        .merge(crate::guardrails::budgets::admin::router())
        // Set here, under the layer, so that a wrong method or an unknown path answers only
        // after authentication (no enumeration of admin routes).
        .fallback(crate::http::not_found)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .layer(middleware::from_fn_with_state(state, authenticate))
}

/// Admin rate limit and authentication for every `/admin/*` route. Refusals are events.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = peer_of(req.extensions());
    match state.admin.check(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => {
            let correlation = req
                .extensions()
                .get::<CorrelationId>()
                .map(|id| id.as_str().to_owned());
            let mut event = Event::new("admin.auth", Decision::Deny, refusal.reason()).data(
                serde_json::json!({
                    "peer": peer.map(|addr| addr.ip().to_string()),
                    "path": req.uri().path(),
                }),
            );
            if let Some(id) = correlation {
                event = event.correlation(id);
            }
            state.events.emit_best_effort(event).await;
            refusal.error().into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

/// `GET /admin/ledger?after=SEQ&limit=N`
async fn ledger(
    State(state): State<AppState>,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::new(ErrorCode::BadRequest))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LEDGER_PAGE {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    // Outcome records trail their answers by one group commit: wait for those already issued.
    state.events.settle_trailing().await;
    let records = state
        .store
        .ledger_page(query.after, limit)
        .await
        .map_err(store_error)?;
    let next_after = match (records.last(), records.len() == limit as usize) {
        (Some(last), true) => Some(last.seq),
        _ => None,
    };
    let records: Vec<serde_json::Value> = records.iter().map(record_json).collect();
    Ok(Json(serde_json::json!({"records": records, "next_after": next_after})).into_response())
}

/// The wire form of a ledger record.
pub fn record_json(record: &LedgerRecord) -> serde_json::Value {
    serde_json::json!({
        "seq": record.seq,
        "time": record.time.to_string(),
        "kind": record.kind,
        "subject": record.subject,
        "decision": record.decision.as_str(),
        "reason": record.reason,
        "correlation_id": record.correlation_id,
        "data": record.data,
        "prev_hash": hex::encode(record.prev_hash),
        "hash": hex::encode(record.hash),
    })
}

/// `GET /admin/events`: Server-Sent Events, one `event` per appended record.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = BroadcastStream::new(state.events.subscribe()).map(|item| {
        Ok(match item {
            Ok(json) => SseEvent::default().event("event").data(json.to_string()),
            Err(_) => SseEvent::default().event("lagged").data("{}"),
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAgent {
    id: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    may_assert_identity: bool,
    #[serde(default)]
    catalog: CatalogView,
}

/// `POST /admin/agents`: creates an agent and answers its token, once.
async fn create_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(body): ApiJson<CreateAgent>,
) -> Result<Response, ApiError> {
    let labels_ok = |items: &[String]| {
        items.len() <= MAX_LIST_ITEMS && items.iter().all(|item| is_valid_label(item))
    };
    let valid = is_valid_agent_id(&body.id)
        && labels_ok(&body.roles)
        && labels_ok(&body.tags)
        && body.project.as_deref().is_none_or(is_valid_label)
        && body.allow.len() <= MAX_LIST_ITEMS
        && body.allow.iter().all(|p| GatePattern::parse(p).is_ok());
    if !valid {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    if state.identity.is_config_agent(&body.id) {
        return Err(ApiError::new(ErrorCode::Conflict));
    }
    let token = tokens::generate("pcl_agent_");
    let agent = StoredAgent {
        id: body.id.clone(),
        token_sha256: tokens::sha256(&token),
        roles: body.roles,
        tags: body.tags,
        project: body.project,
        allow: body.allow,
        may_assert_identity: body.may_assert_identity,
        catalog: body.catalog.as_str().to_owned(),
        created_at: state.clock.now(),
    };
    state.store.insert_agent(agent).await.map_err(store_error)?;
    state
        .events
        .emit(
            Event::new("agent.created", Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(serde_json::json!({"agent": body.id})),
        )
        .await
        .map_err(store_error)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": body.id, "token": token})),
    )
        .into_response())
}

/// `DELETE /admin/agents/{id}`: revokes a run-time agent; its token stops working at once.
async fn delete_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !is_valid_agent_id(&id) {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    if state.identity.is_config_agent(&id) {
        return Err(ApiError::new(ErrorCode::Conflict));
    }
    if !state.store.delete_agent(&id).await.map_err(store_error)? {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    state
        .events
        .emit(
            Event::new("agent.revoked", Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(serde_json::json!({"agent": id})),
        )
        .await
        .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /admin/agents`: every agent, without tokens.
async fn list_agents(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut agents: Vec<serde_json::Value> = state
        .identity
        .config_agents()
        .map(|agent| {
            serde_json::json!({
                "id": agent.id, "origin": "config", "roles": agent.roles, "tags": agent.tags,
                "project": agent.project,
                "allow": agent.allow.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "may_assert_identity": agent.may_assert_identity,
                "catalog": agent.catalog.as_str(),
            })
        })
        .collect();
    for agent in state.store.list_agents().await.map_err(store_error)? {
        agents.push(serde_json::json!({
            "id": agent.id, "origin": "store", "roles": agent.roles, "tags": agent.tags,
            "project": agent.project, "allow": agent.allow,
            "may_assert_identity": agent.may_assert_identity,
            "catalog": agent.catalog,
            "created_at": agent.created_at.to_string(),
        }));
    }
    agents.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(Json(serde_json::json!({"agents": agents})).into_response())
}

pub(crate) fn admin_subject(caller: &AdminCaller) -> &'static str {
    match caller {
        AdminCaller::Token => "admin",
    }
}

fn is_valid_label(label: &str) -> bool {
    !label.is_empty() && label.len() <= MAX_LABEL_LEN && label.bytes().all(|b| b.is_ascii_graphic())
}

/// Maps store failures to codes; details go to the log only.
pub(crate) fn store_error(err: StoreError) -> ApiError {
    let code = err.error_code();
    if !matches!(code, ErrorCode::Conflict | ErrorCode::NotFound) {
        tracing::error!(error = %err, reason = err.code(), "store operation failed");
    }
    ApiError::new(code)
}
