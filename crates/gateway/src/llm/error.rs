//! The OpenAI-compatible front's error envelope:
//! `{"error":{"message":"...","type":"...","param":null,"code":"<registry code>"}}`.
//!
//! The status is the code's, except for provider errors, whose status is passed through with
//! the fixed `upstream_failed` message. `Retry-After` and `WWW-Authenticate` are kept.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::ErrorCode;
use portcullis_sanitize::Counts;

use crate::error::ApiError;

/// An error answered on `/v1/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmError {
    code: ErrorCode,
    status: Option<u16>,
    retry_after: Option<u64>,
    detail: Option<String>,
}

impl LlmError {
    pub const fn new(code: ErrorCode) -> Self {
        Self {
            code,
            status: None,
            retry_after: None,
            detail: None,
        }
    }

    /// `upstream_failed` with the provider's status (a non-error status becomes 502).
    pub fn upstream_status(status: u16) -> Self {
        let status = if (400..=599).contains(&status) {
            status
        } else {
            502
        };
        Self {
            status: Some(status),
            ..Self::new(ErrorCode::UpstreamFailed)
        }
    }

    /// `pii_blocked`, naming the types and counts found (never the values).
    pub fn pii_blocked(counts: &Counts) -> Self {
        let found: Vec<String> = counts
            .iter()
            .map(|(ty, n)| format!("{} ({n})", ty.label()))
            .collect();
        Self {
            detail: Some(found.join(", ")),
            ..Self::new(ErrorCode::PiiBlocked)
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message clients see: the registry's sentence, plus the blocked types for
    /// `pii_blocked`.
    pub fn message(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{} Found: {detail}.", self.code.message()),
            None => self.code.message().to_owned(),
        }
    }

    /// The `error` object (also sent as a stream event when a stream fails).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message(),
            "type": error_type(self.status()),
            "param": null,
            "code": self.code.as_str(),
        }})
    }

    fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.http_status())
    }
}

/// OpenAI's error `type` for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

impl From<ApiError> for LlmError {
    fn from(err: ApiError) -> Self {
        Self {
            retry_after: err.retry_after,
            ..Self::new(err.code)
        }
    }
}

impl IntoResponse for LlmError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if self.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use portcullis_sanitize::EntityType;

    use super::*;

    #[test]
    fn envelope_carries_code_type_and_status() {
        let err = LlmError::from(ApiError::rate_limited(7));
        let response = err.clone().into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(err.body()["error"]["code"], "rate_limited");
        assert_eq!(err.body()["error"]["type"], "rate_limit_error");

        let upstream = LlmError::upstream_status(503);
        assert_eq!(upstream.clone().into_response().status(), 503);
        assert_eq!(upstream.body()["error"]["code"], "upstream_failed");
        assert_eq!(upstream.body()["error"]["message"], "The upstream failed.");

        let mut counts = Counts::default();
        counts.add(EntityType::CreditCard);
        counts.add(EntityType::CreditCard);
        let blocked = LlmError::pii_blocked(&counts);
        assert_eq!(blocked.clone().into_response().status(), 400);
        assert!(
            blocked.message().ends_with("Found: CREDIT_CARD (2)."),
            "{}",
            blocked.message()
        );
    }
}
