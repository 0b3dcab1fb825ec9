//! Chat and embeddings requests: checks, the fields the pipeline reads, and the rewrite before
//! the provider call. The body stays a JSON object so unknown fields pass through unchanged.

use portcullis_sanitize::ProtocolPaths;
use serde_json::{Map, Value};

/// Most messages one chat request may carry.
pub const MAX_MESSAGES: usize = 4096;
/// Most inputs one embeddings request may carry.
pub const MAX_INPUTS: usize = 2048;
/// Longest model name accepted.
pub const MAX_MODEL_LEN: usize = 256;
/// Most choices (`n`, and `best_of`) one chat request may ask for (OpenAI's own cap on `n`).
pub const MAX_CHOICES: u64 = 128;
/// Largest output token limit accepted (`max_tokens`, `max_completion_tokens`); a larger one
/// cannot be reserved meaningfully and is refused.
pub const MAX_OUTPUT_TOKENS: u64 = 1 << 24;

/// The exact paths of a chat request whose scalars are protocol, not content (patterns of
/// [`ProtocolPaths`]: `*` is any array index). Everything else, at any depth, object keys and
/// numbers included, is scanned; a key named `id` or `role` elsewhere is content.
pub const CHAT_PROTOCOL_PATHS: &[&str] = &[
    "model",
    "messages/*/role",
    "messages/*/content/*/type",
    "messages/*/tool_call_id",
    "messages/*/tool_calls/*/id",
    "messages/*/tool_calls/*/type",
    "tools/*/type",
    "response_format/type",
    "n",
    "best_of",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "top_logprobs",
];

/// The exact paths of an embeddings request whose scalars are protocol.
pub const EMBEDDINGS_PROTOCOL_PATHS: &[&str] = &["model", "encoding_format", "dimensions"];

/// [`CHAT_PROTOCOL_PATHS`] compiled.
pub fn chat_protocol_paths() -> ProtocolPaths {
    ProtocolPaths::new(CHAT_PROTOCOL_PATHS).unwrap_or_default()
}

/// [`EMBEDDINGS_PROTOCOL_PATHS`] compiled.
pub fn embeddings_protocol_paths() -> ProtocolPaths {
    ProtocolPaths::new(EMBEDDINGS_PROTOCOL_PATHS).unwrap_or_default()
}

/// Why a request body was refused. Never carries a payload value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("`model` is missing, not a string, empty or longer than {MAX_MODEL_LEN} bytes")]
    Model,
    #[error("`messages` is missing, empty, not an array or has more than {MAX_MESSAGES} items")]
    Messages,
    #[error("message {0} is not an object with a string `role`")]
    Message(usize),
    #[error("`input` is missing, empty, not a string or list of strings, or too long")]
    Input,
    #[error("`{0}` has the wrong type")]
    Field(&'static str),
    #[error("`{0}` is out of the range whose spend can be reserved")]
    Unbounded(&'static str),
}

impl RequestError {
    /// The reason code (listed in [`crate::REASONS`]).
    pub const fn reason(&self) -> &'static str {
        match self {
            RequestError::Unbounded(_) => "llm_request_unbounded",
            _ => "llm_request_invalid",
        }
    }
}

/// A checked `POST /v1/chat/completions` body.
#[derive(Clone, PartialEq)]
pub struct ChatRequest {
    body: Map<String, Value>,
    model: String,
    stream: bool,
    max_output_tokens: Option<u64>,
    choices: u64,
}

impl std::fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatRequest")
            .field("model", &self.model)
            .field("stream", &self.stream)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("choices", &self.choices)
            .finish_non_exhaustive()
    }
}

impl ChatRequest {
    /// Checks `body`: a JSON object with a model, a non-empty list of messages each with a
    /// string role, a boolean `stream`, integer token limits up to [`MAX_OUTPUT_TOKENS`] and
    /// `n`/`best_of` in `1..=`[`MAX_CHOICES`] when present.
    pub fn parse(body: Value) -> Result<Self, RequestError> {
        let Value::Object(body) = body else {
            return Err(RequestError::NotObject);
        };
        let model = model_of(&body)?;
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .filter(|items| !items.is_empty() && items.len() <= MAX_MESSAGES)
            .ok_or(RequestError::Messages)?;
        for (idx, message) in messages.iter().enumerate() {
            let role = message.get("role").and_then(Value::as_str);
            if role.is_none() {
                return Err(RequestError::Message(idx));
            }
        }
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(RequestError::Field("stream")),
        };
        // INVARIANT (worst-case-output): the provider may honour either limit, so the largest
        // one present bounds each choice.
        let mut max_output_tokens = None;
        for key in ["max_completion_tokens", "max_tokens"] {
            if let Some(limit) = integer(&body, key, MAX_OUTPUT_TOKENS)? {
                max_output_tokens = Some(max_output_tokens.map_or(limit, |m: u64| m.max(limit)));
            }
        }
        let mut choices: u64 = 1;
        for key in ["n", "best_of"] {
            match integer(&body, key, MAX_CHOICES)? {
                Some(0) => return Err(RequestError::Unbounded(key)),
                Some(n) => choices = choices.saturating_mul(n),
                None => {}
            }
        }
        Ok(Self {
            body,
            model,
            stream,
            max_output_tokens,
            choices,
        })
    }

    /// The model asked for (an alias or a provider's model name).
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn stream(&self) -> bool {
        self.stream
    }

    /// `max_completion_tokens` or `max_tokens` (the larger when both are set).
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_output_tokens
    }

    /// How many completions the provider may bill: `n` times `best_of` (each 1 when absent).
    pub fn choices(&self) -> u64 {
        self.choices
    }

    /// The most output tokens the provider may bill: [`ChatRequest::choices`] times the
    /// output limit in force (`default_max_tokens` when the request sets none, which
    /// [`ChatRequest::into_upstream`] then sends).
    pub fn worst_case_output(&self, default_max_tokens: u64) -> u64 {
        self.choices
            .saturating_mul(self.max_output_tokens.unwrap_or(default_max_tokens))
    }

    /// The body, for sanitizing in place and token estimates.
    pub fn body_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.body
    }

    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The body to send to the provider: the provider's model name, `default_max_tokens` as
    /// `max_tokens` when the agent set no limit (so the reservation bounds the spend), and for
    /// streams `stream_options.include_usage` so the provider reports usage. Returns the output
    /// token limit in force.
    pub fn into_upstream(mut self, upstream_model: &str, default_max_tokens: u64) -> (Value, u64) {
        self.body
            .insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        let limit = match self.max_output_tokens {
            Some(limit) => limit,
            None => {
                self.body
                    .insert("max_tokens".to_owned(), Value::from(default_max_tokens));
                default_max_tokens
            }
        };
        if self.stream {
            let options = self
                .body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
        (Value::Object(self.body), limit)
    }
}

/// A checked `POST /v1/embeddings` body.
#[derive(Clone, PartialEq)]
pub struct EmbeddingsRequest {
    body: Map<String, Value>,
    model: String,
}

impl std::fmt::Debug for EmbeddingsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsRequest")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl EmbeddingsRequest {
    /// Checks `body`: a model and an `input` that is a string or a list of strings. Token-array
    /// inputs are refused: they cannot be scanned for personal data.
    pub fn parse(body: Value) -> Result<Self, RequestError> {
        let Value::Object(body) = body else {
            return Err(RequestError::NotObject);
        };
        let model = model_of(&body)?;
        let valid = match body.get("input") {
            Some(Value::String(_)) => true,
            Some(Value::Array(items)) => {
                !items.is_empty() && items.len() <= MAX_INPUTS && items.iter().all(Value::is_string)
            }
            _ => false,
        };
        if !valid {
            return Err(RequestError::Input);
        }
        Ok(Self { body, model })
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn body_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.body
    }

    /// The texts to embed.
    pub fn inputs(&self) -> impl Iterator<Item = &str> {
        let items: Vec<&str> = match self.body.get("input") {
            Some(Value::String(text)) => vec![text.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        items.into_iter()
    }

    /// The body to send to the provider, with its model name.
    pub fn into_upstream(mut self, upstream_model: &str) -> Value {
        self.body
            .insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        Value::Object(self.body)
    }
}

/// The integer at `key`, when present; a non-integer is the wrong type, one above `max` cannot
/// be bounded.
fn integer(
    body: &Map<String, Value>,
    key: &'static str,
    max: u64,
) -> Result<Option<u64>, RequestError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            Some(_) => Err(RequestError::Unbounded(key)),
            None => Err(RequestError::Field(key)),
        },
    }
}

fn model_of(body: &Map<String, Value>) -> Result<String, RequestError> {
    body.get("model")
        .and_then(Value::as_str)
        .filter(|model| !model.is_empty() && model.len() <= MAX_MODEL_LEN)
        .map(str::to_owned)
        .ok_or(RequestError::Model)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check_chat(body: Value, expected: Result<(), RequestError>) {
        assert_eq!(ChatRequest::parse(body).map(|_| ()), expected);
    }

    #[test]
    fn chat_requests_are_checked() {
        let user = json!([{"role": "user", "content": "hi"}]);
        check_chat(json!({"model": "m", "messages": user}), Ok(()));
        check_chat(json!([]), Err(RequestError::NotObject));
        check_chat(json!({"messages": user}), Err(RequestError::Model));
        check_chat(
            json!({"model": "", "messages": user}),
            Err(RequestError::Model),
        );
        check_chat(
            json!({"model": 3, "messages": user}),
            Err(RequestError::Model),
        );
        check_chat(
            json!({"model": "m", "messages": []}),
            Err(RequestError::Messages),
        );
        check_chat(
            json!({"model": "m", "messages": [{}]}),
            Err(RequestError::Message(0)),
        );
        check_chat(
            json!({"model": "m", "messages": user, "stream": "yes"}),
            Err(RequestError::Field("stream")),
        );
        check_chat(
            json!({"model": "m", "messages": user, "max_tokens": -1}),
            Err(RequestError::Field("max_tokens")),
        );
    }

    #[test]
    fn upstream_body_gets_model_limit_and_usage_option() {
        let request = ChatRequest::parse(json!({
            "model": "alias", "stream": true, "messages": [{"role": "user", "content": "x"}],
            "extra": {"kept": true}
        }))
        .unwrap();
        let (body, limit) = request.into_upstream("gpt-4o-mini", 256);
        assert_eq!(limit, 256);
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["extra"]["kept"], true);

        let request = ChatRequest::parse(json!({
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 50, "max_completion_tokens": 40
        }))
        .unwrap();
        assert_eq!(request.max_output_tokens(), Some(50));
        let (body, limit) = request.into_upstream("m", 256);
        assert_eq!(limit, 50);
        assert!(body.get("stream_options").is_none());
    }

    #[track_caller]
    fn check_worst_case(extra: Value, expected: Result<u64, RequestError>) {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        let res = ChatRequest::parse(body).map(|request| request.worst_case_output(64));
        assert_eq!(res, expected);
    }

    #[test]
    fn worst_case_output_counts_every_choice_at_the_largest_limit() {
        check_worst_case(json!({}), Ok(64));
        check_worst_case(json!({"n": 50}), Ok(50 * 64));
        check_worst_case(json!({"n": 50, "max_tokens": 200}), Ok(10_000));
        check_worst_case(
            json!({"n": 50, "max_tokens": 10, "max_completion_tokens": 200}),
            Ok(10_000),
        );
        check_worst_case(json!({"n": 2, "best_of": 3, "max_tokens": 10}), Ok(60));
        check_worst_case(json!({"n": null, "max_tokens": 7}), Ok(7));
        check_worst_case(json!({"n": 0}), Err(RequestError::Unbounded("n")));
        check_worst_case(json!({"n": 129}), Err(RequestError::Unbounded("n")));
        check_worst_case(
            json!({"best_of": 1000}),
            Err(RequestError::Unbounded("best_of")),
        );
        check_worst_case(
            json!({"max_tokens": MAX_OUTPUT_TOKENS + 1}),
            Err(RequestError::Unbounded("max_tokens")),
        );
        check_worst_case(json!({"n": 1.5}), Err(RequestError::Field("n")));
        check_worst_case(json!({"n": "2"}), Err(RequestError::Field("n")));
        assert_eq!(
            RequestError::Unbounded("n").reason(),
            "llm_request_unbounded"
        );
    }

    #[test]
    fn protocol_paths_compile_and_are_exact() {
        use portcullis_sanitize::Step;
        let chat = chat_protocol_paths();
        assert_eq!(
            ProtocolPaths::new(CHAT_PROTOCOL_PATHS).unwrap(),
            chat,
            "every pattern compiles"
        );
        assert!(chat.matches(&[Step::Key("messages"), Step::Index(0), Step::Key("role")]));
        assert!(!chat.matches(&[Step::Key("metadata"), Step::Key("id")]));
        assert!(!chat.matches(&[Step::Key("messages"), Step::Index(0), Step::Key("id")]));
        assert_eq!(
            ProtocolPaths::new(EMBEDDINGS_PROTOCOL_PATHS).unwrap(),
            embeddings_protocol_paths()
        );
    }

    #[test]
    fn embeddings_inputs_are_strings() {
        let ok = EmbeddingsRequest::parse(json!({"model": "e", "input": ["a", "b"]})).unwrap();
        assert_eq!(ok.inputs().collect::<Vec<_>>(), ["a", "b"]);
        for input in [json!([1, 2]), json!([]), json!(null), json!([["a"]])] {
            assert_eq!(
                EmbeddingsRequest::parse(json!({"model": "e", "input": input})),
                Err(RequestError::Input)
            );
        }
    }
}
