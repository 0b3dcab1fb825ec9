//! The sanitize stages of the MCP fronts, shared by tool calls, prompt gets and resource reads:
//! what goes to an upstream and what comes back cross the same steps.

use portcullis_core::ErrorCode;
use portcullis_sanitize::{Counts, ProtocolPaths, Scope, Vault};
use serde_json::Value;

use super::Caller;
use crate::http::AppState;
use crate::pipeline::road::{Refusal, Stage};

/// Sanitize in: secrets out of `value` (configured values, held secrets in their encodings,
/// Portcullis's own tokens, secret formats: agents never hand secrets to tools), then personal
/// data by `upstream`'s argument strategies, stand-ins recorded in `vault`. Answers the counts.
pub(super) fn arguments(
    state: &AppState,
    upstream: &str,
    caller: &Caller,
    value: &mut Value,
    vault: &mut Vault,
) -> Result<Counts, Refusal> {
    secrets(state, value).map_err(|()| {
        Refusal::new(
            Stage::SanitizeIn,
            ErrorCode::Internal,
            "arguments_unscannable",
        )
    })?;
    let Some(pii) = state.mcp.pii.get(upstream) else {
        return Ok(Counts::default());
    };
    pii.arguments
        .apply_value(value, &ProtocolPaths::none(), &scope(caller), vault)
        .map_err(|err| Refusal::new(Stage::SanitizeIn, err.code(), err.reason()))
}

/// Sanitize out: the caller's own values back where the upstream saw stand-ins of `vault`,
/// secrets out, then personal data by `upstream`'s result strategies. Answers the counts.
pub(super) fn answer(
    state: &AppState,
    upstream: &str,
    caller: &Caller,
    value: &mut Value,
    vault: &Vault,
) -> Result<Counts, Refusal> {
    if !vault.is_empty() {
        restore(vault, value);
    }
    secrets(state, value).map_err(|()| {
        Refusal::new(
            Stage::SanitizeOut,
            ErrorCode::Internal,
            "result_unscannable",
        )
    })?;
    let Some(pii) = state.mcp.pii.get(upstream) else {
        return Ok(Counts::default());
    };
    pii.results
        .apply_value(
            value,
            &ProtocolPaths::none(),
            &scope(caller),
            &mut Vault::new(),
        )
        .map_err(|err| Refusal::new(Stage::SanitizeOut, err.code(), err.reason()))
}

/// Every secret out of `value`; `Err` when it cannot be scanned.
fn secrets(state: &AppState, value: &mut Value) -> Result<(), ()> {
    state.secrets.redact_json(value);
    let redactor = state.mcp.redactor();
    redactor.redact_held_value(value);
    redactor.redact_value(value).map(drop).map_err(drop)
}

/// The sanitizer scope of a caller: its agent and session (or, without one, this request), so
/// stand-ins are stable within a session and never shared across agents.
fn scope(caller: &Caller) -> Scope {
    crate::pipeline::sanitize_scope(&caller.identified, &caller.correlation)
}

/// Restores every synthetic stand-in of `vault` in the strings and keys of `value`.
fn restore(vault: &Vault, value: &mut Value) {
    match value {
        Value::String(text) => *text = portcullis_sanitize::restore(vault, text),
        Value::Array(items) => items.iter_mut().for_each(|item| restore(vault, item)),
        Value::Object(map) => {
            for (key, mut item) in std::mem::take(map) {
                restore(vault, &mut item);
                map.insert(portcullis_sanitize::restore(vault, &key), item);
            }
        }
        _ => {}
    }
}
