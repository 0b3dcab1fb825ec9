//! The explained answer: decision, layer, rule and reason code, plus the reason tables.

use portcullis_core::error::{ErrorCode, ReasonInfo};
use serde::Serialize;

/// Layer names, as explanations and events spell them.
pub mod layer {
    pub const IMMUTABLE: &str = "immutable";
    pub const CONTRACT: &str = "contract";
    pub const CAPSULE: &str = "capsule";
    pub const ALLOWLIST: &str = "allowlist";
    pub const CEDAR: &str = "cedar";
    pub const DEFAULT: &str = "default";
    /// Every layer, in evaluation order.
    pub const ALL: &[&str] = &[IMMUTABLE, CONTRACT, CAPSULE, ALLOWLIST, CEDAR, DEFAULT];
}

/// Deny reason codes.
pub mod reason {
    pub const IMMUTABLE_DENIED: &str = "immutable_denied";
    pub const CONTRACT_DENIED: &str = "contract_denied";
    pub const CONTRACT_QUOTA_EXHAUSTED: &str = "contract_quota_exhausted";
    pub const CAPSULE_DENIED: &str = "capsule_denied";
    pub const CEDAR_FORBIDDEN: &str = "cedar_forbidden";
    pub const POLICY_ERROR: &str = "policy_error";
    pub const NO_ALLOW: &str = "no_allow";
    pub const UNKNOWN_GATE_KEY: &str = "unknown_gate_key";
    /// Allow reason codes.
    pub const ALLOWLIST_ALLOWED: &str = "allowlist_allowed";
    pub const CEDAR_PERMITTED: &str = "cedar_permitted";
    pub const REPORT_ONLY: &str = "report_only";
}

/// Every deny reason code this crate emits, with the registry code it maps to.
pub const REASONS: &[ReasonInfo] = &[
    ReasonInfo {
        code: reason::IMMUTABLE_DENIED,
        maps_to: ErrorCode::PolicyDenied,
        summary: "An immutable deny in `[policy] deny` matches the gate key.",
    },
    ReasonInfo {
        code: reason::CONTRACT_DENIED,
        maps_to: ErrorCode::PolicyDenied,
        summary: "An active deny contract matches the gate key and the subject.",
    },
    ReasonInfo {
        code: reason::CONTRACT_QUOTA_EXHAUSTED,
        maps_to: ErrorCode::RateLimited,
        summary: "A quota contract's hits for the current window are used up.",
    },
    ReasonInfo {
        code: reason::CAPSULE_DENIED,
        maps_to: ErrorCode::PolicyDenied,
        summary: "A deny or contract adopted from a capsule matches.",
    },
    ReasonInfo {
        code: reason::CEDAR_FORBIDDEN,
        maps_to: ErrorCode::PolicyDenied,
        summary: "A Cedar `forbid` policy applies.",
    },
    ReasonInfo {
        code: reason::POLICY_ERROR,
        maps_to: ErrorCode::PolicyError,
        summary: "A policy could not be evaluated (Cedar evaluation error, quota store error, oversized input); fail closed.",
    },
    ReasonInfo {
        code: reason::NO_ALLOW,
        maps_to: ErrorCode::PolicyDenied,
        summary: "No allowlist pattern or Cedar `permit` allows the gate key.",
    },
    ReasonInfo {
        code: reason::UNKNOWN_GATE_KEY,
        maps_to: ErrorCode::PolicyDenied,
        summary: "The gate key is not in the catalog.",
    },
];

/// Every allow reason code, with a one-line summary.
pub const ALLOW_REASONS: &[(&str, &str)] = &[
    (
        reason::ALLOWLIST_ALLOWED,
        "A pattern in the agent's `allow` list matches; `rule` is the pattern.",
    ),
    (
        reason::CEDAR_PERMITTED,
        "A Cedar `permit` policy applies and no `forbid` does; `rule` is the policy id.",
    ),
    (
        reason::REPORT_ONLY,
        "Nothing allows, but the `default` layer is in report mode.",
    ),
];

/// Allow or deny; an explanation has no third outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

/// What decided a request, serializing as
/// `{"decision":"allow|deny","layer":"...","rule":"<id or null>","reason":"<code>"}` plus, when a
/// layer in report mode would have denied, `"report":{"layer":...,"rule":...,"reason":...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Verdict,
    pub layer: &'static str,
    pub rule: Option<String>,
    pub reason: &'static str,
    /// The first deny that a layer in report mode turned into "carry on".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportedDeny>,
}

/// A deny that report mode did not enforce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportedDeny {
    pub layer: &'static str,
    pub rule: Option<String>,
    pub reason: &'static str,
}

impl Explanation {
    pub fn is_allow(&self) -> bool {
        self.decision == Verdict::Allow
    }

    /// The decision an event records: `report` when report mode let a deny through.
    pub fn event_decision(&self) -> portcullis_core::Decision {
        match (self.decision, &self.report) {
            (Verdict::Deny, _) => portcullis_core::Decision::Deny,
            (Verdict::Allow, Some(_)) => portcullis_core::Decision::Report,
            (Verdict::Allow, None) => portcullis_core::Decision::Allow,
        }
    }

    /// The registry code a deny maps to (for the front's error envelope); `None` for an allow.
    pub fn error_code(&self) -> Option<ErrorCode> {
        if self.is_allow() {
            return None;
        }
        Some(
            REASONS
                .iter()
                .find(|info| info.code == self.reason)
                .map_or(ErrorCode::PolicyDenied, |info| info.maps_to),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(explanation: &Explanation, expected: &str) {
        assert_eq!(serde_json::to_string(explanation).unwrap(), expected);
    }

    #[test]
    fn serializes_exactly() {
        check(
            &Explanation {
                decision: Verdict::Deny,
                layer: layer::DEFAULT,
                rule: None,
                reason: reason::NO_ALLOW,
                report: None,
            },
            r#"{"decision":"deny","layer":"default","rule":null,"reason":"no_allow"}"#,
        );
        check(
            &Explanation {
                decision: Verdict::Allow,
                layer: layer::ALLOWLIST,
                rule: Some("tools:*".into()),
                reason: reason::ALLOWLIST_ALLOWED,
                report: Some(ReportedDeny {
                    layer: layer::IMMUTABLE,
                    rule: Some("tools:call:x".into()),
                    reason: reason::IMMUTABLE_DENIED,
                }),
            },
            r#"{"decision":"allow","layer":"allowlist","rule":"tools:*","reason":"allowlist_allowed","report":{"layer":"immutable","rule":"tools:call:x","reason":"immutable_denied"}}"#,
        );
    }

    #[test]
    fn reasons_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        let codes = REASONS
            .iter()
            .map(|info| info.code)
            .chain(ALLOW_REASONS.iter().map(|(code, _)| *code));
        for code in codes {
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(seen.insert(code), "duplicate {code}");
        }
        assert!(REASONS.iter().any(|info| info.code == "policy_error"));
    }
}
