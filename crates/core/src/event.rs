//! The one event type: every decision is an event, appended to the ledger and counted.

use serde::{Deserialize, Serialize};

/// The outcome an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
    /// Report mode: would have been denied, was allowed.
    Report,
    /// A state change or notice that is not an allow/deny decision.
    Info,
}

impl Decision {
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Report => "report",
            Decision::Info => "info",
        }
    }
}

/// One structured event. `data` must never hold a secret, token or payload value: only shapes,
/// counts, hashes and identifiers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Dotted kind, e.g. `admin.auth`, `agent.created`, `tool.call`.
    pub kind: String,
    /// The acting agent or admin, when known.
    pub subject: Option<String>,
    pub decision: Decision,
    /// A reason code from the registry (or a domain reason), e.g. `unauthorized`.
    pub reason: String,
    pub correlation_id: Option<String>,
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(kind: impl Into<String>, decision: Decision, reason: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            subject: None,
            decision,
            reason: reason.into(),
            correlation_id: None,
            data: serde_json::Value::Null,
        }
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn correlation(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}
