//! Streamed chat completions: the provider's Server-Sent Events rewritten event by event
//! (synthetic values restored across chunks, foreign secrets redacted), then the rest of the road.
//!
//! The road hands a stream back open (`road::Open`) with its gate-out decisions made and before
//! its first byte. The pump forwards the rewritten events; once the client has the last one (its
//! body is closed first), it finishes the road: settle to the usage and the `llm.call` record.
//!
//! A stream that fails after it started (the provider breaks the connection, sends an error event
//! or garbage, or stays silent past `idle_timeout`) ends with one error event in OpenAI's shape
//! and no `[DONE]`. It is settled to the usage seen when any output arrived (`settled_partial`:
//! reported usage if any, else the input estimate and the output counted) and released otherwise
//! (`released`: the road records the action `abandoned` beside the `llm.call` record). A stream
//! whose agent a kill switch now covers, or that was revoked, is cut the same way (an error event
//! with `killswitch_engaged` or `unauthorized`, and an `llm.stream_cut` event): checked on every
//! event and every [`super::cutoff::CUT_INTERVAL`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event};
use portcullis_llm::response::ChatStream;
use portcullis_llm::sse::{self, SseParser};
use portcullis_llm::{Family, Usage};
use tokio::sync::mpsc;

use super::cutoff::{Cause, LiveStream};
use super::provider::Failure;
use super::record::CallRecord;
use super::{LlmError, LlmRuntime};
use crate::http::AppState;
use crate::identity::Identified;
use crate::pipeline::road::Open;

/// Events buffered towards a slow client before the provider is read further.
const CLIENT_BUFFER: usize = 32;

/// A provider stream as the executor opened it (status received, no event read).
pub(super) struct Upstream {
    pub response: reqwest::Response,
    /// The called model's tokenizer, to count output the provider does not report.
    pub family: Family,
    /// The provider's longest silence inside a stream.
    pub idle: Duration,
    /// The model name the grant called (its price settles the call).
    pub priced_model: String,
}

impl Upstream {
    /// The stream behind `rewriter` (sanitize out).
    pub fn rewritten(self, rewriter: ChatStream) -> Rewritten {
        Rewritten {
            upstream: self,
            rewriter,
        }
    }
}

/// A provider stream behind its rewriter: what may reach the agent.
pub(super) struct Rewritten {
    upstream: Upstream,
    rewriter: ChatStream,
}

/// Answers with the rewritten stream; a spawned pump feeds it and finishes the road at its end.
pub(super) fn respond(
    state: &AppState,
    runtime: Arc<LlmRuntime>,
    identified: &Identified,
    correlation: &CorrelationId,
    record: CallRecord,
    stream: Rewritten,
    open: Open,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_BUFFER);
    let Rewritten { upstream, rewriter } = stream;
    let agent = identified.agent.id.clone();
    let project = identified.subject.project.clone();
    let live = runtime.live.open(state, &agent, project.as_deref());
    let pump = Pump {
        state: state.clone(),
        runtime,
        rewriter,
        family: upstream.family,
        idle: upstream.idle,
        priced_model: upstream.priced_model,
        agent,
        project,
        correlation: correlation.clone(),
        live,
        record,
        tx: Some(tx),
    };
    tokio::spawn(pump.run(upstream.response, open));
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
    Cut(Cause),
}

struct Pump {
    state: AppState,
    runtime: Arc<LlmRuntime>,
    rewriter: ChatStream,
    family: Family,
    idle: Duration,
    priced_model: String,
    agent: String,
    project: Option<String>,
    correlation: CorrelationId,
    /// Registered while the stream is open, for the cut-off.
    live: LiveStream,
    record: CallRecord,
    /// The client's side; `None` once its stream is closed.
    tx: Option<mpsc::Sender<Bytes>>,
}

impl Pump {
    async fn run(mut self, response: reqwest::Response, open: Open) {
        let end = match self.relay(response).await {
            // A cut stream sends nothing more.
            End::Cut(cause) => End::Cut(cause),
            end => {
                // Whatever is still held back was restored and scanned like the rest: send it.
                let flushed = match self.rewriter.finish() {
                    Ok(Some(last)) => self.send(&last).await,
                    Ok(None) => None,
                    Err(err) => {
                        tracing::error!(correlation = %self.correlation, error = %err, "held text withheld");
                        Some(End::ClientGone)
                    }
                };
                match (end, flushed) {
                    (End::Complete, Some(stopped)) => stopped,
                    (end, _) => end,
                }
            }
        };
        let reported = self.rewriter.usage();
        let seen = Usage {
            input_tokens: self.record.input_tokens,
            output_tokens: self
                .runtime
                .tokens
                .count(self.family, self.rewriter.output_text()),
        };
        let usage = reported.unwrap_or(seen);
        self.record.usage_reported = reported.is_some();
        self.record.redacted = self.rewriter.redacted();
        let any_output = usage.output_tokens > 0 || !self.rewriter.output_text().is_empty();
        match end {
            End::Complete => {
                let _ = self.send(sse::DONE).await;
                self.finish(open, usage, "settled", Decision::Allow, "ok")
                    .await;
            }
            End::Failed(failure, reason) => {
                tracing::warn!(correlation = %self.correlation, failure = ?failure, "stream failed");
                let error = match failure {
                    Failure::Timeout => LlmError::new(ErrorCode::UpstreamTimeout),
                    _ => LlmError::new(ErrorCode::UpstreamFailed),
                };
                let _ = self.send(&error.body().to_string()).await;
                self.close(open, usage, any_output, reason).await;
            }
            End::ClientGone => {
                self.close(open, usage, any_output, "client_closed").await;
            }
            End::Cut(cause) => {
                // The cut does not wait for a slow client: the error event goes if there is room.
                let error = LlmError::new(cause.code());
                if let Some(tx) = self.tx.take() {
                    let _ = tx.try_send(Bytes::from(sse::encode(&error.body().to_string())));
                }
                tracing::warn!(correlation = %self.correlation, reason = cause.reason(), "llm stream cut");
                let event = Event::new("llm.stream_cut", Decision::Deny, cause.reason())
                    .subject(self.agent.clone())
                    .correlation(self.correlation.as_str())
                    .data(serde_json::json!({"scope": cause.scope()}));
                self.state.events.emit_best_effort(event).await;
                self.close(open, usage, any_output, cause.reason()).await;
            }
        }
    }

    /// Ends the client's stream, then settles to `usage` and records the call (the road's end).
    async fn finish(
        self,
        open: Open,
        usage: Usage,
        settlement: &'static str,
        decision: Decision,
        reason: &'static str,
    ) {
        let Pump {
            state,
            mut record,
            tx,
            priced_model,
            live,
            ..
        } = self;
        // The client's stream ends here: settle and record never hold its last chunk.
        drop(tx);
        drop(live);
        record.settled(&state, &priced_model, usage, settlement);
        let event = record.event(&state.metrics, decision, reason);
        open.finish(record.actual(), event).await;
    }

    /// A refused end: settled to the usage seen when output arrived, else released.
    async fn close(self, open: Open, usage: Usage, any_output: bool, reason: &'static str) {
        if any_output {
            self.finish(open, usage, "settled_partial", Decision::Deny, reason)
                .await;
            return;
        }
        let Pump {
            state,
            mut record,
            tx,
            correlation,
            live,
            ..
        } = self;
        drop(tx);
        drop(live);
        record.settlement = "released";
        record.cost = None;
        // Dropped unfinished, the road releases the reservation (and records it abandoned).
        drop(open);
        let event = record
            .event(&state.metrics, Decision::Deny, reason)
            .correlation(correlation.as_str());
        state.events.emit_best_effort(event).await;
    }

    /// Reads, rewrites and forwards provider events until `[DONE]`, the end, a failure or a cut.
    async fn relay(&mut self, response: reqwest::Response) -> End {
        let mut parser = SseParser::new(self.runtime.max_response_bytes);
        let mut upstream = response.bytes_stream();
        loop {
            let next = tokio::select! {
                biased;
                cause = self.live.cut() => return End::Cut(cause),
                next = tokio::time::timeout(self.idle, upstream.next()) => next,
            };
            let chunk = match next {
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
                // INVARIANT (cut-streams): no event of an agent a kill switch covers is sent.
                if let Some(scope) = self
                    .state
                    .guardrails
                    .killswitch
                    .engaged_for(&self.agent, self.project.as_deref())
                {
                    return End::Cut(Cause::KillSwitch(scope));
                }
                let out = match self.rewriter.event(&data) {
                    Ok(out) => out,
                    Err(err) => return End::Failed(Failure::Invalid, err.reason()),
                };
                if let Some(end) = self.send(&out).await {
                    return end;
                }
            }
        }
    }

    /// Sends one event; how the stream ends when it could not (the client is gone, or a cut came
    /// while waiting for a slow client).
    async fn send(&mut self, data: &str) -> Option<End> {
        let Some(tx) = &self.tx else {
            return Some(End::ClientGone);
        };
        let bytes = Bytes::from(sse::encode(data));
        tokio::select! {
            biased;
            cause = self.live.cut() => Some(End::Cut(cause)),
            sent = tx.send(bytes) => sent.is_err().then_some(End::ClientGone),
        }
    }
}
