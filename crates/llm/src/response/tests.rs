#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;

use portcullis_sanitize::{PiiConfig, Sanitizer, Scope, Strategy, StrategyTable, Vault};
use serde_json::json;

use super::*;

const FOREIGN: &str = "ghp_ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210";
const PROMPT: &str = "Mail alice@example.com or call 415-555-0132, card 4111 1111 1111 1111, \
                      key AKIAIOSFODNN7EXAMPLE please.";

fn sanitized(prompt: &str) -> (String, Vault) {
    let config = PiiConfig {
        strategies: StrategyTable::uniform(Strategy::Synthetic),
        ..PiiConfig::default()
    };
    let sanitizer = Sanitizer::new(config, &[7; 32]).unwrap();
    let mut vault = Vault::new();
    let out = sanitizer
        .apply(prompt, &Scope::new("request"), &mut vault)
        .unwrap();
    assert!(!out.text.contains("alice@example.com"));
    (out.text, vault)
}

fn redactor() -> Arc<Redactor> {
    Arc::new(Redactor::new(["configured-provider-key-1"]).unwrap())
}

/// Streams `text` as content deltas of `chunk` bytes (at char boundaries) and returns what the
/// client reassembles.
fn stream(text: &str, vault: Vault, chunk: usize) -> String {
    let mut rewriter = ChatStream::new(vault, redactor());
    let mut client = String::new();
    let mut take = |data: String| {
        let event: Value = serde_json::from_str(&data).unwrap();
        if let Some(content) = event["choices"][0]["delta"]["content"].as_str() {
            client.push_str(content);
        }
    };
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = chunk.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        let event = json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": piece}}]});
        take(rewriter.event(&event.to_string()).unwrap());
    }
    if let Some(last) = rewriter.finish().unwrap() {
        take(last);
    }
    client
}

#[test]
fn streamed_synthetic_values_are_restored_at_every_chunk_size() {
    let (upstream_text, vault) = sanitized(PROMPT);
    for chunk in [1, 2, 3, 5, 7, 16, 1000] {
        assert_eq!(
            stream(&upstream_text, vault.clone(), chunk),
            PROMPT,
            "chunk {chunk}"
        );
    }
}

#[test]
fn foreign_and_configured_secrets_are_redacted_even_when_split() {
    let (_, vault) = sanitized(PROMPT);
    let text = format!("here {FOREIGN} and configured-provider-key-1 done");
    for chunk in [1, 4, 9, 1000] {
        let out = stream(&text, vault.clone(), chunk);
        assert_eq!(
            out, "here [REDACTED_SECRET] and [REDACTED_SECRET] done",
            "chunk {chunk}"
        );
    }
}

#[test]
fn finish_reason_flushes_held_text_into_its_event() {
    let (upstream_text, vault) = sanitized("alice@example.com");
    let mut rewriter = ChatStream::new(vault, redactor());
    let first = rewriter
        .event(&json!({"choices": [{"index": 0, "delta": {"content": upstream_text}}]}).to_string())
        .unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["choices"][0]["delta"]["content"], "");
    let last = rewriter
        .event(
            &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
        )
        .unwrap();
    let last: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["choices"][0]["delta"]["content"], "alice@example.com");
    let usage = rewriter
        .event(
            &json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}})
                .to_string(),
        )
        .unwrap();
    assert!(usage.contains("prompt_tokens"));
    assert_eq!(
        rewriter.usage(),
        Some(Usage {
            input_tokens: 5,
            output_tokens: 7
        })
    );
    assert_eq!(rewriter.finish().unwrap(), None);
}

#[test]
fn tool_call_arguments_are_restored_across_chunks() {
    let (upstream_text, vault) = sanitized("alice@example.com");
    let arguments = json!({"to": upstream_text}).to_string();
    let mut rewriter = ChatStream::new(vault, redactor());
    let mut client = String::new();
    let (left, right) = arguments.split_at(arguments.len() / 2);
    for (piece, finish) in [(left, None), (right, Some("tool_calls"))] {
        let event = json!({"choices": [{"index": 0, "finish_reason": finish, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": piece}}
        ]}}]});
        let out: Value =
            serde_json::from_str(&rewriter.event(&event.to_string()).unwrap()).unwrap();
        client.push_str(
            out["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap_or(""),
        );
    }
    assert_eq!(client, json!({"to": "alice@example.com"}).to_string());
}

#[test]
fn error_and_garbage_events_stop_the_stream() {
    let (_, vault) = sanitized("x");
    let mut rewriter = ChatStream::new(vault, redactor());
    assert!(matches!(rewriter.event("nope"), Err(StreamError::NotJson)));
    assert!(matches!(
        rewriter.event(r#"{"error":{"message":"boom"}}"#),
        Err(StreamError::ProviderError)
    ));
}

#[test]
fn whole_responses_are_restored_and_scrubbed() {
    let (upstream_text, vault) = sanitized(PROMPT);
    let mut response = json!({
        "id": "x",
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": format!("{upstream_text} {FOREIGN}")}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4}
    });
    let own = own_values(&vault);
    let n = restore_response(&mut response, &vault, &redactor(), &own).unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        response["choices"][0]["message"]["content"],
        format!("{PROMPT} [REDACTED_SECRET]")
    );
    assert_eq!(
        Usage::of(&response),
        Some(Usage {
            input_tokens: 3,
            output_tokens: 4
        })
    );
}

#[test]
fn secrets_in_object_keys_are_redacted_too() {
    let (_, vault) = sanitized(PROMPT);
    let mut rewriter = ChatStream::new(vault.clone(), redactor());
    let event = json!({"configured-provider-key-1": 1, "configured-provider-key-1x": 2,
        "choices": [{"index": 0, "delta": {"content": "a ", "configured-provider-key-1": "v"}}]});
    let out = rewriter.event(&event.to_string()).unwrap();
    assert!(!out.contains("configured-provider-key-1"), "{out}");
    assert!(out.contains("\"[REDACTED_SECRET]x\":2"), "{out}");
    let mut response = json!({"choices": [{"message": {"configured-provider-key-1": "v"}}]});
    let own = own_values(&vault);
    restore_response(&mut response, &vault, &redactor(), &own).unwrap();
    assert_eq!(response["choices"][0]["message"]["[REDACTED_SECRET]"], "v");
}

#[test]
fn secrets_outside_the_streamed_texts_are_redacted() {
    let (_, vault) = sanitized(PROMPT);
    let key = "configured-provider-key-1";
    let events = [
        json!({"choices": [{"index": 0, "logprobs": {"content": [{"token": key}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": {"text": key}}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"function": {"arguments": [key]}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [key]}}]}),
        json!({"choices": [{"index": 0, "delta": key}]}),
        json!({"choices": [key]}),
        json!({"choices": {"0": key}}),
    ];
    for event in events {
        let mut rewriter = ChatStream::new(vault.clone(), redactor());
        let out = rewriter.event(&event.to_string()).unwrap();
        assert!(!out.contains(key), "{out}");
    }
}
