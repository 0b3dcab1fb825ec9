//! The fixture server driven by a real rmcp client, over an in-memory stream and over HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;

use portcullis_core::Clock;
use portcullis_mcp_fixture::{Fixture, FixtureOptions, RecordedCall};
use rmcp::model::{CallToolRequestParams, CallToolResult, JsonObject};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServiceError, ServiceExt as _};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }
}

fn options() -> FixtureOptions {
    FixtureOptions {
        root: None,
        record: None,
        rug_pull_after: None,
        rug_pull_after_calls: None,
        conformance: false,
        server_name: None,
        instructions: None,
        clock: Arc::new(FixedClock),
    }
}

type Client = RunningService<RoleClient, ()>;

/// Serves `fixture` on one end of an in-memory stream and connects a client to the other.
async fn connect(fixture: Fixture) -> Client {
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = fixture.serve(server_end).await.unwrap();
        let _ = running.waiting().await;
    });
    ().serve(client_end).await.unwrap()
}

async fn call(
    client: &Client,
    name: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    let arguments: JsonObject = serde_json::from_value(arguments).unwrap();
    client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(arguments))
        .await
}

/// The result as JSON, for assertions on the wire shape.
async fn call_json(client: &Client, name: &str, arguments: Value) -> Value {
    serde_json::to_value(call(client, name, arguments).await.unwrap()).unwrap()
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap()
}

async fn tool_names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect()
}

#[tokio::test]
async fn lists_the_fixture_tools() {
    let client = connect(Fixture::new(options()).unwrap()).await;
    assert_eq!(
        tool_names(&client).await,
        [
            "echo",
            "add",
            "current_time",
            "read_file",
            "open_url",
            "env_var",
            "sleep",
            "hang",
            "crash"
        ]
    );
}

#[tokio::test]
async fn harmless_tools_answer() {
    let client = connect(Fixture::new(options()).unwrap()).await;
    let echo = call_json(&client, "echo", json!({ "message": "hello" })).await;
    assert_eq!(text_of(&echo), "hello");
    assert_ne!(echo["isError"], json!(true));
    assert_eq!(
        text_of(&call_json(&client, "add", json!({ "a": 2, "b": 40 })).await),
        "42"
    );
    assert_eq!(
        text_of(&call_json(&client, "add", json!({ "a": 0.5, "b": 1 })).await),
        "1.5"
    );
    let overflow = call_json(&client, "add", json!({ "a": i64::MAX, "b": 1 })).await;
    assert_eq!(overflow["isError"], json!(true));
    assert_eq!(
        text_of(&call_json(&client, "current_time", json!({})).await),
        "2026-01-02T03:04:05Z"
    );
    assert_eq!(
        text_of(
            &call_json(
                &client,
                "open_url",
                json!({ "url": "https://example.com/x" })
            )
            .await
        ),
        "opened https://example.com/x"
    );
    assert_eq!(
        text_of(
            &call_json(
                &client,
                "env_var",
                json!({ "name": "PORTCULLIS_FIXTURE_SURELY_UNSET" })
            )
            .await
        ),
        "(unset)"
    );
    assert_eq!(
        text_of(&call_json(&client, "sleep", json!({ "ms": 0 })).await),
        "slept 0 ms"
    );
}

#[tokio::test]
async fn bad_arguments_and_unknown_tools_are_protocol_errors() {
    let client = connect(Fixture::new(options()).unwrap()).await;
    for (name, arguments) in [
        ("echo", json!({})),
        ("add", json!({ "a": "one", "b": 2 })),
        ("sleep", json!({ "ms": 60_001 })),
        ("no_such_tool", json!({})),
    ] {
        let err = call(&client, name, arguments).await.unwrap_err();
        assert!(matches!(err, ServiceError::McpError(_)), "{name}: {err}");
    }
}

fn root_with_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("root")).unwrap();
    std::fs::write(dir.path().join("root/notes.txt"), "inside").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.txt"),
        dir.path().join("root/link.txt"),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn read_file_is_confined_to_the_root() {
    let dir = root_with_files();
    let root = dir.path().join("root");
    let client = connect(
        Fixture::new(FixtureOptions {
            root: Some(root.clone()),
            ..options()
        })
        .unwrap(),
    )
    .await;
    let inside = call_json(&client, "read_file", json!({ "path": "notes.txt" })).await;
    assert_eq!(text_of(&inside), "inside");
    let absolute = root.join("notes.txt").display().to_string();
    assert_eq!(
        text_of(&call_json(&client, "read_file", json!({ "path": absolute })).await),
        "inside"
    );
    let outside = dir.path().join("secret.txt").display().to_string();
    for path in [
        "../secret.txt",
        "link.txt",
        outside.as_str(),
        "/etc/passwd",
        "missing.txt",
        ".",
    ] {
        let refused = call_json(&client, "read_file", json!({ "path": path })).await;
        assert_eq!(refused["isError"], json!(true), "{path}");
        assert_ne!(text_of(&refused), "outside", "{path}");
    }
}

#[tokio::test]
async fn read_file_without_a_root_refuses() {
    let client = connect(Fixture::new(options()).unwrap()).await;
    let refused = call_json(&client, "read_file", json!({ "path": "/etc/hostname" })).await;
    assert_eq!(refused["isError"], json!(true));
}

#[tokio::test]
async fn records_every_call_before_running_it() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("calls.jsonl");
    let client = connect(
        Fixture::new(FixtureOptions {
            record: Some(record.clone()),
            ..options()
        })
        .unwrap(),
    )
    .await;
    call(&client, "echo", json!({ "message": "one" }))
        .await
        .unwrap();
    call(&client, "read_file", json!({ "path": "../x" }))
        .await
        .unwrap();
    let _ = call(&client, "no_such_tool", json!({ "k": 1 })).await;
    let calls = RecordedCall::read_all(&record).unwrap();
    let seen: Vec<(String, Value)> = calls
        .into_iter()
        .map(|call| (call.name, Value::Object(call.arguments)))
        .collect();
    assert_eq!(
        seen,
        [
            ("echo".to_owned(), json!({ "message": "one" })),
            ("read_file".to_owned(), json!({ "path": "../x" })),
            ("no_such_tool".to_owned(), json!({ "k": 1 })),
        ]
    );
    assert!(
        RecordedCall::read_all(&dir.path().join("absent"))
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn rug_pull_changes_echo_after_n_lists() {
    let fixture = Fixture::new(FixtureOptions {
        rug_pull_after: Some(2),
        ..options()
    })
    .unwrap();
    let client = connect(fixture.clone()).await;
    let mut descriptions = Vec::new();
    for _ in 0..4 {
        let tools = client.list_all_tools().await.unwrap();
        let echo = tools.iter().find(|tool| tool.name == "echo").unwrap();
        descriptions.push(echo.description.clone().unwrap().into_owned());
    }
    assert_eq!(fixture.list_count(), 4);
    assert_eq!(descriptions[0], descriptions[1]);
    assert_ne!(descriptions[1], descriptions[2]);
    assert_eq!(descriptions[2], descriptions[3]);
    assert!(descriptions[2].contains(".ssh"));
}

#[tokio::test]
async fn hang_waits_until_cancelled() {
    let client = connect(Fixture::new(options()).unwrap()).await;
    let hung = tokio::spawn({
        let peer = client.peer().clone();
        async move { peer.call_tool(CallToolRequestParams::new("hang")).await }
    });
    // A call made after the hang still answers: one hung tool blocks nothing else.
    assert_eq!(
        text_of(&call_json(&client, "echo", json!({ "message": "alive" })).await),
        "alive"
    );
    assert!(!hung.is_finished());
    hung.abort();
}

#[tokio::test]
async fn conformance_fixtures() {
    let client = connect(
        Fixture::new(FixtureOptions {
            conformance: true,
            ..options()
        })
        .unwrap(),
    )
    .await;
    let names = tool_names(&client).await;
    for expected in [
        "echo",
        "test_simple_text",
        "test_image_content",
        "test_audio_content",
        "test_embedded_resource",
        "test_multiple_content_types",
        "test_tool_with_logging",
        "test_tool_with_progress",
        "test_error_handling",
        "test_sampling",
        "test_elicitation",
        "test_elicitation_sep1034_defaults",
        "test_elicitation_sep1330_enums",
        "json_schema_2020_12_tool",
    ] {
        assert!(names.iter().any(|name| name == expected), "{expected}");
    }
    let simple = call_json(&client, "test_simple_text", json!({})).await;
    assert_eq!(
        text_of(&simple),
        "This is a simple text response for testing."
    );
    let error = call_json(&client, "test_error_handling", json!({})).await;
    assert_eq!(error["isError"], json!(true));
    let mixed = call_json(&client, "test_multiple_content_types", json!({})).await;
    assert_eq!(
        mixed["content"][2]["resource"]["uri"],
        "test://mixed-content-resource"
    );

    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 4);
    let prompt = client
        .get_prompt(
            serde_json::from_value(json!({
                "name": "test_prompt_with_arguments",
                "arguments": { "arg1": "hello", "arg2": "world" }
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let prompt = serde_json::to_value(prompt).unwrap();
    assert_eq!(
        prompt["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='hello', arg2='world'"
    );

    let resources = client.list_all_resources().await.unwrap();
    assert_eq!(resources.len(), 3);
    let read = client
        .read_resource(
            serde_json::from_value(json!({ "uri": "test://template/123/data" })).unwrap(),
        )
        .await
        .unwrap();
    let read = serde_json::to_value(read).unwrap();
    let data: Value = serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({ "id": "123", "templateTest": true, "data": "Data for ID: 123" })
    );
    let missing = client
        .read_resource(serde_json::from_value(json!({ "uri": "test://nope" })).unwrap())
        .await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn without_conformance_there_are_no_prompts() {
    let client = connect(Fixture::new(options()).unwrap()).await;
    assert!(client.list_all_prompts().await.is_err());
}

#[tokio::test]
async fn serves_streamable_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(portcullis_mcp_fixture::serve_http(
        listener,
        Fixture::new(options()).unwrap(),
        shutdown.clone(),
    ));
    let transport = StreamableHttpClientTransport::from_uri(format!("http://{addr}/mcp"));
    let client = ().serve(transport).await.unwrap();
    assert_eq!(
        text_of(&call_json(&client, "echo", json!({ "message": "over http" })).await),
        "over http"
    );
    client.cancel().await.unwrap();
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_root_or_record_path_fails_to_start() {
    let missing = Path::new("/nonexistent/portcullis-fixture-root");
    assert!(
        Fixture::new(FixtureOptions {
            root: Some(missing.to_owned()),
            ..options()
        })
        .is_err()
    );
    assert!(
        Fixture::new(FixtureOptions {
            record: Some(missing.join("calls.jsonl")),
            ..options()
        })
        .is_err()
    );
}

#[tokio::test]
async fn announces_the_configured_name_and_instructions() {
    let client = connect(
        Fixture::new(FixtureOptions {
            server_name: Some("announced-name".to_owned()),
            instructions: Some("announced instructions".to_owned()),
            ..options()
        })
        .unwrap(),
    )
    .await;
    let info = client.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "announced-name");
    assert_eq!(info.instructions.as_deref(), Some("announced instructions"));
    let default = connect(Fixture::new(options()).unwrap()).await;
    assert_eq!(
        default
            .peer_info()
            .unwrap()
            .server_info
            .as_ref()
            .unwrap()
            .name,
        "portcullis-fixture"
    );
}
