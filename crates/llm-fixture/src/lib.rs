//! A fake OpenAI-compatible provider for tests and benchmarks (`portcullis fixture-llm`).
//!
//! `POST /v1/chat/completions` answers with the last user message's text (so a gateway's
//! restore can be checked end to end) and a usage block; with `stream: true` it streams that
//! text as Server-Sent Events split as configured ([`Split`]; by default every word is cut in
//! two, so each value crosses a chunk boundary), and a usage chunk when
//! `stream_options.include_usage` is set. `POST /v1/embeddings` answers deterministic vectors,
//! `GET /v1/models` lists a few names. Every request is recorded (path, `Authorization`
//! header, body) and readable at `GET /fixture/requests` (`DELETE` clears it).
//!
//! Failure modes are chosen by the model name: `fail-http-<status>` answers that status with an
//! OpenAI error body, `fail-midstream` streams half the text and then breaks the connection,
//! `hang` never answers, `tool-call` answers with a tool call whose arguments carry the text, and
//! `slow` streams one word at once and then one every [`SLOW_TICK`] for up to [`SLOW_TICKS`]
//! words (a stream that stays open while a test acts on it).
//!
//! Knows nothing of the gateway. Opens no connection of its own. Loopback test use only: it
//! keeps every request in memory.

// Indexing a `serde_json::Value` by key or position never panics: a missing entry reads as
// `Null`. The fixture reads requests that way throughout.
#![expect(
    clippy::indexing_slicing,
    reason = "serde_json::Value indexing returns Null"
)]

use axum::serve::ListenerExt as _;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The pause between two words of the `slow` model's stream.
pub const SLOW_TICK: std::time::Duration = std::time::Duration::from_millis(100);
/// How many words the `slow` model streams after the first (two minutes' worth).
pub const SLOW_TICKS: u32 = 1200;

/// How streamed text is cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Each word (with its following whitespace) in two halves: every value crosses a boundary.
    Words,
    /// Fixed chunks of this many bytes (at least 1; cut at char boundaries).
    Bytes(usize),
    /// The whole text in one chunk.
    Whole,
}

impl std::str::FromStr for Split {
    type Err = String;

    /// `words`, `whole` or a positive number of bytes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "words" => Ok(Split::Words),
            "whole" => Ok(Split::Whole),
            other => match other.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Split::Bytes(n)),
                _ => Err(format!("`{other}` is not `words`, `whole` or a byte count")),
            },
        }
    }
}

/// The provider's state: its options and the recorded requests.
#[derive(Clone, Debug)]
pub struct LlmFixture {
    split: Split,
    records: Arc<Mutex<Vec<Value>>>,
}

impl LlmFixture {
    pub fn new(split: Split) -> Self {
        Self {
            split,
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Every request received so far: `{"path", "authorization", "body"}`.
    pub fn records(&self) -> Vec<Value> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, path: &str, headers: &HeaderMap, body: &Value) {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(json!({"path": path, "authorization": authorization, "body": body}));
    }
}

/// The provider's routes.
pub fn router(fixture: LlmFixture) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/fixture/requests", get(records).delete(clear))
        .with_state(fixture)
}

/// Serves `fixture` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    fixture: LlmFixture,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Several small writes per streamed answer: TCP_NODELAY keeps Nagle from delaying them.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router(fixture))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn records(State(fixture): State<LlmFixture>) -> Response {
    axum::Json(Value::Array(fixture.records())).into_response()
}

async fn clear(State(fixture): State<LlmFixture>) -> StatusCode {
    fixture
        .records
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    StatusCode::NO_CONTENT
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": "gpt-4o-mini", "object": "model", "owned_by": "fixture"},
        {"id": "text-embedding-3-small", "object": "model", "owned_by": "fixture"}
    ]}))
    .into_response()
}

fn parse(body: &Bytes) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"message": message, "type": "fixture_error", "code": null}})),
    )
        .into_response()
}

/// The failure a model name asks for, if any.
fn failure(model: &str) -> Option<Response> {
    if let Some(code) = model.strip_prefix("fail-http-") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some(error(status, "fixture failure"));
    }
    None
}

async fn chat(State(fixture): State<LlmFixture>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(request) = parse(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    fixture.record("/v1/chat/completions", &headers, &request);
    let model = request["model"].as_str().unwrap_or("fixture").to_owned();
    if let Some(response) = failure(&model) {
        return response;
    }
    if model == "hang" {
        std::future::pending::<()>().await;
    }
    let text = last_user_text(&request);
    let prompt_tokens = approx_tokens(&request["messages"].to_string());
    let completion_tokens = approx_tokens(&text);
    let stream = request["stream"].as_bool().unwrap_or(false);
    if !stream {
        if model == "fail-midstream" {
            return broken_body();
        }
        let message = if model == "tool-call" {
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "echo", "arguments": json!({"text": text}).to_string()}
            }]})
        } else {
            json!({"role": "assistant", "content": text})
        };
        return axum::Json(json!({
            "id": "chatcmpl-fixture",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            }
        }))
        .into_response();
    }
    if model == "slow" {
        return slow(model);
    }
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let tool = model == "tool-call";
    let streamed = if tool {
        json!({"text": text}).to_string()
    } else {
        text.clone()
    };
    let pieces = split(&streamed, fixture.split);
    let frame = |delta: Value, finish: Value| {
        let event = json!({
            "id": "chatcmpl-fixture", "object": "chat.completion.chunk", "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        Bytes::from(format!("data: {event}\n\n"))
    };
    let mut events = vec![frame(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for (idx, piece) in pieces.iter().enumerate() {
        let delta = if tool {
            let mut call = json!({"index": 0, "function": {"arguments": piece}});
            if idx == 0 {
                call["id"] = json!("call_1");
                call["type"] = json!("function");
                call["function"]["name"] = json!("echo");
            }
            json!({"tool_calls": [call]})
        } else {
            json!({"content": piece})
        };
        events.push(frame(delta, Value::Null));
    }
    if model == "fail-midstream" {
        let keep = events.len().div_ceil(2);
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            events.into_iter().take(keep).map(Ok).collect();
        // The break comes after a pause, so the status line and the first events are on the
        // wire before the connection drops: a failure mid-stream, not a failed request.
        let broken = futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Err(std::io::Error::other("fixture: broken mid-stream"))
        });
        return sse(Body::from_stream(
            futures::stream::iter(chunks).chain(broken),
        ));
    }
    events.push(frame(
        json!({}),
        json!(if tool { "tool_calls" } else { "stop" }),
    ));
    if include_usage {
        let usage = json!({
            "id": "chatcmpl-fixture", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            }
        });
        events.push(Bytes::from(format!("data: {usage}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse(Body::from_stream(futures::stream::iter(
        events.into_iter().map(Ok::<_, Infallible>),
    )))
}

/// One `chat.completion.chunk` event of `model` carrying `delta`.
fn chunk(model: &str, delta: Value) -> Bytes {
    let event = json!({
        "id": "chatcmpl-fixture", "object": "chat.completion.chunk", "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]
    });
    Bytes::from(format!("data: {event}\n\n"))
}

/// The `slow` model's stream: the role and a first word at once, then a word every
/// [`SLOW_TICK`], until [`SLOW_TICKS`] words or the client goes away.
fn slow(model: String) -> Response {
    let first = vec![
        chunk(&model, json!({"role": "assistant", "content": ""})),
        chunk(&model, json!({"content": "tick "})),
    ];
    let ticks = futures::stream::unfold(0u32, move |n| {
        let model = model.clone();
        async move {
            if n >= SLOW_TICKS {
                return None;
            }
            tokio::time::sleep(SLOW_TICK).await;
            Some((chunk(&model, json!({"content": "tick "})), n + 1))
        }
    });
    let done = futures::stream::once(async { Bytes::from_static(b"data: [DONE]\n\n") });
    sse(Body::from_stream(
        futures::stream::iter(first)
            .chain(ticks)
            .chain(done)
            .map(Ok::<_, Infallible>),
    ))
}

fn sse(body: Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A 200 whose body breaks before it is complete.
fn broken_body() -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from_static(b"{\"id\":")),
        Err(std::io::Error::other("fixture: broken body")),
    ];
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn embeddings(
    State(fixture): State<LlmFixture>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(request) = parse(&body) else {
        return error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    fixture.record("/v1/embeddings", &headers, &request);
    let model = request["model"].as_str().unwrap_or("fixture").to_owned();
    if let Some(response) = failure(&model) {
        return response;
    }
    let inputs: Vec<String> = match &request["input"] {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return error(StatusCode::BAD_REQUEST, "input must be text"),
    };
    let tokens: u64 = inputs.iter().map(|text| approx_tokens(text)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(idx, text)| {
            let vector: Vec<f64> = (0..8u32)
                .map(|dim| {
                    let sum: u32 = text
                        .bytes()
                        .enumerate()
                        .map(|(pos, b)| u32::from(b) * ((pos as u32 % 7) + dim + 1))
                        .fold(0u32, u32::wrapping_add);
                    f64::from(sum % 1000) / 1000.0
                })
                .collect();
            json!({"object": "embedding", "index": idx, "embedding": vector})
        })
        .collect();
    axum::Json(json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

/// The text of the last user message (a string, or its text parts joined).
pub fn last_user_text(request: &Value) -> String {
    let Some(messages) = request["messages"].as_array() else {
        return String::new();
    };
    let Some(last) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    match &last["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `ceil(bytes / 4)`, at least 1.
fn approx_tokens(text: &str) -> u64 {
    u64::try_from(text.len().div_ceil(4).max(1)).unwrap_or(u64::MAX)
}

/// Cuts `text` into stream pieces.
pub fn split(text: &str, how: Split) -> Vec<String> {
    let mut pieces = Vec::new();
    match how {
        Split::Whole => pieces.push(text.to_owned()),
        Split::Bytes(size) => {
            let mut rest = text;
            while !rest.is_empty() {
                let mut cut = size.min(rest.len());
                while !rest.is_char_boundary(cut) {
                    cut += 1;
                }
                let (head, tail) = rest.split_at(cut);
                pieces.push(head.to_owned());
                rest = tail;
            }
        }
        Split::Words => {
            for word in text.split_inclusive(char::is_whitespace) {
                let mut mid = word.len() / 2;
                while !word.is_char_boundary(mid) {
                    mid += 1;
                }
                let (head, tail) = word.split_at(mid);
                for piece in [head, tail] {
                    if !piece.is_empty() {
                        pieces.push(piece.to_owned());
                    }
                }
            }
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn words_are_cut_in_two_and_rejoin() {
        let text = "mail bob@example.com now";
        let pieces = split(text, Split::Words);
        assert_eq!(pieces, ["ma", "il ", "bob@exam", "ple.com ", "n", "ow"]);
        assert_eq!(pieces.concat(), text);
        assert_eq!(split(text, Split::Bytes(10)).concat(), text);
        assert_eq!("7".parse::<Split>(), Ok(Split::Bytes(7)));
        assert!("0".parse::<Split>().is_err());
    }
}
