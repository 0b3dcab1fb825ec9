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
use std::sync::Arc;

use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey};

use super::Core;
use super::{Actual, Decided, Grant, Metered};
use crate::error::ApiError;
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
    /// An LLM chat completion, whole or streamed.
    LlmChat,
    /// An LLM embeddings request.
    LlmEmbed,
    /// A forward-proxy HTTP request (absolute-form, forwarded in origin-form).
    ProxyHttp,
    /// A forward-proxy CONNECT tunnel.
    ProxyConnect,
    /// A DNS-guard answer (decided for the anonymous subject of the client's project).
    DnsAnswer,
}

/// One stage of the road. The order of the variants is the order of the road.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Who asks (the agent's token, identity headers) and whether a kill switch covers it.
    Identify,
    /// Every gate key of the action, with the action's context, through the policy engine.
    GateIn,
    /// Arguments against the pinned schema and the argument rules; for egress, the target
    /// against the egress posture (allow rules, leases, the vetted address).
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
    pub const ALL: [Kind; 8] = [
        Kind::ToolCall,
        Kind::PromptGet,
        Kind::ResourceRead,
        Kind::LlmChat,
        Kind::LlmEmbed,
        Kind::ProxyHttp,
        Kind::ProxyConnect,
        Kind::DnsAnswer,
    ];

    /// The stage table: the stages this kind crosses, in road order. ARCHITECTURE.md prints it.
    pub const fn stages(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            Kind::ToolCall | Kind::LlmChat => &[
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
            // An embedding is numbers: nothing in it to sanitize on the way back.
            Kind::LlmEmbed => &[
                Identify, GateIn, Validate, SanitizeIn, Limit, Approve, Execute, GateOut, Settle,
                Record,
            ],
            // Egress carries opaque bytes (often TLS) between the agent and the target: there is
            // nothing the gateway can sanitize or gate on the way back, and no budget meters it.
            Kind::ProxyHttp | Kind::ProxyConnect | Kind::DnsAnswer => {
                &[Identify, GateIn, Validate, Approve, Execute, Record]
            }
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
            Kind::LlmChat => "llm.chat",
            Kind::LlmEmbed => "llm.embeddings",
            Kind::ProxyHttp => "egress.http",
            Kind::ProxyConnect => "egress.connect",
            Kind::DnsAnswer => "egress.dns",
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

    /// Stage `validate`: arguments against schema and rules (for egress, the target against the
    /// posture). May rewrite what will be sent.
    fn validate(&mut self, _action: &Action) -> impl Future<Output = Result<(), Refusal>> + Send {
        async { Ok(()) }
    }

    /// Stage `sanitize_in`: secrets and personal data in what will be sent.
    fn sanitize_in(&mut self) -> Result<(), Refusal> {
        Ok(())
    }

    /// Stage `limit`: what the action is about to consume, asked after sanitize in (the estimate
    /// is of what will be sent). A kind that crosses `limit` and answers `None` is refused.
    fn meter(&self) -> Option<Metered> {
        None
    }

    /// The front's own part of the admission record (e.g. the egress posture's verdict), made
    /// durable in one group commit with the gate's decisions before the executor runs.
    fn admission(&self) -> Option<Event> {
        None
    }

    /// Stage `execute`: the call, with the pipeline's [`Pass`].
    fn execute(&mut self, pass: Pass)
    -> impl Future<Output = Result<Self::Output, Refusal>> + Send;

    /// Stage `sanitize_out`: secrets and personal data in the answer.
    fn sanitize_out(&mut self, output: Self::Output) -> Result<Self::Output, Refusal> {
        Ok(output)
    }

    /// Whether `output` is still running when the road hands it back (a streamed answer): then
    /// settle and record wait for [`Open::finish`], which the stream calls at its end.
    fn ends_later(&self, _output: &Self::Output) -> bool {
        false
    }

    /// Stage `settle`: what the executed action consumed (one call, unless the front counts
    /// otherwise).
    fn actual(&self, _output: &Self::Output) -> Actual {
        Actual::Tool
    }

    /// Stage `record`: the action's record (`tool.call`, `llm.call`, ...) with this outcome.
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
    /// For an output that ends later (a stream), what is left of the road: settle and record.
    pub open: Option<Open>,
}

/// The end of the road of an action whose output is still running (a streamed answer): settle
/// and record, done by [`Open::finish`] when the output ends. Dropped unfinished (the client went
/// away), it releases the reservation and records the action as abandoned.
#[derive(Debug)]
#[must_use = "finish the road when the output ends"]
pub struct Open {
    state: Arc<Core>,
    kind: Kind,
    grant: Option<Grant>,
    correlation: CorrelationId,
    trail: Trail,
    subject: String,
    done: bool,
}

impl Open {
    /// Settles what the action consumed and appends its record; the trail of the whole road.
    pub async fn finish(mut self, actual: Actual, event: Event) -> Trail {
        if self.kind.crosses(Stage::Settle) {
            self.trail.push(Stage::Settle);
            if let Some(grant) = self.grant.take() {
                super::settle(&self.state, grant, &actual, &self.correlation).await;
            }
        }
        self.trail.push(Stage::Record);
        // The output was delivered as it ran: its record can no longer change the outcome.
        self.state
            .events
            .emit_best_effort(event.correlation(self.correlation.as_str()))
            .await;
        self.done = true;
        self.trail
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                kind = self.kind.as_str(),
                "an open action ended outside the runtime"
            );
            return;
        };
        let state = self.state.clone();
        let grant = self.grant.take();
        let correlation = self.correlation.clone();
        let event = Event::new(self.kind.as_str(), Decision::Deny, "abandoned")
            .subject(std::mem::take(&mut self.subject))
            .correlation(correlation.as_str());
        runtime.spawn(async move {
            if let Some(grant) = grant {
                super::release(&state, grant, &correlation).await;
            }
            state.events.emit_best_effort(event).await;
        });
    }
}

/// An action the road stopped, and where.
#[derive(Debug)]
pub struct Stopped {
    pub refusal: Refusal,
    pub trail: Trail,
}

/// Runs `action` for `identified` down the road: gate in, validate, sanitize in, limit, approve,
/// execute, gate out, sanitize out, settle, record (the stages its kind crosses, in that order).
/// Any refusal ends the road: it is recorded (the front's record with the decisions made so far,
/// best effort: nothing ran) and returned. The admission record (the gate's decisions and the
/// front's [`Front::admission`]) is durable in one group commit before the executor runs, or the
/// action is refused with `store_unavailable`; the outcome record and the gate-out decisions
/// follow in the next group commit, which the answer does not wait for
/// ([`crate::events::Events::settle_trailing`] is the readers' barrier).
pub async fn run<F: Front>(
    state: &Arc<Core>,
    identified: &Identified,
    action: Action,
    front: &mut F,
    correlation: &CorrelationId,
) -> Result<Ran<F::Output>, Stopped> {
    let kind = action.kind;
    let mut trail = Trail::default();
    // `identified` can only come from `pipeline::identify` (or, for the DNS guard, the anonymous
    // subject after its kill-switch check), which checked the kill switch.
    trail.push(Stage::Identify);

    trail.push(Stage::GateIn);
    let admitted = match gate(state, identified, &action, &*front, correlation).await {
        Ok(decided) => decided,
        Err(refusal) => return Err(Stopped { refusal, trail }),
    };
    if kind.crosses(Stage::Validate) {
        trail.push(Stage::Validate);
        if let Err(refusal) = front.validate(&action).await {
            return Err(stop(state, front, admitted, refusal, trail, correlation).await);
        }
    }
    if kind.crosses(Stage::SanitizeIn) {
        trail.push(Stage::SanitizeIn);
        if let Err(refusal) = front.sanitize_in() {
            return Err(stop(state, front, admitted, refusal, trail, correlation).await);
        }
    }
    // INVARIANT (durable-allow): nothing runs before its admission is durable. The admission's
    // commit and the budget reservation's run side by side: one fsync of wait, not two.
    let admission = front
        .admission()
        .map(|e| e.correlation(correlation.as_str()));
    let admit = commit_admission(state, admitted, admission);
    let (admitted_durably, limited) = if kind.crosses(Stage::Limit) {
        trail.push(Stage::Limit);
        let (admitted_durably, limited) = tokio::join!(
            admit,
            limit(state, identified, &action, &*front, correlation)
        );
        (admitted_durably, Some(limited))
    } else {
        (admit.await, None)
    };
    let mut grant = match limited {
        None => None,
        Some(Ok(grant)) => Some(grant),
        Some(Err(refusal)) => {
            return Err(stop(state, front, Vec::new(), refusal, trail, correlation).await);
        }
    };
    if !admitted_durably {
        if let Some(grant) = grant {
            super::release(state, grant, correlation).await;
        }
        let refusal = Refusal::new(
            Stage::Execute,
            ErrorCode::StoreUnavailable,
            "store_unavailable",
        );
        return Err(stop(state, front, Vec::new(), refusal, trail, correlation).await);
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
            return Err(stop(state, front, Vec::new(), refusal, trail, correlation).await);
        }
    };

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
    // The action ran: its cost is settled whatever the answer turns out to be.
    let actual = front.actual(&output);
    let outcome = match denied_out {
        Some(err) => Err(Refusal::from_api(Stage::GateOut, err)),
        None if kind.crosses(Stage::SanitizeOut) => {
            trail.push(Stage::SanitizeOut);
            front.sanitize_out(output)
        }
        None => Ok(output),
    };
    if let Ok(output) = &outcome
        && front.ends_later(output)
    {
        // A stream: its gate-out decisions trail like an outcome's; settle and record wait for
        // its end.
        let decided = gate_out.into_iter().map(Decided::into_event).collect();
        state.events.emit_trailing(decided);
        let open = Open {
            state: Arc::clone(state),
            kind,
            grant,
            correlation: correlation.clone(),
            trail,
            subject: identified.agent.id.clone(),
            done: false,
        };
        return outcome
            .map(|output| Ran {
                output,
                trail,
                open: Some(open),
            })
            .map_err(|refusal| Stopped { refusal, trail });
    }
    let mut settlement = None;
    if kind.crosses(Stage::Settle) {
        trail.push(Stage::Settle);
        settlement = grant.take();
    }

    trail.push(Stage::Record);
    let (decision, reason) = match &outcome {
        Ok(_) => (Decision::Allow, Cow::Borrowed("ok")),
        Err(refusal) => (Decision::Deny, refusal.reason.clone()),
    };
    let event = front
        .record(decision, &reason)
        .correlation(correlation.as_str());
    // The admission is durable and the reservation holds the worst case: the settlement, the
    // outcome record and the gate-out decisions follow in the next commits without holding the
    // answer (one fsync on the critical path, docs/LEDGER.md).
    let mut trailing: Vec<Event> = gate_out.into_iter().map(Decided::into_event).collect();
    trailing.push(event);
    let (state_, correlation_) = (Arc::clone(state), correlation.clone());
    state.events.trail(async move {
        if let Some(grant) = settlement {
            super::settle(&state_, grant, &actual, &correlation_).await;
        }
        futures::future::join_all(trailing.into_iter().map(|e| state_.events.emit(e))).await;
    });
    match outcome {
        Ok(output) => Ok(Ran {
            output,
            trail,
            open: None,
        }),
        Err(refusal) => Err(Stopped { refusal, trail }),
    }
}

/// Ends the road before anything ran: the front's record of the refusal, with the decisions
/// made so far (best effort: the action is refused whether or not they land).
async fn stop<F: Front>(
    state: &Core,
    front: &F,
    decided: Vec<Decided>,
    refusal: Refusal,
    trail: Trail,
    correlation: &CorrelationId,
) -> Stopped {
    let event = front
        .record(Decision::Deny, &refusal.reason)
        .correlation(correlation.as_str());
    let _ = tokio::join!(
        record_all(state, decided),
        state.events.emit_best_effort(event)
    );
    Stopped { refusal, trail }
}

/// Gate in: every key with the action's context, in order up to the first deny. A deny is
/// recorded at once together with the front's record of the refusal (one group commit, as an
/// admitted action's records are, so no timing tells them apart). The allows are returned
/// unrecorded: they join the admission record before execute.
async fn gate<F: Front>(
    state: &Core,
    identified: &Identified,
    action: &Action,
    front: &F,
    correlation: &CorrelationId,
) -> Result<Vec<Decided>, Refusal> {
    let mut decided = Vec::with_capacity(action.gates_in.len());
    for key in &action.gates_in {
        let decision = super::decide(
            state,
            identified,
            key.clone(),
            action.resource.clone(),
            action.context.clone(),
            correlation,
        );
        let denied = decision.refusal();
        decided.push(decision);
        if let Some(err) = denied {
            let refusal = Refusal::from_api(Stage::GateIn, err);
            let event = front
                .record(Decision::Deny, &refusal.reason)
                .correlation(correlation.as_str());
            // The request is refused whether or not these land.
            let _ = tokio::join!(record_all(state, decided), state.events.emit(event));
            return Err(refusal);
        }
    }
    Ok(decided)
}

/// Limit: rates and the budget reservation of the front's meter. A model the budget downgrades
/// to is called only when the policy allows it to this agent, like the model asked for
/// (`llm:model:<downgrade>`); that decision is part of the admission and durable before execute.
async fn limit<F: Front>(
    state: &Core,
    identified: &Identified,
    action: &Action,
    front: &F,
    correlation: &CorrelationId,
) -> Result<Grant, Refusal> {
    let Some(metered) = front.meter() else {
        tracing::error!(
            kind = action.kind.as_str(),
            "a metered kind came without its meter"
        );
        return Err(Refusal::new(Stage::Limit, ErrorCode::Internal, "unmetered"));
    };
    let grant = super::limit(state, identified, &metered, correlation)
        .await
        .map_err(|err| Refusal::from_api(Stage::Limit, err))?;
    if !grant.downgraded() {
        return Ok(grant);
    }
    let model = grant.model().unwrap_or_default().to_owned();
    // INVARIANT (downgrade-gated): the downgrade model crosses the same gate as the one asked for.
    let gated = match GateKey::parse(&format!("llm:model:{model}")) {
        Ok(key) => super::decide(
            state,
            identified,
            key,
            model,
            action.context.clone(),
            correlation,
        )
        .record(state)
        .await
        .map(drop)
        .map_err(|err| Refusal::from_api(Stage::Limit, err)),
        Err(_) => Err(Refusal::new(
            Stage::Limit,
            ErrorCode::Internal,
            "llm_model_unknown",
        )),
    };
    match gated {
        Ok(()) => Ok(grant),
        Err(refusal) => {
            super::release(state, grant, correlation).await;
            Err(refusal)
        }
    }
}

/// Commits the admission record: the gate's allows and the front's own part, in one group
/// commit; whether all of it is durable.
async fn commit_admission(state: &Core, decided: Vec<Decided>, own: Option<Event>) -> bool {
    let (gates, own) = tokio::join!(record_all(state, decided), async {
        match own {
            Some(event) => state.events.emit(event).await.is_ok(),
            None => true,
        }
    });
    gates && own
}

/// Records the gate-out decisions; whether every one was recorded.
async fn record_all(state: &Core, decided: Vec<Decided>) -> bool {
    futures::future::join_all(decided.into_iter().map(|d| d.record(state)))
        .await
        .into_iter()
        .all(|recorded| recorded.is_ok())
}

#[cfg(test)]
mod tests;
