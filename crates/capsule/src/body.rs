//! The capsule body P: its typed fields, the field checks of the parse step and the content checks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use portcullis_core::GatePattern;

use crate::reason::VerifyError;

/// The only body version this crate reads.
pub const VERSION: u64 = 1;
/// Most hop records a capsule may ever allow (`max_hops` <= this).
pub const MAX_HOPS: usize = 8;
/// Longest capsule, contract, issuer, node or key id, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest subject entry (agent, role, node, tag), in bytes.
pub const MAX_SUBJECT_BYTES: usize = 128;

/// Where a node relays a capsule after adopting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Never relayed.
    None,
    /// Relayed to this node's children.
    Children,
    /// Relayed to this node's peers.
    Peers,
    /// Relayed to parent, peers and children.
    All,
}

/// How a neighbouring node relates to this one, in the config's `cluster` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Neighbor {
    Parent,
    Peer,
    Child,
}

impl Scope {
    /// Whether a capsule of this scope is relayed to a neighbour of kind `neighbor` (still only
    /// while [`crate::VerifiedCapsule::can_relay`]): `children` to children, `peers` to peers,
    /// `all` to parent, peers and children, `none` to nobody.
    pub const fn reaches(self, neighbor: Neighbor) -> bool {
        matches!(
            (self, neighbor),
            (Scope::Children, Neighbor::Child) | (Scope::Peers, Neighbor::Peer) | (Scope::All, _)
        )
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::None => "none",
            Scope::Children => "children",
            Scope::Peers => "peers",
            Scope::All => "all",
        }
    }
}

/// The signed body, field for field. Every top-level field is required except `ext`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsuleBody {
    pub v: u64,
    pub id: String,
    pub iss: String,
    pub kid: String,
    pub iat: u64,
    pub ttl: u64,
    pub max_hops: u64,
    pub scope: Scope,
    pub denies: Vec<String>,
    pub contracts: Vec<ContractBody>,
    /// Free-form extension data: carried and signed, never interpreted.
    #[serde(default)]
    pub ext: Map<String, Value>,
}

/// A contract as the body spells it; see [`crate::AdoptedContract`] for the adopted form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractBody {
    pub id: String,
    pub patterns: Vec<String>,
    #[serde(default)]
    pub subject: ContractSubject,
    /// Seconds since the epoch; absent means from `iat`.
    #[serde(default)]
    pub valid_from: Option<u64>,
    /// Seconds since the epoch; absent means until the capsule expires.
    #[serde(default)]
    pub valid_to: Option<u64>,
    #[serde(default)]
    pub auto_renew_secs: Option<u64>,
    #[serde(default)]
    pub immutable: bool,
    #[serde(default)]
    pub quota: Option<Quota>,
}

/// Who a contract applies to; empty lists match everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractSubject {
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// At most `limit` matching calls per `window_secs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub limit: u64,
    pub window_secs: u64,
}

const BODY_FIELDS: &[&str] = &[
    "v",
    "id",
    "iss",
    "kid",
    "iat",
    "ttl",
    "max_hops",
    "scope",
    "denies",
    "contracts",
    "ext",
];
const CONTRACT_FIELDS: &[&str] = &[
    "id",
    "patterns",
    "subject",
    "valid_from",
    "valid_to",
    "auto_renew_secs",
    "immutable",
    "quota",
];
const SUBJECT_FIELDS: &[&str] = &["agents", "roles", "nodes", "tags"];
const QUOTA_FIELDS: &[&str] = &["limit", "window_secs"];

/// Field names that would grant or take back rights. A capsule can only add denies and contracts,
/// so these get their own reason instead of the generic unknown-field one.
const RIGHTS_FIELDS: &[&str] = &[
    "allow",
    "allows",
    "allowlist",
    "grant",
    "grants",
    "permit",
    "permits",
    "remove",
    "removes",
    "revoke",
    "revokes",
    "delete",
    "deletes",
    "unset",
    "override",
    "overrides",
    "undeny",
];

/// The parse step's field checks: exact field sets (outside `ext`), types and bounds.
pub fn body_from_value(value: Value) -> Result<CapsuleBody, VerifyError> {
    let Value::Object(map) = &value else {
        return Err(VerifyError::BadField);
    };
    check_keys(map, BODY_FIELDS)?;
    if let Some(Value::Array(contracts)) = map.get("contracts") {
        for contract in contracts {
            let Value::Object(contract) = contract else {
                return Err(VerifyError::BadField);
            };
            check_keys(contract, CONTRACT_FIELDS)?;
            if let Some(Value::Object(subject)) = contract.get("subject") {
                check_keys(subject, SUBJECT_FIELDS)?;
            }
            if let Some(Value::Object(quota)) = contract.get("quota") {
                check_keys(quota, QUOTA_FIELDS)?;
            }
        }
    }
    let body: CapsuleBody = serde_json::from_value(value).map_err(|_| VerifyError::BadField)?;
    check_bounds(&body)?;
    Ok(body)
}

fn check_keys(map: &Map<String, Value>, known: &[&str]) -> Result<(), VerifyError> {
    for key in map.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let lower = key.to_ascii_lowercase();
        if RIGHTS_FIELDS.iter().any(|word| lower.starts_with(word)) {
            return Err(VerifyError::GrantsRights);
        }
        return Err(VerifyError::UnknownField);
    }
    Ok(())
}

fn check_bounds(body: &CapsuleBody) -> Result<(), VerifyError> {
    let ids_ok = is_id(&body.id)
        && is_key_id(&body.iss)
        && is_key_id(&body.kid)
        && body.contracts.iter().all(|contract| is_id(&contract.id));
    let subjects_ok = body.contracts.iter().all(|contract| {
        let subject = &contract.subject;
        [
            &subject.agents,
            &subject.roles,
            &subject.nodes,
            &subject.tags,
        ]
        .into_iter()
        .flatten()
        .all(|entry| is_subject_entry(entry))
    });
    if ids_ok && subjects_ok {
        Ok(())
    } else {
        Err(VerifyError::BadField)
    }
}

/// Capsule and contract ids: 1-64 of `[A-Za-z0-9._-]`. No `:`, so the adopted contract id
/// `<capsule id>::<contract id>` is unambiguous.
pub fn is_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_ID_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Issuer, node and key ids: 1-64 printable ASCII bytes without spaces.
pub fn is_key_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_ID_BYTES && text.bytes().all(|b| b.is_ascii_graphic())
}

fn is_subject_entry(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_SUBJECT_BYTES
        && text.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

/// Parses every pattern, refusing syntax errors and anything outside `allowed`.
pub fn check_patterns(
    raw: &[String],
    allowed: &[GatePattern],
) -> Result<Vec<GatePattern>, VerifyError> {
    raw.iter()
        .map(|text| {
            let pattern = GatePattern::parse(text).map_err(|_| VerifyError::BadPattern)?;
            if allowed.iter().any(|outer| pattern.is_within(outer)) {
                Ok(pattern)
            } else {
                Err(VerifyError::PatternNotAllowed)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(scope: Scope, expected: [bool; 3]) {
        let got = [Neighbor::Parent, Neighbor::Peer, Neighbor::Child].map(|n| scope.reaches(n));
        assert_eq!(got, expected, "{scope:?}");
    }

    #[test]
    fn scope_reach() {
        check(Scope::None, [false, false, false]);
        check(Scope::Children, [false, false, true]);
        check(Scope::Peers, [false, true, false]);
        check(Scope::All, [true, true, true]);
    }
}
