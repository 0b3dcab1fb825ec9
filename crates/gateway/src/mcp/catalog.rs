//! The catalog in service: re-listing the upstreams (on connect, on their `list_changed`
//! notifications, on every `tools/list` and every [`REFRESH_INTERVAL`]), rebuilding it against
//! the pins, recording drift, and pinning what is offered.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use portcullis_core::{Decision, ErrorCode, Event};
use portcullis_mcp::{Catalog, Drift};
use portcullis_store::PolicyRecordKind;

use crate::http::AppState;

/// Re-lists every connected upstream, rebuilds the catalog and records each new drift as a
/// `tool.drift` event. Down upstreams keep their last listing.
pub async fn refresh(state: &AppState) -> Arc<Catalog> {
    let mcp = &state.mcp;
    let lists =
        futures::future::join_all(mcp.upstreams.iter().map(|upstream| async move {
            (upstream.name().to_owned(), upstream.list_tools().await)
        }))
        .await;
    let mut listings = mcp.listings.lock().await;
    for (name, listed) in lists {
        match listed {
            Ok(tools) => {
                listings.insert(name, tools);
            }
            Err(err) => tracing::debug!(upstream = %name, error = %err, "upstream not listed"),
        }
    }
    rebuild_locked(state, &listings).await
}

/// Rebuilds the catalog from the stored listings (after a pin change).
pub async fn rebuild(state: &AppState) -> Arc<Catalog> {
    let listings = state.mcp.listings.lock().await;
    rebuild_locked(state, &listings).await
}

async fn rebuild_locked(
    state: &AppState,
    listings: &BTreeMap<String, Vec<serde_json::Value>>,
) -> Arc<Catalog> {
    let mcp = &state.mcp;
    let ordered: Vec<(String, Vec<serde_json::Value>)> = mcp
        .upstreams
        .iter()
        .filter_map(|u| {
            listings
                .get(u.name())
                .map(|t| (u.name().to_owned(), t.clone()))
        })
        .collect();
    let pins = mcp.pins.lock().await.clone();
    let previous = mcp.catalog();
    let (catalog, drifts) = Catalog::build(&ordered, &pins, mcp.prefix, Some(&previous));
    let catalog = Arc::new(catalog);
    *mcp.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&catalog);
    for drift in drifts {
        record_drift(state, &drift).await;
    }
    catalog
}

async fn record_drift(state: &AppState, drift: &Drift) {
    tracing::warn!(tool = %drift.pin_key, "tool definition drifted from its pin; quarantined");
    state
        .events
        .emit_best_effort(Event::new("tool.drift", Decision::Deny, "tool_drift").data(
            serde_json::json!({
                "tool": drift.pin_key,
                "upstream": drift.upstream,
                "old_hash": drift.old_hash,
                "new_hash": drift.new_hash,
                "changes": drift.changes,
            }),
        ))
        .await;
}

/// Pins what the upstreams offer now (all, or one upstream's tools); returns the pinned keys.
pub async fn pin_current(
    state: &AppState,
    upstream: Option<&str>,
) -> Result<Vec<String>, ErrorCode> {
    let catalog = refresh(state).await;
    let mut pinned = Vec::new();
    {
        let mut pins = state.mcp.pins.lock().await;
        for tool in catalog.tools() {
            if upstream.is_some_and(|name| name != tool.upstream)
                || tool.state == portcullis_mcp::PinState::Invalid
            {
                continue;
            }
            let body = serde_json::to_string(&tool.offered).map_err(|_| ErrorCode::Internal)?;
            state
                .store
                .put_policy_record(PolicyRecordKind::ToolPin, &tool.pin_key, &body)
                .await
                .map_err(|_| ErrorCode::StoreUnavailable)?;
            pins.insert(tool.pin_key.clone(), tool.offered.clone());
            pinned.push(tool.pin_key.clone());
        }
    }
    rebuild(state).await;
    Ok(pinned)
}

/// How often the catalog is rebuilt from fresh listings even when no upstream said its tools
/// changed: the bound on how long a silently changed (rug-pulled) definition can be served.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Keeps the catalog fresh: lists each upstream every time it (re)connects, every time it says
/// its tools changed (`notifications/tools/list_changed`), and every [`REFRESH_INTERVAL`].
pub fn spawn_watchers(state: &AppState) {
    for upstream in state.mcp.upstreams.iter() {
        let state = state.clone();
        let mut status = upstream.watch_status();
        let mut lists = upstream.watch_lists();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.reset();
            loop {
                let up = matches!(
                    *status.borrow_and_update(),
                    portcullis_mcp::UpstreamStatus::Up { .. }
                );
                if up {
                    refresh(&state).await;
                }
                tokio::select! {
                    changed = status.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                    changed = lists.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let generation = *lists.borrow_and_update();
                        tracing::debug!(generation, "upstream lists changed");
                    }
                    _ = tick.tick() => {}
                }
            }
        });
    }
}
