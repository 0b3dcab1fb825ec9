//! The engine: build once from config, contracts and Cedar sources; decide many times.

use std::sync::Arc;

use jiff::Timestamp;
use portcullis_core::{GatePattern, Request};

use crate::capsule::CapsuleLayer;
use crate::catalog;
use crate::cedar::{CedarLayer, CedarOutcome};
use crate::config::{LayerModes, Mode, PolicyConfig};
use crate::contract::Contract;
use crate::error::{PolicyLoadError, check_contracts};
use crate::explain::{Explanation, ReportedDeny, Verdict, layer, reason};
use crate::quota::{MemoryQuotaCounters, QuotaCounters};
use crate::rules::{ContractTable, DenyTable, PendingHit, TableDeny};

/// Most immutable denies.
pub const MAX_DENIES: usize = 100_000;
/// Most contracts.
pub const MAX_CONTRACTS: usize = 100_000;

/// A compiled, validated policy. Immutable once built: the gateway holds it in an
/// `Arc<PolicyEngine>` and swaps the `Arc` on reload, so in-flight decisions finish on the engine
/// they started with.
#[derive(Debug)]
pub struct PolicyEngine {
    modes: LayerModes,
    immutable: DenyTable,
    contracts: ContractTable,
    cedar: CedarLayer,
}

/// The run-time state decisions read and write, owned by the caller and kept across reloads:
/// the capsule layer and the quota counters.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub capsules: Arc<CapsuleLayer>,
    pub quotas: Arc<dyn QuotaCounters>,
}

impl PolicyState {
    /// No capsules, in-memory quota counters.
    pub fn in_memory() -> Self {
        Self {
            capsules: Arc::new(CapsuleLayer::new()),
            quotas: Arc::new(MemoryQuotaCounters::new()),
        }
    }
}

impl PolicyEngine {
    /// Parses and validates everything: the deny patterns and every contract against the catalog,
    /// the Cedar sources in strict mode against the generated schema. `cedar_sources` are
    /// `(name, text)` pairs, one per `config.cedar_files` entry, named as listed there. Returns
    /// every error found; on error nothing is built.
    pub fn build(
        config: &PolicyConfig,
        contracts: &[Contract],
        cedar_sources: &[(String, String)],
    ) -> Result<Self, Vec<PolicyLoadError>> {
        let mut errors = Vec::new();
        // INVARIANT (immutable-enforced): an immutable deny always holds; report mode would let
        // it through, so it is refused at every load (start, reload, `config check`).
        if config.mode.immutable == Mode::Report {
            errors.push(PolicyLoadError::ImmutableReport);
        }
        if config.deny.len() > MAX_DENIES {
            errors.push(PolicyLoadError::TooMany {
                what: "immutable denies",
                limit: MAX_DENIES,
            });
        }
        errors.extend(
            config
                .deny
                .iter()
                .filter_map(|pattern| catalog::check_pattern(pattern).err())
                .map(PolicyLoadError::Deny),
        );
        if contracts.len() > MAX_CONTRACTS {
            errors.push(PolicyLoadError::TooMany {
                what: "contracts",
                limit: MAX_CONTRACTS,
            });
        }
        errors.extend(check_contracts(contracts));
        let listed: Vec<String> = config
            .cedar_files
            .iter()
            .map(|path| path.to_string_lossy().into_owned())
            .collect();
        for name in &listed {
            if !cedar_sources.iter().any(|(source, _)| source == name) {
                errors.push(PolicyLoadError::CedarSourceMissing(name.clone()));
            }
        }
        for (source, _) in cedar_sources {
            if !listed.contains(source) {
                errors.push(PolicyLoadError::CedarSourceUnlisted(source.clone()));
            }
        }
        let cedar = CedarLayer::compile(cedar_sources);
        match cedar {
            Err(cedar_errors) => {
                errors.extend(cedar_errors);
                Err(errors)
            }
            Ok(_) if !errors.is_empty() => Err(errors),
            Ok(cedar) => Ok(Self {
                modes: config.mode,
                // INVARIANT (config-order): rule ids are the patterns; the first listed wins.
                immutable: DenyTable::new(
                    config
                        .deny
                        .iter()
                        .map(|pattern| (pattern.as_str().to_owned(), pattern.clone())),
                ),
                contracts: ContractTable::new(contracts.to_vec()),
                cedar,
            }),
        }
    }

    /// Decides `request` at `now`. `allow` is the agent's allowlist (its `allow` patterns).
    /// Layers in order, first enforced deny wins: immutable, contract, capsule, allowlist, cedar,
    /// default. An allowlist match or a Cedar `permit` admits, unless a Cedar `forbid` or an
    /// evaluation error denies. Quota hits are counted only when the decision allows.
    pub fn decide(
        &self,
        request: &Request,
        allow: &[GatePattern],
        now: Timestamp,
        state: &PolicyState,
    ) -> Explanation {
        match self.run_layers(request, allow, now, state) {
            Ok(explanation) | Err(explanation) => explanation,
        }
    }

    /// The layers; `Err` is an enforced deny that ended the run early.
    fn run_layers(
        &self,
        request: &Request,
        allow: &[GatePattern],
        now: Timestamp,
        state: &PolicyState,
    ) -> Result<Explanation, Explanation> {
        let key = request.action.as_str();
        let Some(entry) = catalog::resolve(key) else {
            return Err(deny(layer::DEFAULT, None, reason::UNKNOWN_GATE_KEY, None));
        };
        let mut run = Run {
            modes: self.modes,
            reported: None,
        };
        let quotas = state.quotas.as_ref();
        let mut pending_contract = Vec::new();
        let mut pending_capsule = Vec::new();

        if let Some(rule) = self.immutable.first_match(key) {
            run.deny(
                layer::IMMUTABLE,
                Some(rule.to_owned()),
                reason::IMMUTABLE_DENIED,
            )?;
        }
        let subject = &request.subject;
        let contract_deny = self.contracts.check(
            subject,
            key,
            now,
            quotas,
            reason::CONTRACT_DENIED,
            &mut pending_contract,
        );
        if let Some(TableDeny { rule, reason }) = contract_deny {
            run.deny(layer::CONTRACT, Some(rule), reason)?;
        }
        let capsules = state.capsules.snapshot();
        if let Some(rule) = capsules.denies.first_match(key) {
            run.deny(
                layer::CAPSULE,
                Some(rule.to_owned()),
                reason::CAPSULE_DENIED,
            )?;
        }
        let capsule_deny = capsules.contracts.check(
            subject,
            key,
            now,
            quotas,
            reason::CAPSULE_DENIED,
            &mut pending_capsule,
        );
        if let Some(TableDeny { rule, reason }) = capsule_deny {
            run.deny(layer::CAPSULE, Some(rule), reason)?;
        }

        let allowed_by = allow.iter().find(|pattern| pattern.matches_str(key));
        let mut permitted_by = None;
        match self.cedar.evaluate(request, entry, now) {
            CedarOutcome::NoPolicies | CedarOutcome::NoDecision => {}
            CedarOutcome::Permit(policy_id) => permitted_by = Some(policy_id),
            CedarOutcome::Forbid(policy_id) => {
                run.deny(layer::CEDAR, Some(policy_id), reason::CEDAR_FORBIDDEN)?;
            }
            CedarOutcome::Error(policy_id) => {
                run.deny(layer::CEDAR, policy_id, reason::POLICY_ERROR)?
            }
        }

        let (allow_layer, allow_rule, allow_reason) = match (allowed_by, permitted_by) {
            (Some(pattern), _) => (
                layer::ALLOWLIST,
                Some(pattern.as_str().to_owned()),
                reason::ALLOWLIST_ALLOWED,
            ),
            (None, Some(policy_id)) => (layer::CEDAR, Some(policy_id), reason::CEDAR_PERMITTED),
            (None, None) => {
                run.deny(layer::DEFAULT, None, reason::NO_ALLOW)?;
                (layer::DEFAULT, None, reason::REPORT_ONLY)
            }
        };
        // INVARIANT (hits-on-allow): quota hits are counted only once nothing else denies.
        for (hit_layer, pending) in [
            (layer::CONTRACT, &pending_contract),
            (layer::CAPSULE, &pending_capsule),
        ] {
            commit_hits(&mut run, hit_layer, pending, quotas)?;
        }
        Ok(Explanation {
            decision: Verdict::Allow,
            layer: allow_layer,
            rule: allow_rule,
            reason: allow_reason,
            report: run.reported,
        })
    }

    /// The contracts this engine was built with (the admin API lists them).
    pub fn contracts(&self) -> &[Contract] {
        self.contracts.contracts()
    }

    pub fn modes(&self) -> LayerModes {
        self.modes
    }

    /// Counts of the compiled rules: immutable denies, contracts, Cedar policies.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.immutable.len(),
            self.contracts.contracts().len(),
            self.cedar.n_policies(),
        )
    }
}

/// One decision in progress: which denies report mode let through.
struct Run {
    modes: LayerModes,
    reported: Option<ReportedDeny>,
}

impl Run {
    /// A layer denies. In enforce mode this ends the decision (`Err` carries the answer, for `?`);
    /// in report mode the first such deny is remembered and evaluation carries on.
    fn deny(
        &mut self,
        deny_layer: &'static str,
        rule: Option<String>,
        deny_reason: &'static str,
    ) -> Result<(), Explanation> {
        match self.modes.of(deny_layer) {
            Mode::Enforce => Err(deny(deny_layer, rule, deny_reason, self.reported.take())),
            Mode::Report => {
                if self.reported.is_none() {
                    self.reported = Some(ReportedDeny {
                        layer: deny_layer,
                        rule,
                        reason: deny_reason,
                    });
                }
                Ok(())
            }
        }
    }
}

fn commit_hits(
    run: &mut Run,
    hit_layer: &'static str,
    pending: &[PendingHit],
    quotas: &dyn QuotaCounters,
) -> Result<(), Explanation> {
    for hit in pending {
        match quotas.try_hit(&hit.key, hit.limit) {
            Ok(true) => {}
            Ok(false) => run.deny(
                hit_layer,
                Some(hit.key.contract.clone()),
                reason::CONTRACT_QUOTA_EXHAUSTED,
            )?,
            Err(_) => run.deny(
                hit_layer,
                Some(hit.key.contract.clone()),
                reason::POLICY_ERROR,
            )?,
        }
    }
    Ok(())
}

fn deny(
    deny_layer: &'static str,
    rule: Option<String>,
    deny_reason: &'static str,
    report: Option<ReportedDeny>,
) -> Explanation {
    Explanation {
        decision: Verdict::Deny,
        layer: deny_layer,
        rule,
        reason: deny_reason,
        report,
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
