//! The egress fronts on the road: proxied HTTP requests (`egress.http`), CONNECT tunnels
//! (`egress.connect`) and DNS-guard answers (`egress.dns`) cross [`road::run`]. The adapter
//! (`portcullis-egress`) describes each action and supplies its steps; this module translates
//! them into a road [`Action`] and [`Front`], and the road's outcome back.
//!
//! Gate in decides the target's `net:host:`, `net:domain:` and `net:port:` keys (known from the
//! parsed target, so a denied name is never looked up: the lookup is part of validate); validate
//! is the posture; the egress decision record is the front's admission record, durable in one
//! group commit with the gate's allows before the dial; execute is the dial (and for HTTP the
//! forwarded request) or the DNS lookup. A tunnel or a forwarded body outlives the road: its
//! close record finishes the road's [`Open`].

use async_trait::async_trait;
use portcullis_core::request::RequestContext;
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, GateKey};
use portcullis_egress::{
    CloseRecord, DecisionRecord, EgressAction, EgressRecord, EgressRoad, EgressSteps, Leave,
    OpenEnd, RecordHead, Refused, Surface,
};

use super::ANONYMOUS;
use crate::http::AppState;
use crate::identity::Identified;
use crate::pipeline::Actual;
use crate::pipeline::road::{self, Action, Front, Kind, Open, Pass, Refusal, Stage};

/// The road of one authenticated proxy caller.
#[derive(Debug)]
pub struct AgentRoad {
    pub state: AppState,
    pub identified: Identified,
}

#[async_trait]
impl EgressRoad for AgentRoad {
    async fn run(
        &self,
        action: EgressAction<'_>,
        steps: &mut dyn EgressSteps,
    ) -> Result<Option<Box<dyn OpenEnd>>, Refused> {
        let correlation = CorrelationId::from_header_or_generate(action.correlation_id);
        drive(&self.state, &self.identified, action, steps, &correlation).await
    }
}

/// The road of the DNS guard: identify is the anonymous subject [`ANONYMOUS`] of the client's
/// project, once no kill switch covers it.
#[derive(Debug)]
pub struct AnonymousRoad {
    pub state: AppState,
}

#[async_trait]
impl EgressRoad for AnonymousRoad {
    async fn run(
        &self,
        action: EgressAction<'_>,
        steps: &mut dyn EgressSteps,
    ) -> Result<Option<Box<dyn OpenEnd>>, Refused> {
        let state = &self.state;
        let correlation = CorrelationId::from_header_or_generate(action.correlation_id);
        if let Some(scope) = state
            .guardrails
            .killswitch
            .engaged_for(ANONYMOUS, action.project)
        {
            let code = ErrorCode::KillswitchEngaged;
            let event = Event::new("killswitch.refused", Decision::Deny, code.as_str())
                .subject(ANONYMOUS)
                .correlation(correlation.as_str())
                .data(serde_json::json!({
                    "scope": scope.to_string(),
                    "surface": action.surface.as_str(),
                }));
            state.events.emit_best_effort(event).await;
            return Err(Refused::code(code));
        }
        let identified = Identified::anonymous(ANONYMOUS, action.project.map(str::to_owned));
        drive(state, &identified, action, steps, &correlation).await
    }
}

/// The road's kind for an egress surface.
pub fn kind_of(surface: Surface) -> Kind {
    match surface {
        Surface::Http => Kind::ProxyHttp,
        Surface::Connect => Kind::ProxyConnect,
        Surface::Dns => Kind::DnsAnswer,
    }
}

/// Runs one egress action down the road for `identified`.
async fn drive(
    state: &AppState,
    identified: &Identified,
    action: EgressAction<'_>,
    steps: &mut dyn EgressSteps,
    correlation: &CorrelationId,
) -> Result<Option<Box<dyn OpenEnd>>, Refused> {
    let gates_in: Option<Vec<GateKey>> = action
        .keys
        .keys
        .iter()
        .map(|key| GateKey::parse(key).ok())
        .collect();
    let Some(gates_in) = gates_in else {
        // A key the policy engine cannot read: refused (fail closed), before any lookup.
        let refused = Refused::code(ErrorCode::PolicyError);
        let event = record_event(steps.record(false, &refused.reason));
        state
            .events
            .emit_best_effort(event.correlation(correlation.as_str()))
            .await;
        return Err(refused);
    };
    let road_action = Action {
        kind: kind_of(action.surface),
        gates_in,
        gates_out: Vec::new(),
        resource: action.keys.host.clone(),
        context: surface_context(action.surface),
    };
    let mut front = EgressFront { steps };
    match road::run(
        &state.core,
        identified,
        road_action,
        &mut front,
        correlation,
    )
    .await
    {
        Ok(ran) => Ok(ran
            .open
            .map(|open| Box::new(OpenEgress { open }) as Box<dyn OpenEnd>)),
        Err(stopped) => Err(Refused {
            code: stopped.refusal.error.code,
            reason: stopped.refusal.reason,
        }),
    }
}

/// What the policy sees of an egress action beyond who and what: `context.arguments.surface`
/// (`http`, `connect` or `dns`; previews say `preview`).
pub fn surface_context(surface: Surface) -> RequestContext {
    RequestContext {
        arguments: serde_json::json!({ "surface": surface.as_str() }),
        ..RequestContext::default()
    }
}

/// The adapter's steps as a road front.
struct EgressFront<'a> {
    steps: &'a mut dyn EgressSteps,
}

impl Front for EgressFront<'_> {
    type Output = ();

    async fn validate(&mut self, _action: &Action) -> Result<(), Refusal> {
        self.steps
            .validate()
            .await
            .map_err(|refused| refusal(Stage::Validate, refused))
    }

    fn admission(&self) -> Option<Event> {
        self.steps.admission().map(decision_event)
    }

    async fn execute(&mut self, pass: Pass) -> Result<(), Refusal> {
        // The adapter's leave is made from the road's pass, here only.
        drop(pass);
        self.steps
            .execute(Leave::admitted())
            .await
            .map_err(|refused| refusal(Stage::Execute, refused))
    }

    fn ends_later(&self, _output: &()) -> bool {
        self.steps.ends_later()
    }

    fn record(&self, decision: Decision, reason: &str) -> Event {
        record_event(self.steps.record(decision == Decision::Allow, reason))
    }
}

fn refusal(stage: Stage, refused: Refused) -> Refusal {
    Refusal::new(stage, refused.code, refused.reason)
}

/// The rest of the road of an open tunnel or forwarded body: its close record finishes it.
#[derive(Debug)]
struct OpenEgress {
    open: Open,
}

#[async_trait]
impl OpenEnd for OpenEgress {
    async fn finish(self: Box<Self>, record: CloseRecord) {
        let _trail = self.open.finish(Actual::Tool, close_event(record)).await;
    }
}

/// The ledger event of an egress record.
pub fn record_event(record: EgressRecord) -> Event {
    match record {
        EgressRecord::Decision(record) => decision_event(record),
        EgressRecord::Close(record) => close_event(record),
    }
}

/// `egress.decision`: allow or deny, why, and what the posture found.
pub fn decision_event(record: DecisionRecord) -> Event {
    let decision = if record.allow {
        Decision::Allow
    } else {
        Decision::Deny
    };
    let extra = serde_json::json!({
        "rule": record.rule,
        "lease": record.lease,
        "resolved": record.resolved.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "dialed": record.dialed.map(|addr| addr.to_string()),
    });
    egress_event(
        "egress.decision",
        decision,
        &record.reason,
        record.head,
        extra,
    )
}

/// `egress.close`: the end of an allowed connection, its bytes and why it ended.
pub fn close_event(record: CloseRecord) -> Event {
    let extra = serde_json::json!({
        "dialed": record.dialed.to_string(),
        "bytes_up": record.bytes_up,
        "bytes_down": record.bytes_down,
        "duration_ms": record.duration_ms,
    });
    egress_event(
        "egress.close",
        Decision::Info,
        record.reason,
        record.head,
        extra,
    )
}

/// One egress event: the connection's head fields plus `extra`, under its correlation id (the
/// road replaces it with the action's).
fn egress_event(
    kind: &str,
    decision: Decision,
    reason: &str,
    head: RecordHead,
    extra: serde_json::Value,
) -> Event {
    let mut data = serde_json::json!({
        "connection": head.connection,
        "surface": head.surface.as_str(),
        "project": head.project,
        "target": head.target,
    });
    if let (Some(data), serde_json::Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    let mut event = Event::new(kind, decision, reason)
        .subject(head.agent)
        .data(data);
    if let Some(id) = head.correlation_id {
        event = event.correlation(id);
    }
    event
}
