//! The tools, prompts, resources and completions the MCP conformance suite's server scenarios
//! expect (`@modelcontextprotocol/conformance`, `conformance list --server`).

use std::time::Duration;

use rmcp::model::{
    CallToolResult, CompleteResult, ElicitRequestParams, GetPromptResult, JsonObject,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ProgressNotificationParam,
    ReadResourceResult, Tool,
};
#[expect(
    deprecated,
    reason = "sampling and logging are deprecated by SEP-2577; the conformance suite still tests them"
)]
use rmcp::model::{CreateMessageRequestParams, LoggingMessageNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};

use crate::from_json;

/// A 1x1 red PNG.
pub(crate) const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight samples of 8-bit mono silence.
pub(crate) const WAV_BASE64: &str =
    "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";
const COMPLETIONS: [&str; 3] = ["paris", "park", "party"];

#[derive(Debug)]
pub(crate) struct Fixtures {
    pub(crate) tools: Vec<Tool>,
}

impl Fixtures {
    pub(crate) fn new() -> Result<Self, serde_json::Error> {
        Ok(Self {
            tools: serde_json::from_value(tool_definitions())?,
        })
    }

    /// Runs `name` when it is a conformance tool; `None` when it is not.
    pub(crate) async fn call(
        &self,
        name: &str,
        arguments: &JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Option<Result<CallToolResult, McpError>> {
        let res = match name {
            "test_simple_text" => result(json!([
                { "type": "text", "text": "This is a simple text response for testing." }
            ])),
            "test_image_content" => result(json!([
                { "type": "image", "data": PNG_BASE64, "mimeType": "image/png" }
            ])),
            "test_audio_content" => result(json!([
                { "type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav" }
            ])),
            "test_embedded_resource" => result(json!([{
                "type": "resource",
                "resource": {
                    "uri": "test://embedded-resource",
                    "mimeType": "text/plain",
                    "text": "This is an embedded resource content."
                }
            }])),
            "test_multiple_content_types" => result(json!([
                { "type": "text", "text": "Multiple content types test:" },
                { "type": "image", "data": PNG_BASE64, "mimeType": "image/png" },
                {
                    "type": "resource",
                    "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": "{\"test\":\"data\",\"value\":123}"
                    }
                }
            ])),
            "test_error_handling" => from_json(json!({
                "isError": true,
                "content": [{ "type": "text", "text": "This tool intentionally returns an error for testing" }]
            })),
            "test_tool_with_logging" => with_logging(context).await,
            "test_tool_with_progress" => with_progress(context).await,
            "test_sampling" => sampling(arguments, context).await,
            "test_elicitation" => {
                let message = arguments
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Please provide your details");
                elicit(
                    context,
                    json!({
                        "message": message,
                        "requestedSchema": {
                            "type": "object",
                            "properties": {
                                "username": { "type": "string", "description": "User's response" },
                                "email": { "type": "string", "description": "User's email address" }
                            },
                            "required": ["username", "email"]
                        }
                    }),
                    "User response",
                )
                .await
            }
            "test_elicitation_sep1034_defaults" => {
                elicit(
                    context,
                    json!({
                        "message": "Please review and update the form fields with defaults",
                        "requestedSchema": {
                            "type": "object",
                            "properties": {
                                "name": { "type": "string", "default": "John Doe" },
                                "age": { "type": "integer", "default": 30 },
                                "score": { "type": "number", "default": 95.5 },
                                "status": { "type": "string", "enum": ["active", "inactive", "pending"], "default": "active" },
                                "verified": { "type": "boolean", "default": true }
                            }
                        }
                    }),
                    "Elicitation completed",
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                elicit(
                    context,
                    json!({
                        "message": "Please select options from the enum fields",
                        "requestedSchema": {
                            "type": "object",
                            "properties": {
                                "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                                "titledSingle": { "type": "string", "oneOf": [
                                    { "const": "value1", "title": "First Option" },
                                    { "const": "value2", "title": "Second Option" },
                                    { "const": "value3", "title": "Third Option" }
                                ] },
                                "legacyEnum": { "type": "string", "enum": ["opt1", "opt2", "opt3"],
                                    "enumNames": ["Option One", "Option Two", "Option Three"] },
                                "untitledMulti": { "type": "array", "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                                "titledMulti": { "type": "array", "items": { "anyOf": [
                                    { "const": "value1", "title": "First Choice" },
                                    { "const": "value2", "title": "Second Choice" },
                                    { "const": "value3", "title": "Third Choice" }
                                ] } }
                            }
                        }
                    }),
                    "Elicitation completed",
                )
                .await
            }
            "json_schema_2020_12_tool" => result(json!([
                { "type": "text", "text": format!("received {}", Value::Object(arguments.clone())) }
            ])),
            _ => return None,
        };
        Some(res)
    }

    pub(crate) fn list_prompts(&self) -> Result<ListPromptsResult, McpError> {
        from_json(json!({ "prompts": [
            { "name": "test_simple_prompt", "description": "A simple prompt without arguments" },
            {
                "name": "test_prompt_with_arguments",
                "description": "A prompt with two required arguments",
                "arguments": [
                    { "name": "arg1", "description": "First test argument", "required": true },
                    { "name": "arg2", "description": "Second test argument", "required": true }
                ]
            },
            {
                "name": "test_prompt_with_embedded_resource",
                "description": "A prompt that embeds a resource",
                "arguments": [
                    { "name": "resourceUri", "description": "URI of the resource to embed", "required": true }
                ]
            },
            { "name": "test_prompt_with_image", "description": "A prompt with image content" }
        ]}))
    }

    pub(crate) fn get_prompt(
        &self,
        name: &str,
        arguments: Option<&JsonObject>,
    ) -> Result<GetPromptResult, McpError> {
        let argument = |key: &str| -> Result<String, McpError> {
            arguments
                .and_then(|arguments| arguments.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    McpError::invalid_params(format!("missing required argument `{key}`"), None)
                })
        };
        let messages = match name {
            "test_simple_prompt" => json!([
                { "role": "user", "content": { "type": "text", "text": "This is a simple prompt for testing." } }
            ]),
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (argument("arg1")?, argument("arg2")?);
                json!([{ "role": "user", "content": {
                    "type": "text",
                    "text": format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")
                } }])
            }
            "test_prompt_with_embedded_resource" => {
                let uri = argument("resourceUri")?;
                json!([
                    { "role": "user", "content": { "type": "resource", "resource": {
                        "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."
                    } } },
                    { "role": "user", "content": { "type": "text", "text": "Please process the embedded resource above." } }
                ])
            }
            "test_prompt_with_image" => json!([
                { "role": "user", "content": { "type": "image", "data": PNG_BASE64, "mimeType": "image/png" } },
                { "role": "user", "content": { "type": "text", "text": "Please analyze the image above." } }
            ]),
            _ => {
                return Err(McpError::invalid_params(
                    format!("unknown prompt: {name}"),
                    None,
                ));
            }
        };
        from_json(json!({ "messages": messages }))
    }

    pub(crate) fn list_resources(&self) -> Result<ListResourcesResult, McpError> {
        from_json(json!({ "resources": [
            { "uri": "test://static-text", "name": "static-text", "description": "A static text resource", "mimeType": "text/plain" },
            { "uri": "test://static-binary", "name": "static-binary", "description": "A static binary resource (PNG)", "mimeType": "image/png" },
            { "uri": "test://watched-resource", "name": "watched-resource", "description": "A resource clients may subscribe to", "mimeType": "text/plain" }
        ]}))
    }

    pub(crate) fn list_resource_templates(&self) -> Result<ListResourceTemplatesResult, McpError> {
        from_json(json!({ "resourceTemplates": [{
            "uriTemplate": "test://template/{id}/data",
            "name": "template",
            "description": "A resource template with an `id` parameter",
            "mimeType": "application/json"
        }]}))
    }

    pub(crate) fn read_resource(&self, uri: &str) -> Result<ReadResourceResult, McpError> {
        let content = match uri {
            "test://static-text" => json!({
                "uri": uri, "mimeType": "text/plain", "text": "This is the content of the static text resource."
            }),
            "test://static-binary" => {
                json!({ "uri": uri, "mimeType": "image/png", "blob": PNG_BASE64 })
            }
            "test://watched-resource" => json!({
                "uri": uri, "mimeType": "text/plain", "text": "Watched resource content."
            }),
            _ => match template_id(uri) {
                Some(id) => json!({
                    "uri": uri,
                    "mimeType": "application/json",
                    "text": json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") }).to_string()
                }),
                None => {
                    return Err(McpError::resource_not_found(
                        "resource not found",
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        from_json(json!({ "contents": [content] }))
    }

    /// Completion values for any argument: the fixed list, filtered by the typed prefix.
    pub(crate) fn complete(&self, request: &Value) -> Result<CompleteResult, McpError> {
        let prefix = request
            .pointer("/argument/value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let values: Vec<&str> = COMPLETIONS
            .into_iter()
            .filter(|value| value.starts_with(prefix))
            .collect();
        from_json(
            json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }),
        )
    }
}

fn tool_definitions() -> Value {
    let no_arguments = json!({ "type": "object", "properties": {} });
    let simple = |name: &str, description: &str| json!({ "name": name, "description": description, "inputSchema": no_arguments });
    json!([
        simple("test_simple_text", "Returns simple text content"),
        simple("test_image_content", "Returns image content"),
        simple("test_audio_content", "Returns audio content"),
        simple("test_embedded_resource", "Returns an embedded resource"),
        simple("test_multiple_content_types", "Returns text, image and resource content"),
        simple("test_tool_with_logging", "Sends three log notifications while it runs"),
        simple("test_tool_with_progress", "Reports progress notifications while it runs"),
        simple("test_error_handling", "Always returns a tool error"),
        {
            "name": "test_sampling",
            "description": "Asks the client's LLM to complete a prompt",
            "inputSchema": { "type": "object", "properties": { "prompt": { "type": "string" } }, "required": ["prompt"] }
        },
        {
            "name": "test_elicitation",
            "description": "Asks the client's user for input",
            "inputSchema": { "type": "object", "properties": { "message": { "type": "string" } }, "required": ["message"] }
        },
        simple("test_elicitation_sep1034_defaults", "Elicitation with defaults for every primitive type"),
        simple("test_elicitation_sep1330_enums", "Elicitation with every enum schema variant"),
        {
            "name": "json_schema_2020_12_tool",
            "description": "Tool with JSON Schema 2020-12 features",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" }
                },
                "additionalProperties": false
            }
        }
    ])
}

fn result(content: Value) -> Result<CallToolResult, McpError> {
    from_json(json!({ "content": content }))
}

fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix(TEMPLATE_PREFIX)?
        .strip_suffix(TEMPLATE_SUFFIX)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn peer_failed(_err: rmcp::service::ServiceError) -> McpError {
    McpError::internal_error("cannot reach the client", None)
}

#[expect(
    deprecated,
    reason = "logging is deprecated by SEP-2577; the conformance suite still tests it"
)]
async fn with_logging(context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    for (idx, message) in [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ]
    .into_iter()
    .enumerate()
    {
        if idx > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let param: LoggingMessageNotificationParam =
            from_json(json!({ "level": "info", "data": message }))?;
        context
            .peer
            .notify_logging_message(param)
            .await
            .map_err(peer_failed)?;
    }
    result(json!([{ "type": "text", "text": "Tool with logging executed successfully" }]))
}

async fn with_progress(context: &RequestContext<RoleServer>) -> Result<CallToolResult, McpError> {
    let token = context.meta.get_progress_token();
    for (idx, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if idx > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(token) = &token {
            context
                .peer
                .notify_progress(
                    ProgressNotificationParam::new(token.clone(), progress).with_total(100.0),
                )
                .await
                .map_err(peer_failed)?;
        }
    }
    result(json!([{ "type": "text", "text": "Tool with progress executed successfully" }]))
}

#[expect(
    deprecated,
    reason = "sampling is deprecated by SEP-2577; the conformance suite still tests it"
)]
async fn sampling(
    arguments: &JsonObject,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, McpError> {
    let prompt = arguments
        .get("prompt")
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params("`prompt` must be a string", None))?;
    let params: CreateMessageRequestParams = from_json(json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": 100
    }))?;
    match context.peer.create_message(params).await {
        Ok(response) => {
            let response = serde_json::to_value(&response).unwrap_or_default();
            let text = response
                .pointer("/content/text")
                .or_else(|| response.pointer("/content/0/text"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            result(json!([{ "type": "text", "text": format!("LLM response: {text}") }]))
        }
        Err(_) => from_json(json!({
            "isError": true,
            "content": [{ "type": "text", "text": "the client did not answer the sampling request" }]
        })),
    }
}

async fn elicit(
    context: &RequestContext<RoleServer>,
    params: Value,
    label: &str,
) -> Result<CallToolResult, McpError> {
    let params: ElicitRequestParams = from_json(params)?;
    match context.peer.create_elicitation(params).await {
        Ok(response) => {
            let response = serde_json::to_value(&response).unwrap_or_default();
            let action = response
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let content = response.get("content").cloned().unwrap_or(Value::Null);
            result(
                json!([{ "type": "text", "text": format!("{label}: action={action}, content={content}") }]),
            )
        }
        Err(_) => from_json(json!({
            "isError": true,
            "content": [{ "type": "text", "text": "the client did not answer the elicitation request" }]
        })),
    }
}
