//! `/admin/policy/*` and `/admin/contracts`: explain, hot reload and run-time contracts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GatePattern};
use portcullis_policy::{Contract, can_delete, can_replace};
use portcullis_store::PolicyRecordKind;

use crate::admin::AdminCaller;
use crate::admin::routes::{admin_subject, store_error};
use crate::error::{ApiError, ApiJson};
use crate::http::AppState;
use crate::policy::{self, LoadIssue, capsules};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/policy/explain", post(explain))
        .route("/policy/reload", post(reload))
        .route("/contracts", get(list_contracts).post(put_contract))
        .route("/contracts/{id}", delete(delete_contract))
        .route("/capsules", get(list_capsules).post(adopt_capsule))
        .route("/capsules/{id}", delete(delete_capsule))
        .route("/trust/reload", post(reload_trust))
}

/// Header that carries a capsule token (the body may carry it instead).
pub const CAPSULE_HEADER: &str = "x-portcullis-capsule";

/// `POST /admin/capsules`: 201 adopted, 200 already adopted (same hash), 409 same id with another
/// hash, 431 over 4096 bytes, 422 `capsule_invalid` with the reason code otherwise.
async fn adopt_capsule(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let token: &[u8] = match headers.get(CAPSULE_HEADER) {
        Some(value) => value.as_bytes(),
        None => body.trim_ascii(),
    };
    match capsules::adopt(&state, token, admin_subject(&caller)).await {
        Ok((adopted, capsule)) => {
            let entry = capsules::entry(&capsule, state.clock.now());
            let status = match adopted {
                capsules::Adopted::New => {
                    // Only a new adoption relays; the relay runs in the background.
                    crate::cluster::relay::spawn(&state, capsule);
                    StatusCode::CREATED
                }
                capsules::Adopted::Unchanged => StatusCode::OK,
            };
            (status, Json(entry)).into_response()
        }
        Err(err) => {
            let mut body = crate::error::envelope(err.error_code());
            if let Some(error) = body.get_mut("error").and_then(|e| e.as_object_mut()) {
                error.insert("reason".into(), err.reason().into());
            }
            let status = StatusCode::from_u16(err.error_code().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(body)).into_response()
        }
    }
}

/// `GET /admin/capsules`: each adopted capsule with status `active|expiring|expired`.
async fn list_capsules(State(state): State<AppState>) -> Response {
    let capsules = state.policy.capsules.list(state.clock.now()).await;
    Json(serde_json::json!({ "capsules": capsules })).into_response()
}

/// `DELETE /admin/capsules/{id}`: tears an adopted capsule down: 204, 404 when unknown, 409 while
/// one of its contracts is immutable and active, 503 `store_unavailable` when the teardown cannot
/// be recorded (nothing changes then).
async fn delete_capsule(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match capsules::delete(&state, &id, admin_subject(&caller)).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(capsules::DeleteError::NotFound) => Err(ApiError::new(ErrorCode::NotFound)),
        Err(capsules::DeleteError::Immutable) => Err(ApiError::new(ErrorCode::Conflict)),
        Err(capsules::DeleteError::Store) => Err(ApiError::new(ErrorCode::StoreUnavailable)),
    }
}

/// `POST /admin/trust/reload`: re-reads the trust store; capsules that no longer verify go.
async fn reload_trust(State(state): State<AppState>) -> Response {
    match capsules::reload_trust(&state).await {
        Ok(torn_down) => {
            Json(serde_json::json!({"status": "reloaded", "torn_down": torn_down})).into_response()
        }
        Err(issue) => config_invalid(&[issue]),
    }
}

/// `POST /admin/policy/explain`: the explanation the gate stage would give, without counting
/// quota hits. Body: `{subject, action, resource, context}` and an optional RFC 3339 `at`.
async fn explain(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let parsed = policy::parse_explain_request(&body).map_err(|err| {
        tracing::debug!(error = %err, "explain request refused");
        ApiError::new(match err {
            policy::ExplainError::TooLarge => ErrorCode::PayloadTooLarge,
            policy::ExplainError::Malformed(_) => ErrorCode::BadRequest,
        })
    })?;
    let allow = allowlist_of(&state, &parsed.request.subject.agent).await?;
    let engine = state.policy.engine();
    let explanation = policy::explain(
        &engine,
        state.policy.state(),
        &parsed.request,
        &allow,
        parsed.at.unwrap_or_else(|| state.clock.now()),
    );
    Ok(Json(explanation).into_response())
}

/// The allowlist of agent `id` (configuration first, then the store); empty when unknown.
async fn allowlist_of(state: &AppState, id: &str) -> Result<Vec<GatePattern>, ApiError> {
    if let Some(agent) = state.identity.config_agents().find(|agent| agent.id == id) {
        return Ok(agent.allow.clone());
    }
    let stored = state.store.list_agents().await.map_err(store_error)?;
    Ok(stored
        .into_iter()
        .find(|agent| agent.id == id)
        .map(|agent| {
            agent
                .allow
                .iter()
                .filter_map(|raw| GatePattern::parse(raw).ok())
                .collect()
        })
        .unwrap_or_default())
}

/// `POST /admin/policy/reload`: 200 with the new sizes, or 422 `config_invalid` with the errors.
async fn reload(State(state): State<AppState>) -> Response {
    match policy::reload(&state).await {
        Ok((denies, contracts, cedar)) => Json(serde_json::json!({
            "status": "reloaded",
            "denies": denies,
            "contracts": contracts,
            "cedar_policies": cedar,
        }))
        .into_response(),
        Err(issues) => config_invalid(&issues),
    }
}

/// 422 `config_invalid`, the envelope plus `errors: [{file, message}]`.
pub fn config_invalid(issues: &[LoadIssue]) -> Response {
    let mut body = crate::error::envelope(ErrorCode::ConfigInvalid);
    if let Some(error) = body.get_mut("error").and_then(|e| e.as_object_mut()) {
        error.insert("errors".into(), serde_json::json!(issues));
    }
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// `GET /admin/contracts`: configuration and run-time contracts, with whether each is active.
async fn list_contracts(State(state): State<AppState>) -> Response {
    let now = state.clock.now();
    let sources = state.policy.lock_sources().await;
    let entry = |contract: &Contract, origin: &str| {
        let mut value = serde_json::to_value(contract).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("origin".into(), origin.into());
            object.insert("active".into(), contract.is_active(now).into());
        }
        value
    };
    let contracts: Vec<serde_json::Value> = sources
        .config_contracts
        .iter()
        .map(|contract| entry(contract, "config"))
        .chain(
            sources
                .admin_contracts
                .iter()
                .map(|contract| entry(contract, "admin")),
        )
        .collect();
    Json(serde_json::json!({ "contracts": contracts })).into_response()
}

/// `POST /admin/contracts`: adds or replaces a run-time contract. An active immutable contract may
/// only be replaced by one at least as strong (409 otherwise); configuration contracts are
/// read-only here (409).
async fn put_contract(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(contract): ApiJson<Contract>,
) -> Result<Response, ApiError> {
    if !contract.validate().is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    let now = state.clock.now();
    let mut sources = state.policy.lock_sources().await;
    if sources.config_contracts.iter().any(|c| c.id == contract.id) {
        return Err(ApiError::new(ErrorCode::Conflict));
    }
    let mut next = sources.clone();
    let replaced = match next
        .admin_contracts
        .iter_mut()
        .find(|c| c.id == contract.id)
    {
        Some(old) => {
            if let Err(err) = can_replace(old, &contract, now) {
                tracing::info!(contract = %contract.id, error = %err, "contract change refused");
                return Err(ApiError::new(ErrorCode::Conflict));
            }
            *old = contract.clone();
            true
        }
        None => {
            next.admin_contracts.push(contract.clone());
            false
        }
    };
    let engine = next.build().map_err(|issues| {
        tracing::info!(contract = %contract.id, errors = issues.len(), "contract refused");
        ApiError::new(ErrorCode::BadRequest)
    })?;
    let body = serde_json::to_string(&contract).map_err(|_| ApiError::new(ErrorCode::Internal))?;
    state
        .store
        .put_policy_record(PolicyRecordKind::Contract, &contract.id, &body)
        .await
        .map_err(store_error)?;
    state.policy.swap(engine);
    *sources = next;
    drop(sources);
    let kind = if replaced {
        "contract.replaced"
    } else {
        "contract.created"
    };
    state
        .events
        .emit(
            Event::new(kind, Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(serde_json::json!({
                    "contract": contract.id,
                    "immutable": contract.immutable,
                    "patterns": contract.patterns.iter().map(GatePattern::as_str).collect::<Vec<_>>(),
                })),
        )
        .await
        .map_err(store_error)?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(contract)).into_response())
}

/// `DELETE /admin/contracts/{id}`: 409 for an active immutable contract or a configuration one.
async fn delete_contract(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let mut sources = state.policy.lock_sources().await;
    if sources.config_contracts.iter().any(|c| c.id == id) {
        return Err(ApiError::new(ErrorCode::Conflict));
    }
    let Some(old) = sources.admin_contracts.iter().find(|c| c.id == id) else {
        return Err(ApiError::new(ErrorCode::NotFound));
    };
    if can_delete(old, now).is_err() {
        return Err(ApiError::new(ErrorCode::Conflict));
    }
    let mut next = sources.clone();
    next.admin_contracts.retain(|c| c.id != id);
    let engine = next
        .build()
        .map_err(|_| ApiError::new(ErrorCode::Internal))?;
    state
        .store
        .delete_policy_record(PolicyRecordKind::Contract, &id)
        .await
        .map_err(store_error)?;
    state.policy.swap(engine);
    *sources = next;
    drop(sources);
    state
        .events
        .emit(
            Event::new("contract.deleted", Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(serde_json::json!({ "contract": id })),
        )
        .await
        .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
