//! The policy engine on the egress roads: the `net:host:`, `net:domain:` and `net:port:` keys of
//! every proxied request, CONNECT tunnel, DNS-guard answer and preview, decided after the posture
//! check (a deny from any layer wins over egress allow rules and leases).
//!
//! Identified callers (the proxy's agents) go through [`pipeline::gate_all`]. The DNS guard has
//! no caller identity: it is decided as the anonymous subject [`ANONYMOUS`] of the client's
//! project (`egress.dns_clients`), which no agent can be, so the allowlist layer never admits it
//! and only a Cedar `permit` naming it does.

use async_trait::async_trait;
use portcullis_core::request::RequestContext;
use portcullis_core::{
    CorrelationId, Decision, ErrorCode, Event, GateKey, GatePattern, Request, Subject,
};
use portcullis_egress::{EgressGate, GateRequest, PendingRecords, RecordError};
use portcullis_netpolicy::GateKeys;
use portcullis_policy::explain::{layer, reason};
use portcullis_policy::{Explanation, PolicyEngine, PolicyState, Verdict};

use crate::http::AppState;
use crate::identity::Identified;
use crate::pipeline;

/// The subject of DNS-guard decisions (and of previews without an agent). Agent ids cannot hold
/// `@`, so no agent's allowlist or Cedar policy names it by accident.
pub const ANONYMOUS: &str = "@anonymous";

/// The policy gate of one authenticated proxy caller.
#[derive(Debug)]
pub struct AgentGate {
    pub state: AppState,
    pub identified: Identified,
}

#[async_trait]
impl EgressGate for AgentGate {
    async fn decide(&self, request: GateRequest<'_>) -> Result<(), ErrorCode> {
        let correlation = CorrelationId::from_header_or_generate(request.correlation_id);
        let gates = gates_of(&request).ok_or(ErrorCode::PolicyError)?;
        pipeline::gate_all(&self.state, &self.identified, gates, &correlation)
            .await
            .map_err(|err| err.code)
    }

    /// [`pipeline::gate_all`] in two steps: decide now, record when the proxy commits, together
    /// with its egress decision record (one group commit on the admitted connection's path).
    async fn decide_deferred(
        &self,
        request: GateRequest<'_>,
    ) -> (Result<(), ErrorCode>, PendingRecords) {
        let correlation = CorrelationId::from_header_or_generate(request.correlation_id);
        let Some(gates) = gates_of(&request) else {
            return (Err(ErrorCode::PolicyError), PendingRecords::none());
        };
        let mut decided = Vec::new();
        let mut denied = None;
        for (action, resource, context) in gates {
            let decision = pipeline::decide(
                &self.state,
                &self.identified,
                action,
                resource,
                context,
                &correlation,
            );
            denied = decision.refusal().map(|err| err.code);
            decided.push(decision);
            if denied.is_some() {
                break;
            }
        }
        let state = self.state.clone();
        let pending = PendingRecords::new(async move {
            let recorded =
                futures::future::join_all(decided.into_iter().map(|d| d.record(&state))).await;
            // INVARIANT (durable-allow): an allow whose record is not durable fails the commit
            // (`Decided::record` answers `store_unavailable`); a deny answers its own refusal.
            let lost = recorded
                .iter()
                .any(|r| matches!(r, Err(err) if err.code == ErrorCode::StoreUnavailable));
            if lost { Err(RecordError) } else { Ok(()) }
        });
        (denied.map_or(Ok(()), Err), pending)
    }
}

/// The policy gate of the DNS guard: an anonymous subject of the client's project.
#[derive(Debug)]
pub struct AnonymousGate {
    pub state: AppState,
}

#[async_trait]
impl EgressGate for AnonymousGate {
    // TODO(road): an anonymous-subject variant of `pipeline::decide` / `gate_all` (the pipeline
    // takes an `Identified`); this is that variant, written here until the road has one.
    async fn decide(&self, request: GateRequest<'_>) -> Result<(), ErrorCode> {
        let state = &self.state;
        let correlation = CorrelationId::from_header_or_generate(request.correlation_id);
        let project = request.project.map(str::to_owned);
        if let Some(scope) = state
            .guardrails
            .killswitch
            .engaged_for(ANONYMOUS, project.as_deref())
        {
            let code = ErrorCode::KillswitchEngaged;
            state
                .events
                .emit_best_effort(
                    Event::new("killswitch.refused", Decision::Deny, code.as_str())
                        .subject(ANONYMOUS)
                        .correlation(correlation.as_str())
                        .data(serde_json::json!({"scope": scope.to_string(), "surface": request.surface.as_str()})),
                )
                .await;
            return Err(code);
        }
        let gates = gates_of(&request).ok_or(ErrorCode::PolicyError)?;
        let subject = anonymous_subject(project);
        let now = state.clock.now();
        let mut events = Vec::new();
        let mut denied = None;
        for (action, resource, context) in gates {
            let request = Request {
                subject: subject.clone(),
                action,
                resource,
                context,
            };
            let explanation = state.policy.decide(&request, &[], now);
            events.push(
                pipeline::decision_event(&request, &explanation).correlation(correlation.as_str()),
            );
            if !explanation.is_allow() {
                denied = Some(explanation.error_code().unwrap_or(ErrorCode::PolicyDenied));
                break;
            }
        }
        // The decisions share one group commit, like `gate_all`'s.
        let appended =
            futures::future::join_all(events.into_iter().map(|event| state.events.emit(event)))
                .await;
        match denied {
            Some(code) => Err(code),
            // INVARIANT (durable-allow): an allow whose record is not durable is refused.
            None if appended.iter().any(Result::is_err) => Err(ErrorCode::StoreUnavailable),
            None => Ok(()),
        }
    }
}

/// The anonymous subject of `project`.
pub fn anonymous_subject(project: Option<String>) -> Subject {
    Subject {
        agent: ANONYMOUS.to_owned(),
        project,
        ..Subject::default()
    }
}

/// Each key with the host as resource and the surface in the context (`context.arguments`
/// carries `surface`: `http`, `connect`, `dns` or `preview`). `None` when a key does not parse,
/// which the callers refuse (fail closed).
fn gates_of(request: &GateRequest<'_>) -> Option<Vec<(GateKey, String, RequestContext)>> {
    keyed(request.keys, request.surface.as_str())
}

fn keyed(keys: &GateKeys, surface: &str) -> Option<Vec<(GateKey, String, RequestContext)>> {
    keys.keys
        .iter()
        .map(|key| {
            GateKey::parse(key).ok().map(|key| {
                let context = RequestContext {
                    arguments: serde_json::json!({ "surface": surface }),
                    ..RequestContext::default()
                };
                (key, keys.host.clone(), context)
            })
        })
        .collect()
}

/// The policy engine as a preview asks it: a dry run (quota hits read, never counted).
#[derive(Debug)]
pub struct PreviewGate<'a> {
    pub engine: &'a PolicyEngine,
    pub state: &'a PolicyState,
    /// The agent previewed for, or the anonymous subject.
    pub subject: Subject,
    /// That agent's allowlist (empty for the anonymous subject).
    pub allow: &'a [GatePattern],
}

/// What a preview's policy gate answered: the explanations in key order (up to the first deny)
/// and the `policy.decision` events to record.
#[derive(Debug, Default)]
pub struct PreviewGated {
    pub denied: Option<Explanation>,
    pub events: Vec<Event>,
}

impl PreviewGate<'_> {
    /// Decides every key (dry run) up to the first deny.
    pub fn decide(&self, keys: &GateKeys, now: jiff::Timestamp) -> PreviewGated {
        let mut res = PreviewGated::default();
        let Some(gates) = keyed(keys, "preview") else {
            res.denied = Some(Explanation {
                decision: Verdict::Deny,
                layer: layer::DEFAULT,
                rule: None,
                reason: reason::POLICY_ERROR,
                report: None,
            });
            return res;
        };
        for (action, resource, context) in gates {
            let request = Request {
                subject: self.subject.clone(),
                action,
                resource,
                context,
            };
            let explanation =
                crate::policy::explain(self.engine, self.state, &request, self.allow, now);
            res.events
                .push(pipeline::decision_event(&request, &explanation));
            if !explanation.is_allow() {
                res.denied = Some(explanation);
                break;
            }
        }
        res
    }
}

/// Policy state for an offline preview (`portcullis egress preview`): no capsules, in-memory
/// quota counters.
pub fn offline_policy_state() -> PolicyState {
    PolicyState::in_memory()
}
