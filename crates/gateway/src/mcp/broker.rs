//! The broker verbs an agent with `catalog = "meta"` sees instead of the tools themselves:
//! `search_tools`, `describe_tool`, `load_tools` and `call_tool`. They exist for clients whose
//! catalog would be too large to list; they widen nothing. Searching and describing see exactly
//! the tools `tools/list` would show the agent, and `call_tool` takes the same road as a direct
//! `tools/call` (gate, validate, limit, execute, gate out, ledger). A tool the agent may not
//! call is described, loaded and called exactly like one that does not exist.

use rmcp::ErrorData;
use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

pub const SEARCH_TOOLS: &str = "search_tools";
pub const DESCRIBE_TOOL: &str = "describe_tool";
pub const LOAD_TOOLS: &str = "load_tools";
pub const CALL_TOOL: &str = "call_tool";

/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;
/// Most results one search answers with, and its default.
pub const MAX_RESULTS: u64 = 50;
pub const DEFAULT_RESULTS: u64 = 10;
/// Most tools one `load_tools` call takes.
pub const MAX_LOAD: usize = 50;

/// One broker request, parsed and bounded.
#[derive(Debug, PartialEq)]
pub enum Verb {
    Search {
        query: String,
        max_results: usize,
    },
    Describe {
        tool_id: String,
    },
    Load {
        tool_ids: Vec<String>,
    },
    Call {
        tool_id: String,
        arguments: JsonObject,
    },
}

/// The four verbs as MCP tools.
pub fn tools() -> Vec<Tool> {
    let tool = |name: &'static str, description: &'static str, schema: Value| {
        let schema = match schema {
            Value::Object(map) => map,
            _ => JsonObject::new(),
        };
        Tool::new(name, description, std::sync::Arc::new(schema))
    };
    vec![
        tool(
            SEARCH_TOOLS,
            "Search the tools you may call by words in their names and descriptions.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "maxLength": MAX_QUERY_BYTES},
                    "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS}
                },
                "required": ["query"]
            }),
        ),
        tool(
            DESCRIBE_TOOL,
            "The full definition (description and input schema) of one tool.",
            json!({
                "type": "object",
                "properties": {"tool_id": {"type": "string"}},
                "required": ["tool_id"]
            }),
        ),
        tool(
            LOAD_TOOLS,
            "The full definitions of several tools at once.",
            json!({
                "type": "object",
                "properties": {
                    "tool_ids": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_LOAD}
                },
                "required": ["tool_ids"]
            }),
        ),
        tool(
            CALL_TOOL,
            "Call one tool with its arguments.",
            json!({
                "type": "object",
                "properties": {
                    "tool_id": {"type": "string"},
                    "args": {"type": "object"}
                },
                "required": ["tool_id"]
            }),
        ),
    ]
}

/// Parses a call of a broker verb; `Ok(None)` when `name` is not one.
pub fn parse(name: &str, arguments: Option<&JsonObject>) -> Result<Option<Verb>, ErrorData> {
    let empty = JsonObject::new();
    let arguments = arguments.unwrap_or(&empty);
    let string = |key: &str| -> Result<String, ErrorData> {
        match arguments.get(key) {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(ErrorData::invalid_params(
                format!("`{key}` must be a string"),
                None,
            )),
        }
    };
    let verb = match name {
        SEARCH_TOOLS => {
            let query = string("query")?;
            if query.len() > MAX_QUERY_BYTES {
                return Err(ErrorData::invalid_params(
                    format!("`query` is longer than {MAX_QUERY_BYTES} bytes"),
                    None,
                ));
            }
            let max_results = match arguments.get("max_results") {
                None | Some(Value::Null) => DEFAULT_RESULTS,
                Some(value) => value
                    .as_u64()
                    .filter(|n| (1..=MAX_RESULTS).contains(n))
                    .ok_or_else(|| {
                        ErrorData::invalid_params(
                            format!("`max_results` must be an integer from 1 to {MAX_RESULTS}"),
                            None,
                        )
                    })?,
            };
            Verb::Search {
                query,
                max_results: usize::try_from(max_results).unwrap_or(usize::MAX),
            }
        }
        DESCRIBE_TOOL => Verb::Describe {
            tool_id: string("tool_id")?,
        },
        LOAD_TOOLS => {
            let ids = arguments
                .get("tool_ids")
                .and_then(Value::as_array)
                .filter(|ids| ids.len() <= MAX_LOAD)
                .and_then(|ids| {
                    ids.iter()
                        .map(|id| id.as_str().map(str::to_owned))
                        .collect::<Option<Vec<String>>>()
                })
                .ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("`tool_ids` must be a list of at most {MAX_LOAD} strings"),
                        None,
                    )
                })?;
            Verb::Load { tool_ids: ids }
        }
        CALL_TOOL => {
            let arguments = match arguments.get("args") {
                None | Some(Value::Null) => JsonObject::new(),
                Some(Value::Object(args)) => args.clone(),
                Some(_) => {
                    return Err(ErrorData::invalid_params("`args` must be an object", None));
                }
            };
            Verb::Call {
                tool_id: string("tool_id")?,
                arguments,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(verb))
}

/// The tools (their exposed definitions) that match every word of `query`, case-insensitively,
/// in their name or description; names that match rank first, then catalog order.
pub fn search<'a>(
    tools: impl Iterator<Item = &'a Value>,
    query: &str,
    max_results: usize,
) -> Vec<Value> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    let mut hits: Vec<(usize, usize, Value)> = tools
        .enumerate()
        .filter_map(|(order, tool)| {
            let name = tool.get("name").and_then(Value::as_str)?.to_lowercase();
            let description = tool
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            let mut in_name = 0;
            for word in &words {
                if name.contains(word.as_str()) {
                    in_name += 1;
                } else if !description.contains(word.as_str()) {
                    return None;
                }
            }
            Some((usize::MAX - in_name, order, summary(tool)))
        })
        .collect();
    hits.sort_by_key(|(rank, order, _)| (*rank, *order));
    hits.into_iter()
        .take(max_results)
        .map(|(_, _, hit)| hit)
        .collect()
}

/// What a search shows of a tool: its id and description.
fn summary(tool: &Value) -> Value {
    json!({
        "tool_id": tool.get("name"),
        "description": tool.get("description"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn args(value: Value) -> JsonObject {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn verbs_parse_with_bounds() {
        assert_eq!(parse("fx.echo", None).unwrap(), None);
        assert_eq!(
            parse(SEARCH_TOOLS, Some(&args(json!({"query": "file"})))).unwrap(),
            Some(Verb::Search {
                query: "file".to_owned(),
                max_results: 10
            })
        );
        assert!(
            parse(
                SEARCH_TOOLS,
                Some(&args(json!({"query": "x", "max_results": 0})))
            )
            .is_err()
        );
        assert!(
            parse(
                SEARCH_TOOLS,
                Some(&args(json!({"query": "x", "max_results": 51})))
            )
            .is_err()
        );
        assert!(parse(SEARCH_TOOLS, Some(&args(json!({"query": "x".repeat(257)})))).is_err());
        assert!(parse(SEARCH_TOOLS, None).is_err());
        assert!(parse(DESCRIBE_TOOL, Some(&args(json!({"tool_id": 3})))).is_err());
        let many: Vec<String> = (0..51).map(|n| n.to_string()).collect();
        assert!(parse(LOAD_TOOLS, Some(&args(json!({"tool_ids": many})))).is_err());
        assert!(parse(LOAD_TOOLS, Some(&args(json!({"tool_ids": ["a", 1]})))).is_err());
        assert!(parse(CALL_TOOL, Some(&args(json!({"tool_id": "a", "args": [1]})))).is_err());
        assert_eq!(
            parse(
                CALL_TOOL,
                Some(&args(json!({"tool_id": "fx.add", "args": {"a": 1}})))
            )
            .unwrap(),
            Some(Verb::Call {
                tool_id: "fx.add".to_owned(),
                arguments: args(json!({"a": 1}))
            })
        );
    }

    #[test]
    fn search_matches_every_word_and_ranks_names_first() {
        let tools = [
            json!({"name": "fx.read_file", "description": "Read a file under the root."}),
            json!({"name": "fx.echo", "description": "Echo a message; no file access."}),
            json!({"name": "gh.file_issue", "description": "Open an issue."}),
        ];
        let ids = |hits: Vec<Value>| -> Vec<String> {
            hits.iter()
                .map(|hit| hit["tool_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            ids(search(tools.iter(), "FILE", 10)),
            vec!["fx.read_file", "gh.file_issue", "fx.echo"]
        );
        assert_eq!(
            ids(search(tools.iter(), "file root", 10)),
            vec!["fx.read_file"]
        );
        assert_eq!(ids(search(tools.iter(), "file", 1)), vec!["fx.read_file"]);
        assert!(search(tools.iter(), "nothing-like-this", 10).is_empty());
    }
}
