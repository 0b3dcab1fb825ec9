//! Immutable holds: what a reload may not drop or weaken, and the start-up record of what a
//! restart changed.
//!
//! INVARIANT (immutable-holds): while the process runs, every `[policy] deny` pattern keeps
//! covering what it covered at start, and every active immutable contract stays at least as strong
//! (`can_replace`); a reload that would break this is refused whole and the serving policy stays.
//! Only a restart changes them, and the start records the change as a `policy.immutable_changed`
//! event against what the store saw at the previous start.

use std::collections::BTreeMap;

use jiff::Timestamp;
use portcullis_core::{Decision, Event};
use portcullis_policy::{Contract, Mode, can_replace};
use portcullis_store::{PolicyRecordKind, StoreError};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::policy::{LoadIssue, Sources};

/// The id of the one [`PolicyRecordKind::Immutable`] record.
const RECORD_ID: &str = "config";

/// Every immutable item that `next` would drop or weaken compared with `serving` at `now`; empty
/// when the reload may go ahead. `capsule_contracts` are the contracts adopted from capsules.
pub fn reload_issues(
    serving: &Sources,
    next: &Sources,
    capsule_contracts: &[Contract],
    now: Timestamp,
) -> Vec<LoadIssue> {
    let mut res = Vec::new();
    for deny in &serving.policy.deny {
        if !next.policy.deny.iter().any(|kept| deny.is_within(kept)) {
            res.push(issue(
                "policy.deny",
                format!(
                    "the immutable deny `{}` cannot be dropped or narrowed by a reload; restart to change it",
                    deny.as_str()
                ),
            ));
        }
    }
    for old in serving
        .config_contracts
        .iter()
        .filter(|contract| contract.immutable && contract.is_active(now))
    {
        match next.config_contracts.iter().find(|new| new.id == old.id) {
            None => res.push(issue(
                "contracts",
                format!(
                    "the active immutable contract `{}` cannot be dropped by a reload; restart to change it",
                    old.id
                ),
            )),
            Some(new) => {
                if let Err(err) = can_replace(old, new, now) {
                    res.push(issue(
                        "contracts",
                        format!(
                            "contract `{}`: {err} by a reload; restart to change it",
                            old.id
                        ),
                    ));
                }
            }
        }
    }
    // Report mode would let an immutable contract's denies through.
    let held = |contracts: &mut dyn Iterator<Item = &Contract>| -> Vec<String> {
        contracts
            .filter(|contract| contract.immutable && contract.is_active(now))
            .map(|contract| format!("`{}`", contract.id))
            .collect()
    };
    let to_report = |old: Mode, new: Mode| old == Mode::Enforce && new == Mode::Report;
    let modes = (serving.policy.mode, next.policy.mode);
    if to_report(modes.0.contract, modes.1.contract) {
        let ids = held(&mut serving.config_contracts.iter().chain(&next.admin_contracts));
        if !ids.is_empty() {
            res.push(issue(
                "policy.mode.contract",
                format!(
                    "`report` would weaken the active immutable contracts {}; restart to change it",
                    ids.join(", ")
                ),
            ));
        }
    }
    if to_report(modes.0.capsule, modes.1.capsule) {
        let ids = held(&mut capsule_contracts.iter());
        if !ids.is_empty() {
            res.push(issue(
                "policy.mode.capsule",
                format!(
                    "`report` would weaken the active immutable capsule contracts {}; restart to change it",
                    ids.join(", ")
                ),
            ));
        }
    }
    res
}

fn issue(file: &str, message: String) -> LoadIssue {
    LoadIssue {
        file: file.to_owned(),
        message,
    }
}

/// The immutable part of a configuration's policy: its denies and its immutable contracts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    denies: Vec<String>,
    /// By id, each contract's JSON.
    contracts: BTreeMap<String, serde_json::Value>,
}

impl Held {
    fn of(sources: &Sources) -> Self {
        // Sorted: listing the same denies in another order changes nothing.
        let denies: std::collections::BTreeSet<String> = sources
            .policy
            .deny
            .iter()
            .map(|pattern| pattern.as_str().to_owned())
            .collect();
        Self {
            denies: denies.into_iter().collect(),
            contracts: sources
                .config_contracts
                .iter()
                .filter(|contract| contract.immutable)
                .map(|contract| {
                    let json = serde_json::to_value(contract).unwrap_or_default();
                    (contract.id.clone(), json)
                })
                .collect(),
        }
    }

    /// What changed from `before` to `self`, as the event's data.
    fn diff(&self, before: &Held) -> serde_json::Value {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|item| !b.contains(item)).cloned().collect()
        };
        let keys = |held: &Held| held.contracts.keys().cloned().collect::<Vec<_>>();
        let changed: Vec<&String> = self
            .contracts
            .iter()
            .filter(|(id, json)| before.contracts.get(*id).is_some_and(|old| old != *json))
            .map(|(id, _)| id)
            .collect();
        serde_json::json!({
            "denies_added": only(&self.denies, &before.denies),
            "denies_removed": only(&before.denies, &self.denies),
            "contracts_added": only(&keys(self), &keys(before)),
            "contracts_removed": only(&keys(before), &keys(self)),
            "contracts_changed": changed,
        })
    }
}

/// At start: compares the immutable policy in service with what the store saw at the previous
/// start; a difference is a durable `policy.immutable_changed` event, then the new state is
/// stored. The first start records what it starts with. A store error refuses the start.
pub async fn record_at_start(state: &AppState) -> Result<bool, StoreError> {
    let held = Held::of(&*state.policy.lock_sources().await);
    let stored = state
        .store
        .list_policy_records(PolicyRecordKind::Immutable)
        .await?;
    let before = stored
        .iter()
        .find(|(id, _)| id == RECORD_ID)
        .map(|(_, body)| serde_json::from_str::<Held>(body));
    let before = match before {
        None => None,
        Some(Ok(before)) => Some(before),
        // An unreadable record is a change from an unknown state: record the whole current one.
        Some(Err(_)) => Some(Held::default()),
    };
    let changed = match &before {
        Some(before) => before != &held,
        None => held != Held::default(),
    };
    if !changed {
        return Ok(false);
    }
    let before = before.unwrap_or_default();
    let event =
        Event::new("policy.immutable_changed", Decision::Info, "restart").data(held.diff(&before));
    state.events.emit(event).await?;
    let body = serde_json::to_string(&held).unwrap_or_default();
    state
        .store
        .put_policy_record(PolicyRecordKind::Immutable, RECORD_ID, &body)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests;
