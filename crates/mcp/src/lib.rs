//! The MCP adapter: upstream MCP servers behind supervisors, the catalog of their tools, tool
//! pins (rug-pull defence), argument rules (tool and prompt arguments, resource URIs), risk tiers
//! and secret redaction.
//!
//! An adapter: depends on the pure crates (`portcullis-core`, `portcullis-netpolicy` for host
//! matching, `portcullis-sanitize` for secret formats) and on `rmcp`; never on the gateway,
//! the store or another adapter. The gateway's `mcp` module wires it to identity, policy,
//! events and the `/mcp` front.
//!
//! Invariants:
//! - Only configured upstreams exist; a stdio child gets a clean environment (the allow-listed
//!   variables and the injected secrets, nothing else).
//! - A supervisor never blocks another upstream: each has its own task, concurrency limit and
//!   timeouts; a call to a down upstream fails at once.
//! - A tool whose definition differs from its pin is quarantined; an unpinned tool is hidden in
//!   strict mode. Pins cover the canonical JSON of name, title, description, inputSchema,
//!   outputSchema and annotations.
//! - A rule violation names the rule and the argument, never the value; the upstream is not
//!   called. Rules are keyed by upstream and the upstream's own names, never by exposed names,
//!   and a rule check answers the arguments to forward: exactly what the rules saw.
//! - Annotations only raise a tool's configured risk tier, never lower it.
//! - [`redact::Redactor`] fails closed: a string it cannot scan is an error, never passed on.

pub mod catalog;
#[doc(hidden)]
pub mod fuzzing;
pub mod pin;
pub mod redact;
pub mod risk;
pub mod rules;
pub mod shape;
pub mod upstream;

use portcullis_core::ErrorCode;
use portcullis_core::error::ReasonInfo;

pub use catalog::{Catalog, CatalogTool, Drift, PinMode, PinState, PrefixMode};
pub use pin::{FieldChange, Pin};
pub use redact::{REDACTED, Redactor};
pub use risk::{RiskError, RiskSpec, RiskTiers};
pub use rules::{ArgumentRules, Arguments, Blamed, Listed, RuleKindSpec, RuleSpec, Violation};
pub use upstream::{Backoff, TransportSpec, Upstream, UpstreamError, UpstreamSpec, UpstreamStatus};

/// Every reason code the MCP front records, for `docs/ERROR_CODES.md`.
pub const REASONS: &[ReasonInfo] = &[
    ReasonInfo {
        code: "tool_unknown",
        maps_to: ErrorCode::NotFound,
        summary: "No tool of this name is offered to this agent (missing, denied, unpinned or quarantined tools all answer alike).",
    },
    ReasonInfo {
        code: "prompt_unknown",
        maps_to: ErrorCode::NotFound,
        summary: "No prompt of this name is offered to this agent (missing and unreadable prompts answer alike).",
    },
    ReasonInfo {
        code: "resource_unknown",
        maps_to: ErrorCode::NotFound,
        summary: "No upstream the agent may read serves this resource URI (missing and unreadable resources answer alike).",
    },
    ReasonInfo {
        code: "tool_unpinned",
        maps_to: ErrorCode::NotFound,
        summary: "The tool has no pin and the pin mode is `strict`; it stays hidden until an admin pins it.",
    },
    ReasonInfo {
        code: "tool_quarantined",
        maps_to: ErrorCode::NotFound,
        summary: "The upstream now offers a definition that differs from the pin; hidden until re-pinned.",
    },
    ReasonInfo {
        code: "tool_drift",
        maps_to: ErrorCode::PolicyDenied,
        summary: "A pinned tool's definition changed (`tool.drift` event naming the changed fields and hashes).",
    },
    ReasonInfo {
        code: "argument_schema",
        maps_to: ErrorCode::BadRequest,
        summary: "The arguments do not match the tool's pinned input schema.",
    },
    ReasonInfo {
        code: "argument_path",
        maps_to: ErrorCode::PolicyDenied,
        summary: "A path argument lies outside its rule's roots, holds `..`, or leaves the roots through a symbolic link.",
    },
    ReasonInfo {
        code: "argument_url",
        maps_to: ErrorCode::PolicyDenied,
        summary: "A URL argument is not a plain http(s) URL or its host is not on the rule's allowlist.",
    },
    ReasonInfo {
        code: "argument_denied",
        maps_to: ErrorCode::PolicyDenied,
        summary: "An argument value matches a deny pattern.",
    },
    ReasonInfo {
        code: "upstream_down",
        maps_to: ErrorCode::UpstreamFailed,
        summary: "The upstream is not connected (crashed, restarting or never started); the call failed at once.",
    },
    ReasonInfo {
        code: "upstream_error",
        maps_to: ErrorCode::UpstreamFailed,
        summary: "The upstream connection failed during the call.",
    },
    ReasonInfo {
        code: "upstream_timeout",
        maps_to: ErrorCode::UpstreamTimeout,
        summary: "The upstream did not answer within the call timeout; it is probed and restarted if hung.",
    },
    ReasonInfo {
        code: "result_unscannable",
        maps_to: ErrorCode::Internal,
        summary: "The upstream's answer could not be scanned for secrets, so it was withheld.",
    },
    ReasonInfo {
        code: "arguments_unscannable",
        maps_to: ErrorCode::Internal,
        summary: "The arguments could not be scanned for secrets and personal data, so nothing was sent.",
    },
    ReasonInfo {
        code: "uri_secret",
        maps_to: ErrorCode::PolicyDenied,
        summary: "A resource URI carried a secret; it was not sent to the upstream.",
    },
];
