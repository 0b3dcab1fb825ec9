//! PII and secret detection with `redact`, `synthetic`, `hash`, `block` and `allow` strategies.
//!
//! A [`Sanitizer`] is built once from a [`PiiConfig`] and an HMAC key (compiling every pattern)
//! and shared across threads. [`Sanitizer::scan`] returns byte spans; [`Sanitizer::apply`]
//! replaces them according to the strategy per [`EntityType`], recording synthetic values in a
//! per-request [`Vault`] so that a [`Restorer`] can map them back in a streamed response.
//!
//! Pure: no I/O, no clock, no randomness beyond the caller's key. This crate must never depend
//! on tokio, the file system or any network code; the gateway passes text in and gets text out.
//!
//! Invariants:
//! - Fail closed: input over `max_input_bytes`, too many findings, a blocked type or any
//!   internal inconsistency is an error; the caller never receives unscanned text.
//! - Spans are byte offsets with exclusive ends, sorted, non-overlapping, on char boundaries.
//! - After `apply`, no detected value of a type whose strategy is not `allow` appears anywhere
//!   in the output ([`fuzzing::check_apply`] checks this for the fuzz target and its replay).
//! - Stats are counts per type; no value ever leaves this crate except inside the vault.

mod config;
mod detect;
mod entity;
pub mod fuzzing;
mod json;
pub mod redact;
mod replace;
mod restore;
mod synthetic;
mod vault;

use hmac::{Hmac, Mac};
use portcullis_core::error::{ErrorCode, ReasonInfo};
use sha2::Sha256;

pub use config::{
    ConfigError, DEFAULT_MAX_FINDINGS, DEFAULT_MAX_INPUT_BYTES, MAX_INPUT_BYTES_CEILING,
    MIN_KEY_BYTES, PatternError, PiiConfig, Strategy, StrategyTable,
};
pub use detect::{CONTEXT_FORMATS, PROVIDER_FORMATS, Span, UNPREFIXED_FORMATS};
pub use entity::{Counts, EntityType};
pub use json::{PathError, ProtocolPaths, Step};
pub use redact::Redactor;
pub use restore::{Restorer, restore};
pub use vault::{DEFAULT_VAULT_LIMIT, Scope, Vault};

/// Every reason code this crate emits, for `docs/ERROR_CODES.md`.
pub const REASONS: &[ReasonInfo] = &[
    ReasonInfo {
        code: "pii_input_too_large",
        maps_to: ErrorCode::PayloadTooLarge,
        summary: "The text is longer than `pii.max_input_bytes`; it is refused unscanned.",
    },
    ReasonInfo {
        code: "pii_too_many_findings",
        maps_to: ErrorCode::PiiBlocked,
        summary: "The text has more findings than `pii.max_findings`.",
    },
    ReasonInfo {
        code: "pii_blocked",
        maps_to: ErrorCode::PiiBlocked,
        summary: "The text contains an entity type whose strategy is `block`.",
    },
    ReasonInfo {
        code: "pii_vault_full",
        maps_to: ErrorCode::PiiBlocked,
        summary: "The request's synthetic vault reached its limit of distinct values.",
    },
    ReasonInfo {
        code: "pii_internal",
        maps_to: ErrorCode::Internal,
        summary: "The sanitizer could not prove its output clean; the text is refused.",
    },
    ReasonInfo {
        code: "pii_config_invalid",
        maps_to: ErrorCode::ConfigInvalid,
        summary: "The `[pii]` section or the sanitizer key is invalid.",
    },
];

/// The compiled detectors, strategies and key. Build once, share freely (`Send + Sync`).
pub struct Sanitizer {
    config: PiiConfig,
    detectors: detect::Detectors,
    mac: Hmac<Sha256>,
}

/// The result of [`Sanitizer::apply`]: the sanitized text and counts per type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sanitized {
    pub text: String,
    pub stats: Counts,
}

/// Why [`Sanitizer::scan`] or [`Sanitizer::apply`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanitizeError {
    #[error("input of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("input has more than {limit} findings")]
    TooManyFindings { limit: usize },
    #[error("input contains blocked data: {counts}")]
    Blocked { counts: Counts },
    #[error("the vault already holds {limit} values")]
    VaultFull { limit: usize },
    #[error("the sanitized output still contained a detected value")]
    Leak,
}

impl SanitizeError {
    /// The stable reason code (listed in [`REASONS`]).
    pub const fn reason(&self) -> &'static str {
        match self {
            SanitizeError::TooLarge { .. } => "pii_input_too_large",
            SanitizeError::TooManyFindings { .. } => "pii_too_many_findings",
            SanitizeError::Blocked { .. } => "pii_blocked",
            SanitizeError::VaultFull { .. } => "pii_vault_full",
            SanitizeError::Leak => "pii_internal",
        }
    }

    /// The registry code the gateway answers with.
    pub const fn code(&self) -> ErrorCode {
        match self {
            SanitizeError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            SanitizeError::TooManyFindings { .. }
            | SanitizeError::Blocked { .. }
            | SanitizeError::VaultFull { .. } => ErrorCode::PiiBlocked,
            SanitizeError::Leak => ErrorCode::Internal,
        }
    }
}

impl ConfigError {
    /// The stable reason code (listed in [`REASONS`]).
    pub const fn reason(&self) -> &'static str {
        "pii_config_invalid"
    }
}

impl std::fmt::Debug for Sanitizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sanitizer")
            .field("config", &self.config)
            .field("key", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl Sanitizer {
    /// Validates `config`, compiles the detectors and keys the HMAC with `key` (at least
    /// [`MIN_KEY_BYTES`] bytes; the gateway loads it from its secrets).
    pub fn new(config: PiiConfig, key: &[u8]) -> Result<Sanitizer, ConfigError> {
        config.validate()?;
        if key.len() < MIN_KEY_BYTES {
            return Err(ConfigError::KeyTooShort {
                len: key.len(),
                min: MIN_KEY_BYTES,
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| ConfigError::KeyTooShort {
            len: key.len(),
            min: MIN_KEY_BYTES,
        })?;
        let detectors = detect::Detectors::new(&config.detectors)?;
        Ok(Sanitizer {
            config,
            detectors,
            mac,
        })
    }

    /// The configuration this sanitizer was built from.
    pub fn config(&self) -> &PiiConfig {
        &self.config
    }

    /// Finds every sensitive value: sorted, non-overlapping spans.
    pub fn scan(&self, text: &str) -> Result<Vec<Span>, SanitizeError> {
        let limit = self.config.max_input_bytes;
        if text.len() > limit {
            return Err(SanitizeError::TooLarge {
                len: text.len(),
                limit,
            });
        }
        let spans = self.detectors.scan(text);
        if spans.len() > self.config.max_findings {
            return Err(SanitizeError::TooManyFindings {
                limit: self.config.max_findings,
            });
        }
        Ok(spans)
    }

    /// Scans `text` and replaces each finding by its type's strategy. Synthetic values are
    /// consistent within `scope` and recorded in `vault`; nothing is recorded on error.
    pub fn apply(
        &self,
        text: &str,
        scope: &Scope,
        vault: &mut Vault,
    ) -> Result<Sanitized, SanitizeError> {
        self.apply_in(text, "", scope, vault)
    }

    /// [`Sanitizer::apply`] for a text that is one part of a larger `context` (a JSON
    /// document's strings): synthetic stand-ins are unique against the context too.
    pub(crate) fn apply_in(
        &self,
        text: &str,
        context: &str,
        scope: &Scope,
        vault: &mut Vault,
    ) -> Result<Sanitized, SanitizeError> {
        let spans = self.scan(text)?;
        replace::apply_spans(self, text, context, &spans, scope, vault)
    }

    /// `text` with every finding replaced by its type's label (`[REDACTED_EMAIL]`), whatever
    /// the strategy: for strings from callers that go into records (a model name).
    pub fn mask(&self, text: &str) -> Result<String, SanitizeError> {
        let spans = self.scan(text)?;
        let mut res = String::with_capacity(text.len());
        let mut cursor = 0;
        for span in &spans {
            res.push_str(text.get(cursor..span.start).unwrap_or_default());
            res.push_str(&replace::redact_label(span.entity));
            cursor = span.end;
        }
        res.push_str(text.get(cursor..).unwrap_or_default());
        Ok(res)
    }

    /// A keyed MAC over `parts`, each length-prefixed so that boundaries cannot shift.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sanitizer_is_send_and_sync() {
        assert_send_sync::<Sanitizer>();
    }

    #[test]
    fn reasons_cover_every_error() {
        let errors = [
            SanitizeError::TooLarge { len: 2, limit: 1 },
            SanitizeError::TooManyFindings { limit: 1 },
            SanitizeError::Blocked {
                counts: Counts::default(),
            },
            SanitizeError::VaultFull { limit: 1 },
            SanitizeError::Leak,
        ];
        for err in errors {
            let info = REASONS.iter().find(|r| r.code == err.reason()).unwrap();
            assert_eq!(info.maps_to, err.code());
        }
        assert!(
            REASONS
                .iter()
                .any(|r| r.code == ConfigError::MaxFindings.reason())
        );
    }

    #[test]
    fn mask_labels_every_finding_whatever_the_strategy() {
        let config = PiiConfig {
            strategies: StrategyTable::uniform(Strategy::Allow),
            ..PiiConfig::default()
        };
        let sanitizer = Sanitizer::new(config, &[7; 32]).unwrap();
        assert_eq!(
            sanitizer.mask("gpt-4o bob@example.com x").unwrap(),
            "gpt-4o [REDACTED_EMAIL] x"
        );
        assert_eq!(sanitizer.mask("gpt-4o-mini").unwrap(), "gpt-4o-mini");
    }

    #[test]
    fn refuses_short_keys_and_bad_config() {
        let short = Sanitizer::new(PiiConfig::default(), b"short");
        assert!(matches!(
            short,
            Err(ConfigError::KeyTooShort { len: 5, .. })
        ));
        let config = PiiConfig {
            max_findings: 0,
            ..PiiConfig::default()
        };
        assert!(Sanitizer::new(config, &[7; 32]).is_err());
    }
}
