//! The properties the `mcp_front` and `config` fuzz targets check, shared with the corpus replay
//! test (`crates/gateway/tests/fuzz_corpus.rs`).
//!
//! `mcp_front` reads a `/mcp` body as JSON-RPC into rmcp's model and does what the front does
//! with its params before any upstream: the broker verbs, the catalog lookup of an exposed tool
//! name, the pinned schema and argument rules ([`portcullis_mcp::fuzzing`], which also runs on
//! the raw body), and routing a resource URI by RFC 6570 template. A body that is not JSON is
//! read as `template\nuri` for the template matcher alone. `config` loads TOML text with
//! environment overrides written as `#! NAME=value` comment lines.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use portcullis_mcp::{Catalog, PinState, PrefixMode};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use serde_json::{Value, json};

use crate::mcp::broker::{self, MAX_LOAD, MAX_QUERY_BYTES, MAX_RESULTS, Verb};

// The matcher is private to `mcp::content`; the fuzz property compiles the same file again
// rather than widening its visibility for tests.
#[expect(
    clippy::duplicate_mod,
    reason = "the template matcher is compiled once more for the fuzz property"
)]
#[path = "mcp/content/template.rs"]
mod template;

use template::template_matches;

/// Resource templates the fixture upstreams list.
pub const FUZZ_TEMPLATES: &[&str] = &[
    "test://template/{id}/data",
    "file:///{+path}",
    "notes://{user}/{note}#{section}",
    "db://{table}?q={#query}",
];

/// Longest template match the expansion property asks for (its search is bounded, see
/// `template.rs`, so longer ones may fail closed).
const MAX_EXPANDED_LEN: usize = 200;
/// Most expressions in a template the expansion property is checked on.
const MAX_EXPANDED_EXPRESSIONS: usize = 2;

/// Checks one `/mcp` body; answers the first violated property.
pub fn check_mcp_front(data: &[u8]) -> Result<(), String> {
    portcullis_mcp::fuzzing::check_body(data)?;
    if serde_json::from_slice::<Value>(data).is_err() {
        let text = String::from_utf8_lossy(data);
        let (template, uri) = text.split_once('\n').unwrap_or((&text, &text));
        return check_template(template, uri);
    }
    let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(data) else {
        return Ok(());
    };
    let JsonRpcMessage::Request(request) = message else {
        return Ok(());
    };
    match request.request {
        ClientRequest::CallToolRequest(call) => {
            let params = call.params;
            check_broker(&params.name, params.arguments.as_ref())?;
            check_catalog_call(&params.name, params.arguments.unwrap_or_default())
        }
        ClientRequest::ReadResourceRequest(read) => {
            for template in FUZZ_TEMPLATES {
                check_template(template, &read.params.uri)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The fixture catalog: four tools of three upstreams, all pinned, prefix mode `always`.
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let tool = |name: &str, description: &str, properties: Value, required: &[&str]| {
        json!({
            "name": name,
            "description": description,
            "inputSchema": {"type": "object", "properties": properties, "required": required},
        })
    };
    let listings = vec![
        (
            "fs".to_owned(),
            vec![
                tool(
                    "read_file",
                    "Read a file under the data root.",
                    json!({"path": {"type": "string"}}),
                    &["path"],
                ),
                tool(
                    "write_file",
                    "Write a file.",
                    json!({"path": {"type": "string"},
                           "content": {"type": "string", "maxLength": 64}}),
                    &["path", "content"],
                ),
            ],
        ),
        (
            "web".to_owned(),
            vec![tool(
                "fetch",
                "Fetch a URL.",
                json!({"url": {"type": "string", "format": "uri"}}),
                &["url"],
            )],
        ),
        (
            "shell".to_owned(),
            vec![tool("run", "Run a command.", json!({}), &[])],
        ),
    ];
    let (unpinned, _) = Catalog::build(&listings, &BTreeMap::new(), PrefixMode::Always, None);
    let pins = unpinned
        .tools()
        .iter()
        .map(|tool| (tool.pin_key.clone(), tool.offered.clone()))
        .collect();
    Catalog::build(&listings, &pins, PrefixMode::Always, None).0
});

/// A broker verb: the bounds hold, and a search answers at most what was asked, all of it from
/// the catalog.
fn check_broker(name: &str, arguments: Option<&rmcp::model::JsonObject>) -> Result<(), String> {
    let verbs = [
        broker::SEARCH_TOOLS,
        broker::DESCRIBE_TOOL,
        broker::LOAD_TOOLS,
        broker::CALL_TOOL,
    ];
    let parsed = broker::parse(name, arguments);
    match &parsed {
        Ok(None) if verbs.contains(&name) => Err(format!("broker verb `{name}` not recognized")),
        Ok(Some(_)) | Err(_) if !verbs.contains(&name) => {
            Err(format!("`{name}` was taken for a broker verb"))
        }
        Ok(Some(Verb::Search { query, max_results })) => {
            if query.len() > MAX_QUERY_BYTES {
                return Err("a search query over the limit passed".into());
            }
            let max = usize::try_from(MAX_RESULTS).unwrap_or(usize::MAX);
            if !(1..=max).contains(max_results) {
                return Err(format!("max_results {max_results} passed"));
            }
            let exposed: Vec<&Value> = CATALOG.tools().iter().map(|tool| &tool.exposed).collect();
            let hits = broker::search(exposed.iter().copied(), query, *max_results);
            let offered = |hit: &Value| {
                exposed
                    .iter()
                    .any(|tool| tool.get("name") == hit.get("tool_id"))
            };
            if hits.len() > *max_results || !hits.iter().all(offered) {
                return Err("a search answered more than asked or a tool not offered".into());
            }
            Ok(())
        }
        Ok(Some(Verb::Load { tool_ids })) if tool_ids.len() > MAX_LOAD => {
            Err(format!("{} tools loaded at once", tool_ids.len()))
        }
        Ok(Some(Verb::Call { tool_id, arguments })) => {
            check_catalog_call(tool_id, arguments.clone())
        }
        Ok(Some(Verb::Describe { .. } | Verb::Load { .. }) | None) | Err(_) => Ok(()),
    }
}

/// A call of an exposed name: only a pinned catalog tool is found, under its `<upstream>.<tool>`
/// name and gate key, and its arguments meet the pinned schema, then the rules.
fn check_catalog_call(name: &str, arguments: rmcp::model::JsonObject) -> Result<(), String> {
    let Some(tool) = CATALOG.get(name) else {
        return Ok(());
    };
    let pin_key = format!("{}.{}", tool.upstream, tool.name);
    if tool.id != name || tool.pin_key != pin_key || tool.state != PinState::Pinned {
        return Err(format!(
            "`{name}` found as {} ({:?})",
            tool.pin_key, tool.state
        ));
    }
    if tool.gate_key.as_str() != format!("tools:call:{pin_key}") {
        return Err(format!("`{name}` gated by {}", tool.gate_key.as_str()));
    }
    if let Some(validator) = &tool.validator
        && portcullis_mcp::rules::check_schema(validator, &Value::Object(arguments.clone()))
            .is_err()
    {
        return Ok(());
    }
    portcullis_mcp::fuzzing::check_tool(&tool.upstream, &tool.name, &arguments)
}

/// The template matcher: deterministic, exact for a template without expressions, nothing for a
/// malformed one, and a match for every URI the template expands to.
fn check_template(template: &str, uri: &str) -> Result<(), String> {
    let matched = template_matches(template, uri);
    if matched != template_matches(template, uri) {
        return Err("template matching is not deterministic".into());
    }
    let Some(parts) = template_parts(template) else {
        if matched {
            return Err(format!("malformed template `{template}` matched `{uri}`"));
        }
        return Ok(());
    };
    let n_expressions = parts.iter().filter(|(expression, _)| *expression).count();
    if n_expressions == 0 {
        if matched != (template == uri) {
            return Err(format!(
                "literal template `{template}` vs `{uri}`: {matched}"
            ));
        }
        return Ok(());
    }
    // A value for every expression: a few characters of the URI that no expression may refuse.
    let value: String = uri.chars().filter(|c| *c != '/').take(4).collect();
    let value = if value.is_empty() {
        "v".to_owned()
    } else {
        value
    };
    let expanded: String = parts
        .iter()
        .map(|(expression, text)| if *expression { value.as_str() } else { text })
        .collect();
    if n_expressions <= MAX_EXPANDED_EXPRESSIONS
        && expanded.len() <= MAX_EXPANDED_LEN
        && !template_matches(template, &expanded)
    {
        return Err(format!(
            "`{template}` does not match its expansion `{expanded}`"
        ));
    }
    Ok(())
}

/// The literal and expression parts of a template, split as the matcher splits them; `None`
/// for a malformed one (a `{` without a later `}`).
fn template_parts(template: &str) -> Option<Vec<(bool, &str)>> {
    let mut res = Vec::new();
    let mut rest = template;
    while let Some((literal, after)) = rest.split_once('{') {
        let (expression, tail) = after.split_once('}')?;
        res.push((false, literal));
        res.push((true, expression));
        rest = tail;
    }
    res.push((false, rest));
    Some(res)
}

/// Checks one configuration text; answers the first violated property: loading is
/// deterministic, problems point at lines of the text, and an accepted configuration written
/// back out loads again to the same configuration.
pub fn check_config(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let env: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("#! "))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let loaded = crate::config::load_str(text, "fuzz.toml", &env);
    if loaded != crate::config::load_str(text, "fuzz.toml", &env) {
        return Err("loading is not deterministic".into());
    }
    if !crate::config::env_overrides_valid(&env) && loaded.is_ok() {
        return Err("a configuration loaded despite an invalid override".into());
    }
    let config = match loaded {
        Ok(config) => config,
        Err(err) => {
            let n_lines = text.lines().count().max(1);
            for issue in &err.issues {
                if issue.message.is_empty()
                    || issue
                        .line
                        .is_some_and(|line| line == 0 || line > n_lines + 1)
                {
                    return Err(format!("a problem points nowhere: {issue:?}"));
                }
            }
            return Ok(());
        }
    };
    let written = toml::to_string(&config)
        .map_err(|err| format!("an accepted configuration does not serialize: {err}"))?;
    let again = crate::config::load_str(&written, "fuzz-written.toml", &BTreeMap::new()).map_err(
        |err| format!("an accepted configuration, written out, is refused: {err}\n{written}"),
    )?;
    if again != config {
        return Err(format!(
            "an accepted configuration reads back differently:\n{written}"
        ));
    }
    Ok(())
}
