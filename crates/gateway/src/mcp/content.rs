//! Prompts and resources of the upstreams, fronted per agent.
//!
//! They are content an upstream puts into the agent's context, so they are gated by the
//! upstream's ingress key `io:ingress:tools.<upstream>` (and the answer by its egress key
//! `io:egress:tools.<upstream>`, as tool results are): an agent sees and reads the prompts and
//! resources of exactly the upstreams it may take input from. Lists are built per request and
//! never cached across agents. Prompts are named like tools (`<upstream>.<prompt>` with prefix
//! mode `always`); resource URIs pass unchanged and are routed to the upstream that lists them.
//! A prompt or resource the agent may not read answers exactly like a missing one. Every answer
//! passes the secret redactor; each get and read is a `prompt.get` or `resource.read` event
//! (names and a URI hash, never content).

use std::sync::Arc;

use portcullis_core::request::RequestContext;
use portcullis_core::{Decision, Event, GateKey};
use portcullis_mcp::{PrefixMode, Upstream};
use rmcp::ErrorData;
use rmcp::model::ErrorCode as RpcCode;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResult, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ReadResourceRequestParams, ReadResourceResult,
};
use sha2::{Digest as _, Sha256};

use super::{Caller, McpHandler};
use crate::identity::Identified;

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
    use portcullis_core::ErrorCode;

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

impl McpHandler {
    /// The connected upstreams the caller may take content from (a dry run: no event).
    fn readable_upstreams(&self, caller: &Identified) -> Vec<Arc<Upstream>> {
        self.state
            .mcp
            .upstreams()
            .iter()
            .filter(|upstream| {
                ingress_key(upstream.name())
                    .is_some_and(|key| self.may(caller, key, upstream.name()))
            })
            .cloned()
            .collect()
    }

    /// The exposed name of an upstream's prompt.
    fn prompt_name(&self, upstream: &str, name: &str) -> String {
        match self.state.mcp.prefix {
            PrefixMode::Always => format!("{upstream}.{name}"),
            PrefixMode::Never => name.to_owned(),
        }
    }

    /// The upstream and the upstream's own name of an exposed prompt name.
    fn prompt_target(&self, exposed: &str) -> Option<(Arc<Upstream>, String)> {
        let upstreams = self.state.mcp.upstreams();
        match self.state.mcp.prefix {
            PrefixMode::Always => {
                let (upstream, name) = exposed.split_once('.')?;
                let upstream = upstreams.iter().find(|u| u.name() == upstream)?;
                Some((Arc::clone(upstream), name.to_owned()))
            }
            PrefixMode::Never => match upstreams {
                [only] => Some((Arc::clone(only), exposed.to_owned())),
                _ => None,
            },
        }
    }

    pub(super) async fn list_prompts_for(&self, caller: &Caller) -> ListPromptsResult {
        let upstreams = self.readable_upstreams(&caller.identified);
        let listed = futures::future::join_all(upstreams.iter().map(|upstream| async move {
            (upstream.name().to_owned(), upstream.list_prompts().await)
        }))
        .await;
        let mut prompts = Vec::new();
        for (upstream, listed) in listed {
            let Ok(listed) = listed else { continue };
            for mut prompt in listed {
                let Some(name) = prompt
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(str::to_owned)
                else {
                    continue;
                };
                if let Some(fields) = prompt.as_object_mut() {
                    fields.insert(
                        "name".to_owned(),
                        serde_json::Value::String(self.prompt_name(&upstream, &name)),
                    );
                }
                if self.state.mcp.redactor().redact_value(&mut prompt).is_err() {
                    continue;
                }
                if let Ok(prompt) = serde_json::from_value(prompt) {
                    prompts.push(prompt);
                }
            }
        }
        ListPromptsResult::with_all_items(prompts)
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
        let Some((upstream, name)) = target.filter(|_| listed) else {
            self.content_event(
                caller,
                "prompt.get",
                None,
                &exposed,
                Decision::Deny,
                "prompt_unknown",
            )
            .await;
            return Err(unknown_prompt());
        };
        params.name = name;
        let fetch = upstream.get_prompt(params);
        self.fetch_content(caller, "prompt.get", &upstream, &exposed, fetch)
            .await
            .map_err(|err| err.unwrap_or_else(unknown_prompt))
    }

    pub(super) async fn list_resources_for(&self, caller: &Caller) -> ListResourcesResult {
        let resources = self
            .gather(
                caller,
                |upstream| async move { upstream.list_resources().await },
            )
            .await;
        ListResourcesResult::with_all_items(resources)
    }

    pub(super) async fn list_resource_templates_for(
        &self,
        caller: &Caller,
    ) -> ListResourceTemplatesResult {
        let templates = self
            .gather(caller, |upstream| async move {
                upstream.list_resource_templates().await
            })
            .await;
        ListResourceTemplatesResult::with_all_items(templates)
    }

    /// What `list` answers for every upstream the caller may read, redacted and parsed; an
    /// upstream that fails to list, or an item that cannot be scanned or parsed, is left out.
    async fn gather<T, F, Fut>(&self, caller: &Caller, list: F) -> Vec<T>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(Arc<Upstream>) -> Fut,
        Fut: std::future::Future<
                Output = Result<Vec<serde_json::Value>, portcullis_mcp::UpstreamError>,
            >,
    {
        let upstreams = self.readable_upstreams(&caller.identified);
        let listed = futures::future::join_all(upstreams.into_iter().map(list)).await;
        listed
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .filter_map(|mut item| {
                self.state.mcp.redactor().redact_value(&mut item).ok()?;
                serde_json::from_value(item).ok()
            })
            .collect()
    }

    /// The upstream that serves `uri`: the one among those the caller may read that lists it,
    /// else the only one that offers resources at all (templated URIs).
    async fn resource_target(&self, uri: &str) -> Option<Arc<Upstream>> {
        let upstreams: Vec<Arc<Upstream>> = self
            .state
            .mcp
            .upstreams()
            .iter()
            .filter(|upstream| upstream.offers_resources())
            .cloned()
            .collect();
        for upstream in &upstreams {
            if upstream.list_resources().await.is_ok_and(|listed| {
                listed
                    .iter()
                    .any(|resource| resource.get("uri").and_then(|u| u.as_str()) == Some(uri))
            }) {
                return Some(Arc::clone(upstream));
            }
        }
        match upstreams.as_slice() {
            [only] => Some(Arc::clone(only)),
            _ => None,
        }
    }

    pub(super) async fn read_resource_for(
        &self,
        caller: &Caller,
        params: ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, ErrorData> {
        let uri = params.uri.clone();
        let Some(upstream) = self.resource_target(&uri).await else {
            self.content_event(
                caller,
                "resource.read",
                None,
                &uri,
                Decision::Deny,
                "resource_unknown",
            )
            .await;
            return Err(unknown_resource());
        };
        let fetch = upstream.read_resource(params);
        self.fetch_content(caller, "resource.read", &upstream, &uri, fetch)
            .await
            .map_err(|err| match err {
                // An unknown URI answers like an unreadable one, whoever says so.
                Some(data)
                    if data.code != RpcCode::RESOURCE_NOT_FOUND
                        && data.code != RpcCode::INVALID_PARAMS =>
                {
                    data
                }
                _ => unknown_resource(),
            })
    }

    /// Gate in, `fetch` from `upstream`, then [`Self::finish_content`]; each refusal is a `kind`
    /// event. `Err(None)` is a refusal by policy, which the caller answers like an item that
    /// does not exist; `Err(Some(_))` is the answer to an upstream or gate-out failure.
    async fn fetch_content<T>(
        &self,
        caller: &Caller,
        kind: &'static str,
        upstream: &Upstream,
        exposed: &str,
        fetch: impl Future<Output = Result<T, portcullis_mcp::UpstreamError>>,
    ) -> Result<T, Option<ErrorData>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let refused = |reason| {
            self.content_event(
                caller,
                kind,
                Some(upstream.name()),
                exposed,
                Decision::Deny,
                reason,
            )
        };
        if !self
            .gate_content(caller, upstream, exposed, ingress_key)
            .await
        {
            refused("policy_denied").await;
            return Err(None);
        }
        match fetch.await {
            Ok(result) => self
                .finish_content(caller, kind, upstream, exposed, result)
                .await
                .map_err(Some),
            Err(err) => {
                refused(err.reason()).await;
                Err(Some(upstream_error(self, &err)))
            }
        }
    }

    /// The pipeline's gate for content of `upstream` (with events).
    async fn gate_content(
        &self,
        caller: &Caller,
        upstream: &Upstream,
        resource: &str,
        key: fn(&str) -> Option<GateKey>,
    ) -> bool {
        let Some(action) = key(upstream.name()) else {
            return false;
        };
        crate::pipeline::gate(
            &self.state,
            &caller.identified,
            action,
            format!("{}:{}", upstream.name(), resource),
            RequestContext::default(),
            &caller.correlation,
        )
        .await
        .is_ok()
    }

    /// Gate out and redaction of an answer, then its event.
    async fn finish_content<T>(
        &self,
        caller: &Caller,
        kind: &str,
        upstream: &Upstream,
        name: &str,
        result: T,
    ) -> Result<T, ErrorData>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let refused = |reason| async move {
            self.content_event(
                caller,
                kind,
                Some(upstream.name()),
                name,
                Decision::Deny,
                reason,
            )
            .await;
        };
        if !self.gate_content(caller, upstream, name, egress_key).await {
            refused("policy_denied").await;
            return Err(ErrorData::invalid_request(
                portcullis_core::ErrorCode::PolicyDenied.message(),
                None,
            ));
        }
        let redacted = serde_json::to_value(&result).ok().and_then(|mut value| {
            self.state.secrets.redact_json(&mut value);
            self.state.mcp.redactor().redact_value(&mut value).ok()?;
            serde_json::from_value(value).ok()
        });
        let Some(result) = redacted else {
            refused("result_unscannable").await;
            return Err(ErrorData::internal_error(
                portcullis_core::ErrorCode::Internal.message(),
                None,
            ));
        };
        if !self
            .content_event(
                caller,
                kind,
                Some(upstream.name()),
                name,
                Decision::Allow,
                "ok",
            )
            .await
        {
            return Err(ErrorData::internal_error(
                portcullis_core::ErrorCode::StoreUnavailable.message(),
                None,
            ));
        }
        Ok(result)
    }

    /// A `prompt.get` or `resource.read` event: the prompt name, or a resource URI's SHA-256.
    async fn content_event(
        &self,
        caller: &Caller,
        kind: &str,
        upstream: Option<&str>,
        name: &str,
        decision: Decision,
        reason: &str,
    ) -> bool {
        let target = if kind == "resource.read" {
            serde_json::json!({"uri_sha256": hex::encode(Sha256::digest(name.as_bytes()))})
        } else {
            let name = self
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
        let event = Event::new(kind, decision, reason)
            .subject(caller.identified.agent.id.clone())
            .correlation(caller.correlation.as_str())
            .data(data);
        self.state.events.emit(event).await.is_ok()
    }
}
