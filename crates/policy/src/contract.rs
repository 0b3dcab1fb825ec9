//! Deny contracts: patterns, subject filter, validity window, auto-renew, quota, immutability.

use jiff::{SignedDuration, Timestamp};
use portcullis_core::{GatePattern, Subject};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, CatalogError};

/// Longest contract id, in bytes.
pub const MAX_CONTRACT_ID_LEN: usize = 256;
/// Most patterns one contract may hold.
pub const MAX_CONTRACT_PATTERNS: usize = 256;
/// Most entries in each list of a subject filter.
pub const MAX_SUBJECT_ENTRIES: usize = 256;
/// Longest auto-renew period or quota window: ten years, in seconds.
pub const MAX_PERIOD_SECS: u64 = 10 * 366 * 86_400;

/// A deny contract, as written in `[[contracts]]` or posted to the admin API.
///
/// Inside its window it denies its patterns for matching subjects; with a quota it allows `limit`
/// hits per window instead, then denies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub id: String,
    pub patterns: Vec<GatePattern>,
    #[serde(default)]
    pub subject: SubjectFilter,
    /// Start of the window (inclusive); none means "since always". RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Timestamp>,
    /// End of the window (exclusive); none means "for ever". RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<Timestamp>,
    /// Once `valid_to` passes, the contract re-arms for terms of this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_renew_secs: Option<u64>,
    /// An active immutable contract cannot be deleted, shortened or weakened.
    #[serde(default)]
    pub immutable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// Whom a contract applies to. Fields combine with AND; entries within a list with OR; an empty
/// list matches everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// `limit` hits per window of `window_secs`, shared by every subject the contract matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub limit: u64,
    pub window_secs: u64,
}

/// The active term of a contract: half-open `[start, end)`, `None` meaning unbounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
}

/// Why a contract is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("contract id is empty, longer than {MAX_CONTRACT_ID_LEN} bytes or not printable ASCII")]
    BadId,
    #[error("contract has no patterns")]
    NoPatterns,
    #[error("contract has more than {MAX_CONTRACT_PATTERNS} patterns")]
    TooManyPatterns,
    #[error("a subject list has more than {MAX_SUBJECT_ENTRIES} entries")]
    TooManySubjects,
    #[error(transparent)]
    Pattern(#[from] CatalogError),
    #[error("`valid_from` is not before `valid_to`")]
    EmptyWindow,
    #[error("`auto_renew_secs` needs `valid_to` and must be 1..={MAX_PERIOD_SECS}")]
    BadAutoRenew,
    #[error("quota `window_secs` must be 1..={MAX_PERIOD_SECS}")]
    BadQuotaWindow,
}

/// Why a change to an immutable contract is refused (the admin API answers 409).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImmutabilityError {
    #[error("an active immutable contract cannot be deleted")]
    Delete,
    #[error("an active immutable contract cannot be shortened")]
    Shorten,
    #[error("an active immutable contract cannot be weakened")]
    Weaken,
}

impl Contract {
    /// Checks every field; returns every problem found.
    pub fn validate(&self) -> Vec<ContractError> {
        let mut res = Vec::new();
        if self.id.is_empty()
            || self.id.len() > MAX_CONTRACT_ID_LEN
            || !self.id.bytes().all(|b| b.is_ascii_graphic())
        {
            res.push(ContractError::BadId);
        }
        if self.patterns.is_empty() {
            res.push(ContractError::NoPatterns);
        }
        if self.patterns.len() > MAX_CONTRACT_PATTERNS {
            res.push(ContractError::TooManyPatterns);
        }
        res.extend(
            self.patterns
                .iter()
                .filter_map(|pattern| catalog::check_pattern(pattern).err())
                .map(ContractError::Pattern),
        );
        let subject = &self.subject;
        if [
            &subject.agents,
            &subject.roles,
            &subject.nodes,
            &subject.tags,
        ]
        .iter()
        .any(|list| list.len() > MAX_SUBJECT_ENTRIES)
        {
            res.push(ContractError::TooManySubjects);
        }
        if let (Some(from), Some(to)) = (self.valid_from, self.valid_to)
            && from >= to
        {
            res.push(ContractError::EmptyWindow);
        }
        if let Some(renew) = self.auto_renew_secs
            && (renew == 0 || renew > MAX_PERIOD_SECS || self.valid_to.is_none())
        {
            res.push(ContractError::BadAutoRenew);
        }
        if let Some(quota) = self.quota
            && (quota.window_secs == 0 || quota.window_secs > MAX_PERIOD_SECS)
        {
            res.push(ContractError::BadQuotaWindow);
        }
        res
    }

    /// The term active at `now`, or `None` when the contract is not in force. After `valid_to`,
    /// a contract with `auto_renew_secs` re-arms for back-to-back terms of that length.
    pub fn term_at(&self, now: Timestamp) -> Option<Term> {
        if self.valid_from.is_some_and(|from| now < from) {
            return None;
        }
        let Some(to) = self.valid_to else {
            return Some(Term {
                start: self.valid_from,
                end: None,
            });
        };
        if now < to {
            return Some(Term {
                start: self.valid_from,
                end: Some(to),
            });
        }
        let renew = i64::try_from(self.auto_renew_secs?).ok()?;
        let elapsed = now.as_second().checked_sub(to.as_second())?;
        let n_terms = elapsed.checked_div(renew)?;
        let start = to.checked_add(SignedDuration::from_secs(n_terms.checked_mul(renew)?));
        let start = start.ok()?;
        // A term past the end of representable time never ends.
        let end = start.checked_add(SignedDuration::from_secs(renew)).ok();
        Some(Term {
            start: Some(start),
            end,
        })
    }

    pub fn is_active(&self, now: Timestamp) -> bool {
        self.term_at(now).is_some()
    }

    /// Start of the quota window containing `now` (windows aligned to the Unix epoch).
    pub fn quota_window_start(quota: Quota, now: Timestamp) -> Timestamp {
        let window = i64::try_from(quota.window_secs).unwrap_or(i64::MAX).max(1);
        let second = now.as_second();
        let start = second.div_euclid(window).saturating_mul(window);
        Timestamp::from_second(start).unwrap_or(now)
    }
}

impl SubjectFilter {
    /// True when `subject` passes every non-empty list.
    pub fn matches(&self, subject: &Subject) -> bool {
        let any_of = |list: &[String], values: &[String]| {
            list.is_empty() || values.iter().any(|value| list.contains(value))
        };
        any_of(&self.agents, std::slice::from_ref(&subject.agent))
            && any_of(&self.roles, &subject.roles)
            && (self.nodes.is_empty()
                || subject
                    .node
                    .as_ref()
                    .is_some_and(|node| self.nodes.contains(node)))
            && any_of(&self.tags, &subject.tags)
    }

    /// True when every subject this filter matches is also matched by `other`.
    fn is_within(&self, other: &SubjectFilter) -> bool {
        let list_within = |mine: &[String], theirs: &[String]| {
            theirs.is_empty() || (!mine.is_empty() && mine.iter().all(|v| theirs.contains(v)))
        };
        list_within(&self.agents, &other.agents)
            && list_within(&self.roles, &other.roles)
            && list_within(&self.nodes, &other.nodes)
            && list_within(&self.tags, &other.tags)
    }
}

/// May `contract` be deleted at `now`? Refused while an immutable contract is active.
pub fn can_delete(contract: &Contract, now: Timestamp) -> Result<(), ImmutabilityError> {
    if contract.immutable && contract.is_active(now) {
        return Err(ImmutabilityError::Delete);
    }
    Ok(())
}

/// May `old` be replaced by `new` at `now`? While an immutable `old` is active, `new` must stay
/// immutable, deny at least the same keys for at least the same subjects, be in force now, and
/// cover at least the end of `old`'s current term; a quota may only get stricter. Dropping
/// `auto_renew_secs` is allowed when `valid_to` covers the current term: that is how an operator
/// retires an auto-renewing immutable contract.
pub fn can_replace(
    old: &Contract,
    new: &Contract,
    now: Timestamp,
) -> Result<(), ImmutabilityError> {
    if !old.immutable {
        return Ok(());
    }
    let Some(old_term) = old.term_at(now) else {
        return Ok(());
    };
    let Some(new_term) = new.term_at(now) else {
        return Err(ImmutabilityError::Shorten);
    };
    let new_end = coverage_end(new, new_term);
    match (old_term.end, new_end) {
        (_, None) => {}
        (None, Some(_)) => return Err(ImmutabilityError::Shorten),
        (Some(old_end), Some(new_end)) if new_end < old_end => {
            return Err(ImmutabilityError::Shorten);
        }
        (Some(_), Some(_)) => {}
    }
    let patterns_kept = old
        .patterns
        .iter()
        .all(|old_pattern| new.patterns.iter().any(|p| old_pattern.is_within(p)));
    let quota_kept = match (old.quota, new.quota) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(_), None) => true,
        (Some(old_quota), Some(new_quota)) => {
            new_quota.limit <= old_quota.limit && new_quota.window_secs >= old_quota.window_secs
        }
    };
    if !new.immutable || !patterns_kept || !old.subject.is_within(&new.subject) || !quota_kept {
        return Err(ImmutabilityError::Weaken);
    }
    Ok(())
}

/// The last instant a contract certainly covers from `term` on: `None` when it never ends
/// (no `valid_to`, or auto-renew).
fn coverage_end(contract: &Contract, term: Term) -> Option<Timestamp> {
    if contract.auto_renew_secs.is_some() {
        return None;
    }
    term.end
}

#[cfg(test)]
mod tests;
