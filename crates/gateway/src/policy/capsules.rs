//! Capsule adoption: verify with the trust store, feed the policy's capsule layer, persist, expire,
//! tear down, and re-verify on start-up and trust-store reload.
//!
//! INVARIANT (layer-mirrors-adopted): a capsule is in the policy's capsule layer exactly when it
//! is in [`CapsuleRuntime`]'s adopted map; both change under the same lock.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use portcullis_capsule::{
    AdoptedContract, CapsuleLimits, MAX_TOKEN_BYTES, MAX_TRUST_STORE_BYTES, TrustStore,
    VerifiedCapsule, VerifyError, token_digest, verify,
};
use portcullis_core::{Decision, ErrorCode, Event};
use portcullis_policy::{CapsuleRules, Contract, Quota, SubjectFilter};
use portcullis_store::PolicyRecordKind;

use crate::config::Config;
use crate::config::policy::resolve_path;
use crate::http::AppState;
use crate::policy::LoadIssue;

/// A live capsule with less than this much life left lists as `expiring`.
pub const EXPIRING_WITHIN_SECS: u64 = 300;
/// How often the expiry sweep runs.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The trust store in service and the adopted capsules.
#[derive(Debug)]
pub struct CapsuleRuntime {
    trust: RwLock<Option<Arc<TrustStore>>>,
    limits: CapsuleLimits,
    adopted: tokio::sync::Mutex<BTreeMap<String, VerifiedCapsule>>,
}

/// Why a capsule was not adopted.
#[derive(Debug, PartialEq, Eq)]
pub enum AdoptError {
    /// Verification refused it (stable reason code); `capsule_too_large` answers 431.
    Refused(VerifyError),
    /// No trust store is configured.
    NoTrustStore,
    /// Another capsule with this id (a different hash) is adopted.
    Conflict,
    /// The policy engine refused its rules.
    Rules,
    /// The store failed.
    Store,
}

/// Reason codes the gateway's capsule adoption emits beyond the capsule crate's own
/// ([`portcullis_capsule::REASONS`]).
pub const REASONS: &[portcullis_core::error::ReasonInfo] = &[
    portcullis_core::error::ReasonInfo {
        code: "capsule_no_trust_store",
        maps_to: ErrorCode::CapsuleInvalid,
        summary: "No trust store is configured (`capsules.trust_store`), so every capsule is refused.",
    },
    portcullis_core::error::ReasonInfo {
        code: "capsule_conflict",
        maps_to: ErrorCode::Conflict,
        summary: "A capsule with this id but another hash is already adopted.",
    },
    portcullis_core::error::ReasonInfo {
        code: "capsule_rules_refused",
        maps_to: ErrorCode::CapsuleInvalid,
        summary: "The policy engine refused the capsule's denies or contracts (limits, patterns).",
    },
];

impl AdoptError {
    pub fn reason(&self) -> &'static str {
        match self {
            AdoptError::Refused(err) => err.code(),
            AdoptError::NoTrustStore => "capsule_no_trust_store",
            AdoptError::Conflict => "capsule_conflict",
            AdoptError::Rules => "capsule_rules_refused",
            AdoptError::Store => "store_unavailable",
        }
    }

    pub fn error_code(&self) -> ErrorCode {
        match self {
            AdoptError::Refused(err) => err.error_code(),
            AdoptError::NoTrustStore | AdoptError::Rules => ErrorCode::CapsuleInvalid,
            AdoptError::Conflict => ErrorCode::Conflict,
            AdoptError::Store => ErrorCode::StoreUnavailable,
        }
    }
}

/// What an adoption did.
#[derive(Debug, PartialEq, Eq)]
pub enum Adopted {
    New,
    /// Same id, same hash: nothing changed.
    Unchanged,
}

/// Reads the trust store named in `[capsules]`; `None` when none is configured.
pub fn read_trust_store(config: &Config) -> Result<Option<TrustStore>, LoadIssue> {
    let Some(listed) = &config.capsules.trust_store else {
        return Ok(None);
    };
    let file = listed.display().to_string();
    let issue = |message: String| LoadIssue {
        file: file.clone(),
        message,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(resolve_path(config, listed))
        .and_then(|f| {
            f.take(MAX_TRUST_STORE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|err| issue(format!("cannot read the trust store: {err}")))?;
    TrustStore::from_json(&bytes)
        .map(Some)
        .map_err(|err| issue(err.to_string()))
}

impl CapsuleRuntime {
    pub fn new(trust: Option<TrustStore>, limits: CapsuleLimits) -> Self {
        Self {
            trust: RwLock::new(trust.map(Arc::new)),
            limits,
            adopted: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The trust store in service, if one is configured.
    pub fn trust_store(&self) -> Option<Arc<TrustStore>> {
        self.trust
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn verify(&self, token: &[u8], now: Timestamp) -> Result<VerifiedCapsule, AdoptError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AdoptError::Refused(VerifyError::TooLarge));
        }
        let trust = self.trust_store().ok_or(AdoptError::NoTrustStore)?;
        verify(token, &trust, &self.limits, now).map_err(AdoptError::Refused)
    }

    /// Verified capsules as listed by `GET /admin/capsules`.
    pub async fn list(&self, now: Timestamp) -> Vec<serde_json::Value> {
        self.adopted
            .lock()
            .await
            .values()
            .map(|capsule| entry(capsule, now))
            .collect()
    }
}

/// One capsule as the admin API lists it.
pub fn entry(capsule: &VerifiedCapsule, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "id": capsule.id(),
        "hash": capsule.hash_hex(),
        "iss": capsule.issuer_id(),
        "kid": capsule.kid(),
        "scope": capsule.scope().as_str(),
        "hops": capsule.hops().len(),
        "issued_at": capsule.issued_at(),
        "expires_at": capsule.expires_at(),
        "status": capsule.status(now, EXPIRING_WITHIN_SECS),
        "denies": capsule.denies().len(),
        "contracts": capsule.contracts().len(),
    })
}

/// The rules one capsule adds to the capsule layer. The layer prefixes ids with the capsule id
/// itself, so contract ids go in unprefixed.
fn rules_of(capsule: &VerifiedCapsule) -> CapsuleRules {
    let prefix = format!("{}::", capsule.id());
    let time = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
    };
    let contract = |adopted: &AdoptedContract| Contract {
        id: adopted
            .id
            .strip_prefix(&prefix)
            .unwrap_or(&adopted.id)
            .to_owned(),
        patterns: adopted.patterns.clone(),
        subject: SubjectFilter {
            agents: adopted.subject.agents.clone(),
            roles: adopted.subject.roles.clone(),
            nodes: adopted.subject.nodes.clone(),
            tags: adopted.subject.tags.clone(),
        },
        valid_from: time(adopted.valid_from),
        valid_to: time(adopted.valid_to),
        auto_renew_secs: adopted.auto_renew_secs,
        immutable: adopted.immutable,
        quota: adopted.quota.map(|quota| Quota {
            limit: quota.limit,
            window_secs: quota.window_secs,
        }),
    };
    CapsuleRules {
        denies: capsule.denies().to_vec(),
        contracts: capsule.contracts().iter().map(contract).collect(),
    }
}

fn capsule_event(kind: &str, decision: Decision, reason: &str, capsule: &VerifiedCapsule) -> Event {
    Event::new(kind, decision, reason).data(serde_json::json!({
        "capsule": capsule.id(),
        "hash": capsule.hash_hex(),
        "iss": capsule.issuer_id(),
        "kid": capsule.kid(),
        "expires_at": capsule.expires_at(),
    }))
}

/// `POST /admin/capsules`: verifies `token` and adopts it. Every outcome is a ledger event; a new
/// adoption's event is durable before the capsule is acted on (see [`adopt_inner`]).
pub async fn adopt(
    state: &AppState,
    token: &[u8],
    subject: &str,
) -> Result<(Adopted, VerifiedCapsule), AdoptError> {
    let now = state.clock.now();
    let outcome = adopt_inner(state, token, now, subject).await;
    let event = match &outcome {
        // Recorded durably inside, before the capsule took effect.
        Ok((Adopted::New, _)) => None,
        Ok((Adopted::Unchanged, capsule)) => Some(capsule_event(
            "capsule.adopted",
            Decision::Info,
            "unchanged",
            capsule,
        )),
        Err((err, Some(capsule))) => Some(capsule_event(
            "capsule.refused",
            Decision::Deny,
            err.reason(),
            capsule,
        )),
        Err((err, None)) => Some(
            Event::new("capsule.refused", Decision::Deny, err.reason())
                .data(serde_json::json!({ "token_sha256": hex::encode(token_digest(token)) })),
        ),
    };
    if let Some(event) = event {
        // Nothing changed for these: a lost record lets nothing happen.
        state
            .events
            .emit_best_effort(event.subject(subject.to_owned()))
            .await;
    }
    outcome.map_err(|(err, _)| err)
}

type Outcome = Result<(Adopted, VerifiedCapsule), (AdoptError, Option<VerifiedCapsule>)>;

/// Verifies and adopts one capsule.
///
/// INVARIANT (durable-before-adopt): the stored token and the `capsule.adopted` event are durable
/// before the capsule's rules enter the policy, before the admin API answers 201 and before any
/// relay; when either write fails the capsule is not adopted (`store_unavailable`) and its stored
/// token is removed again.
async fn adopt_inner(state: &AppState, token: &[u8], now: Timestamp, subject: &str) -> Outcome {
    let runtime = &state.policy.capsules;
    let capsule = runtime.verify(token, now).map_err(|err| (err, None))?;
    let mut adopted = runtime.adopted.lock().await;
    if let Some(existing) = adopted.get(capsule.id()) {
        return if existing.hash() == capsule.hash() {
            Ok((Adopted::Unchanged, capsule))
        } else {
            Err((AdoptError::Conflict, Some(capsule)))
        };
    }
    let rules = rules_of(&capsule);
    let layer = &state.policy.state().capsules;
    if let Err(errors) = layer.check(capsule.id(), &rules) {
        tracing::info!(
            capsule = capsule.id(),
            errors = errors.len(),
            "capsule rules refused"
        );
        return Err((AdoptError::Rules, Some(capsule)));
    }
    if let Err(err) = state
        .store
        .put_policy_record(PolicyRecordKind::Capsule, capsule.id(), capsule.token())
        .await
    {
        tracing::error!(error = %err, "cannot persist an adopted capsule");
        return Err((AdoptError::Store, Some(capsule)));
    }
    let event = capsule_event("capsule.adopted", Decision::Info, "ok", &capsule)
        .subject(subject.to_owned());
    if state.events.emit(event).await.is_err() {
        forget_record(state, capsule.id()).await;
        return Err((AdoptError::Store, Some(capsule)));
    }
    if let Err(errors) = layer.adopt(capsule.id(), rules) {
        // Checked above under the same lock; only a broken invariant lands here.
        tracing::error!(
            capsule = capsule.id(),
            errors = errors.len(),
            "capsule rules refused after check"
        );
        forget_record(state, capsule.id()).await;
        return Err((AdoptError::Rules, Some(capsule)));
    }
    adopted.insert(capsule.id().to_owned(), capsule.clone());
    Ok((Adopted::New, capsule))
}

/// Removes a stored capsule token whose adoption did not complete.
async fn forget_record(state: &AppState, id: &str) {
    if let Err(err) = state
        .store
        .delete_policy_record(PolicyRecordKind::Capsule, id)
        .await
    {
        // At the next start-up the token is re-verified; it can only add denies.
        tracing::error!(error = %err, capsule = id, "cannot remove a capsule whose adoption failed");
    }
}

/// Why `DELETE /admin/capsules/{id}` refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteError {
    /// No capsule with this id is adopted (404).
    NotFound,
    /// The capsule carries an active immutable contract (409); it goes when it expires.
    Immutable,
    /// The teardown could not be recorded; nothing changed (503 `store_unavailable`).
    Store,
}

/// `DELETE /admin/capsules/{id}`: tears an adopted capsule down, unless one of its contracts is
/// immutable and active at `now`.
///
/// INVARIANT (durable-before-teardown): the stored token is deleted and the `capsule.teardown`
/// event is durable before the capsule's rules leave the policy; on a store error nothing
/// changes.
pub async fn delete(state: &AppState, id: &str, subject: &str) -> Result<(), DeleteError> {
    let now = state.clock.now();
    let mut adopted = state.policy.capsules.adopted.lock().await;
    let Some(capsule) = adopted.get(id) else {
        return Err(DeleteError::NotFound);
    };
    let layer = &state.policy.state().capsules;
    let held: Vec<String> = layer
        .contracts_of(id)
        .into_iter()
        .filter(|contract| portcullis_policy::can_delete(contract, now).is_err())
        .map(|contract| contract.id)
        .collect();
    if !held.is_empty() {
        tracing::info!(capsule = id, contracts = ?held, "capsule delete refused: active immutable contract");
        return Err(DeleteError::Immutable);
    }
    if let Err(err) = state
        .store
        .delete_policy_record(PolicyRecordKind::Capsule, id)
        .await
    {
        tracing::error!(error = %err, capsule = id, "cannot delete a capsule");
        return Err(DeleteError::Store);
    }
    let event = capsule_event(
        "capsule.teardown",
        Decision::Deny,
        "admin_teardown",
        capsule,
    )
    .subject(subject.to_owned());
    if state.events.emit(event).await.is_err() {
        if let Err(err) = state
            .store
            .put_policy_record(PolicyRecordKind::Capsule, id, capsule.token())
            .await
        {
            tracing::error!(error = %err, capsule = id, "cannot restore a capsule whose teardown failed");
        }
        return Err(DeleteError::Store);
    }
    layer.remove(id);
    adopted.remove(id);
    Ok(())
}

/// Removes capsule `id` from the layer, the store and the adopted map, with a ledger event
/// `kind` (`capsule.expired` or `capsule.teardown`): for capsules whose life is over (expiry,
/// a trust store that no longer verifies them). `false` when it was not adopted.
pub async fn tear_down(state: &AppState, id: &str, kind: &str, reason: &str) -> bool {
    let mut adopted = state.policy.capsules.adopted.lock().await;
    let Some(capsule) = adopted.remove(id) else {
        return false;
    };
    state.policy.state().capsules.remove(id);
    drop(adopted);
    if let Err(err) = state
        .store
        .delete_policy_record(PolicyRecordKind::Capsule, id)
        .await
    {
        // It is out of the layer; at the next start-up re-verification drops it again.
        tracing::error!(error = %err, capsule = id, "cannot delete a torn-down capsule");
    }
    let decision = if kind == "capsule.expired" {
        Decision::Info
    } else {
        Decision::Deny
    };
    state
        .events
        .emit_best_effort(capsule_event(kind, decision, reason, &capsule))
        .await;
    true
}

/// The periodic expiry check: tears down every adopted capsule whose life is over, as
/// `capsule.expired`. Cheap (no signature checks). Returns how many went.
pub async fn sweep(state: &AppState) -> usize {
    let now = state.clock.now();
    let expired: Vec<(String, &'static str)> = {
        let adopted = state.policy.capsules.adopted.lock().await;
        adopted
            .values()
            .filter(|capsule| capsule.status(now, 0) == portcullis_capsule::CapsuleStatus::Expired)
            .map(|capsule| (capsule.id().to_owned(), VerifyError::Expired.code()))
            .collect()
    };
    tear_down_all(state, expired).await
}

/// Re-verifies every adopted capsule at the current time with the trust store in service and
/// tears down those that fail: expired ones as `capsule.expired`, the rest as `capsule.teardown`
/// with the verification reason (a revoked or removed key, for instance).
pub async fn reverify(state: &AppState) -> usize {
    let now = state.clock.now();
    let runtime = &state.policy.capsules;
    let failing: Vec<(String, &'static str)> = {
        let adopted = runtime.adopted.lock().await;
        adopted
            .values()
            .filter_map(
                |capsule| match runtime.verify(capsule.token().as_bytes(), now) {
                    Ok(_) => None,
                    Err(err) => Some((capsule.id().to_owned(), err.reason())),
                },
            )
            .collect()
    };
    tear_down_all(state, failing).await
}

async fn tear_down_all(state: &AppState, failing: Vec<(String, &'static str)>) -> usize {
    let mut removed = 0;
    for (id, reason) in failing {
        let kind = if reason == VerifyError::Expired.code() {
            "capsule.expired"
        } else {
            "capsule.teardown"
        };
        if tear_down(state, &id, kind, reason).await {
            removed += 1;
        }
    }
    removed
}

/// Start-up: re-verifies every stored capsule and adopts those that still verify; the others
/// are deleted with a `capsule.teardown` event naming the reason.
pub async fn restore(state: &AppState) -> Result<usize, portcullis_store::StoreError> {
    let now = state.clock.now();
    let stored = state
        .store
        .list_policy_records(PolicyRecordKind::Capsule)
        .await?;
    let mut restored = 0;
    for (id, token) in stored {
        match readopt(state, token.as_bytes(), now).await {
            Ok(()) => restored += 1,
            Err(err) => {
                state
                    .store
                    .delete_policy_record(PolicyRecordKind::Capsule, &id)
                    .await?;
                state
                    .events
                    .emit_best_effort(
                        Event::new("capsule.teardown", Decision::Deny, err.reason()).data(
                            serde_json::json!({
                                "capsule": id,
                                "token_sha256": hex::encode(token_digest(token.as_bytes())),
                            }),
                        ),
                    )
                    .await;
            }
        }
    }
    Ok(restored)
}

/// Adopts a stored capsule again at start-up: verified with the trust store in service, its token
/// and adoption already on record.
async fn readopt(state: &AppState, token: &[u8], now: Timestamp) -> Result<(), AdoptError> {
    let runtime = &state.policy.capsules;
    let capsule = runtime.verify(token, now)?;
    let mut adopted = runtime.adopted.lock().await;
    if adopted.contains_key(capsule.id()) {
        return Err(AdoptError::Conflict);
    }
    state
        .policy
        .state()
        .capsules
        .adopt(capsule.id(), rules_of(&capsule))
        .map_err(|_| AdoptError::Rules)?;
    adopted.insert(capsule.id().to_owned(), capsule);
    Ok(())
}

/// `POST /admin/trust/reload` and SIGHUP: re-reads the trust store, swaps it in, then tears down
/// the capsules that no longer verify. A failure keeps the old trust store.
pub async fn reload_trust(state: &AppState) -> Result<usize, LoadIssue> {
    let fresh = crate::policy::reread_config(&state.config).map_err(|issues| {
        issues.into_iter().next().unwrap_or_else(|| LoadIssue {
            file: "config".to_owned(),
            message: String::new(),
        })
    });
    let trust = fresh.and_then(|config| read_trust_store(&config));
    match trust {
        Ok(trust) => {
            *state
                .policy
                .capsules
                .trust
                .write()
                .unwrap_or_else(|poison| poison.into_inner()) = trust.map(Arc::new);
            state
                .events
                .emit_best_effort(Event::new("trust.reloaded", Decision::Info, "ok"))
                .await;
            Ok(reverify(state).await)
        }
        Err(issue) => {
            state
                .events
                .emit_best_effort(
                    Event::new("trust.reload_failed", Decision::Deny, "config_invalid")
                        .data(serde_json::json!({ "errors": [&issue] })),
                )
                .await;
            Err(issue)
        }
    }
}

#[cfg(test)]
mod tests;
