//! The egress adapter: the forward proxy and the DNS guard, both deciding every target with
//! `portcullis_netpolicy` (`decide`, `vet`, `check_dns_name`, `filter_answers`).
//!
//! The gateway binds the sockets and calls [`run_proxy`] and [`run_dns_guard`]; it plugs in
//! identity ([`ProxyAuth`]), its road ([`EgressRoad`]: every proxied request, tunnel and DNS
//! answer crosses the gateway's stages in their one order, the adapter supplying its steps,
//! [`EgressSteps`]), the egress ledger for refusals before the road ([`EgressEvents`]), leases
//! ([`LeaseSource`]), a [`Resolver`] ([`SystemResolver`], or [`FixtureResolver`] in tests) and
//! the posture through a [`PolicyHandle`] it can swap at run time.
//!
//! Must never depend on: the gateway, the store, the CLI, or a rule of its own: no allow or
//! deny logic lives here. Never reads the system clock (time comes from the injected
//! [`portcullis_core::Clock`] and `tokio::time`).
//!
//! Invariants:
//! - Every target is parsed by `decide`, then crosses the gateway's road ([`EgressRoad`]): its
//!   `net:host:`, `net:domain:` and `net:port:` keys at gate in, the posture's verdict at
//!   validate; a name either denies is never looked up (the lookup is part of validate).
//! - An allowed connection is dialed only with the road's [`Leave`], after its decision record
//!   is durable.
//! - Every open tunnel and in-flight forwarded request is in [`LiveConnections`] until it ends;
//!   a cut ends it at once and its close record carries the cut's reason.
//! - One lookup per request, and the address dialed is exactly the one `vet` picked from it.
//! - `Proxy-Authorization` and every other `Proxy-*` or hop-by-hop header never reach a target.
//! - The DNS guard answers only A/AAAA for names `check_dns_name` allows, with only the answers
//!   `filter_answers` keeps; everything else is REFUSED before any query leaves the machine.
//! - Every allowed connection gets a decision record and a close record; every denial of an
//!   authenticated request gets a decision record. Tokens are never logged or recorded.

mod deps;
mod dns;
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod live;
mod proxy;
mod reason;
mod resolver;
mod road;
#[cfg(target_os = "linux")]
mod splice;
mod upstream;

pub use deps::{
    ANONYMOUS, Caller, CloseRecord, Credential, DecisionRecord, DnsDeps, DnsLimits, EgressEvents,
    LeaseSource, PolicyHandle, ProxyAuth, ProxyDeps, ProxyLimits, RecordError, RecordHead,
    StaticLeases, Surface,
};
pub use dns::{MAX_UDP_QUERY, run_dns_guard};
pub use live::{CutReason, LiveCaller, LiveConnections};
pub use proxy::{MAX_AUTH_LEN, MAX_RECORDED_TARGET, run_proxy};
pub use reason::{ProxyReason, REASONS};
pub use resolver::{
    FixtureResolver, LookupError, MAX_ANSWERS, Resolver, SystemResolver, SystemResolverError,
};
pub use road::{EgressAction, EgressRecord, EgressRoad, EgressSteps, Leave, OpenEnd, Refused};
