//! `tools/call` on the road: the front's part of each stage (`pipeline::road`).
//!
//! The front finds the tool in the catalog (a missing, unpinned or quarantined tool answers
//! `Unknown tool.` before anything else), describes the call as an [`Action`] (gate keys
//! `io:ingress:tools.<upstream>` and `tools:call:<upstream>.<tool>` in, `io:egress:tools.<upstream>`
//! out; the arguments and risk tier as the policy's context; the tool metered by its pin key), and
//! supplies validate (pinned schema, argument rules), sanitize in (secrets out of the arguments),
//! execute (the upstream call), sanitize out (secrets out of the result) and the `tool.call`
//! record. The road runs them in order.

use std::sync::Arc;

use portcullis_core::request::RequestContext;
use portcullis_core::{Decision, ErrorCode, Event, GateKey};
use portcullis_mcp::{CatalogTool, UpstreamError};
use portcullis_sanitize::{Counts, Vault};
use rmcp::ErrorData;
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};

use super::{Caller, McpHandler, clean, refresh, tool_error, unknown_tool};
use crate::http::AppState;
use crate::pipeline::Metered;
use crate::pipeline::road::{self, Action, Front, Kind, Pass, Refusal, Stage};

/// One `tools/call` as the road sees it.
struct ToolCall<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    tool: Arc<CatalogTool>,
    /// What the upstream will receive (rewritten by validate and sanitize in).
    arguments: JsonObject,
    record: CallRecord,
    /// The message of a validation refusal (names the rule and argument, never the value).
    violation: Option<String>,
    /// Synthetic stand-ins placed in the arguments, restored in the result.
    vault: Vault,
}

/// What the ledger keeps of one call: never argument values.
struct CallRecord {
    tool: String,
    arguments_sha256: String,
    arguments_shape: serde_json::Value,
    upstream: Option<String>,
    /// Personal data and secrets found in the arguments and in the result (counts only).
    sanitized_in: Counts,
    sanitized_out: Counts,
    started: tokio::time::Instant,
}

impl Front for ToolCall<'_> {
    type Output = CallToolResult;

    async fn validate(&mut self, _action: &Action) -> Result<(), Refusal> {
        let arguments = std::mem::take(&mut self.arguments);
        let schema = match &self.tool.validator {
            Some(validator) => portcullis_mcp::rules::check_schema(
                validator,
                &serde_json::Value::Object(arguments.clone()),
            ),
            None => Ok(()),
        };
        // The rules answer what to forward: exactly what they checked (normalized paths).
        let checked = schema.and_then(|()| {
            self.state
                .mcp
                .rules
                .check_tool(&self.tool.upstream, &self.tool.name, arguments)
        });
        match checked {
            Ok(arguments) => {
                self.arguments = arguments;
                Ok(())
            }
            Err(violation) => {
                self.violation = Some(violation.message());
                Err(Refusal::new(
                    Stage::Validate,
                    violation_code(violation.reason),
                    violation.reason,
                ))
            }
        }
    }

    fn sanitize_in(&mut self) -> Result<(), Refusal> {
        let mut arguments = serde_json::Value::Object(std::mem::take(&mut self.arguments));
        self.record.sanitized_in = clean::arguments(
            self.state,
            &self.tool.upstream,
            self.caller,
            &mut arguments,
            &mut self.vault,
        )?;
        if let serde_json::Value::Object(map) = arguments {
            self.arguments = map;
        }
        Ok(())
    }

    async fn execute(&mut self, _pass: Pass) -> Result<CallToolResult, Refusal> {
        let Some(upstream) = self.state.mcp.upstream(&self.tool.upstream) else {
            return Err(Refusal::new(
                Stage::Execute,
                ErrorCode::UpstreamFailed,
                "tool_unknown",
            ));
        };
        let arguments = Some(std::mem::take(&mut self.arguments));
        upstream
            .call_tool(&self.tool.name, arguments)
            .await
            .map_err(|err| {
                let code = match err {
                    UpstreamError::Timeout(_) => ErrorCode::UpstreamTimeout,
                    UpstreamError::Down(_) | UpstreamError::Failed { .. } => {
                        ErrorCode::UpstreamFailed
                    }
                };
                let detail = self
                    .state
                    .mcp
                    .redactor()
                    .redact_str(&err.to_string())
                    .map_or_else(|_| "[unscannable]".to_owned(), std::borrow::Cow::into_owned);
                tracing::warn!(correlation = %self.caller.correlation, error = %detail, "upstream call failed");
                Refusal::new(Stage::Execute, code, err.reason())
            })
    }

    fn sanitize_out(&mut self, result: CallToolResult) -> Result<CallToolResult, Refusal> {
        let unscannable = || {
            Refusal::new(
                Stage::SanitizeOut,
                ErrorCode::Internal,
                "result_unscannable",
            )
        };
        let mut value = serde_json::to_value(&result).map_err(|_| unscannable())?;
        self.record.sanitized_out = clean::answer(
            self.state,
            &self.tool.upstream,
            self.caller,
            &mut value,
            &self.vault,
        )?;
        serde_json::from_value(value).map_err(|_| unscannable())
    }

    fn meter(&self) -> Option<Metered> {
        Some(Metered::Tool {
            name: self.tool.pin_key.clone(),
        })
    }

    fn record(&self, decision: Decision, reason: &str) -> Event {
        tool_call_event(self.state, self.caller, &self.record, decision, reason)
    }
}

/// Whether a gate-in refusal with `code` hides the item (a policy deny), rather than saying why
/// (a used-up quota, a store that cannot record the decision).
pub(super) fn hides(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::PolicyDenied | ErrorCode::PolicyError)
}

/// The registry code a rule violation answers with.
pub(super) fn violation_code(reason: &str) -> ErrorCode {
    portcullis_mcp::REASONS
        .iter()
        .find(|info| info.code == reason)
        .map_or(ErrorCode::PolicyDenied, |info| info.maps_to)
}

/// The `tool.call` event (and its metric): the tool, upstream, latency, argument hash and shape.
fn tool_call_event(
    state: &AppState,
    caller: &Caller,
    record: &CallRecord,
    decision: Decision,
    reason: &str,
) -> Event {
    let latency_us = u64::try_from(record.started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let tool = state
        .mcp
        .redactor()
        .redact_str(&record.tool)
        .map_or_else(|_| "[unscannable]".to_owned(), std::borrow::Cow::into_owned);
    state.metrics.increment(
        "portcullis_tool_calls_total",
        &[
            ("decision", decision.as_str().to_owned()),
            ("reason", reason.to_owned()),
        ],
    );
    Event::new("tool.call", decision, reason)
        .subject(caller.identified.agent.id.clone())
        .correlation(caller.correlation.as_str())
        .data(serde_json::json!({
            "tool": tool,
            "upstream": record.upstream,
            "latency_us": latency_us,
            "arguments_sha256": record.arguments_sha256,
            "arguments_shape": record.arguments_shape,
            "sanitized_in": record.sanitized_in.to_json(),
            "sanitized_out": record.sanitized_out.to_json(),
        }))
}

/// The gate keys of a tool call: the upstream's ingress key and the tool's key in, the
/// upstream's egress key out.
fn gate_keys(tool: &CatalogTool) -> Option<(Vec<GateKey>, Vec<GateKey>)> {
    let ingress = GateKey::parse(&format!("io:ingress:tools.{}", tool.upstream)).ok()?;
    let egress = GateKey::parse(&format!("io:egress:tools.{}", tool.upstream)).ok()?;
    Some((vec![ingress, tool.gate_key.clone()], vec![egress]))
}

impl McpHandler {
    /// `tools/call`: the catalog lookup, then the road.
    pub(super) async fn call(
        &self,
        caller: &Caller,
        params: CallToolRequestParams,
    ) -> Result<CallToolResult, ErrorData> {
        let state = &self.state;
        let arguments = params.arguments.unwrap_or_default();
        let arguments_value = serde_json::Value::Object(arguments);
        let mut record = CallRecord {
            tool: params.name.to_string(),
            arguments_sha256: portcullis_mcp::shape::arguments_hash(&arguments_value),
            arguments_shape: portcullis_mcp::shape::arguments_shape(&arguments_value),
            upstream: None,
            sanitized_in: Counts::default(),
            sanitized_out: Counts::default(),
            started: tokio::time::Instant::now(),
        };
        let serde_json::Value::Object(arguments) = arguments_value else {
            return Err(unknown_tool());
        };
        let mut catalog = state.mcp.catalog();
        if catalog.is_empty() {
            catalog = refresh(state).await;
        }
        let refused = |record: &CallRecord, reason: &str| {
            let event = tool_call_event(state, caller, record, Decision::Deny, reason);
            async move { state.events.emit_best_effort(event).await }
        };
        let Some(tool) = catalog.get(&params.name).cloned() else {
            refused(&record, "tool_unknown").await;
            return Err(unknown_tool());
        };
        record.upstream = Some(tool.upstream.clone());
        if !tool.is_available(state.mcp.pin_mode()) {
            let reason = match tool.state {
                portcullis_mcp::PinState::Unpinned => "tool_unpinned",
                _ => "tool_quarantined",
            };
            refused(&record, reason).await;
            return Err(unknown_tool());
        }
        let Some((gates_in, gates_out)) = gate_keys(&tool) else {
            refused(&record, "tool_unknown").await;
            return Err(unknown_tool());
        };
        let action = Action {
            kind: Kind::ToolCall,
            gates_in,
            gates_out,
            resource: tool.pin_key.clone(),
            context: RequestContext {
                arguments: serde_json::Value::Object(arguments.clone()),
                risk: state.mcp.risk.tier(
                    &tool.upstream,
                    &tool.name,
                    tool.exposed.get("annotations"),
                ),
            },
        };
        let mut front = ToolCall {
            state,
            caller,
            tool: Arc::new(tool),
            arguments,
            record,
            violation: None,
            vault: Vault::new(),
        };
        match road::run(
            &state.core,
            &caller.identified,
            action,
            &mut front,
            &caller.correlation,
        )
        .await
        {
            Ok(ran) => Ok(ran.output),
            Err(stopped) => {
                let refusal = stopped.refusal;
                match refusal.stage {
                    // A tool the agent may not call answers exactly like one that does not exist.
                    Stage::GateIn if hides(refusal.error.code) => Err(unknown_tool()),
                    Stage::Execute if refusal.reason == "tool_unknown" => Err(unknown_tool()),
                    Stage::Validate => {
                        let message = front
                            .violation
                            .unwrap_or_else(|| refusal.error.code.message().to_owned());
                        Ok(tool_error(refusal.error.code, &refusal.reason, &message))
                    }
                    _ => Ok(tool_error(
                        refusal.error.code,
                        &refusal.reason,
                        refusal.error.code.message(),
                    )),
                }
            }
        }
    }
}
