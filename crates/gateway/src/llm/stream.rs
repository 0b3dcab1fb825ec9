//! Streamed chat completions: the provider's Server-Sent Events rewritten event by event
//! (synthetic values restored across chunks, foreign secrets redacted), then settle.
//!
//! A stream that fails after it started (the provider breaks the connection, sends an error
//! event or garbage, or stays silent past `idle_timeout`) ends with one error event in OpenAI's
//! shape and no `[DONE]`. Its reservation is settled to the usage seen when any output arrived
//! (`settled_partial`: reported usage if any, else the input estimate and the output counted),
//! and released otherwise (`released`); the `llm.call` event says which.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use portcullis_core::ErrorCode;
use portcullis_llm::response::ChatStream;
use portcullis_llm::sse::{self, SseParser};
use portcullis_llm::{Family, Usage};
use portcullis_sanitize::Vault;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Call, Failure, LlmError, LlmRuntime, Target, fail};
use crate::pipeline::{self, Grant};

/// Events buffered towards a slow client before the provider is read further.
const CLIENT_BUFFER: usize = 32;

/// Opens the provider stream (its status and first byte within `timeout`) and answers with
/// the rewritten stream.
pub(super) async fn chat(
    call: Call,
    runtime: &Arc<LlmRuntime>,
    target: Target<'_>,
    grant: Grant,
    body: Value,
    vault: Vault,
) -> Response {
    let provider = target.provider;
    let opened = tokio::time::timeout(
        provider.timeout,
        provider.post("/chat/completions", &body).send(),
    )
    .await;
    let response = match opened {
        Err(_) => return fail(call, grant, Failure::Timeout).await,
        Ok(Err(_)) => return fail(call, grant, Failure::Unreachable).await,
        Ok(Ok(response)) if !response.status().is_success() => {
            let status = response.status().as_u16();
            return fail(call, grant, Failure::Status(status)).await;
        }
        Ok(Ok(response)) => response,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_BUFFER);
    let pump = Pump {
        rewriter: ChatStream::new(vault, Arc::clone(&runtime.redactor)),
        runtime: Arc::clone(runtime),
        family: Family::of(&target.model),
        idle: provider.idle_timeout,
        tx,
    };
    tokio::spawn(pump.run(call, grant, response));
    let body = Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, Infallible>),
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// How a stream ended.
enum End {
    Complete,
    Failed(Failure, &'static str),
    ClientGone,
}

struct Pump {
    rewriter: ChatStream,
    runtime: Arc<LlmRuntime>,
    family: Family,
    idle: Duration,
    tx: mpsc::Sender<Bytes>,
}

impl Pump {
    async fn run(mut self, mut call: Call, grant: Grant, response: reqwest::Response) {
        let end = self.relay(response).await;
        // Whatever is still held back was restored and scanned like the rest: send it.
        let flushed = match self.rewriter.finish() {
            Ok(Some(last)) => self.send(&last).await,
            Ok(None) => true,
            Err(err) => {
                tracing::error!(correlation = %call.correlation, error = %err, "held text withheld");
                false
            }
        };
        let end = match end {
            End::Complete if !flushed => End::ClientGone,
            other => other,
        };
        let usage = self.rewriter.usage();
        call.record.usage_reported = usage.is_some();
        let seen = Usage {
            input_tokens: call.record.input_tokens,
            output_tokens: self
                .runtime
                .tokens
                .count(self.family, self.rewriter.output_text()),
        };
        let usage = usage.unwrap_or(seen);
        call.record.redacted = self.rewriter.redacted();
        let any_output = usage.output_tokens > 0 || !self.rewriter.output_text().is_empty();
        match end {
            End::Complete => {
                self.send(sse::DONE).await;
                call.settle(grant, usage, "settled").await;
                call.done();
            }
            End::Failed(failure, reason) => {
                tracing::warn!(correlation = %call.correlation, failure = ?failure, "stream failed");
                let error = match failure {
                    Failure::Timeout => LlmError::new(ErrorCode::UpstreamTimeout),
                    _ => LlmError::new(ErrorCode::UpstreamFailed),
                };
                self.send(&error.body().to_string()).await;
                self.close(call, grant, usage, any_output, reason).await;
            }
            End::ClientGone => {
                self.close(call, grant, usage, any_output, "client_closed")
                    .await;
            }
        }
    }

    /// Settles to the usage seen when output arrived, else releases; records the refusal.
    async fn close(
        &self,
        mut call: Call,
        grant: Grant,
        usage: Usage,
        any_output: bool,
        reason: &'static str,
    ) {
        if any_output {
            call.settle(grant, usage, "settled_partial").await;
        } else {
            call.record.settlement = "released";
            pipeline::release(&call.state, grant, &call.correlation).await;
        }
        let error = LlmError::new(ErrorCode::UpstreamFailed);
        // The client already has its answer (the error event); this only records the call.
        drop(call.refuse(error, reason));
    }

    /// Reads, rewrites and forwards provider events until `[DONE]`, the end, or a failure.
    async fn relay(&mut self, response: reqwest::Response) -> End {
        let mut parser = SseParser::new(self.runtime.max_response_bytes);
        let mut upstream = response.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(self.idle, upstream.next()).await {
                Err(_) => return End::Failed(Failure::Timeout, "llm_upstream_timeout"),
                Ok(None) => return End::Complete,
                Ok(Some(Err(_))) => return End::Failed(Failure::Unreachable, "llm_stream_failed"),
                Ok(Some(Ok(chunk))) => chunk,
            };
            let events = match parser.push(&chunk) {
                Ok(events) => events,
                Err(_) => return End::Failed(Failure::Invalid, "llm_upstream_invalid"),
            };
            for data in events {
                if data.trim() == sse::DONE {
                    return End::Complete;
                }
                let out = match self.rewriter.event(&data) {
                    Ok(out) => out,
                    Err(err) => return End::Failed(Failure::Invalid, err.reason()),
                };
                if !self.send(&out).await {
                    return End::ClientGone;
                }
            }
        }
    }

    /// Sends one event; false when the client is gone.
    async fn send(&self, data: &str) -> bool {
        self.tx.send(Bytes::from(sse::encode(data))).await.is_ok()
    }
}
