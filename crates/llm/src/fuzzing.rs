//! The property the `llm_request` fuzz target checks, shared with the corpus replay test
//! (`crates/llm/tests/fuzz_corpus.rs`).
//!
//! One input is read three ways: as a request body (chat and embeddings: checks, the worst
//! case the budget reserves, token estimates, the rewrite for the provider), as a provider's SSE
//! stream (parsed whole and in pieces, then rewritten event by event), and as a whole chat
//! response (restored and redacted).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use portcullis_sanitize::{PiiConfig, Redactor, Sanitizer, Scope, Strategy, StrategyTable, Vault};
use serde_json::{Map, Value};

use crate::request::{MAX_CHOICES, MAX_INPUTS, MAX_MODEL_LEN, MAX_OUTPUT_TOKENS};
use crate::response::own_values;
use crate::sse::{DONE, SseError, SseParser};
use crate::tokens::{Family, TokenCounter, reserved_input};
use crate::{ChatRequest, ChatStream, EmbeddingsRequest, restore_response};

/// The configured secret the fixture redactor knows; no output may carry it.
pub const FUZZ_SECRET: &str = "fuzz-provider-key-0123456789";
/// What the agent sent, which the fixture vault holds behind a synthetic stand-in.
pub const FUZZ_ORIGINAL: &str = "alice@example.com";
/// The output limit the gateway would apply when a request sets none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The provider's model name a request is rewritten to.
pub const UPSTREAM_MODEL: &str = "fuzz-upstream-model";
/// The SSE limit of the fuzz parser: small, so inputs reach it.
pub const SSE_LIMIT: usize = 512;

/// Chunk sizes an SSE input is also fed in.
const SSE_CHUNKS: &[usize] = &[1, 3, 7, 64];
/// Longest input tokenized with the real tables (bounds the time of one run).
const MAX_TOKENIZED: usize = 16 * 1024;

/// Checks one fuzz input; answers the first violated property.
pub fn check_llm_bytes(data: &[u8]) -> Result<(), String> {
    if let Ok(body) = serde_json::from_slice::<Value>(data) {
        check_chat(&body, data.len())?;
        check_embeddings(&body)?;
        check_whole_response(&body)?;
    }
    let events = check_sse(data)?;
    check_stream(&events)
}

/// The vault and redactor of the fixture, built once.
struct Fixture {
    vault: Vault,
    redactor: Arc<Redactor>,
    counter: TokenCounter,
}

static FIXTURE: LazyLock<Result<Fixture, String>> = LazyLock::new(|| {
    let config = PiiConfig {
        strategies: StrategyTable::uniform(Strategy::Synthetic),
        ..PiiConfig::default()
    };
    let sanitizer = Sanitizer::new(config, &[7; 32]).map_err(|err| err.to_string())?;
    let mut vault = Vault::new();
    sanitizer
        .apply(FUZZ_ORIGINAL, &Scope::new("fuzz"), &mut vault)
        .map_err(|err| err.to_string())?;
    let redactor = Redactor::new([FUZZ_SECRET]).map_err(|err| err.to_string())?;
    Ok(Fixture {
        vault,
        redactor: Arc::new(redactor),
        counter: TokenCounter::new(),
    })
});

fn fixture() -> Result<&'static Fixture, String> {
    FIXTURE
        .as_ref()
        .map_err(|err| format!("the fuzz fixture does not build: {err}"))
}

/// A chat body: the checked fields are in range, the budget's worst case is exact, and the body
/// sent to the provider is itself a valid request that bounds the spend the same way.
fn check_chat(body: &Value, input_len: usize) -> Result<(), String> {
    let parsed = ChatRequest::parse(body.clone());
    if parsed != ChatRequest::parse(body.clone()) {
        return Err("chat parse is not deterministic".into());
    }
    let Ok(chat) = parsed else {
        return Ok(());
    };
    if chat.model().is_empty() || chat.model().len() > MAX_MODEL_LEN {
        return Err("an accepted model name is empty or too long".into());
    }
    let choices = chat.choices();
    if choices == 0 || choices > MAX_CHOICES * MAX_CHOICES {
        return Err(format!("choices {choices} out of range"));
    }
    if chat
        .max_output_tokens()
        .is_some_and(|n| n > MAX_OUTPUT_TOKENS)
    {
        return Err("an output limit above the maximum was accepted".into());
    }
    let limit = chat.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS);
    let worst = chat.worst_case_output(DEFAULT_MAX_TOKENS);
    if Some(worst) != choices.checked_mul(limit) {
        return Err(format!(
            "worst case {worst} is not {choices} choices x {limit}"
        ));
    }
    if input_len <= MAX_TOKENIZED {
        check_tokens(chat.body())?;
    }
    let (upstream, sent_limit) = chat
        .clone()
        .into_upstream(UPSTREAM_MODEL, DEFAULT_MAX_TOKENS);
    if sent_limit != limit {
        return Err(format!(
            "into_upstream answered limit {sent_limit}, not {limit}"
        ));
    }
    let Value::Object(sent) = &upstream else {
        return Err("the upstream body is not an object".into());
    };
    for (key, value) in chat.body() {
        let rewritten = matches!(key.as_str(), "model" | "max_tokens" | "stream_options");
        if !rewritten && sent.get(key) != Some(value) {
            return Err(format!("into_upstream changed field `{key}`"));
        }
    }
    if chat.stream()
        && sent
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            != Some(&Value::Bool(true))
    {
        return Err("a stream is sent without stream_options.include_usage".into());
    }
    let again = ChatRequest::parse(upstream.clone())
        .map_err(|err| format!("the upstream body is refused: {err}"))?;
    if again.model() != UPSTREAM_MODEL
        || again.stream() != chat.stream()
        || again.choices() != choices
        || again.max_output_tokens() != Some(limit)
    {
        return Err(format!(
            "the upstream body reads differently: {again:?} vs {chat:?}"
        ));
    }
    // INVARIANT (worst-case-output): whatever default the provider would apply, the body sent
    // carries its limit, so the reservation bounds the spend.
    if again.worst_case_output(0) != worst || again.worst_case_output(u64::MAX) != worst {
        return Err("the upstream body does not bound the output".into());
    }
    Ok(())
}

/// Token estimates: no count exceeds the bytes counted, and a reservation covers its estimate.
fn check_tokens(body: &Map<String, Value>) -> Result<(), String> {
    let fixture = fixture()?;
    let bytes: usize = strings_len(&Value::Object(body.clone()));
    for family in [Family::O200k, Family::Cl100k, Family::Approximate] {
        let estimate = fixture.counter.chat_input(family, body);
        if reserved_input(estimate) < estimate {
            return Err("a reservation is below its estimate".into());
        }
        let messages = body.get("messages").cloned().unwrap_or(Value::Null);
        let counted = fixture.counter.strings(family, &messages);
        if counted > u64::try_from(bytes).unwrap_or(u64::MAX) {
            return Err(format!(
                "{} counted {counted} tokens in {bytes} bytes",
                family.as_str()
            ));
        }
    }
    Ok(())
}

fn strings_len(value: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) => total = total.saturating_add(text.len()),
            Value::Array(items) => stack.extend(items),
            Value::Object(object) => stack.extend(object.values()),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    total
}

/// An embeddings body: inputs are bounded strings, and the rewrite keeps them.
fn check_embeddings(body: &Value) -> Result<(), String> {
    let Ok(request) = EmbeddingsRequest::parse(body.clone()) else {
        return Ok(());
    };
    let inputs: Vec<String> = request.inputs().map(str::to_owned).collect();
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(format!("{} inputs accepted", inputs.len()));
    }
    let again = EmbeddingsRequest::parse(request.into_upstream(UPSTREAM_MODEL))
        .map_err(|err| format!("the upstream embeddings body is refused: {err}"))?;
    if again.model() != UPSTREAM_MODEL || !again.inputs().eq(inputs.iter().map(String::as_str)) {
        return Err("the upstream embeddings body reads differently".into());
    }
    Ok(())
}

/// A whole chat response: after restore, no string under `choices` carries the secret.
fn check_whole_response(body: &Value) -> Result<(), String> {
    if body.get("choices").is_none() {
        return Ok(());
    }
    let fixture = fixture()?;
    let mut value = body.clone();
    let own = own_values(&fixture.vault);
    if restore_response(&mut value, &fixture.vault, &fixture.redactor, &own).is_err() {
        return Ok(());
    }
    let choices = value.get("choices").cloned().unwrap_or(Value::Null);
    if let Some(leak) = find_secret(&choices) {
        return Err(format!("a restored response carries the secret: {leak:?}"));
    }
    Ok(())
}

/// SSE: the events are the same whether the bytes come whole or in pieces, and none is longer
/// than the limit. Answers the events of the whole parse.
fn check_sse(data: &[u8]) -> Result<Vec<String>, String> {
    let whole = parse_sse(data, data.len().max(1));
    for events in whole.0.iter().chain(whole.1.iter().flatten()) {
        if events.len() > SSE_LIMIT {
            return Err(format!("an SSE event of {} bytes passed", events.len()));
        }
    }
    for chunk in SSE_CHUNKS {
        let pieces = parse_sse(data, *chunk);
        let same = match (&whole.1, &pieces.1) {
            (Ok(_), Ok(_)) => whole == pieces,
            (Err(expected), Err(got)) => expected == got,
            _ => false,
        };
        if !same {
            return Err(format!(
                "SSE in {chunk}-byte pieces reads {pieces:?}, whole {whole:?}"
            ));
        }
    }
    let (mut events, last) = whole;
    match last {
        Ok(Some(last)) => events.push(last),
        Ok(None) => {}
        Err(_) => events.clear(),
    }
    Ok(events)
}

/// The events of `data` fed in `chunk`-byte pieces, and the end: the data left at the end, or
/// the first error.
type SseRead = (Vec<String>, Result<Option<String>, SseError>);

fn parse_sse(data: &[u8], chunk: usize) -> SseRead {
    let mut parser = SseParser::new(SSE_LIMIT);
    let mut events = Vec::new();
    for piece in data.chunks(chunk) {
        match parser.push(piece) {
            Ok(more) => events.extend(more),
            Err(err) => return (events, Err(err)),
        }
    }
    (events, parser.finish())
}

/// A provider stream rewritten event by event: the text the client reassembles never carries
/// the configured secret, however the provider split it, and every event sent is JSON.
fn check_stream(events: &[String]) -> Result<(), String> {
    let fixture = fixture()?;
    let mut rewriter = ChatStream::new(fixture.vault.clone(), Arc::clone(&fixture.redactor));
    let mut sent = Vec::new();
    for data in events {
        if data == DONE {
            break;
        }
        match rewriter.event(data) {
            Ok(out) => sent.push(out),
            // A refused stream ends here; what was sent so far must still be clean.
            Err(_) => break,
        }
    }
    if let Ok(Some(last)) = rewriter.finish() {
        sent.push(last);
    }
    let mut texts: BTreeMap<(u64, String), String> = BTreeMap::new();
    for out in &sent {
        let frame: Value =
            serde_json::from_str(out).map_err(|_| "a rewritten event is not JSON".to_owned())?;
        if let Some(leak) = find_secret(&frame) {
            return Err(format!("a rewritten event carries the secret: {leak:?}"));
        }
        collect_texts(&frame, &mut texts);
    }
    for text in texts.values() {
        if contains_secret(text) {
            return Err(format!(
                "the reassembled stream carries the secret: {text:?}"
            ));
        }
    }
    Ok(())
}

/// The streamed texts of a frame, appended per choice and slot in the order the client reads.
fn collect_texts(frame: &Value, texts: &mut BTreeMap<(u64, String), String>) {
    let Some(Value::Array(choices)) = frame.get("choices") else {
        return;
    };
    for (position, choice) in choices.iter().enumerate() {
        let index = choice
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(u64::try_from(position).unwrap_or(0));
        let Some(delta) = choice.get("delta") else {
            continue;
        };
        for key in ["content", "refusal", "reasoning_content"] {
            if let Some(text) = delta.get(key).and_then(Value::as_str) {
                texts
                    .entry((index, key.to_owned()))
                    .or_default()
                    .push_str(text);
            }
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for (position, call) in calls.iter().enumerate() {
                let call_index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::try_from(position).unwrap_or(0));
                if let Some(arguments) = call
                    .get("function")
                    .and_then(|function| function.get("arguments"))
                    .and_then(Value::as_str)
                {
                    texts
                        .entry((index, format!("tool_calls/{call_index}")))
                        .or_default()
                        .push_str(arguments);
                }
            }
        }
    }
}

/// The first string or key of `value` that carries the secret.
fn find_secret(value: &Value) -> Option<String> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) if contains_secret(text) => return Some(text.clone()),
            Value::Array(items) => stack.extend(items),
            Value::Object(object) => {
                if let Some(key) = object.keys().find(|key| contains_secret(key)) {
                    return Some(key.clone());
                }
                stack.extend(object.values());
            }
            _ => {}
        }
    }
    None
}

/// The redactor matches configured values ASCII case-insensitively; so does this check.
fn contains_secret(text: &str) -> bool {
    text.to_ascii_lowercase().contains(FUZZ_SECRET)
}
