//! Verification in the fixed order of DESIGN.md, and the verified capsule it yields.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use portcullis_core::GatePattern;

use crate::body::{
    self, CapsuleBody, ContractBody, ContractSubject, MAX_HOPS, Quota, Scope, VERSION, is_key_id,
};
use crate::json;
use crate::limits::CapsuleLimits;
use crate::reason::VerifyError;
use crate::token::{self, RawToken};
use crate::trust::{Issuer, SignatureFailure, TrustStore};

/// Verifies a token as received, in this order, stopping at the first refusal:
/// size; decoding; strict parse of P; trust-store lookup of `kid`; issuer signature; header
/// fields; time; hops; content.
///
/// `now` comes from the caller's clock. Nothing here reads a clock, a file or the network.
pub fn verify(
    token: &[u8],
    trust: &TrustStore,
    limits: &CapsuleLimits,
    now: Timestamp,
) -> Result<VerifiedCapsule, VerifyError> {
    // 1-2. size, decoding
    let raw = token::decode(token)?;
    // 3. strict parse of P
    let body = body::body_from_value(json::parse_canonical(&raw.body)?)?;
    // 4. trust-store lookup: the algorithm comes from here, never from the capsule.
    let issuer = trust.issuer(&body.kid).ok_or(VerifyError::UnknownKid)?;
    if issuer.revoked {
        return Err(VerifyError::RevokedKid);
    }
    // 5. signature over the exact received bytes of P
    issuer
        .key
        .verify(&token::capsule_message(&raw.body), &raw.sig)
        .map_err(|failure| match failure {
            SignatureFailure::HighS => VerifyError::HighS,
            SignatureFailure::Invalid => VerifyError::BadSignature,
        })?;
    // 6. header fields
    check_header(&body, issuer)?;
    // 7. time
    let expires_at = check_time(&body, limits, now)?;
    // 8. hops
    let hash = token::body_hash(&raw.body);
    let hops = check_hops(&raw, &body, &hash, trust)?;
    // 9. content
    let denies = body::check_patterns(&body.denies, &issuer.patterns)?;
    let contracts = adopt_contracts(&body, expires_at, &issuer.patterns)?;

    let token = String::from_utf8(token.to_vec()).map_err(|_| VerifyError::BadEncoding)?;
    let last_sig = raw.hops.last().map_or(raw.sig, |hop| hop.sig);
    Ok(VerifiedCapsule {
        token,
        body,
        body_bytes: raw.body,
        last_sig,
        hash,
        hops,
        expires_at,
        denies,
        contracts,
    })
}

/// A capsule that passed every check. Holds the exact token, so relaying appends to the received
/// bytes and never re-serializes them. Its `Debug` names the capsule but never prints the token.
#[derive(Clone)]
pub struct VerifiedCapsule {
    token: String,
    body: CapsuleBody,
    body_bytes: Vec<u8>,
    last_sig: [u8; 64],
    hash: [u8; 32],
    hops: Vec<HopRecord>,
    expires_at: u64,
    denies: Vec<GatePattern>,
    contracts: Vec<AdoptedContract>,
}

/// One hop record H: the `depth`-th relay, by node `node` with key `kid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopRecord {
    pub depth: u64,
    pub kid: String,
    pub node: String,
}

/// A contract ready for the policy engine's `capsule` layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdoptedContract {
    /// `<capsule id>::<contract id>`.
    pub id: String,
    pub patterns: Vec<GatePattern>,
    pub subject: ContractSubject,
    /// Seconds since the epoch, clamped to the capsule's life: never before `iat`.
    pub valid_from: u64,
    /// Seconds since the epoch, clamped to the capsule's life: never after its expiry.
    pub valid_to: u64,
    pub auto_renew_secs: Option<u64>,
    pub immutable: bool,
    pub quota: Option<Quota>,
}

/// Where an adopted capsule stands at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CapsuleStatus {
    Active,
    /// Live, but expiring within the window the caller gave.
    Expiring,
    Expired,
}

impl VerifiedCapsule {
    /// The token exactly as received.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn body(&self) -> &CapsuleBody {
        &self.body
    }

    /// The exact bytes of P.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    pub fn id(&self) -> &str {
        &self.body.id
    }

    pub fn issuer_id(&self) -> &str {
        &self.body.iss
    }

    pub fn kid(&self) -> &str {
        &self.body.kid
    }

    pub fn scope(&self) -> Scope {
        self.body.scope
    }

    pub fn issued_at(&self) -> u64 {
        self.body.iat
    }

    /// `iat + ttl`, seconds since the epoch; the capsule is live while now is before it.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// SHA-256 of P: the same for every relayed copy of one capsule. "Same id, same hash" makes a
    /// re-adoption a no-op; "same id, other hash" is a conflict.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// [`Self::hash`] as lower-case hex, for ledger events and listings.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub fn hops(&self) -> &[HopRecord] {
        &self.hops
    }

    pub fn max_hops(&self) -> u64 {
        self.body.max_hops
    }

    /// Every key this capsule's validity rests on (issuer first, then each hop's): revoking any of
    /// them must tear it down. Re-running [`verify`] after a trust-store reload does exactly that.
    pub fn signing_kids(&self) -> Vec<&str> {
        std::iter::once(self.body.kid.as_str())
            .chain(self.hops.iter().map(|hop| hop.kid.as_str()))
            .collect()
    }

    /// The denies to add to the `capsule` layer.
    pub fn denies(&self) -> &[GatePattern] {
        &self.denies
    }

    /// The contracts to add to the `capsule` layer, ids already prefixed.
    pub fn contracts(&self) -> &[AdoptedContract] {
        &self.contracts
    }

    /// True when scope is not `none` and fewer than `max_hops` relays have happened.
    pub fn can_relay(&self) -> bool {
        self.body.scope != Scope::None && (self.hops.len() as u64) < self.body.max_hops
    }

    /// Status at `now`; `Expiring` when less than `expiring_within_secs` of life is left.
    pub fn status(&self, now: Timestamp, expiring_within_secs: u64) -> CapsuleStatus {
        let now = i128::from(now.as_second());
        let expires_at = i128::from(self.expires_at);
        if now >= expires_at {
            CapsuleStatus::Expired
        } else if expires_at - now <= i128::from(expiring_within_secs) {
            CapsuleStatus::Expiring
        } else {
            CapsuleStatus::Active
        }
    }

    pub(crate) fn last_sig(&self) -> &[u8; 64] {
        &self.last_sig
    }
}

impl std::fmt::Debug for VerifiedCapsule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCapsule")
            .field("id", &self.body.id)
            .field("kid", &self.body.kid)
            .field("hash", &self.hash_hex())
            .field("hops", &self.hops.len())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn check_header(body: &CapsuleBody, issuer: &Issuer) -> Result<(), VerifyError> {
    if body.v != VERSION {
        return Err(VerifyError::UnsupportedVersion);
    }
    if body.iss != issuer.id {
        return Err(VerifyError::IssuerMismatch);
    }
    if !issuer.scopes.contains(&body.scope) {
        return Err(VerifyError::ScopeNotAllowed);
    }
    if body.max_hops > MAX_HOPS as u64 {
        return Err(VerifyError::BadMaxHops);
    }
    Ok(())
}

/// Returns `iat + ttl`.
fn check_time(
    body: &CapsuleBody,
    limits: &CapsuleLimits,
    now: Timestamp,
) -> Result<u64, VerifyError> {
    if body.ttl == 0 || body.ttl > limits.max_ttl_secs {
        return Err(VerifyError::BadTtl);
    }
    // Both are at most 2^53 - 1 (parse step), so the sum cannot overflow.
    let expires_at = body.iat.saturating_add(body.ttl);
    let now = i128::from(now.as_second());
    let iat = i128::from(body.iat);
    if iat > now + i128::from(limits.skew_secs) {
        return Err(VerifyError::FutureIat);
    }
    if now >= i128::from(expires_at) {
        return Err(VerifyError::Expired);
    }
    if now - iat > i128::from(limits.max_age_secs) {
        return Err(VerifyError::TooOld);
    }
    Ok(expires_at)
}

fn check_hops(
    raw: &RawToken,
    body: &CapsuleBody,
    hash: &[u8; 32],
    trust: &TrustStore,
) -> Result<Vec<HopRecord>, VerifyError> {
    if raw.hops.len() as u64 > body.max_hops {
        return Err(VerifyError::TooManyHops);
    }
    let mut res = Vec::with_capacity(raw.hops.len());
    let mut seen_nodes = BTreeSet::new();
    let mut prev_sig = &raw.sig;
    for (hop_idx, hop) in raw.hops.iter().enumerate() {
        let record = parse_hop_record(&hop.record)?;
        if record.depth != hop_idx as u64 + 1 {
            return Err(VerifyError::HopOutOfOrder);
        }
        let node = trust.node(&record.kid).ok_or(VerifyError::UnknownNodeKid)?;
        if node.revoked {
            return Err(VerifyError::RevokedNodeKid);
        }
        if node.id != record.node {
            return Err(VerifyError::HopNodeMismatch);
        }
        if !seen_nodes.insert(record.node.clone()) {
            return Err(VerifyError::DuplicateNode);
        }
        // INVARIANT (hop-chain): each hop signs the previous signature, so hops cannot be
        // reordered, dropped from the middle or moved onto another capsule.
        node.key
            .verify(&token::hop_message(hash, &hop.record, prev_sig), &hop.sig)
            .map_err(|failure| match failure {
                SignatureFailure::HighS => VerifyError::HighS,
                SignatureFailure::Invalid => VerifyError::BadHopSignature,
            })?;
        prev_sig = &hop.sig;
        res.push(record);
    }
    Ok(res)
}

/// A hop record must be canonical JSON of exactly `{depth, kid, node}`.
pub(crate) fn parse_hop_record(bytes: &[u8]) -> Result<HopRecord, VerifyError> {
    let value = json::parse_canonical(bytes)?;
    let record: HopRecord = serde_json::from_value(value).map_err(|_| VerifyError::BadHop)?;
    if record.depth == 0 || !is_key_id(&record.kid) || !is_key_id(&record.node) {
        return Err(VerifyError::BadHop);
    }
    Ok(record)
}

pub(crate) fn adopt_contracts(
    body: &CapsuleBody,
    expires_at: u64,
    allowed: &[GatePattern],
) -> Result<Vec<AdoptedContract>, VerifyError> {
    let mut seen_ids = BTreeSet::new();
    body.contracts
        .iter()
        .map(|contract| {
            if !seen_ids.insert(contract.id.as_str()) {
                return Err(VerifyError::DuplicateContract);
            }
            adopt_contract(body, contract, expires_at, allowed)
        })
        .collect()
}

fn adopt_contract(
    body: &CapsuleBody,
    contract: &ContractBody,
    expires_at: u64,
    allowed: &[GatePattern],
) -> Result<AdoptedContract, VerifyError> {
    if contract.patterns.is_empty() {
        return Err(VerifyError::BadContract);
    }
    let patterns = body::check_patterns(&contract.patterns, allowed)?;
    // A contract never outlives the capsule that carries it.
    let valid_from = contract.valid_from.unwrap_or(body.iat).max(body.iat);
    let valid_to = contract.valid_to.unwrap_or(expires_at).min(expires_at);
    let quota_ok = contract.quota.is_none_or(|quota| quota.window_secs > 0);
    if valid_from >= valid_to || !quota_ok || contract.auto_renew_secs == Some(0) {
        return Err(VerifyError::BadContract);
    }
    Ok(AdoptedContract {
        id: format!("{}::{}", body.id, contract.id),
        patterns,
        subject: contract.subject.clone(),
        valid_from,
        valid_to,
        auto_renew_secs: contract.auto_renew_secs,
        immutable: contract.immutable,
        quota: contract.quota,
    })
}

#[cfg(test)]
mod tests;
