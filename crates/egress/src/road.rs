//! The gateway's road as the proxy and the DNS guard see it: they describe an egress action
//! ([`EgressAction`]) and supply its steps ([`EgressSteps`]); the gateway runs the stages in
//! their one order ([`EgressRoad`]): identify, gate in (the target's `net:*` keys), validate (the
//! posture), approve, execute, record. The adapter never orders stages itself.

use std::borrow::Cow;
use std::fmt;

use async_trait::async_trait;
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{GateKeys, Reason};

use crate::deps::{CloseRecord, DecisionRecord, Surface};
use crate::reason::ProxyReason;

/// Runs egress actions down the gateway's road; implemented by the gateway for one proxy caller
/// (an identified agent) and for the DNS guard (the anonymous subject of the client's project).
#[async_trait]
pub trait EgressRoad: Send + Sync + fmt::Debug {
    /// Crosses the stages of `action`'s kind in order, calling `steps` for the front's part of
    /// each: gate in decides `action.keys` (so a denied name is never looked up, since the lookup
    /// is part of validate), then [`EgressSteps::validate`]; the admission record (the gate's
    /// decisions and [`EgressSteps::admission`]) is durable in one group commit before
    /// [`EgressSteps::execute`] runs, or the action is refused with `store_unavailable`. Every
    /// refusal is recorded with [`EgressSteps::record`]. For an action whose output outlives the
    /// call ([`EgressSteps::ends_later`]: a tunnel, a forwarded body), answers the end of its road,
    /// which its close record finishes.
    async fn run(
        &self,
        action: EgressAction<'_>,
        steps: &mut dyn EgressSteps,
    ) -> Result<Option<Box<dyn OpenEnd>>, Refused>;
}

/// One egress action as the road takes it. Everything here is known from the parsed target,
/// before any lookup.
#[derive(Clone, Copy, Debug)]
pub struct EgressAction<'a> {
    /// Which front: the kind of the action (`egress.http`, `egress.connect`, `egress.dns`).
    pub surface: Surface,
    /// The project the action is for: the agent's, or for the DNS guard the client's
    /// (`egress.dns_clients`), `None` when unmapped.
    pub project: Option<&'a str>,
    /// The canonical host (the action's resource) and its `net:*` keys, all of which must allow.
    pub keys: &'a GateKeys,
    /// From `X-Request-Id` when well formed; the gateway generates one otherwise.
    pub correlation_id: Option<&'a str>,
}

/// The front's own part of the stages, called by the road in road order, each at most once.
#[async_trait]
pub trait EgressSteps: Send + Sync {
    /// Stage validate: the egress posture (the phase-one verdict, the one lookup, the vetting
    /// of its answers) and, for a tunnel, its slot.
    async fn validate(&mut self) -> Result<(), Refused>;

    /// The front's part of the admission record (the proxy's allow decision, naming the address
    /// it will dial), made durable with the gate's decisions before [`EgressSteps::execute`].
    fn admission(&self) -> Option<DecisionRecord>;

    /// Stage execute, with the road's leave: the dial (for HTTP, the forwarded request and its
    /// response head), or the DNS lookup.
    async fn execute(&mut self, leave: Leave) -> Result<(), Refused>;

    /// Whether what [`EgressSteps::execute`] opened is still running when the road ends (a
    /// tunnel, a forwarded body): its close record comes later, through [`OpenEnd::finish`].
    fn ends_later(&self) -> bool;

    /// The record of the action with this outcome: for a refusal before execute, the decision
    /// record of the denial; for a failed execute, the close record; for an action that ends
    /// now, its decision record.
    fn record(&self, allow: bool, reason: &str) -> EgressRecord;
}

/// The end of the road of an action still running (an open tunnel, a forwarded body): its close
/// record finishes it. The proxy finishes every one it gets.
#[async_trait]
pub trait OpenEnd: Send + Sync + fmt::Debug {
    /// Appends the close record as the action's outcome record.
    async fn finish(self: Box<Self>, record: CloseRecord);
}

/// A record of one egress action, as the road writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EgressRecord {
    Decision(DecisionRecord),
    Close(CloseRecord),
}

/// Leave to execute one admitted action. The road gives one to [`EgressSteps::execute`] once
/// every stage before execute let the action through and its admission is durable; the proxy
/// dials and forwards only with one.
#[derive(Debug)]
pub struct Leave {
    _sealed: (),
}

impl Leave {
    /// The leave of an admitted action: only an [`EgressRoad`] makes one, from the road's own
    /// pass, right before calling [`EgressSteps::execute`].
    pub fn admitted() -> Self {
        Self { _sealed: () }
    }
}

/// Why an egress action was refused: the registry code to answer and the reason recorded (the
/// proxy sends it in `X-Portcullis-Error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: ErrorCode,
    pub reason: Cow<'static, str>,
}

impl Refused {
    /// A refusal with a registry code as its reason (`policy_denied`, `store_unavailable`, ...).
    pub fn code(code: ErrorCode) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(code.as_str()),
        }
    }

    /// A refusal of the posture (`egress_not_allowed`, ...).
    pub fn posture(reason: Reason) -> Self {
        Self {
            code: reason.error_code(),
            reason: Cow::Borrowed(reason.as_str()),
        }
    }

    /// A refusal of the adapter (`egress_tunnel_limit`, `egress_connect_failed`, ...).
    pub fn proxy(reason: ProxyReason) -> Self {
        Self {
            code: reason.error_code(),
            reason: Cow::Borrowed(reason.as_str()),
        }
    }
}
