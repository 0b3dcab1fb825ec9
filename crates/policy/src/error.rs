//! Why a policy (config, contracts, Cedar sources, capsule rules) is refused at load.

use std::collections::BTreeSet;

use crate::catalog::CatalogError;
use crate::contract::{Contract, ContractError};

/// One problem found while building a policy. [`crate::PolicyEngine::build`] reports all of them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("`policy.deny`: {0}")]
    Deny(CatalogError),
    #[error("contract `{id}`: {source}")]
    Contract { id: String, source: ContractError },
    #[error("contract id `{0}` appears more than once")]
    DuplicateContract(String),
    #[error(
        "`policy.mode.immutable` cannot be `report`: immutable denies always hold (roll out with a contract in report mode instead)"
    )]
    ImmutableReport,
    #[error("too many {what} (at most {limit})")]
    TooMany { what: &'static str, limit: usize },
    #[error("capsule id is empty, too long or not printable ASCII")]
    BadCapsuleId,
    #[error("cedar file `{0}` is listed in `policy.cedar_files` but no source was given")]
    CedarSourceMissing(String),
    #[error("cedar source `{0}` is not listed in `policy.cedar_files`")]
    CedarSourceUnlisted(String),
    #[error("cedar source `{name}` is larger than {limit} bytes")]
    CedarTooLarge { name: String, limit: usize },
    #[error("cedar source `{0}`: {1}")]
    CedarParse(String, CedarDiagnostic),
    #[error("cedar source `{0}` holds a template; templates are not supported")]
    CedarTemplate(String),
    #[error("cedar policy id `{0}` appears more than once")]
    CedarDuplicateId(String),
    #[error("cedar validation (strict): {0}")]
    CedarValidation(CedarDiagnostic),
    #[error("generated cedar schema: {0}")]
    CedarSchema(CedarDiagnostic),
}

/// A diagnostic from the Cedar parser or validator, kept as its rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CedarDiagnostic {
    message: String,
}

impl CedarDiagnostic {
    pub(crate) fn new(error: &dyn std::fmt::Display) -> Self {
        Self {
            message: error.to_string(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for CedarDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Validates every contract and refuses duplicate ids.
pub(crate) fn check_contracts(contracts: &[Contract]) -> Vec<PolicyLoadError> {
    let mut res = Vec::new();
    let mut seen = BTreeSet::new();
    for contract in contracts {
        res.extend(
            contract
                .validate()
                .into_iter()
                .map(|source| PolicyLoadError::Contract {
                    id: contract.id.clone(),
                    source,
                }),
        );
        if !seen.insert(contract.id.as_str()) {
            res.push(PolicyLoadError::DuplicateContract(contract.id.clone()));
        }
    }
    res
}
