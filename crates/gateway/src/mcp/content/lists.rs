//! `prompts/list`, `resources/list` and `resources/templates/list`: built per request from the
//! upstreams the caller may read, keeping exactly the items it may get or read (dry runs of the
//! same gate keys), redacted; never cached across agents.

use std::sync::Arc;

use portcullis_mcp::{PrefixMode, Upstream};
use rmcp::model::{ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult};

use super::{ingress_key, prompt_key, resource_key};
use crate::identity::Identified;
use crate::mcp::{Caller, McpHandler};

impl McpHandler {
    /// The connected upstreams the caller may take content from (a dry run: no event).
    pub(super) fn readable_upstreams(&self, caller: &Identified) -> Vec<Arc<Upstream>> {
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
    pub(super) fn prompt_target(&self, exposed: &str) -> Option<(Arc<Upstream>, String)> {
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

    pub(in crate::mcp) async fn list_prompts_for(&self, caller: &Caller) -> ListPromptsResult {
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
                let exposed = self.prompt_name(&upstream, &name);
                let visible = prompt_key(&upstream, &name).is_some_and(|key| {
                    self.may(&caller.identified, key, &format!("{upstream}.{name}"))
                });
                if !visible {
                    continue;
                }
                if let Some(fields) = prompt.as_object_mut() {
                    fields.insert("name".to_owned(), serde_json::Value::String(exposed));
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

    pub(in crate::mcp) async fn list_resources_for(&self, caller: &Caller) -> ListResourcesResult {
        let resources = self
            .gather(caller, "uri", |upstream| async move {
                upstream.list_resources().await
            })
            .await;
        ListResourcesResult::with_all_items(resources)
    }

    pub(in crate::mcp) async fn list_resource_templates_for(
        &self,
        caller: &Caller,
    ) -> ListResourceTemplatesResult {
        let templates = self
            .gather(caller, "uriTemplate", |upstream| async move {
                upstream.list_resource_templates().await
            })
            .await;
        ListResourceTemplatesResult::with_all_items(templates)
    }

    /// What `list` answers for every upstream the caller may read, keeping the items whose
    /// `uri_field` the caller may read (`tools:resource:<upstream>` on that URI), redacted and
    /// parsed; an upstream that fails to list, or an item that cannot be scanned or parsed, is
    /// left out.
    async fn gather<T, F, Fut>(&self, caller: &Caller, uri_field: &str, list: F) -> Vec<T>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(Arc<Upstream>) -> Fut,
        Fut: std::future::Future<
                Output = Result<Vec<serde_json::Value>, portcullis_mcp::UpstreamError>,
            >,
    {
        let upstreams = self.readable_upstreams(&caller.identified);
        let names: Vec<String> = upstreams.iter().map(|u| u.name().to_owned()).collect();
        let listed = futures::future::join_all(upstreams.into_iter().map(list)).await;
        names
            .iter()
            .zip(listed)
            .filter_map(|(upstream, listed)| Some((upstream, listed.ok()?)))
            .flat_map(|(upstream, items)| items.into_iter().map(move |item| (upstream, item)))
            .filter_map(|(upstream, mut item)| {
                let uri = item.get(uri_field)?.as_str()?;
                let key = resource_key(upstream)?;
                if !self.may(&caller.identified, key, uri) {
                    return None;
                }
                self.state.mcp.redactor().redact_value(&mut item).ok()?;
                serde_json::from_value(item).ok()
            })
            .collect()
    }
}
