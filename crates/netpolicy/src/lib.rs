//! The egress decision function, shared by the forward proxy, the DNS guard and
//! `/egress/preview`: strict target parsing, posture rules, leases and address vetting.
//!
//! Pure: no I/O, no clock, no resolver, no async runtime. The caller passes `now`, the leases
//! and the resolved addresses; this crate never looks anything up.
//!
//! The decision has two phases so that a denied name is never resolved:
//! 1. [`decide()`] parses the target ([`TargetRequest`]), classifies the host (IP literal in any
//!    WHATWG spelling, or canonical name), then applies, in order: `block_ip_literals`, deny
//!    rules, DNS-over-HTTPS refusal, the posture, allow rules, the built-in public list and
//!    leases. It answers [`Phase1::Deny`], [`Phase1::DialLiteral`] or [`Phase1::Resolve`].
//! 2. After exactly one lookup, [`vet`] picks the first answer that is not in a blocked class
//!    (loopback, private, link-local, metadata, CGNAT, multicast, broadcast, unspecified,
//!    documentation, reserved, or an IPv6 form embedding one) unless `allow_cidrs` admits it,
//!    and the caller dials exactly that address.
//!
//! [`EgressPolicy::gate_keys`] names the `net:host:`, `net:domain:` and `net:port:` keys the
//! gateway's policy engine decides next for an allowed target (deny from any layer wins over the
//! posture's allow); [`EgressPolicy::dns_project`] maps a DNS client's address to a project.
//!
//! [`check_dns_name`] and [`filter_answers`] serve the DNS guard; [`preview()`] runs both phases
//! with an injected lookup (such as a [`DnsFixture`]) and returns the preview JSON.
//!
//! Must never depend on: tokio, hyper, a resolver, the file system, the system clock.
//!
//! Invariants:
//! - Decisions never fail: every refusal is a deny with a stable [`Reason`] (see [`REASONS`]).
//! - Deny rules beat every allow rule and lease; expired leases do nothing.
//! - No lookup is needed, or made by [`preview()`], for a denied name; [`preview()`] looks up at
//!   most once and reports the address [`vet`] chose.
//! - `allow_cidrs` never admits an IP literal while `block_ip_literals` is on, and never a
//!   metadata, multicast, broadcast or unspecified address.

pub mod addr;
pub mod config;
pub mod decide;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod host;
pub mod lease;
pub mod policy;
pub mod preview;
pub mod reason;
pub mod rules;
pub mod target;

pub use config::{EgressConfig, Posture, ProjectEgressConfig, ProxyLimitError, ProxyLimitsConfig};
pub use decide::{
    Denial, DnsAllowed, DnsCheck, Grant, Phase1, Phase2, ResolvePlan, check_dns_name, decide,
    filter_answers, vet,
};
pub use gate::GateKeys;
pub use host::{Host, Name};
pub use lease::{Caller, Lease, LeaseKey, LeaseKeyError, LeaseSubject};
pub use policy::{ConfigError, EgressPolicy};
pub use preview::{DnsFixture, FixtureError, LookupAnswer, Preview, preview};
pub use reason::{REASONS, Reason};
pub use target::{Target, TargetForm, TargetRequest, parse_target};
