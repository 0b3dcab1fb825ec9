//! An rmcp client of the gateway's `/mcp`, and what the fixture server recorded.

use std::path::Path;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::Gateway;

/// An MCP session with the gateway as the agent holding `token`.
pub async fn client(gateway: &Gateway, token: &str) -> RunningService<RoleClient, ()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(gateway.url("/mcp"));
    config.auth_header = Some(token.to_owned());
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

/// Waits until the gateway's catalog lists a tool; answers `/admin/tools`.
pub async fn wait_for_tools(gateway: &Gateway) -> serde_json::Value {
    for _ in 0..200 {
        let tools = gateway.admin_get("/admin/tools").await;
        if tools["tools"].as_array().is_some_and(|t| !t.is_empty()) {
            return tools;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upstream never listed its tools");
}

/// A `tools/call` of `name` with `arguments` (a JSON object).
pub fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    params
}

/// A tool result's content as JSON text.
pub fn text_of(result: &CallToolResult) -> String {
    serde_json::to_string(&result.content).unwrap()
}

/// The fixture server's record (`--record DIR/record.jsonl`) of every `tools/call` it received.
pub fn recorded(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("record.jsonl")).unwrap_or_default()
}
