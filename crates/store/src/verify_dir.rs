//! Offline verification of a data dir's ledger, for `portcullis ledger verify`.

use std::path::Path;

use portcullis_ledger::VerifyReport;

use crate::error::VerifyDataDirError;

/// Offline verification for `portcullis ledger verify --data-dir DIR` (opens the DB read-only, does
/// not create it).
pub fn verify_data_dir(data_dir: &Path) -> Result<VerifyReport, VerifyDataDirError> {
    Err(VerifyDataDirError::Missing {
        path: data_dir.join("portcullis.db"),
    })
}
