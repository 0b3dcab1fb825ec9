//! Token estimates for budget reservations.
//!
//! Known OpenAI families are counted with their real tokenizer (`o200k_base` for GPT-4o, GPT-4.1,
//! GPT-5 and the o-series; `cl100k_base` for GPT-4, GPT-3.5 and the `text-embedding-*` models),
//! whose BPE tables `tiktoken-rs` compiles into the binary; each table is loaded once, on first
//! use. Any other model is approximated as `ceil(UTF-8 bytes / 3)` per text, which over-counts
//! English prose (about four characters a token) so that reservations err high.
//!
//! A chat prompt costs, like OpenAI's published recipe, 3 tokens per message plus the tokens of
//! every string in it, plus 3 for the reply's priming, plus [`IMAGE_TOKENS`] per image part;
//! tool definitions and other request fields count by the tokens of their JSON text.
//!
//! A budget reserves [`reserved_input`] of an estimate: the estimate plus 10% plus
//! [`INPUT_SLACK`] tokens. That bounds how far the provider's reported input may exceed what was
//! reserved (the estimate's error: chat formatting the recipe does not know, names, tool
//! schemas rendered otherwise).

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// Tokens added per chat message.
pub const PER_MESSAGE: u64 = 3;
/// Tokens added once per chat prompt (the reply's priming).
pub const PER_PROMPT: u64 = 3;
/// Tokens counted per image content part: OpenAI bills at most 85 + 170 x 8 tiles = 1,445
/// for one image at high detail.
pub const IMAGE_TOKENS: u64 = 1_445;
/// Tokens added to every reserved input estimate, beyond its 10%.
pub const INPUT_SLACK: u64 = 32;

/// What a budget reserves for an input `estimate`: `estimate + ceil(estimate / 10) +`
/// [`INPUT_SLACK`].
pub fn reserved_input(estimate: u64) -> u64 {
    estimate
        .saturating_add(estimate.div_ceil(10))
        .saturating_add(INPUT_SLACK)
}

/// How a model's text is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `o200k_base`.
    O200k,
    /// `cl100k_base`.
    Cl100k,
    /// `ceil(bytes / 3)`.
    Approximate,
}

impl Family {
    /// The family of `model`, from its name (a provider's model name, not an alias).
    pub fn of(model: &str) -> Family {
        if model.starts_with("text-embedding-") {
            return Family::Cl100k;
        }
        match get_tokenizer(model) {
            Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Family::O200k,
            Some(Tokenizer::Cl100kBase) => Family::Cl100k,
            _ => Family::Approximate,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Family::O200k => "o200k_base",
            Family::Cl100k => "cl100k_base",
            Family::Approximate => "approximate",
        }
    }
}

/// Counts tokens; holds the tokenizers once loaded. Share one per process.
#[derive(Default)]
pub struct TokenCounter {
    o200k: OnceLock<Option<CoreBPE>>,
    cl100k: OnceLock<Option<CoreBPE>>,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("o200k_loaded", &self.o200k.get().is_some())
            .field("cl100k_loaded", &self.cl100k.get().is_some())
            .finish()
    }
}

impl TokenCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the tables now rather than on the first request.
    pub fn preload(&self) {
        let _ = self.bpe(Family::O200k);
        let _ = self.bpe(Family::Cl100k);
    }

    fn bpe(&self, family: Family) -> Option<&CoreBPE> {
        match family {
            Family::O200k => self
                .o200k
                .get_or_init(|| tiktoken_rs::o200k_base().ok())
                .as_ref(),
            Family::Cl100k => self
                .cl100k
                .get_or_init(|| tiktoken_rs::cl100k_base().ok())
                .as_ref(),
            Family::Approximate => None,
        }
    }

    /// Tokens of `text` for `family` (approximated when the table could not be loaded).
    pub fn count(&self, family: Family, text: &str) -> u64 {
        match self.bpe(family) {
            Some(bpe) => u64::try_from(bpe.encode_ordinary(text).len()).unwrap_or(u64::MAX),
            None => approximate(text),
        }
    }

    /// Input tokens of a chat request body.
    pub fn chat_input(&self, family: Family, body: &serde_json::Map<String, Value>) -> u64 {
        let mut total = PER_PROMPT;
        for (key, value) in body {
            match (key.as_str(), value) {
                ("messages", Value::Array(messages)) => {
                    for message in messages {
                        total = total
                            .saturating_add(PER_MESSAGE)
                            .saturating_add(self.strings(family, message))
                            .saturating_add(IMAGE_TOKENS.saturating_mul(images(message)));
                    }
                }
                ("tools" | "functions" | "response_format", value) => {
                    total = total.saturating_add(self.count(family, &value.to_string()));
                }
                _ => {}
            }
        }
        total
    }

    /// Tokens of every string in `value`.
    pub fn strings(&self, family: Family, value: &Value) -> u64 {
        let mut total: u64 = 0;
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => total = total.saturating_add(self.count(family, text)),
                Value::Array(items) => stack.extend(items),
                Value::Object(object) => stack.extend(object.values()),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        total
    }
}

/// How many image parts a message's content holds.
fn images(message: &Value) -> u64 {
    let parts = message.get("content").and_then(Value::as_array);
    let n_images = parts.map_or(0, |parts| {
        parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("image_url"))
            .count()
    });
    u64::try_from(n_images).unwrap_or(u64::MAX)
}

/// `ceil(bytes / 3)`.
pub fn approximate(text: &str) -> u64 {
    u64::try_from(text.len().div_ceil(3)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn families_by_model_name() {
        assert_eq!(Family::of("gpt-4o-mini"), Family::O200k);
        assert_eq!(Family::of("gpt-4.1"), Family::O200k);
        assert_eq!(Family::of("gpt-4"), Family::Cl100k);
        assert_eq!(Family::of("text-embedding-3-small"), Family::Cl100k);
        assert_eq!(Family::of("claude-sonnet"), Family::Approximate);
    }

    #[test]
    fn real_tokenizers_count_known_texts() {
        let counter = TokenCounter::new();
        // "hello world" is two tokens in both families.
        assert_eq!(counter.count(Family::O200k, "hello world"), 2);
        assert_eq!(counter.count(Family::Cl100k, "hello world"), 2);
        assert_eq!(counter.count(Family::Approximate, "hello world"), 4);
        let body = json!({"messages": [{"role": "user", "content": "hello world"}]});
        let body = body.as_object().cloned().unwrap_or_default();
        // 3 (prompt) + 3 (message) + "user" (1) + "hello world" (2).
        assert_eq!(counter.chat_input(Family::O200k, &body), 9);
    }

    #[test]
    fn images_count_their_billed_bound_and_reservations_add_a_margin() {
        let counter = TokenCounter::new();
        let body = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
            {"type": "text", "text": "hello world"}
        ]}]});
        let body = body.as_object().cloned().unwrap_or_default();
        let without = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello world"}
        ]}]});
        let without = without.as_object().cloned().unwrap_or_default();
        let extra =
            counter.chat_input(Family::O200k, &body) - counter.chat_input(Family::O200k, &without);
        assert!(extra >= IMAGE_TOKENS, "{extra}");
        assert_eq!(reserved_input(0), INPUT_SLACK);
        assert_eq!(reserved_input(100), 100 + 10 + INPUT_SLACK);
        assert_eq!(reserved_input(101), 101 + 11 + INPUT_SLACK);
        assert_eq!(reserved_input(u64::MAX), u64::MAX);
    }
}
