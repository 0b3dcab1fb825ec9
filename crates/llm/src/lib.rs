//! The OpenAI-compatible wire, as the LLM front needs it: request checks and rewriting
//! ([`request`]), restoring synthetic values and keeping foreign secrets out of responses, whole
//! or streamed ([`response`]), Server-Sent Events parsing and encoding ([`sse`]), and input token
//! estimates with real tokenizers for known model families ([`tokens`]).
//!
//! Pure-ish: no sockets, no files, no clock, no async runtime. The gateway's `llm` module does
//! the HTTP and the pipeline stages and calls in here for everything that touches payloads. The
//! tokenizers' BPE tables are compiled into the binary (`tiktoken-rs` embeds them) and loaded
//! lazily on first use; nothing is fetched at run time.
//!
//! Invariants:
//! - Requests are kept as JSON values, so fields this crate does not know pass through
//!   unchanged; every string in them is sanitized by the caller (fail closed: a request that
//!   cannot be sanitized is refused, never forwarded).
//! - A response text is emitted only after it was restored and scanned for secrets; streamed
//!   text is held back until a cut point (whitespace, or a bounded hold) so that neither a
//!   synthetic value nor a secret split across chunks slips through.
//! - Payload values never appear in errors or `Debug` output.

#[doc(hidden)]
pub mod fuzzing;
pub mod request;
pub mod response;
pub mod sse;
pub mod tokens;

use portcullis_core::ErrorCode;
use portcullis_core::error::ReasonInfo;

pub use request::{ChatRequest, EmbeddingsRequest, RequestError};
pub use response::{ChatStream, StreamError, TextStream, Usage, restore_response};
pub use sse::{SseError, SseParser};
pub use tokens::{Family, TokenCounter};

/// Every reason code the LLM front records, for `docs/ERROR_CODES.md`.
pub const REASONS: &[ReasonInfo] = &[
    ReasonInfo {
        code: "llm_request_invalid",
        maps_to: ErrorCode::BadRequest,
        summary: "The body is not a valid chat or embeddings request (missing or mistyped `model`, \
                  `messages` or `input`, too many messages, token-array input).",
    },
    ReasonInfo {
        code: "llm_request_unbounded",
        maps_to: ErrorCode::BadRequest,
        summary: "The spend cannot be bounded: `n` or `best_of` outside 1..=128, or an output \
                  token limit above 16,777,216.",
    },
    ReasonInfo {
        code: "llm_model_unknown",
        maps_to: ErrorCode::NotFound,
        summary: "No route or provider serves the model asked for.",
    },
    ReasonInfo {
        code: "llm_upstream_status",
        maps_to: ErrorCode::UpstreamFailed,
        summary: "The provider answered with an error status; its status is passed through with \
                  a fixed message.",
    },
    ReasonInfo {
        code: "llm_upstream_unreachable",
        maps_to: ErrorCode::UpstreamFailed,
        summary: "The provider could not be reached or closed the connection.",
    },
    ReasonInfo {
        code: "llm_upstream_invalid",
        maps_to: ErrorCode::UpstreamFailed,
        summary: "The provider's answer was not valid JSON or SSE, or was too large.",
    },
    ReasonInfo {
        code: "llm_upstream_timeout",
        maps_to: ErrorCode::UpstreamTimeout,
        summary: "The provider did not answer (or stopped streaming) within its timeout.",
    },
    ReasonInfo {
        code: "llm_stream_failed",
        maps_to: ErrorCode::UpstreamFailed,
        summary: "The provider failed in the middle of a stream; the client got an error event \
                  and the reservation was settled to the usage seen or released.",
    },
    ReasonInfo {
        code: "llm_downgrade_provider",
        maps_to: ErrorCode::PolicyDenied,
        summary: "A budget downgrade named a model of another provider than the one the model \
                  asked for resolves to; the answer gate was decided for that provider, so nothing \
                  is called.",
    },
    ReasonInfo {
        code: "llm_killswitch_closed",
        maps_to: ErrorCode::KillswitchEngaged,
        summary: "An open stream was cut: a kill switch now covers its agent (`llm.stream_cut`, \
                  with the scope).",
    },
    ReasonInfo {
        code: "llm_agent_revoked",
        maps_to: ErrorCode::Unauthorized,
        summary: "An open stream was cut: its agent was revoked (`llm.stream_cut`).",
    },
    ReasonInfo {
        code: "llm_output_unscannable",
        maps_to: ErrorCode::Internal,
        summary: "A response text could not be scanned for secrets, so it was withheld.",
    },
];
