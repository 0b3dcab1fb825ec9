//! The registry of stable error codes shared by every front.
//!
//! Each front carries the code in its own envelope (admin JSON, OpenAI shape, JSON-RPC, proxy
//! header). Messages are fixed sentences that never carry internal details. Domain crates keep
//! finer reason codes of their own (capsule and egress refusals, for example); each maps onto one
//! of these codes for its status and envelope.

/// One stable, machine-readable error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    HeaderTooLarge,
    UnsupportedMediaType,
    IdentityHeaderRefused,
    RateLimited,
    RequestTimeout,
    PolicyDenied,
    PolicyError,
    BudgetExceeded,
    BudgetPaused,
    BudgetUnpricedModel,
    BudgetUnpricedTool,
    ApprovalRequired,
    KillswitchEngaged,
    PiiBlocked,
    ApprovalTimeout,
    EgressDenied,
    CapsuleInvalid,
    ConfigInvalid,
    UpstreamFailed,
    UpstreamTimeout,
    StoreUnavailable,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    /// Every code, in registry order (used to generate `docs/ERROR_CODES.md`).
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HeaderTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::IdentityHeaderRefused,
        ErrorCode::RateLimited,
        ErrorCode::RequestTimeout,
        ErrorCode::PolicyDenied,
        ErrorCode::PolicyError,
        ErrorCode::BudgetExceeded,
        ErrorCode::BudgetPaused,
        ErrorCode::BudgetUnpricedModel,
        ErrorCode::BudgetUnpricedTool,
        ErrorCode::ApprovalRequired,
        ErrorCode::KillswitchEngaged,
        ErrorCode::PiiBlocked,
        ErrorCode::ApprovalTimeout,
        ErrorCode::EgressDenied,
        ErrorCode::CapsuleInvalid,
        ErrorCode::ConfigInvalid,
        ErrorCode::UpstreamFailed,
        ErrorCode::UpstreamTimeout,
        ErrorCode::StoreUnavailable,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The stable snake_case code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeaderTooLarge => "header_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::IdentityHeaderRefused => "identity_header_refused",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PolicyDenied => "policy_denied",
            ErrorCode::PolicyError => "policy_error",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::BudgetPaused => "budget_paused",
            ErrorCode::BudgetUnpricedModel => "budget_unpriced_model",
            ErrorCode::BudgetUnpricedTool => "budget_unpriced_tool",
            ErrorCode::ApprovalRequired => "approval_required",
            ErrorCode::KillswitchEngaged => "killswitch_engaged",
            ErrorCode::PiiBlocked => "pii_blocked",
            ErrorCode::ApprovalTimeout => "approval_timeout",
            ErrorCode::EgressDenied => "egress_denied",
            ErrorCode::CapsuleInvalid => "capsule_invalid",
            ErrorCode::ConfigInvalid => "config_invalid",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status every HTTP front answers with.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::IdentityHeaderRefused | ErrorCode::PiiBlocked => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden
            | ErrorCode::PolicyDenied
            | ErrorCode::PolicyError
            | ErrorCode::EgressDenied
            | ErrorCode::BudgetUnpricedModel
            | ErrorCode::BudgetUnpricedTool
            | ErrorCode::ApprovalRequired => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::ApprovalTimeout | ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::CapsuleInvalid | ErrorCode::ConfigInvalid => 422,
            ErrorCode::RateLimited | ErrorCode::BudgetExceeded | ErrorCode::BudgetPaused => 429,
            ErrorCode::HeaderTooLarge => 431,
            ErrorCode::Internal => 500,
            ErrorCode::UpstreamFailed => 502,
            ErrorCode::KillswitchEngaged
            | ErrorCode::StoreUnavailable
            | ErrorCode::ShuttingDown => 503,
            ErrorCode::UpstreamTimeout => 504,
        }
    }

    /// The fixed sentence clients see. Never carries request details.
    pub const fn message(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "The request is malformed.",
            ErrorCode::Unauthorized => "A valid token is required.",
            ErrorCode::Forbidden => "This caller may not do this.",
            ErrorCode::NotFound => "No such resource.",
            ErrorCode::MethodNotAllowed => "This method is not allowed on this path.",
            ErrorCode::Conflict => "The change conflicts with the current state.",
            ErrorCode::PayloadTooLarge => "The request body is too large.",
            ErrorCode::HeaderTooLarge => "A request header is too large.",
            ErrorCode::UnsupportedMediaType => "The request body must be JSON.",
            ErrorCode::IdentityHeaderRefused => {
                "This agent may not assert user, room or session identity."
            }
            ErrorCode::RateLimited => "Too many requests; retry later.",
            ErrorCode::RequestTimeout => "The request took too long and was stopped.",
            ErrorCode::PolicyDenied => "Policy denies this action.",
            ErrorCode::PolicyError => "Policy could not be evaluated, so the action is denied.",
            ErrorCode::BudgetExceeded => "The budget for this scope is exhausted.",
            ErrorCode::BudgetPaused => {
                "New sessions are paused in this scope until its budget window resets."
            }
            ErrorCode::BudgetUnpricedModel => {
                "This model has no price while a money budget applies."
            }
            ErrorCode::BudgetUnpricedTool => "This tool has no price while a money budget applies.",
            ErrorCode::ApprovalRequired => "This action needs a human approval first.",
            ErrorCode::KillswitchEngaged => "The kill switch is engaged.",
            ErrorCode::PiiBlocked => "The request contains sensitive data that policy blocks.",
            ErrorCode::ApprovalTimeout => "No human approved this action in time.",
            ErrorCode::EgressDenied => "Egress policy denies this destination.",
            ErrorCode::CapsuleInvalid => "The capsule was refused.",
            ErrorCode::ConfigInvalid => "The configuration is invalid.",
            ErrorCode::UpstreamFailed => "The upstream failed.",
            ErrorCode::UpstreamTimeout => "The upstream did not answer in time.",
            ErrorCode::StoreUnavailable => "The store is unavailable.",
            ErrorCode::ShuttingDown => "The gateway is shutting down.",
            ErrorCode::Internal => "Internal error.",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finer reason code kept by a domain crate, mapped onto a registry [`ErrorCode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasonInfo {
    pub code: &'static str,
    pub maps_to: ErrorCode,
    pub summary: &'static str,
}

/// Renders the registry as Markdown: the top-level codes, then each domain's reason codes.
pub fn render_markdown(domains: &[(&str, &[ReasonInfo])]) -> String {
    let mut out = String::from(
        "# Error codes\n\n\
         Generated from `portcullis_core::error` and the domain crates' reason tables by\n\
         `cargo run -p portcullis -- docs error-codes`; a test fails when this file drifts.\n\n\
         Codes are an API: once shipped, a code is never renamed or reused.\n\n\
         | code | HTTP status | message |\n|---|---|---|\n",
    );
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.http_status(),
            code.message()
        ));
    }
    for (domain, reasons) in domains {
        out.push_str(&format!(
            "\n## {domain} reasons\n\n| reason | maps to | meaning |\n|---|---|---|\n"
        ));
        for reason in reasons.iter() {
            out.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                reason.code,
                reason.maps_to.as_str(),
                reason.summary
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s}"
            );
            assert!(seen.insert(s), "duplicate {s}");
            assert!(code.message().ends_with('.'));
        }
    }
}
