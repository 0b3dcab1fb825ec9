//! Responses on their way back to the agent: synthetic values restored to the agent's originals,
//! configured secrets and secrets the agent did not send redacted, whole or streamed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use portcullis_sanitize::redact::RedactError;
use portcullis_sanitize::{Redactor, Restorer, Vault, restore};
use serde_json::{Map, Value};

/// Streamed text is cut at whitespace; a run longer than this without whitespace is emitted all
/// but its last [`HOLD_TAIL`] bytes.
pub const HOLD_LIMIT: usize = 4096;
/// What stays held when a run passes [`HOLD_LIMIT`]: longer than any provider token format.
pub const HOLD_TAIL: usize = 512;
/// An open `-----BEGIN` block is held until its `-----END` line, up to this many bytes.
pub const PEM_HOLD_LIMIT: usize = 16 * 1024;
/// Context kept from emitted text for the next scan (names such as `password =`).
pub const CONTEXT_BYTES: usize = 256;
/// Most output text kept to count output tokens when the provider reports no usage.
pub const MAX_COUNTED_OUTPUT: usize = 1 << 20;

/// Token counts a provider reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    /// The `usage` object of a response or chunk (`prompt_tokens`, `completion_tokens`).
    pub fn of(value: &Value) -> Option<Usage> {
        let usage = value.get("usage")?;
        Some(Usage {
            input_tokens: usage.get("prompt_tokens")?.as_u64()?,
            output_tokens: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }
}

/// What the agent itself sent: the originals behind the vault's synthetic values. They come
/// back restored and are never redacted as foreign secrets.
pub fn own_values(vault: &Vault) -> HashSet<String> {
    vault
        .pairs()
        .map(|(_, original)| original.to_owned())
        .collect()
}

/// Restores and redacts every string and object key under `choices` of a whole chat response in
/// place; returns how many secrets were redacted.
pub fn restore_response(
    value: &mut Value,
    vault: &Vault,
    redactor: &Redactor,
    own: &HashSet<String>,
) -> Result<usize, RedactError> {
    let Some(choices) = value.get_mut("choices") else {
        return Ok(0);
    };
    let mut n_redacted = 0;
    let mut stack = vec![choices];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) => {
                let restored = restore(vault, text);
                let (clean, n) = redactor.redact_from(&restored, 0, &|v| own.contains(v))?;
                n_redacted += n;
                *text = clean;
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(object) => {
                n_redacted += clean_keys(object, vault, redactor, own)?;
                stack.extend(object.values_mut());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Ok(n_redacted)
}

/// Restores and redacts the object keys at every depth of `value`; returns how many secrets
/// were redacted.
fn clean_all_keys(
    value: &mut Value,
    vault: &Vault,
    redactor: &Redactor,
    own: &HashSet<String>,
) -> Result<usize, RedactError> {
    let mut n_redacted = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(object) => {
                n_redacted += clean_keys(object, vault, redactor, own)?;
                stack.extend(object.values_mut());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
    }
    Ok(n_redacted)
}

/// Restores and redacts the keys of `object` (a provider may put a secret in a key, too); keys
/// that become equal are told apart with `#2`, `#3`, ...
fn clean_keys(
    object: &mut Map<String, Value>,
    vault: &Vault,
    redactor: &Redactor,
    own: &HashSet<String>,
) -> Result<usize, RedactError> {
    let mut n_redacted = 0;
    let mut cleaned = Vec::with_capacity(object.len());
    for key in object.keys() {
        let restored = restore(vault, key);
        let (clean, n) = redactor.redact_from(&restored, 0, &|v| own.contains(v))?;
        n_redacted += n;
        cleaned.push(clean);
    }
    if object.keys().zip(&cleaned).all(|(key, clean)| key == clean) {
        return Ok(n_redacted);
    }
    let old = std::mem::take(object);
    for (clean, (_, item)) in cleaned.into_iter().zip(old) {
        let key = distinct_key(clean, object);
        object.insert(key, item);
    }
    Ok(n_redacted)
}

/// `key` made distinct from every key in `taken` by a `#n` suffix (n from 2).
fn distinct_key(key: String, taken: &Map<String, Value>) -> String {
    if !taken.contains_key(&key) {
        return key;
    }
    let mut n: u64 = 2;
    loop {
        let candidate = format!("{key}#{n}");
        if !taken.contains_key(&candidate) {
            return candidate;
        }
        n = n.saturating_add(1);
    }
}

/// One streamed text (a choice's content, or one tool call's arguments): restores synthetic
/// values across chunk boundaries and holds text back until it can be scanned whole.
#[derive(Debug)]
pub struct TextStream {
    restorer: Restorer,
    pending: String,
    context: String,
}

impl TextStream {
    pub fn new(restorer: Restorer) -> Self {
        Self {
            restorer,
            pending: String::new(),
            context: String::new(),
        }
    }

    /// Feeds one provider chunk; returns the text that may be sent now.
    pub fn push(
        &mut self,
        chunk: &str,
        redactor: &Redactor,
        own: &HashSet<String>,
    ) -> Result<(String, usize), RedactError> {
        let restored = self.restorer.push(chunk);
        self.pending.push_str(&restored);
        let cut = self.cut_point();
        self.emit(cut, redactor, own)
    }

    /// The stream of this text ended: everything left, restored and scanned.
    pub fn finish(
        &mut self,
        redactor: &Redactor,
        own: &HashSet<String>,
    ) -> Result<(String, usize), RedactError> {
        let restorer = std::mem::replace(&mut self.restorer, Restorer::new(&Vault::new()));
        self.pending.push_str(&restorer.finish());
        let cut = self.pending.len();
        self.emit(cut, redactor, own)
    }

    fn cut_point(&self) -> usize {
        let pending = &self.pending;
        if let Some(begin) = pending.rfind("-----BEGIN") {
            let closed = pending
                .get(begin..)
                .is_some_and(|rest| rest.contains("-----END"));
            if !closed && pending.len() < PEM_HOLD_LIMIT {
                return pending.get(..begin).map_or(0, last_whitespace_cut);
            }
        }
        let cut = last_whitespace_cut(pending);
        if cut == 0 && pending.len() > HOLD_LIMIT {
            let mut cut = pending.len() - HOLD_TAIL;
            while cut > 0 && !pending.is_char_boundary(cut) {
                cut -= 1;
            }
            return cut;
        }
        cut
    }

    fn emit(
        &mut self,
        cut: usize,
        redactor: &Redactor,
        own: &HashSet<String>,
    ) -> Result<(String, usize), RedactError> {
        if cut == 0 {
            return Ok((String::new(), 0));
        }
        let rest = self.pending.split_off(cut);
        let segment = std::mem::replace(&mut self.pending, rest);
        let from = self.context.len();
        self.context.push_str(&segment);
        let (clean, n) = redactor.redact_from(&self.context, from, &|v| own.contains(v))?;
        let mut keep_from = self.context.len().saturating_sub(CONTEXT_BYTES);
        while keep_from > 0 && !self.context.is_char_boundary(keep_from) {
            keep_from -= 1;
        }
        self.context.drain(..keep_from);
        Ok((clean, n))
    }
}

/// The byte after the last whitespace character, or 0.
fn last_whitespace_cut(text: &str) -> usize {
    text.char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(idx, c)| idx + c.len_utf8())
}

/// Why a stream was stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("a stream event is not a JSON object")]
    NotJson,
    #[error("the provider sent an error event")]
    ProviderError,
    #[error("a text could not be scanned: {0}")]
    Unscannable(#[from] RedactError),
}

impl StreamError {
    /// The reason code (listed in [`crate::REASONS`]).
    pub const fn reason(&self) -> &'static str {
        match self {
            StreamError::NotJson => "llm_upstream_invalid",
            StreamError::ProviderError => "llm_stream_failed",
            StreamError::Unscannable(_) => "llm_output_unscannable",
        }
    }
}

/// Which text of a choice a [`TextStream`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Content,
    Refusal,
    Reasoning,
    ToolArguments(u64),
}

/// Rewrites a provider's chat stream event by event.
pub struct ChatStream {
    template: Restorer,
    vault: Vault,
    redactor: Arc<Redactor>,
    own: HashSet<String>,
    texts: BTreeMap<(u64, Slot), TextStream>,
    finished: HashSet<u64>,
    last_frame: Map<String, Value>,
    usage: Option<Usage>,
    output_text: String,
    n_redacted: usize,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("texts", &self.texts.len())
            .field("usage", &self.usage)
            .field("n_redacted", &self.n_redacted)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    /// A rewriter restoring the values of `vault` and redacting through `redactor`.
    pub fn new(vault: Vault, redactor: Arc<Redactor>) -> Self {
        Self {
            template: Restorer::new(&vault),
            own: own_values(&vault),
            vault,
            redactor,
            texts: BTreeMap::new(),
            finished: HashSet::new(),
            last_frame: Map::new(),
            usage: None,
            output_text: String::new(),
            n_redacted: 0,
        }
    }

    /// The usage the provider reported, if it did.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The provider-side output text seen so far (bounded), to count output tokens when the
    /// provider reports no usage.
    pub fn output_text(&self) -> &str {
        &self.output_text
    }

    /// Secrets redacted so far.
    pub fn redacted(&self) -> usize {
        self.n_redacted
    }

    /// Rewrites one event's data (not `[DONE]`); returns the data to send.
    pub fn event(&mut self, data: &str) -> Result<String, StreamError> {
        let mut event: Value = serde_json::from_str(data).map_err(|_| StreamError::NotJson)?;
        let Value::Object(frame) = &mut event else {
            return Err(StreamError::NotJson);
        };
        if frame.contains_key("error") {
            return Err(StreamError::ProviderError);
        }
        if let Some(usage) = Usage::of(&Value::Object(frame.clone())) {
            self.usage = Some(usage);
        }
        self.last_frame = frame
            .iter()
            .filter(|(key, _)| matches!(key.as_str(), "id" | "object" | "created" | "model"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if let Some(Value::Array(choices)) = frame.get_mut("choices") {
            for (position, choice) in choices.iter_mut().enumerate() {
                self.choice(position, choice)?;
            }
        }
        // Anything outside `choices` (ids, usage, fingerprints), and `choices` when it is not a
        // list, is restored whole.
        for (key, value) in frame.iter_mut() {
            if key != "choices" || !value.is_array() {
                self.whole_strings(value)?;
            }
        }
        // Keys at any depth are the provider's text too.
        self.n_redacted += clean_all_keys(&mut event, &self.vault, &self.redactor, &self.own)?;
        Ok(event.to_string())
    }

    /// The provider's stream ended: one last chunk with any held text, if there is some.
    pub fn finish(&mut self) -> Result<Option<String>, StreamError> {
        let mut by_choice: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
        let keys: Vec<(u64, Slot)> = self.texts.keys().copied().collect();
        for key in keys {
            let text = self.flush(key)?;
            if text.is_empty() {
                continue;
            }
            let delta = by_choice.entry(key.0).or_default();
            append_slot(delta, key.1, &text);
        }
        if by_choice.is_empty() {
            return Ok(None);
        }
        let mut frame = self.last_frame.clone();
        frame.insert(
            "choices".to_owned(),
            Value::Array(
                by_choice
                    .into_iter()
                    .map(|(index, delta)| {
                        serde_json::json!({"index": index, "delta": delta, "finish_reason": null})
                    })
                    .collect(),
            ),
        );
        Ok(Some(Value::Object(frame).to_string()))
    }

    fn choice(&mut self, position: usize, choice: &mut Value) -> Result<(), StreamError> {
        if !choice.is_object() {
            return self.whole_strings(choice);
        }
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(u64::try_from(position).unwrap_or(0));
        let finishing = choice
            .get("finish_reason")
            .is_some_and(|reason| !reason.is_null());
        if let Some(Value::Object(delta)) = choice.get_mut("delta") {
            for (key, slot) in [
                ("content", Slot::Content),
                ("refusal", Slot::Refusal),
                ("reasoning_content", Slot::Reasoning),
            ] {
                if let Some(Value::String(text)) = delta.get_mut(key) {
                    *text = self.push(index, slot, text)?;
                }
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for (position, call) in calls.iter_mut().enumerate() {
                    let call_index = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(u64::try_from(position).unwrap_or(0));
                    if let Some(Value::String(arguments)) = call
                        .get_mut("function")
                        .and_then(|function| function.get_mut("arguments"))
                    {
                        *arguments =
                            self.push(index, Slot::ToolArguments(call_index), arguments)?;
                    }
                }
            }
            // Everything not streamed above is restored whole.
            for (key, value) in delta.iter_mut() {
                match (key.as_str(), value) {
                    ("content" | "refusal" | "reasoning_content", Value::String(_)) => {}
                    ("tool_calls", Value::Array(calls)) => {
                        for call in calls {
                            self.call_fields(call)?;
                        }
                    }
                    (_, value) => self.whole_strings(value)?,
                }
            }
        }
        // Everything else of the choice (`logprobs`, fields of newer APIs), and a `delta` that
        // is not an object, is restored whole.
        if let Value::Object(fields) = choice {
            for (key, value) in fields.iter_mut() {
                if key != "delta" || !value.is_object() {
                    self.whole_strings(value)?;
                }
            }
        }
        if finishing && self.finished.insert(index) {
            let keys: Vec<(u64, Slot)> = self
                .texts
                .keys()
                .filter(|(choice, _)| *choice == index)
                .copied()
                .collect();
            for key in keys {
                let text = self.flush(key)?;
                if text.is_empty() {
                    continue;
                }
                let Value::Object(choice) = choice else {
                    continue;
                };
                let delta = choice
                    .entry("delta")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(delta) = delta {
                    append_slot(delta, key.1, &text);
                }
            }
        }
        Ok(())
    }

    /// The fields of a streamed tool call but its `function.arguments` text, restored whole.
    fn call_fields(&mut self, call: &mut Value) -> Result<(), StreamError> {
        let Value::Object(call) = call else {
            return self.whole_strings(call);
        };
        for (key, value) in call.iter_mut() {
            match (key.as_str(), value) {
                ("function", Value::Object(function)) => {
                    for (key, value) in function.iter_mut() {
                        if key != "arguments" || !value.is_string() {
                            self.whole_strings(value)?;
                        }
                    }
                }
                (_, value) => self.whole_strings(value)?,
            }
        }
        Ok(())
    }

    fn push(&mut self, index: u64, slot: Slot, chunk: &str) -> Result<String, StreamError> {
        if self.output_text.len() + chunk.len() <= MAX_COUNTED_OUTPUT {
            self.output_text.push_str(chunk);
        }
        let template = &self.template;
        let text = self
            .texts
            .entry((index, slot))
            .or_insert_with(|| TextStream::new(template.clone()));
        let (out, n) = text.push(chunk, &self.redactor, &self.own)?;
        self.n_redacted += n;
        Ok(out)
    }

    fn flush(&mut self, key: (u64, Slot)) -> Result<String, StreamError> {
        let Some(text) = self.texts.get_mut(&key) else {
            return Ok(String::new());
        };
        let (out, n) = text.finish(&self.redactor, &self.own)?;
        self.n_redacted += n;
        Ok(out)
    }

    fn whole_strings(&mut self, value: &mut Value) -> Result<(), StreamError> {
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => {
                    let restored = restore(&self.vault, text);
                    let own = &self.own;
                    let (clean, n) = self
                        .redactor
                        .redact_from(&restored, 0, &|v| own.contains(v))?;
                    self.n_redacted += n;
                    *text = clean;
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(object) => stack.extend(object.values_mut()),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        Ok(())
    }
}

/// Appends `text` to the delta field of `slot`.
fn append_slot(delta: &mut Map<String, Value>, slot: Slot, text: &str) {
    let key = match slot {
        Slot::Content => "content",
        Slot::Refusal => "refusal",
        Slot::Reasoning => "reasoning_content",
        Slot::ToolArguments(call_index) => {
            let calls = delta
                .entry("tool_calls")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(calls) = calls else {
                return;
            };
            let existing = calls
                .iter_mut()
                .find(|call| call.get("index").and_then(Value::as_u64) == Some(call_index));
            match existing {
                Some(call) => {
                    if let Some(Value::Object(function)) = call.get_mut("function") {
                        let arguments = function
                            .entry("arguments")
                            .or_insert_with(|| Value::String(String::new()));
                        if let Value::String(arguments) = arguments {
                            arguments.push_str(text);
                        }
                    }
                }
                None => calls.push(serde_json::json!({
                    "index": call_index,
                    "function": {"arguments": text}
                })),
            }
            return;
        }
    };
    let field = delta
        .entry(key)
        .or_insert_with(|| Value::String(String::new()));
    match field {
        Value::String(existing) => existing.push_str(text),
        other => *other = Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests;
