//! The one road: every action an agent asks of the gateway crosses these stages, in this order,
//! written once in [`run`].
//!
//! A front translates its protocol into an [`Action`] (kind, gate keys, resource, the context the
//! policy sees, what is metered) and a [`Front`] (its validate, sanitize and execute steps, and its
//! record), hands both to [`run`], and translates the outcome back. A front's executor can only
//! run with a [`Pass`], and only `run` makes one, after every stage before `execute` let the action
//! through. Which stages apply to which kind is one table, [`Kind::stages`]; a stage that applies
//! is never skipped because a front left something out: a kind that is metered must say what it
//! consumes, or the action is refused.

use std::borrow::Cow;

use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey};

use super::{Actual, Decided, Metered};
use crate::error::ApiError;
use crate::http::AppState;
use crate::identity::Identified;

/// What an action is; [`Kind::stages`] says which stages it crosses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An MCP `tools/call`.
    ToolCall,
    /// An MCP `prompts/get`.
    PromptGet,
    /// An MCP `resources/read`.
    ResourceRead,
}

/// One stage of the road. The order of the variants is the order of the road.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Who asks (the agent's token, identity headers) and whether a kill switch covers it.
    Identify,
    /// Every gate key of the action, with the action's context, through the policy engine.
    GateIn,
    /// Arguments against the pinned schema and the argument rules.
    Validate,
    /// Secrets and personal data in what goes to the upstream.
    SanitizeIn,
    /// Rate limits, then the budget reservation of the estimate.
    Limit,
    /// A human decision for high-risk actions (a pass-through until approvals land).
    Approve,
    /// The call to the upstream, provider or target.
    Execute,
    /// The answer's gate keys through the policy engine.
    GateOut,
    /// Secrets and personal data in what goes back to the agent.
    SanitizeOut,
    /// The reservation replaced by what the action consumed (or released).
    Settle,
    /// The action's outcome record.
    Record,
}

impl Stage {
    /// Every stage, in road order.
    pub const ALL: [Stage; 11] = [
        Stage::Identify,
        Stage::GateIn,
        Stage::Validate,
        Stage::SanitizeIn,
        Stage::Limit,
        Stage::Approve,
        Stage::Execute,
        Stage::GateOut,
        Stage::SanitizeOut,
        Stage::Settle,
        Stage::Record,
    ];

    /// The stage's name in docs and records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Identify => "identify",
            Stage::GateIn => "gate_in",
            Stage::Validate => "validate",
            Stage::SanitizeIn => "sanitize_in",
            Stage::Limit => "limit",
            Stage::Approve => "approve",
            Stage::Execute => "execute",
            Stage::GateOut => "gate_out",
            Stage::SanitizeOut => "sanitize_out",
            Stage::Settle => "settle",
            Stage::Record => "record",
        }
    }
}

impl Kind {
    /// Every kind on the road.
    pub const ALL: [Kind; 3] = [Kind::ToolCall, Kind::PromptGet, Kind::ResourceRead];

    /// The stage table: the stages this kind crosses, in road order. ARCHITECTURE.md prints it.
    pub const fn stages(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            Kind::ToolCall => &[
                Identify,
                GateIn,
                Validate,
                SanitizeIn,
                Limit,
                Approve,
                Execute,
                GateOut,
                SanitizeOut,
                Settle,
                Record,
            ],
            // Prompts and resources are not metered: no budget or rate applies to reading them.
            Kind::PromptGet | Kind::ResourceRead => &[
                Identify,
                GateIn,
                Validate,
                SanitizeIn,
                Approve,
                Execute,
                GateOut,
                SanitizeOut,
                Record,
            ],
        }
    }

    /// Whether `stage` applies to this kind.
    pub fn crosses(self, stage: Stage) -> bool {
        self.stages().contains(&stage)
    }

    /// The name of the kind in records.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::ToolCall => "tool.call",
            Kind::PromptGet => "prompt.get",
            Kind::ResourceRead => "resource.read",
        }
    }
}

/// An action as a front describes it.
#[derive(Debug)]
pub struct Action {
    pub kind: Kind,
    /// Keys decided at gate in, in order; every one must allow.
    pub gates_in: Vec<GateKey>,
    /// Keys decided at gate out, on the answer; every one must allow.
    pub gates_out: Vec<GateKey>,
    /// The tool, prompt, resource URI, model or host acted on.
    pub resource: String,
    /// What the policy sees beyond who and what: arguments, risk tier.
    pub context: RequestContext,
    /// What the action consumes, for kinds that cross `limit`.
    pub metered: Option<Metered>,
}

/// Why the road stopped an action: the stage, the error to answer and the finer reason kept in
/// the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub stage: Stage,
    pub error: ApiError,
    pub reason: Cow<'static, str>,
}

impl Refusal {
    /// A refusal at `stage` answering `code`, recorded with `reason`.
    pub fn new(stage: Stage, code: ErrorCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            stage,
            error: ApiError::new(code),
            reason: reason.into(),
        }
    }

    fn from_api(stage: Stage, error: ApiError) -> Self {
        Self {
            stage,
            reason: Cow::Borrowed(error.code.as_str()),
            error,
        }
    }
}

/// Leave to execute one admitted action. Only [`run`] makes one, once every stage before
/// `execute` let the action through; a front's executor takes it by value, so it cannot be
/// called from anywhere else.
#[derive(Debug)]
pub struct Pass {
    _sealed: (),
    /// For LLM calls, the model to call (after a possible budget downgrade).
    model: Option<String>,
}

impl Pass {
    /// The model to call, for metered LLM actions.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

/// What a front supplies to the road: its own steps of the stages it crosses. The pipeline calls
/// them in road order, each at most once.
pub trait Front: Send {
    /// What the executor produces (before sanitize out).
    type Output: Send;

    /// Stage `validate`: arguments against schema and rules. May rewrite what will be sent.
    fn validate(&mut self, _action: &Action) -> Result<(), Refusal> {
        Ok(())
    }

    /// Stage `sanitize_in`: secrets and personal data in what will be sent.
    fn sanitize_in(&mut self) -> Result<(), Refusal> {
        Ok(())
    }

    /// Stage `execute`: the call, with the pipeline's [`Pass`].
    fn execute(&mut self, pass: Pass)
    -> impl Future<Output = Result<Self::Output, Refusal>> + Send;

    /// Stage `sanitize_out`: secrets and personal data in the answer.
    fn sanitize_out(&mut self, output: Self::Output) -> Result<Self::Output, Refusal> {
        Ok(output)
    }

    /// Stage `settle`: what the executed action consumed (one call, unless the front counts
    /// otherwise).
    fn actual(&self, _output: &Self::Output) -> Actual {
        Actual::Tool
    }

    /// Stage `record`: the action's record (`tool.call`, `prompt.get`, ...) with this outcome.
    fn record(&self, decision: Decision, reason: &str) -> Event;
}

/// The stages an action crossed, in order (for tests and traces; no allocation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trail {
    stages: [Option<Stage>; Stage::ALL.len()],
    len: usize,
}

impl Trail {
    fn push(&mut self, stage: Stage) {
        if let Some(slot) = self.stages.get_mut(self.len) {
            *slot = Some(stage);
            self.len += 1;
        }
    }

    /// The stages crossed, in order.
    pub fn stages(&self) -> impl Iterator<Item = Stage> + '_ {
        self.stages.iter().take(self.len).flatten().copied()
    }
}

/// An action that crossed the whole road.
#[derive(Debug)]
#[must_use]
pub struct Ran<T> {
    /// The executor's output, sanitized.
    pub output: T,
    pub trail: Trail,
}

/// An action the road stopped, and where.
#[derive(Debug)]
pub struct Stopped {
    pub refusal: Refusal,
    pub trail: Trail,
}

/// Runs `action` for `identified` down the road: gate in, validate, sanitize in, limit, approve,
/// execute, gate out, sanitize out, settle, record (the stages its kind crosses, in that order).
/// Any refusal ends the road: it is recorded (the front's record, best effort: nothing ran) and
/// returned. The admission record (the gate's decisions) is durable before the executor runs, or
/// the action is refused with `store_unavailable`; the outcome record and the gate-out decisions
/// share one group commit, and an outcome that cannot be recorded is refused too.
pub async fn run<F: Front>(
    state: &AppState,
    identified: &Identified,
    action: Action,
    front: &mut F,
    correlation: &CorrelationId,
) -> Result<Ran<F::Output>, Stopped> {
    let kind = action.kind;
    let mut trail = Trail::default();
    // `identified` can only come from `pipeline::identify`, which checked the kill switch.
    trail.push(Stage::Identify);

    trail.push(Stage::GateIn);
    if let Err(refusal) = gate(state, identified, &action, &*front, correlation).await {
        return Err(Stopped { refusal, trail });
    }
    if kind.crosses(Stage::Validate) {
        trail.push(Stage::Validate);
        if let Err(refusal) = front.validate(&action) {
            return Err(stop(state, front, refusal, trail, correlation).await);
        }
    }
    if kind.crosses(Stage::SanitizeIn) {
        trail.push(Stage::SanitizeIn);
        if let Err(refusal) = front.sanitize_in() {
            return Err(stop(state, front, refusal, trail, correlation).await);
        }
    }
    let mut grant = None;
    if kind.crosses(Stage::Limit) {
        trail.push(Stage::Limit);
        let limited = match &action.metered {
            Some(metered) => super::limit(state, identified, metered, correlation)
                .await
                .map_err(|err| Refusal::from_api(Stage::Limit, err)),
            None => {
                tracing::error!(
                    kind = kind.as_str(),
                    "a metered kind came without its meter"
                );
                Err(Refusal::new(Stage::Limit, ErrorCode::Internal, "unmetered"))
            }
        };
        match limited {
            Ok(granted) => grant = Some(granted),
            Err(refusal) => return Err(stop(state, front, refusal, trail, correlation).await),
        }
    }
    if kind.crosses(Stage::Approve) {
        // Approvals by risk tier land here; until then every tier passes.
        trail.push(Stage::Approve);
    }

    trail.push(Stage::Execute);
    let pass = Pass {
        _sealed: (),
        model: grant.as_ref().and_then(|g| g.model().map(str::to_owned)),
    };
    let output = match front.execute(pass).await {
        Ok(output) => output,
        Err(refusal) => {
            if let Some(grant) = grant {
                super::release(state, grant, correlation).await;
            }
            return Err(stop(state, front, refusal, trail, correlation).await);
        }
    };
    // The action ran: its cost is settled whatever the answer turns out to be.
    let actual = front.actual(&output);

    let mut gate_out = Vec::new();
    let mut denied_out = None;
    if kind.crosses(Stage::GateOut) {
        trail.push(Stage::GateOut);
        for key in &action.gates_out {
            let decided = super::decide(
                state,
                identified,
                key.clone(),
                action.resource.clone(),
                action.context.clone(),
                correlation,
            );
            denied_out = decided.refusal();
            gate_out.push(decided);
            if denied_out.is_some() {
                break;
            }
        }
    }
    let outcome = match denied_out {
        Some(err) => Err(Refusal::from_api(Stage::GateOut, err)),
        None if kind.crosses(Stage::SanitizeOut) => {
            trail.push(Stage::SanitizeOut);
            front.sanitize_out(output)
        }
        None => Ok(output),
    };
    if kind.crosses(Stage::Settle) {
        trail.push(Stage::Settle);
        if let Some(held) = grant.take() {
            super::settle(state, held, &actual, correlation).await;
        }
    }

    trail.push(Stage::Record);
    let (decision, reason) = match &outcome {
        Ok(_) => (Decision::Allow, Cow::Borrowed("ok")),
        Err(refusal) => (Decision::Deny, refusal.reason.clone()),
    };
    let event = front
        .record(decision, &reason)
        .correlation(correlation.as_str());
    let (gates_recorded, recorded) =
        tokio::join!(record_all(state, gate_out), state.events.emit(event));
    let outcome = match outcome {
        Ok(_) if !gates_recorded || recorded.is_err() => Err(Refusal::new(
            Stage::Record,
            ErrorCode::StoreUnavailable,
            "store_unavailable",
        )),
        outcome => outcome,
    };
    match outcome {
        Ok(output) => Ok(Ran { output, trail }),
        Err(refusal) => Err(Stopped { refusal, trail }),
    }
}

/// Ends the road before anything ran: the front's record of the refusal (best effort: the
/// action is refused whether or not the record lands).
async fn stop<F: Front>(
    state: &AppState,
    front: &F,
    refusal: Refusal,
    trail: Trail,
    correlation: &CorrelationId,
) -> Stopped {
    let event = front
        .record(Decision::Deny, &refusal.reason)
        .correlation(correlation.as_str());
    state.events.emit_best_effort(event).await;
    Stopped { refusal, trail }
}

/// Gate in: every key with the action's context, in order up to the first deny. The decisions
/// made share one group commit; an allow that cannot be recorded refuses (`store_unavailable`).
/// A deny is recorded together with the front's record of the refusal, so a refused action costs
/// one durable write, as a missing one does (no timing tells them apart).
async fn gate<F: Front>(
    state: &AppState,
    identified: &Identified,
    action: &Action,
    front: &F,
    correlation: &CorrelationId,
) -> Result<(), Refusal> {
    let mut decided = Vec::with_capacity(action.gates_in.len());
    let mut denied = None;
    for key in &action.gates_in {
        let decision = super::decide(
            state,
            identified,
            key.clone(),
            action.resource.clone(),
            action.context.clone(),
            correlation,
        );
        denied = decision.refusal();
        decided.push(decision);
        if denied.is_some() {
            break;
        }
    }
    match denied {
        Some(err) => {
            let refusal = Refusal::from_api(Stage::GateIn, err);
            let event = front
                .record(Decision::Deny, &refusal.reason)
                .correlation(correlation.as_str());
            // The request is refused whether or not these land.
            let _ = tokio::join!(record_all(state, decided), state.events.emit(event));
            Err(refusal)
        }
        None if record_all(state, decided).await => Ok(()),
        None => Err(Refusal::new(
            Stage::GateIn,
            ErrorCode::StoreUnavailable,
            "store_unavailable",
        )),
    }
}

/// Records the gate-out decisions; whether every one was recorded.
async fn record_all(state: &AppState, decided: Vec<Decided>) -> bool {
    futures::future::join_all(decided.into_iter().map(|d| d.record(state)))
        .await
        .into_iter()
        .all(|recorded| recorded.is_ok())
}

#[cfg(test)]
mod tests;
