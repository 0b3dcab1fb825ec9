//! The HTTP surface: the router, shared state and the middleware every response passes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::admin::AdminGuard;
use crate::error::ApiError;
use crate::pipeline::Core;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything a handler may need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppParts>);

/// The parts of [`AppState`]: the pipeline's core, and the fronts and admin surfaces around it.
/// Field access reaches the core's services through `Deref` (`state.events`, `state.policy`).
#[derive(Debug)]
pub struct AppParts {
    /// What the pipeline uses: configuration, store, events, identity, policy, guardrails.
    pub core: Arc<Core>,
    pub admin: AdminGuard,
    /// Egress policy, leases and resolver, shared with the proxy and the DNS guard.
    pub egress: Arc<crate::egress::EgressState>,
    /// MCP upstreams, pins and the catalog behind `/mcp`.
    pub mcp: Arc<crate::mcp::McpRuntime>,
    /// This node's cluster settings and the capsules it relayed.
    pub cluster: Arc<crate::cluster::ClusterRuntime>,
    /// LLM providers, routes, the sanitizer and tokenizers behind `/v1/*`.
    pub llm: Arc<crate::llm::LlmRuntime>,
}

impl std::ops::Deref for AppParts {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The whole HTTP application. Testable with `oneshot`, no socket needed.
pub fn app(state: AppState) -> Router {
    let body_limit = usize::try_from(state.config.server.max_body_bytes).unwrap_or(usize::MAX);
    let cors = cors_layer(&state.config.server.cors_allowed_origins);
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/whoami", get(whoami))
        .merge(crate::egress::agent_router())
        .merge(crate::mcp::router(state.clone()))
        .merge(crate::llm::router())
        .nest("/admin", crate::admin::routes::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_failed_auth,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ));
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(correlation))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "store is not answering");
            ApiError::new(ErrorCode::StoreUnavailable).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if !metrics_token_ok(&state, &headers) {
        return ApiError::new(ErrorCode::Unauthorized).into_response();
    }
    crate::guardrails::budgets::update_gauges(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Whether `headers` carry the metrics token, or none is configured.
fn metrics_token_ok(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    let Some(expected) = &state.config.observability.metrics_token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(crate::tokens::bearer)
        .is_some_and(|token| {
            crate::tokens::digest_eq(
                &crate::tokens::sha256(token),
                &crate::tokens::sha256(expected),
            )
        })
}

/// `GET /whoami`: the identify stage on its own, for agents to check their token and headers.
async fn whoami(
    State(state): State<AppState>,
    axum::Extension(correlation): axum::Extension<CorrelationId>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let identified = crate::pipeline::identify(&state, &headers, &correlation).await?;
    let subject = identified.subject;
    Ok(axum::Json(serde_json::json!({
        "agent": subject.agent,
        "user": subject.user,
        "room": subject.room,
        "session": subject.session,
        "project": subject.project,
        "roles": subject.roles,
        "tags": subject.tags,
    }))
    .into_response())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound)
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed)
}

/// Takes the client's `X-Request-Id` when valid, else generates one; echoes it on the response.
async fn correlation(mut req: Request, next: Next) -> Response {
    let id = CorrelationId::from_header_or_generate(
        req.headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok()),
    );
    req.extensions_mut().insert(id.clone());
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    response
}

/// Headers every response carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// Header-size and time limits.
async fn limits(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let max_header = usize::try_from(state.config.server.max_header_bytes).unwrap_or(usize::MAX);
    if header_bytes > max_header {
        return ApiError::new(ErrorCode::HeaderTooLarge).into_response();
    }
    let timeout: Duration = state.config.server.request_timeout.as_std();
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(ErrorCode::RequestTimeout).into_response(),
    }
}

/// Limits failed authentication (`identity::failures`): a 401 counts against the peer and the
/// whole listener; past either limit, a request without a valid credential is refused with 429
/// before any handler (or ledger) sees it, and counted for the aggregate `auth.refused` event.
async fn limit_failed_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let surface = if path == "/admin" || path.starts_with("/admin/") {
        "admin"
    } else if path == "/metrics" {
        "metrics"
    } else {
        "agent"
    };
    let peer = peer_of(req.extensions()).map(|addr| addr.ip());
    let failures = state.identity.failures();
    if let Some(retry_after) = failures.limited(peer) {
        let valid = match surface {
            "admin" => state.admin.token_matches(req.headers()),
            "metrics" => {
                state.config.observability.metrics_token.is_some()
                    && metrics_token_ok(&state, req.headers())
            }
            _ => state.identity.knows(req.headers()).await,
        };
        if !valid {
            failures.refused(peer);
            state.metrics.increment(
                "portcullis_auth_failures_total",
                &[
                    ("surface", surface.to_owned()),
                    ("outcome", "limited".to_owned()),
                ],
            );
            let error = ApiError::rate_limited(retry_after);
            return if path.starts_with("/v1/") {
                crate::llm::LlmError::from(error).into_response()
            } else {
                error.into_response()
            };
        }
    }
    let response = next.run(req).await;
    // A refused credential answers 401 with `WWW-Authenticate` (`ErrorCode::Unauthorized`); a
    // provider's own 401 passed through by the LLM front does not carry it and is not counted.
    if response.status() == axum::http::StatusCode::UNAUTHORIZED
        && response.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        failures.failed(peer);
        state.metrics.increment(
            "portcullis_auth_failures_total",
            &[
                ("surface", surface.to_owned()),
                ("outcome", "refused".to_owned()),
            ],
        );
    }
    response
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    state.metrics.increment(
        "portcullis_http_requests_total",
        &[
            ("route", route),
            ("status", response.status().as_u16().to_string()),
        ],
    );
    response
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// The peer address, when the server recorded one.
pub fn peer_of(req_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    req_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// Records a refused request and turns it into its error response.
pub async fn refuse(
    state: &AppState,
    kind: &str,
    code: ErrorCode,
    correlation: &CorrelationId,
) -> ApiError {
    state
        .events
        .emit_best_effort(
            Event::new(kind, Decision::Deny, code.as_str()).correlation(correlation.as_str()),
        )
        .await;
    ApiError::new(code)
}
