//! `/admin/budgets`: the budget lines with their usage, adding, replacing and removing budgets
//! at run time (stored, so they survive restarts), and lifting a session pause. Every change is
//! an event.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use portcullis_budget::{BudgetDef, Unit, format_usd};
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, MicroUsd};
use portcullis_store::PolicyRecordKind;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{LineView, StoredChange, compile, lines};
use crate::admin::AdminCaller;
use crate::admin::routes::{admin_subject, store_error};
use crate::error::{ApiError, ApiJson};
use crate::http::AppState;

/// Longest pause key accepted by `POST /admin/budgets/unpause`.
const MAX_KEY_LEN: usize = 512;

/// Mounted under the admin router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/budgets", get(list).post(put))
        .route("/budgets/unpause", post(unpause))
        .route("/budgets/{id}", delete(remove))
}

/// `GET /admin/budgets`: the mode, the budgets in force, and each line with its usage.
async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Settlements trail their answers: wait for those already issued.
    state.events.settle_trailing().await;
    let plan = state.guardrails.budgets.plan();
    let (views, truncated) = lines(&plan, state.store.as_ref(), state.clock.now())
        .await
        .map_err(store_error)?;
    let budgets: Vec<BudgetDef> = plan.budgets.iter().map(|budget| budget.to_def()).collect();
    let lines: Vec<Value> = views.iter().map(line_json).collect();
    Ok(Json(json!({
        "mode": plan.mode,
        "time_zone": plan.zone.iana_name(),
        "budgets": budgets,
        "lines": lines,
        "truncated": truncated,
    }))
    .into_response())
}

fn line_json(line: &LineView) -> Value {
    let mut out = json!({
        "key": line.key,
        "id": line.budget,
        "scope": line.scope.as_str(),
        "account": line.account,
        "unit": line.unit.as_str(),
        "limit": line.limit,
        "spent": line.spent,
        "reserved": line.reserved,
        "percent": line.percent(),
        "resets_at": line.resets_at.map(|at| at.to_string()),
        "paused": line.paused.is_some(),
        "paused_until": line.paused.flatten().map(|at| at.to_string()),
    });
    if line.unit == Unit::Usd {
        if let Some(object) = out.as_object_mut() {
            for (key, value) in [
                ("limit_usd", line.limit),
                ("spent_usd", line.spent),
                ("reserved_usd", line.reserved),
            ] {
                object.insert(key.to_owned(), format_usd(MicroUsd(value)).into());
            }
        }
    }
    out
}

/// `POST /admin/budgets`: adds a budget, or replaces the one with its id (also one of the
/// configuration). Checked like the configuration (400 when invalid); stored before it applies.
/// Spend its account already recorded in the current window counts at once.
async fn put(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(def): ApiJson<BudgetDef>,
) -> Result<Response, ApiError> {
    let budget = compile(&def).map_err(|message| {
        tracing::info!(budget = %def.id, %message, "budget refused");
        ApiError::new(ErrorCode::BadRequest)
    })?;
    let record = serde_json::to_string(&StoredChange::Put {
        budget: budget.to_def(),
    })
    .map_err(|_| ApiError::new(ErrorCode::Internal))?;
    state
        .store
        .put_policy_record(PolicyRecordKind::Budget, &budget.id, &record)
        .await
        .map_err(store_error)?;
    let def = budget.to_def();
    let replaced = state.guardrails.budgets.put(budget).is_some();
    state
        .events
        .emit(
            Event::new("budget.put", Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(json!({
                    "budget": def.id,
                    "scope": def.scope.as_str(),
                    "unit": def.unit.as_str(),
                    "window": def.window.as_str(),
                    "replaced": replaced,
                })),
        )
        .await
        .map_err(store_error)?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(def)).into_response())
}

/// `DELETE /admin/budgets/{id}`: removes a budget (also one of the configuration, for good: the
/// removal is stored). Its account's spend stays recorded. 404 when no budget has this id.
async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state
        .guardrails
        .budgets
        .plan()
        .budgets
        .iter()
        .any(|budget| budget.id == id)
    {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    let record = serde_json::to_string(&StoredChange::Remove)
        .map_err(|_| ApiError::new(ErrorCode::Internal))?;
    state
        .store
        .put_policy_record(PolicyRecordKind::Budget, &id, &record)
        .await
        .map_err(store_error)?;
    state.guardrails.budgets.remove(&id);
    state
        .events
        .emit(
            Event::new("budget.deleted", Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(json!({"budget": id})),
        )
        .await
        .map_err(store_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /admin/budgets/unpause` body: the line's key as `GET /admin/budgets` lists it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unpause {
    key: String,
}

/// `POST /admin/budgets/unpause`: lets new sessions in again under a paused line (until its
/// critical alert fires again in a later window). 404 when the line is not paused.
async fn unpause(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(body): ApiJson<Unpause>,
) -> Result<Response, ApiError> {
    if body.key.is_empty() || body.key.len() > MAX_KEY_LEN {
        return Err(ApiError::new(ErrorCode::BadRequest));
    }
    let lifted = state
        .store
        .budget_unpause(&body.key)
        .await
        .map_err(store_error)?;
    if !lifted {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    state
        .events
        .emit(
            Event::new("budget.unpaused", Decision::Info, "ok")
                .subject(admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(json!({"key": body.key})),
        )
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"key": body.key, "paused": false})).into_response())
}
