//! Relaying a newly adopted capsule to the neighbours its scope names, in the background, with
//! this node's hop record appended, bounded retries and one `capsule.relay` event per attempt or
//! skip.
//!
//! Event reasons (`data.outcome` in brackets): `adopted`, `unchanged` [delivered]; `refused`
//! [refused]; `timeout`, `unreachable`, `remote_unavailable`, `no_http_client` [retrying, or
//! failed on the last attempt]; `hop_limit_reached`, `target_among_hops`, `target_is_issuer`,
//! `self_among_hops`, `already_relayed`, `relay_memory_full`, `relay_too_large`, `bad_node_id`
//! [skipped]. Events carry the capsule id and hash and the target node id, never a token.

use std::time::Duration;

use portcullis_capsule::{RelayError, VerifiedCapsule};
use portcullis_core::{Decision, Event};

use crate::cluster::{LastRelay, Retry, Target};
use crate::http::AppState;

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Most bytes of a neighbour's answer read (for its refusal reason).
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Header carrying the capsule token.
const CAPSULE_HEADER: &str = crate::admin::policy_routes::CAPSULE_HEADER;

/// Relays `capsule`, which this node has just adopted (a new adoption, never a no-op
/// re-adoption), without making the caller wait.
pub fn spawn(state: &AppState, capsule: VerifiedCapsule) {
    let state = state.clone();
    tokio::spawn(async move { relay(&state, &capsule).await });
}

/// Sends `capsule` with this node's hop record to every neighbour its scope reaches, except
/// nodes already among its hops and its issuer, at most once per neighbour; returns when every
/// delivery has finished.
pub async fn relay(state: &AppState, capsule: &VerifiedCapsule) {
    let settings = state.cluster.settings();
    let Some(signer) = &settings.node else {
        return;
    };
    // Scope `none` reaches nobody, so it is never relayed.
    let targets: Vec<&Target> = settings
        .neighbors
        .iter()
        .filter(|target| capsule.scope().reaches(target.kind))
        .collect();
    if targets.is_empty() {
        return;
    }
    let token = capsule.relay(signer);
    let now = state.clock.now();
    let mut deliveries = Vec::new();
    for target in targets {
        let skip = match &token {
            Err(err) => Err(relay_error_reason(*err)),
            Ok(_) if capsule.hops().iter().any(|hop| hop.node == target.id) => {
                Err("target_among_hops")
            }
            Ok(_) if capsule.issuer_id() == target.id => Err("target_is_issuer"),
            Ok(token) => state
                .cluster
                .claim(capsule, &target.id, now)
                .map(|()| token.as_str()),
        };
        match skip {
            Ok(token) => deliveries.push(deliver(state, settings.retry, target, token, capsule)),
            Err(reason) => {
                let step = Step {
                    outcome: "skipped",
                    reason,
                    attempt: 0,
                    status: None,
                    remote_reason: None,
                };
                step.record(state, target, capsule).await;
            }
        }
    }
    futures::future::join_all(deliveries).await;
}

fn relay_error_reason(err: RelayError) -> &'static str {
    match err {
        RelayError::ScopeNone => "scope_none",
        RelayError::HopLimitReached => "hop_limit_reached",
        RelayError::AlreadyRelayed => "self_among_hops",
        RelayError::BadNodeId => "bad_node_id",
        RelayError::TooLarge => "relay_too_large",
    }
}

/// One attempt's or skip's result.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    outcome: &'static str,
    reason: &'static str,
    attempt: u32,
    status: Option<u16>,
    /// The neighbour's refusal reason code, when it gave a well-formed one.
    remote_reason: Option<String>,
}

impl Step {
    /// The ledger event and the neighbour's last outcome.
    async fn record(self, state: &AppState, target: &Target, capsule: &VerifiedCapsule) {
        let decision = match self.outcome {
            "refused" | "failed" => Decision::Deny,
            _ => Decision::Info,
        };
        state.cluster.record(
            &target.id,
            LastRelay {
                capsule: capsule.id().to_owned(),
                hash: capsule.hash_hex(),
                outcome: self.outcome,
                reason: self.reason,
                attempt: self.attempt,
                at: state.clock.now(),
            },
        );
        state
            .events
            .emit_best_effort(Event::new("capsule.relay", decision, self.reason).data(
                serde_json::json!({
                    "capsule": capsule.id(),
                    "hash": capsule.hash_hex(),
                    "hops": capsule.hops().len(),
                    "target": target.id,
                    "target_kind": crate::cluster::kind_name(target.kind),
                    "outcome": self.outcome,
                    "attempt": self.attempt,
                    "status": self.status,
                    "remote_reason": self.remote_reason,
                }),
            ))
            .await;
    }
}

/// Posts `token` to `target` until it is adopted, refused, or `retry.attempts` tries failed.
async fn deliver(
    state: &AppState,
    retry: Retry,
    target: &Target,
    token: &str,
    capsule: &VerifiedCapsule,
) {
    let mut backoff = retry.backoff;
    for attempt in 1..=retry.attempts {
        let answer = post(state, retry, target, token).await;
        let step = classify(answer, attempt, attempt == retry.attempts);
        let again = step.outcome == "retrying";
        step.record(state, target, capsule).await;
        if !again {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
}

/// What one attempt got back.
#[derive(Debug)]
enum Answer {
    Status { status: u16, body: Vec<u8> },
    Timeout,
    Unreachable,
    NoClient,
}

async fn post(state: &AppState, retry: Retry, target: &Target, token: &str) -> Answer {
    let Some(client) = &state.cluster.client else {
        return Answer::NoClient;
    };
    let sent = client
        .post(target.endpoint.clone())
        .bearer_auth(target.token.expose())
        .header(CAPSULE_HEADER, token)
        .timeout(retry.timeout)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(err) => {
            // reqwest's message names the URL, never the headers.
            tracing::info!(node = %target.id, error = %err, "capsule relay did not get an answer");
            return if err.is_timeout() {
                Answer::Timeout
            } else {
                Answer::Unreachable
            };
        }
    };
    let status = response.status().as_u16();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_ANSWER_BYTES => {
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // Too long, or cut: the status alone decides.
            Ok(Some(_)) | Err(_) => {
                body.clear();
                break;
            }
        }
    }
    Answer::Status { status, body }
}

/// Maps an answer to a step: 201 adopted, 200 unchanged, 408/429/5xx and transport errors are
/// retried (failed on the last attempt), any other status is a refusal.
fn classify(answer: Answer, attempt: u32, last: bool) -> Step {
    let retryable = |reason: &'static str, status: Option<u16>| Step {
        outcome: if last { "failed" } else { "retrying" },
        reason,
        attempt,
        status,
        remote_reason: None,
    };
    match answer {
        Answer::Status { status, body } => {
            let done = |outcome: &'static str, reason: &'static str| Step {
                outcome,
                reason,
                attempt,
                status: Some(status),
                remote_reason: None,
            };
            match status {
                201 => done("delivered", "adopted"),
                200 => done("delivered", "unchanged"),
                408 | 429 | 500..=599 => retryable("remote_unavailable", Some(status)),
                _ => Step {
                    remote_reason: remote_reason(&body),
                    ..done("refused", "refused")
                },
            }
        }
        Answer::Timeout => retryable("timeout", None),
        Answer::Unreachable => retryable("unreachable", None),
        Answer::NoClient => retryable("no_http_client", None),
    }
}

/// `error.reason` (else `error.code`) of an admin error envelope, when it looks like a reason
/// code (1-64 of `[a-z0-9_]`): nothing else from a neighbour's answer reaches the ledger.
fn remote_reason(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error
        .get("reason")
        .or_else(|| error.get("code"))?
        .as_str()?;
    let well_formed = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    well_formed.then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(answer: Answer, last: bool, outcome: &str, reason: &str, remote: Option<&str>) {
        let step = classify(answer, 1, last);
        assert_eq!(
            (step.outcome, step.reason, step.remote_reason.as_deref()),
            (outcome, reason, remote)
        );
    }

    fn status(status: u16, body: &str) -> Answer {
        Answer::Status {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn answers_map_to_outcomes() {
        check(status(201, "{}"), false, "delivered", "adopted", None);
        check(status(200, "{}"), true, "delivered", "unchanged", None);
        let refusal = r#"{"error":{"code":"capsule_invalid","message":"m","reason":"capsule_too_many_hops"}}"#;
        check(
            status(422, refusal),
            false,
            "refused",
            "refused",
            Some("capsule_too_many_hops"),
        );
        check(
            status(401, r#"{"error":{"code":"unauthorized"}}"#),
            false,
            "refused",
            "refused",
            Some("unauthorized"),
        );
        check(
            status(409, r#"{"error":{"reason":"Not A Code <script>"}}"#),
            false,
            "refused",
            "refused",
            None,
        );
        check(status(404, "not json"), false, "refused", "refused", None);
        check(
            status(503, ""),
            false,
            "retrying",
            "remote_unavailable",
            None,
        );
        check(status(429, ""), true, "failed", "remote_unavailable", None);
        check(Answer::Timeout, false, "retrying", "timeout", None);
        check(Answer::Unreachable, true, "failed", "unreachable", None);
        check(Answer::NoClient, true, "failed", "no_http_client", None);
    }
}
