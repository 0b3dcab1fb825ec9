//! The pipeline's request: `{subject, action, resource, context}`.

use serde::{Deserialize, Serialize};

use crate::gatekey::GateKey;
use crate::subject::Subject;

/// Risk tier of an action; high and critical wait for a human in the approve stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

/// One action asked of the gateway, in the shape every front translates into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub subject: Subject,
    /// The gate key of the action, e.g. `tools:call:github.create_issue`.
    pub action: GateKey,
    /// The tool, model or host acted on.
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub context: RequestContext,
}

/// What the policy may look at beyond who and what.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestContext {
    /// Tool arguments or message metadata; never logged.
    #[serde(default)]
    pub arguments: serde_json::Value,
    #[serde(default)]
    pub risk: RiskTier,
}
