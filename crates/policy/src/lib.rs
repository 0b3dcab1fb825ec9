//! The Portcullis policy engine: one explained answer (allow or deny) per gate key.
//!
//! What it does: holds the catalog of every gate key Portcullis checks ([`catalog`]), compiles the
//! policy (immutable denies, contracts, Cedar policies) into an immutable [`PolicyEngine`], and
//! decides requests through the layers `immutable -> contract -> capsule -> allowlist -> cedar ->
//! default`, first deny wins. Every decision is an [`Explanation`] naming the layer, the rule and a
//! stable reason code from [`REASONS`] or [`ALLOW_REASONS`].
//!
//! What it must never depend on: I/O, the clock, an async runtime. Cedar policy text comes in as
//! strings the gateway read from files; `now` is an argument; quota counters sit behind
//! [`QuotaCounters`] so the gateway can back them with its store.
//!
//! Invariants:
//! - Fail closed: [`PolicyEngine::decide`] returns an [`Explanation`], never a `Result`; an unknown
//!   gate key, a Cedar evaluation error or a quota-store error is a deny.
//! - Deny wins: no rule in a deny layer can turn a deny into an allow; an allow needs an explicit
//!   allowlist pattern or Cedar `permit`.
//! - A [`PolicyEngine`] is immutable once built. The state that must survive a reload (capsule
//!   rules, quota counters) lives in [`PolicyState`], which the caller owns and passes to every
//!   decision, so swapping an `Arc<PolicyEngine>` keeps it.
//! - The deny layers are indexed ([`index::PatternIndex`]): their cost grows with the key length and
//!   the number of rules that match, not with the number of rules.

pub mod capsule;
pub mod catalog;
pub mod cedar;
pub mod config;
pub mod contract;
pub mod docs;
pub mod engine;
pub mod error;
pub mod explain;
pub mod fuzzing;
pub mod index;
pub mod quota;
mod rules;

pub use capsule::{CapsuleLayer, CapsuleRules};
pub use catalog::{CATALOG, CatalogEntry, CatalogError};
pub use config::{LayerModes, Mode, PolicyConfig};
pub use contract::{
    Contract, ContractError, ImmutabilityError, Quota, SubjectFilter, can_delete, can_replace,
};
pub use engine::{PolicyEngine, PolicyState};
pub use error::PolicyLoadError;
pub use explain::{ALLOW_REASONS, Explanation, REASONS, ReportedDeny, Verdict};
pub use quota::{MemoryQuotaCounters, QuotaCounters, QuotaKey, QuotaStoreError};
