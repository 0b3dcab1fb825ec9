//! Prompts and resources of the upstreams, fronted per agent.
//!
//! Getting a prompt and reading a resource are actions of their own on the road
//! (`pipeline::road`, kinds `prompt.get` and `resource.read`): content an upstream puts into the
//! agent's context. Gate in decides the upstream's ingress key `io:ingress:tools.<upstream>` and
//! the item's own key, `tools:prompt:<upstream>.<prompt>` or `tools:resource:<upstream>` (the URI
//! is the request's resource, and `context.arguments` holds the prompt's arguments or `{"uri":
//! ...}`, so Cedar and contracts can match them); gate out decides `io:egress:tools.<upstream>`,
//! as for tool results. Arguments lose any secret before the upstream sees them, and answers
//! pass the secret redactor before the agent does.
//!
//! Lists are built per request, never cached across agents, and show exactly what the agent may
//! get or read (dry runs of the same keys). Prompts are named like tools (`<upstream>.<prompt>`
//! with prefix mode `always`); a resource URI is routed to the upstream that lists it, or whose
//! resource template matches it; a URI no upstream offers is refused. A prompt or resource the
//! agent may not read answers exactly like a missing one. Each get and read is a `prompt.get` or
//! `resource.read` event (names and a URI hash, never content).

use std::sync::Arc;

use portcullis_core::request::{RequestContext, RiskTier};
use portcullis_core::{Decision, ErrorCode, Event, GateKey};
use portcullis_mcp::Upstream;
use rmcp::ErrorData;
use rmcp::model::ErrorCode as RpcCode;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResult, ReadResourceRequestParams, ReadResourceResult,
};
use sha2::{Digest as _, Sha256};

use super::{Caller, McpHandler, clean};
use crate::pipeline::road::{self, Action, Front, Kind, Pass, Refusal, Stage};
use portcullis_sanitize::Vault;
use template::template_matches;

mod lists;
mod template;

/// The error for a missing and for an unreadable prompt alike.
pub fn unknown_prompt() -> ErrorData {
    ErrorData::invalid_params("Unknown prompt.", None)
}

/// The error for a missing and for an unreadable resource alike.
pub fn unknown_resource() -> ErrorData {
    ErrorData::resource_not_found("Resource not found.", None)
}

/// An upstream's failure as the agent sees it: the upstream's own JSON-RPC error (message
/// redacted) when it answered with one, else `upstream_failed` or `upstream_timeout`.
fn upstream_error(handler: &McpHandler, err: &portcullis_mcp::UpstreamError) -> ErrorData {
    match err {
        portcullis_mcp::UpstreamError::Failed {
            source: rmcp::service::ServiceError::McpError(data),
            ..
        } => {
            let message = handler
                .state
                .mcp
                .redactor()
                .redact_str(&data.message)
                .map_or_else(|_| "[unscannable]".to_owned(), std::borrow::Cow::into_owned);
            ErrorData::new(data.code, message, None)
        }
        portcullis_mcp::UpstreamError::Timeout(_) => {
            ErrorData::internal_error(ErrorCode::UpstreamTimeout.message(), None)
        }
        _ => ErrorData::internal_error(ErrorCode::UpstreamFailed.message(), None),
    }
}

fn ingress_key(upstream: &str) -> Option<GateKey> {
    GateKey::parse(&format!("io:ingress:tools.{upstream}")).ok()
}

fn egress_key(upstream: &str) -> Option<GateKey> {
    GateKey::parse(&format!("io:egress:tools.{upstream}")).ok()
}

/// `tools:prompt:<upstream>.<prompt>` (the upstream's own prompt name, whatever the prefix mode).
fn prompt_key(upstream: &str, name: &str) -> Option<GateKey> {
    GateKey::parse(&format!("tools:prompt:{upstream}.{name}")).ok()
}

/// `tools:resource:<upstream>`.
fn resource_key(upstream: &str) -> Option<GateKey> {
    GateKey::parse(&format!("tools:resource:{upstream}")).ok()
}

/// What one content action asks of its upstream.
enum Fetch {
    Prompt(GetPromptRequestParams),
    Resource(ReadResourceRequestParams),
}

/// What the upstream answered.
enum Fetched {
    Prompt(GetPromptResult),
    Resource(ReadResourceResult),
}

/// How a content action failed, for the answer.
enum Failed {
    /// Refused by policy at gate in: answered like an item that does not exist.
    Hidden,
    /// The upstream's own error (or its failure).
    Upstream(ErrorData),
    /// Refused by a stage of the gateway, with the answer to give.
    Refused(ErrorData),
}

/// One prompt get or resource read on the road.
struct ContentFetch<'a> {
    handler: &'a McpHandler,
    caller: &'a Caller,
    upstream: Arc<Upstream>,
    kind: Kind,
    /// The exposed prompt name, or the URI.
    exposed: String,
    fetch: Option<Fetch>,
    /// For prompts, the upstream's own prompt name.
    own_name: Option<String>,
    /// The upstream's own error, answered as it is (redacted).
    upstream_error: Option<ErrorData>,
    /// The message of a validation refusal (names the rule and argument, never the value).
    violation: Option<String>,
    /// Synthetic stand-ins placed in prompt arguments, restored in the answer.
    vault: Vault,
}

impl Front for ContentFetch<'_> {
    type Output = Fetched;

    async fn validate(&mut self, _action: &Action) -> Result<(), Refusal> {
        let rules = &self.handler.state.mcp.rules;
        let upstream = self.upstream.name();
        let checked = match &mut self.fetch {
            Some(Fetch::Prompt(params)) => {
                let arguments = params.arguments.take().unwrap_or_default();
                let name = self.own_name.as_deref().unwrap_or_default();
                rules
                    .check_prompt(upstream, name, arguments)
                    .map(|arguments| {
                        params.arguments = (!arguments.is_empty()).then_some(arguments);
                    })
            }
            Some(Fetch::Resource(params)) => rules.check_resource(upstream, &params.uri),
            None => Ok(()),
        };
        checked.map_err(|violation| {
            self.violation = Some(violation.message());
            Refusal::new(
                Stage::Validate,
                super::call::violation_code(violation.reason),
                violation.reason,
            )
        })
    }

    fn sanitize_in(&mut self) -> Result<(), Refusal> {
        let redactor = self.handler.state.mcp.redactor();
        match &mut self.fetch {
            Some(Fetch::Prompt(params)) => {
                let Some(arguments) = params.arguments.take() else {
                    return Ok(());
                };
                let mut value = serde_json::Value::Object(arguments);
                clean::arguments(
                    &self.handler.state,
                    self.upstream.name(),
                    self.caller,
                    &mut value,
                    &mut self.vault,
                )?;
                if let serde_json::Value::Object(map) = value {
                    params.arguments = Some(map);
                }
                Ok(())
            }
            // A URI cannot lose a secret and still name the same thing: refuse it instead.
            Some(Fetch::Resource(params)) => match redactor.redact_str(&params.uri) {
                Ok(std::borrow::Cow::Borrowed(_)) => Ok(()),
                Ok(std::borrow::Cow::Owned(_)) => Err(Refusal::new(
                    Stage::SanitizeIn,
                    ErrorCode::PolicyDenied,
                    "uri_secret",
                )),
                Err(_) => Err(Refusal::new(
                    Stage::SanitizeIn,
                    ErrorCode::Internal,
                    "arguments_unscannable",
                )),
            },
            None => Ok(()),
        }
    }

    async fn execute(&mut self, _pass: Pass) -> Result<Fetched, Refusal> {
        let fetched = match self.fetch.take() {
            Some(Fetch::Prompt(params)) => {
                self.upstream.get_prompt(params).await.map(Fetched::Prompt)
            }
            Some(Fetch::Resource(params)) => self
                .upstream
                .read_resource(params)
                .await
                .map(Fetched::Resource),
            None => {
                return Err(Refusal::new(
                    Stage::Execute,
                    ErrorCode::Internal,
                    "fetch_spent",
                ));
            }
        };
        fetched.map_err(|err| {
            self.upstream_error = Some(upstream_error(self.handler, &err));
            let code = match err {
                portcullis_mcp::UpstreamError::Timeout(_) => ErrorCode::UpstreamTimeout,
                _ => ErrorCode::UpstreamFailed,
            };
            Refusal::new(Stage::Execute, code, err.reason())
        })
    }

    fn sanitize_out(&mut self, fetched: Fetched) -> Result<Fetched, Refusal> {
        let unscannable = || {
            Refusal::new(
                Stage::SanitizeOut,
                ErrorCode::Internal,
                "result_unscannable",
            )
        };
        let (mut value, prompt) = match fetched {
            Fetched::Prompt(result) => (serde_json::to_value(result), true),
            Fetched::Resource(result) => (serde_json::to_value(result), false),
        };
        let value = value.as_mut().map_err(|_| unscannable())?;
        let state = &self.handler.state;
        clean::answer(state, self.upstream.name(), self.caller, value, &self.vault)?;
        let value = std::mem::take(value);
        if prompt {
            serde_json::from_value(value).map(Fetched::Prompt)
        } else {
            serde_json::from_value(value).map(Fetched::Resource)
        }
        .map_err(|_| unscannable())
    }

    fn record(&self, decision: Decision, reason: &str) -> Event {
        content_event(
            self.handler,
            self.caller,
            self.kind,
            Some(self.upstream.name()),
            &self.exposed,
            decision,
            reason,
        )
    }
}

/// A `prompt.get` or `resource.read` event: the prompt name, or a resource URI's SHA-256.
fn content_event(
    handler: &McpHandler,
    caller: &Caller,
    kind: Kind,
    upstream: Option<&str>,
    name: &str,
    decision: Decision,
    reason: &str,
) -> Event {
    let target = if kind == Kind::ResourceRead {
        serde_json::json!({"uri_sha256": hex::encode(Sha256::digest(name.as_bytes()))})
    } else {
        let name = handler
            .state
            .mcp
            .redactor()
            .redact_str(name)
            .map_or_else(|_| "[unscannable]".to_owned(), std::borrow::Cow::into_owned);
        serde_json::json!({"prompt": name})
    };
    let mut data = serde_json::json!({"upstream": upstream});
    if let (Some(data), serde_json::Value::Object(target)) = (data.as_object_mut(), target) {
        data.extend(target);
    }
    Event::new(kind.as_str(), decision, reason)
        .subject(caller.identified.agent.id.clone())
        .correlation(caller.correlation.as_str())
        .data(data)
}

impl McpHandler {
    /// The upstream that serves `uri`: the one that lists it, else the one whose resource
    /// template matches it. `None` when no upstream offers it (or it cannot be routed
    /// unambiguously).
    async fn resource_target(&self, uri: &str) -> Option<Arc<Upstream>> {
        let upstreams: Vec<Arc<Upstream>> = self
            .state
            .mcp
            .upstreams()
            .iter()
            .filter(|upstream| upstream.offers_resources())
            .cloned()
            .collect();
        let listed = futures::future::join_all(upstreams.iter().map(|upstream| async move {
            upstream.list_resources().await.is_ok_and(|listed| {
                listed
                    .iter()
                    .any(|resource| resource.get("uri").and_then(|u| u.as_str()) == Some(uri))
            })
        }))
        .await;
        if let Some((upstream, _)) = upstreams.iter().zip(&listed).find(|(_, listed)| **listed) {
            return Some(Arc::clone(upstream));
        }
        let templated = futures::future::join_all(upstreams.iter().map(|upstream| async move {
            upstream
                .list_resource_templates()
                .await
                .is_ok_and(|listed| {
                    listed.iter().any(|template| {
                        template
                            .get("uriTemplate")
                            .and_then(|t| t.as_str())
                            .is_some_and(|template| template_matches(template, uri))
                    })
                })
        }))
        .await;
        let mut matching = upstreams
            .iter()
            .zip(templated)
            .filter(|(_, matched)| *matched);
        match (matching.next(), matching.next()) {
            (Some((upstream, _)), None) => Some(Arc::clone(upstream)),
            _ => None,
        }
    }

    pub(super) async fn get_prompt_for(
        &self,
        caller: &Caller,
        mut params: GetPromptRequestParams,
    ) -> Result<GetPromptResult, ErrorData> {
        let exposed = params.name.clone();
        let target = self.prompt_target(&exposed);
        let listed = match &target {
            Some((upstream, name)) => upstream.list_prompts().await.is_ok_and(|prompts| {
                prompts
                    .iter()
                    .any(|prompt| prompt.get("name").and_then(|n| n.as_str()) == Some(name))
            }),
            None => false,
        };
        let keys = target.as_ref().and_then(|(upstream, name)| {
            Some((
                ingress_key(upstream.name())?,
                prompt_key(upstream.name(), name)?,
                egress_key(upstream.name())?,
            ))
        });
        let (Some((upstream, name)), Some((ingress, key, egress)), true) = (target, keys, listed)
        else {
            let event = content_event(
                self,
                caller,
                Kind::PromptGet,
                None,
                &exposed,
                Decision::Deny,
                "prompt_unknown",
            );
            self.state.events.emit_best_effort(event).await;
            return Err(unknown_prompt());
        };
        let arguments = params.arguments.clone().map_or(
            serde_json::Value::Object(Default::default()),
            serde_json::Value::Object,
        );
        // The resource is `<upstream>.<prompt>` with the upstream's own name, whatever the
        // prefix mode, as a tool call's is.
        let resource = format!("{}.{name}", upstream.name());
        params.name = name;
        let action = Action {
            kind: Kind::PromptGet,
            gates_in: vec![ingress, key],
            gates_out: vec![egress],
            resource,
            context: RequestContext {
                arguments,
                risk: RiskTier::default(),
            },
        };
        match self
            .fetch(caller, action, upstream, exposed, Fetch::Prompt(params))
            .await
        {
            Ok(Fetched::Prompt(result)) => Ok(result),
            Ok(Fetched::Resource(_)) => Err(ErrorData::internal_error(
                ErrorCode::Internal.message(),
                None,
            )),
            Err(Failed::Hidden) => Err(unknown_prompt()),
            Err(Failed::Upstream(data) | Failed::Refused(data)) => Err(data),
        }
    }

    pub(super) async fn read_resource_for(
        &self,
        caller: &Caller,
        params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, ErrorData> {
        let uri = params.uri.clone();
        let target = self.resource_target(&uri).await;
        let keys = target.as_ref().and_then(|upstream| {
            Some((
                ingress_key(upstream.name())?,
                resource_key(upstream.name())?,
                egress_key(upstream.name())?,
            ))
        });
        let (Some(upstream), Some((ingress, key, egress))) = (target, keys) else {
            let event = content_event(
                self,
                caller,
                Kind::ResourceRead,
                None,
                &uri,
                Decision::Deny,
                "resource_unknown",
            );
            self.state.events.emit_best_effort(event).await;
            return Err(unknown_resource());
        };
        let action = Action {
            kind: Kind::ResourceRead,
            gates_in: vec![ingress, key],
            gates_out: vec![egress],
            resource: uri.clone(),
            context: RequestContext {
                arguments: serde_json::json!({ "uri": uri }),
                risk: RiskTier::default(),
            },
        };
        match self
            .fetch(caller, action, upstream, uri, Fetch::Resource(params))
            .await
        {
            Ok(Fetched::Resource(result)) => Ok(result),
            Ok(Fetched::Prompt(_)) => Err(ErrorData::internal_error(
                ErrorCode::Internal.message(),
                None,
            )),
            // An unknown URI answers like an unreadable one, whoever says so.
            Err(Failed::Upstream(data))
                if data.code != RpcCode::RESOURCE_NOT_FOUND
                    && data.code != RpcCode::INVALID_PARAMS =>
            {
                Err(data)
            }
            Err(Failed::Refused(data)) => Err(data),
            Err(_) => Err(unknown_resource()),
        }
    }

    /// Runs one content action down the road.
    async fn fetch(
        &self,
        caller: &Caller,
        action: Action,
        upstream: Arc<Upstream>,
        exposed: String,
        fetch: Fetch,
    ) -> Result<Fetched, Failed> {
        let mut front = ContentFetch {
            handler: self,
            caller,
            upstream,
            kind: action.kind,
            exposed,
            own_name: match &fetch {
                Fetch::Prompt(params) => Some(params.name.to_string()),
                Fetch::Resource(_) => None,
            },
            fetch: Some(fetch),
            upstream_error: None,
            violation: None,
            vault: Vault::new(),
        };
        let ran = road::run(
            &self.state.core,
            &caller.identified,
            action,
            &mut front,
            &caller.correlation,
        )
        .await;
        match ran {
            Ok(ran) => Ok(ran.output),
            Err(stopped) => {
                let refusal = stopped.refusal;
                Err(match refusal.stage {
                    Stage::GateIn if super::call::hides(refusal.error.code) => Failed::Hidden,
                    Stage::Execute => {
                        Failed::Upstream(front.upstream_error.take().unwrap_or_else(|| {
                            ErrorData::internal_error(refusal.error.code.message(), None)
                        }))
                    }
                    Stage::Validate => Failed::Refused(ErrorData::invalid_params(
                        front.violation.take().map_or_else(
                            || refusal.error.code.message().to_owned(),
                            |message| format!("{message} ({})", refusal.error.code.as_str()),
                        ),
                        None,
                    )),
                    Stage::GateOut | Stage::SanitizeIn => Failed::Refused(
                        ErrorData::invalid_request(refusal.error.code.message(), None),
                    ),
                    _ => Failed::Refused(ErrorData::internal_error(
                        refusal.error.code.message(),
                        None,
                    )),
                })
            }
        }
    }
}
