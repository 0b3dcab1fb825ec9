//! The capsule layer: denies and contracts adopted from capsules at run time, by capsule id.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use portcullis_core::GatePattern;

use crate::catalog;
use crate::contract::Contract;
use crate::error::PolicyLoadError;
use crate::rules::{ContractTable, DenyTable};

/// Most capsules adopted at once.
pub const MAX_CAPSULES: usize = 4096;
/// Most denies plus contracts one capsule may carry.
pub const MAX_CAPSULE_RULES: usize = 1024;

/// What one capsule adds: denies and contracts (a capsule can only take rights away).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapsuleRules {
    pub denies: Vec<GatePattern>,
    pub contracts: Vec<Contract>,
}

/// The rules adopted from capsules. Shared by every engine (it lives in
/// [`crate::PolicyState`]), so a policy reload keeps it; adoption and removal index a new
/// snapshot off to the side and swap it in, so decisions never wait for indexing.
#[derive(Debug, Default)]
pub struct CapsuleLayer {
    snapshot: RwLock<Arc<CapsuleSnapshot>>,
    // INVARIANT (one-writer): held across read-modify-swap, so concurrent changes are not lost.
    writer: Mutex<()>,
}

/// One consistent, indexed view of every adopted capsule.
#[derive(Debug, Default)]
pub(crate) struct CapsuleSnapshot {
    sources: BTreeMap<String, CapsuleRules>,
    pub denies: DenyTable,
    pub contracts: ContractTable,
}

impl CapsuleLayer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adopts (or replaces) the rules of capsule `capsule_id`. Deny rule ids become
    /// `<capsule id>::<pattern>`, contract ids `<capsule id>::<contract id>`.
    pub fn adopt(&self, capsule_id: &str, rules: CapsuleRules) -> Result<(), Vec<PolicyLoadError>> {
        let errors = validate(capsule_id, &rules);
        if !errors.is_empty() {
            return Err(errors);
        }
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut sources = self.snapshot().sources.clone();
        sources.insert(capsule_id.to_owned(), rules);
        if sources.len() > MAX_CAPSULES {
            return Err(vec![PolicyLoadError::TooMany {
                what: "capsules",
                limit: MAX_CAPSULES,
            }]);
        }
        let next = Arc::new(CapsuleSnapshot::compile(sources));
        *self.write() = next;
        Ok(())
    }

    /// Drops capsule `capsule_id`'s rules (on expiry or revocation); false when it was unknown.
    pub fn remove(&self, capsule_id: &str) -> bool {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut sources = self.snapshot().sources.clone();
        if sources.remove(capsule_id).is_none() {
            return false;
        }
        let next = Arc::new(CapsuleSnapshot::compile(sources));
        *self.write() = next;
        true
    }

    /// Checks `rules` as [`Self::adopt`] would (ids, limits, patterns, contracts, room for one
    /// more capsule) without adopting them, so a caller can make the adoption durable first.
    pub fn check(
        &self,
        capsule_id: &str,
        rules: &CapsuleRules,
    ) -> Result<(), Vec<PolicyLoadError>> {
        let mut errors = validate(capsule_id, rules);
        let snapshot = self.snapshot();
        if !snapshot.sources.contains_key(capsule_id) && snapshot.sources.len() >= MAX_CAPSULES {
            errors.push(PolicyLoadError::TooMany {
                what: "capsules",
                limit: MAX_CAPSULES,
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The contracts of capsule `capsule_id` as adopted (ids unprefixed); empty when unknown.
    pub fn contracts_of(&self, capsule_id: &str) -> Vec<Contract> {
        self.snapshot()
            .sources
            .get(capsule_id)
            .map(|rules| rules.contracts.clone())
            .unwrap_or_default()
    }

    /// Every adopted contract, ids prefixed `<capsule id>::`.
    pub fn contracts(&self) -> Vec<Contract> {
        self.snapshot().contracts.contracts().to_vec()
    }

    /// The ids of every adopted capsule, sorted.
    pub fn capsule_ids(&self) -> Vec<String> {
        self.snapshot().sources.keys().cloned().collect()
    }

    pub(crate) fn snapshot(&self) -> Arc<CapsuleSnapshot> {
        Arc::clone(
            &self
                .snapshot
                .read()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Arc<CapsuleSnapshot>> {
        self.snapshot
            .write()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl CapsuleSnapshot {
    fn compile(sources: BTreeMap<String, CapsuleRules>) -> Self {
        let mut denies = Vec::new();
        let mut contracts = Vec::new();
        for (capsule_id, rules) in &sources {
            denies.extend(
                rules
                    .denies
                    .iter()
                    .map(|pattern| (format!("{capsule_id}::{pattern}"), pattern.clone())),
            );
            contracts.extend(rules.contracts.iter().map(|contract| Contract {
                id: format!("{capsule_id}::{}", contract.id),
                ..contract.clone()
            }));
        }
        Self {
            denies: DenyTable::new(denies),
            contracts: ContractTable::new(contracts),
            sources,
        }
    }
}

fn validate(capsule_id: &str, rules: &CapsuleRules) -> Vec<PolicyLoadError> {
    let mut res = Vec::new();
    if capsule_id.is_empty()
        || capsule_id.len() > crate::contract::MAX_CONTRACT_ID_LEN
        || !capsule_id.bytes().all(|b| b.is_ascii_graphic())
    {
        res.push(PolicyLoadError::BadCapsuleId);
    }
    if rules.denies.len() + rules.contracts.len() > MAX_CAPSULE_RULES {
        res.push(PolicyLoadError::TooMany {
            what: "capsule rules",
            limit: MAX_CAPSULE_RULES,
        });
    }
    res.extend(
        rules
            .denies
            .iter()
            .filter_map(|pattern| catalog::check_pattern(pattern).err())
            .map(PolicyLoadError::Deny),
    );
    res.extend(crate::error::check_contracts(&rules.contracts));
    res
}
