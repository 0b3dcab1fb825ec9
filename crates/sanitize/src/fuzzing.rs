//! The property shared by the `pii_scan` fuzz target and its corpus replay test.

use std::sync::OnceLock;

use crate::config::{PiiConfig, Strategy, StrategyTable};
use crate::restore::Restorer;
use crate::vault::{Scope, Vault};
use crate::{SanitizeError, Sanitizer};

/// The fixed key the fuzz target uses.
pub const FUZZ_KEY: &[u8] = b"portcullis-fuzz-key-0123456789ab";

/// Scans `data` (lossy UTF-8) and applies `redact`, `hash` and `synthetic`; panics when a span
/// is malformed, when a detected value survives in an output, or when restore is not exact.
pub fn check_apply(data: &[u8]) {
    static SANITIZERS: OnceLock<Vec<(Strategy, Sanitizer)>> = OnceLock::new();
    let sanitizers = SANITIZERS.get_or_init(|| {
        [Strategy::Redact, Strategy::Hash, Strategy::Synthetic]
            .into_iter()
            .filter_map(|strategy| {
                let config = PiiConfig {
                    strategies: StrategyTable::uniform(strategy),
                    ..PiiConfig::default()
                };
                Sanitizer::new(config, FUZZ_KEY).ok().map(|s| (strategy, s))
            })
            .collect()
    });
    assert_eq!(sanitizers.len(), 3, "the fuzz configurations must build");
    let text = String::from_utf8_lossy(data);
    for (strategy, sanitizer) in sanitizers {
        check_one(sanitizer, &text, *strategy);
    }
}

#[expect(
    clippy::panic,
    reason = "the fuzz property reports a violation by panicking"
)]
fn check_one(sanitizer: &Sanitizer, text: &str, strategy: Strategy) {
    let spans = match sanitizer.scan(text) {
        Ok(spans) => spans,
        Err(SanitizeError::TooLarge { .. } | SanitizeError::TooManyFindings { .. }) => return,
        Err(err) => panic!("scan failed: {err}"),
    };
    let mut previous_end = 0;
    for span in &spans {
        assert!(
            span.start >= previous_end && span.start < span.end,
            "bad span order"
        );
        assert!(
            text.get(span.start..span.end).is_some(),
            "span off a char boundary"
        );
        previous_end = span.end;
    }
    let mut vault = Vault::new();
    let sanitized = match sanitizer.apply(text, &Scope::new("fuzz"), &mut vault) {
        Ok(sanitized) => sanitized,
        Err(SanitizeError::VaultFull { .. }) => return,
        Err(err) => panic!("apply failed: {err}"),
    };
    for span in &spans {
        if let Some(original) = text.get(span.start..span.end) {
            assert!(
                !sanitized.text.contains(original),
                "a detected {} survived {strategy:?}",
                span.entity
            );
        }
    }
    // A value whose synthetic form collided falls back to a label and cannot be restored.
    let fell_back =
        sanitized.text.matches("[REDACTED_").count() != text.matches("[REDACTED_").count();
    if strategy == Strategy::Synthetic && !fell_back {
        let mut restorer = Restorer::new(&vault);
        let mut restored = String::new();
        let mut rest = sanitized.text.as_str();
        while !rest.is_empty() {
            let mut cut = rest.len().min(7);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            let (chunk, tail) = rest.split_at(cut);
            restored.push_str(&restorer.push(chunk));
            rest = tail;
        }
        restored.push_str(&restorer.finish());
        assert_eq!(restored, text, "restore is not exact");
    }
}
