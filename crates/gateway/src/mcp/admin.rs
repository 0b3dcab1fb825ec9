//! `/admin/tools`: the catalog with pin states, and pinning what upstreams offer now.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event};
use portcullis_mcp::{PinState, UpstreamStatus};
use serde::Deserialize;

use crate::admin::AdminCaller;
use crate::error::{ApiError, ApiJson};
use crate::http::AppState;

/// Mounted under the admin router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tools", get(list))
        .route("/tools/pin", post(pin))
}

/// `GET /admin/tools`: every upstream with its status, every tool with its pin state.
async fn list(State(state): State<AppState>) -> Response {
    let catalog = crate::mcp::refresh(&state).await;
    let pins = state.mcp.pins().await;
    let upstreams: Vec<serde_json::Value> = state
        .mcp
        .upstreams()
        .iter()
        .map(|upstream| {
            let (status, generation) = match upstream.status() {
                UpstreamStatus::Starting => ("starting", None),
                UpstreamStatus::Up { generation } => ("up", Some(generation)),
                UpstreamStatus::Down { .. } => ("down", None),
                UpstreamStatus::Stopped => ("stopped", None),
            };
            serde_json::json!({
                "name": upstream.name(),
                "version": upstream.spec().version,
                "status": status,
                "generation": generation,
            })
        })
        .collect();
    let tools: Vec<serde_json::Value> = catalog
        .tools()
        .iter()
        .map(|tool| {
            let state_name = match &tool.state {
                PinState::Pinned => "pinned",
                PinState::Unpinned => "unpinned",
                PinState::Drifted { .. } => "quarantined",
                PinState::Invalid => "invalid",
            };
            let changes = match &tool.state {
                PinState::Drifted { changes } => serde_json::to_value(changes).ok(),
                _ => None,
            };
            serde_json::json!({
                "id": tool.id,
                "upstream": tool.upstream,
                "name": tool.name,
                "pin_state": state_name,
                "available": tool.is_available(state.mcp.pin_mode()),
                "hash": tool.offered.hash,
                "pinned_hash": pins.get(&tool.pin_key).map(|pin| pin.hash.clone()),
                "changes": changes,
            })
        })
        .collect();
    Json(serde_json::json!({"upstreams": upstreams, "tools": tools})).into_response()
}

/// `POST /admin/tools/pin` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    #[serde(default)]
    upstream: Option<String>,
}

/// `POST /admin/tools/pin`: pins every tool offered now (or one upstream's).
async fn pin(
    State(state): State<AppState>,
    Extension(caller): Extension<AdminCaller>,
    Extension(correlation): Extension<CorrelationId>,
    ApiJson(body): ApiJson<PinRequest>,
) -> Result<Response, ApiError> {
    if let Some(name) = &body.upstream {
        if state.mcp.upstream(name).is_none() {
            return Err(ApiError::new(ErrorCode::NotFound));
        }
    }
    let pinned = crate::mcp::pin_current(&state, body.upstream.as_deref())
        .await
        .map_err(ApiError::new)?;
    state
        .events
        .emit(
            Event::new("tool.pinned", Decision::Info, "ok")
                .subject(crate::admin::routes::admin_subject(&caller))
                .correlation(correlation.as_str())
                .data(serde_json::json!({"upstream": body.upstream, "tools": pinned})),
        )
        .await
        .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable))?;
    Ok(Json(serde_json::json!({"pinned": pinned})).into_response())
}
