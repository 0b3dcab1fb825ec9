//! Compiled deny tables: immutable/capsule denies and contracts, each indexed by pattern.

use jiff::Timestamp;
use portcullis_core::{GatePattern, Subject};

use crate::contract::Contract;
use crate::explain::reason;
use crate::index::PatternIndex;
use crate::quota::{QuotaCounters, QuotaKey};

/// Deny patterns with their rule ids, indexed.
#[derive(Clone, Debug, Default)]
pub(crate) struct DenyTable {
    rule_ids: Vec<String>,
    index: PatternIndex,
}

/// Contracts, indexed by each of their patterns.
#[derive(Clone, Debug, Default)]
pub(crate) struct ContractTable {
    contracts: Vec<Contract>,
    index: PatternIndex,
}

/// A deny found in a table: the rule id and the reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableDeny {
    pub rule: String,
    pub reason: &'static str,
}

/// A quota hit to count once the whole decision allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingHit {
    pub key: QuotaKey,
    pub limit: u64,
}

impl DenyTable {
    /// `rules` are `(rule id, pattern)` pairs; earlier rules win when several match.
    pub fn new(rules: impl IntoIterator<Item = (String, GatePattern)>) -> Self {
        let mut res = Self::default();
        for (rule_id, pattern) in rules {
            let rule = u32::try_from(res.rule_ids.len()).unwrap_or(u32::MAX);
            res.index.insert(&pattern, rule);
            res.rule_ids.push(rule_id);
        }
        res
    }

    /// The id of the first rule matching `key`.
    pub fn first_match(&self, key: &str) -> Option<&str> {
        let rule = self.index.first_match(key)?;
        self.rule_ids.get(rule as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.rule_ids.len()
    }
}

impl ContractTable {
    /// Contracts keep their order; the first matching one names the deny.
    pub fn new(contracts: Vec<Contract>) -> Self {
        let mut index = PatternIndex::new();
        for (contract_idx, contract) in contracts.iter().enumerate() {
            let rule = u32::try_from(contract_idx).unwrap_or(u32::MAX);
            for pattern in &contract.patterns {
                index.insert(pattern, rule);
            }
        }
        Self { contracts, index }
    }

    pub fn contracts(&self) -> &[Contract] {
        &self.contracts
    }

    /// Checks the contracts matching `key` for `subject` at `now`. A plain contract in force
    /// denies; a quota contract in force denies when its window is used up, and otherwise adds a
    /// hit to `pending`, counted only if the whole decision allows.
    pub fn check(
        &self,
        subject: &Subject,
        key: &str,
        now: Timestamp,
        quotas: &dyn QuotaCounters,
        deny_reason: &'static str,
        pending: &mut Vec<PendingHit>,
    ) -> Option<TableDeny> {
        for rule in self.index.matches(key) {
            let Some(contract) = self.contracts.get(rule as usize) else {
                continue;
            };
            if !contract.subject.matches(subject) || !contract.is_active(now) {
                continue;
            }
            let Some(quota) = contract.quota else {
                return Some(TableDeny {
                    rule: contract.id.clone(),
                    reason: deny_reason,
                });
            };
            let quota_key = QuotaKey {
                contract: contract.id.clone(),
                window_start: Contract::quota_window_start(quota, now),
            };
            match quotas.used(&quota_key) {
                Err(_) => {
                    return Some(TableDeny {
                        rule: contract.id.clone(),
                        reason: reason::POLICY_ERROR,
                    });
                }
                Ok(used) if used >= quota.limit => {
                    return Some(TableDeny {
                        rule: contract.id.clone(),
                        reason: reason::CONTRACT_QUOTA_EXHAUSTED,
                    });
                }
                Ok(_) => pending.push(PendingHit {
                    key: quota_key,
                    limit: quota.limit,
                }),
            }
        }
        None
    }
}
