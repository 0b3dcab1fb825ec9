//! The budget half of the `limit` stage (reserve the estimate in every applicable budget at once,
//! then thresholds: alerts, the 95% session pause, the soft throttle) and of `settle` / `release`.
//!
//! Events name budgets, scopes, units and percentages, never arguments or messages. A store that
//! does not answer refuses the request (`store_unavailable`): no reservation, no call.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use portcullis_budget::scope::{self, meters};
use portcullis_budget::threshold::{self, AlertTier};
use portcullis_budget::window::{self, DayRange};
use portcullis_budget::{
    Amounts, BudgetMode, BudgetPlan, LineUsage, Meter, Refusal, Reservation, ReservationId,
    ReserveOutcome, Scope, ScopeLine, Throttle, Unit,
};
use portcullis_core::{CorrelationId, Decision, ErrorCode, Event, MicroUsd, Subject};
use portcullis_store::StoreError;
use serde_json::{Value, json};

use super::Core;
use super::limit::{Actual, Metered};
use crate::error::ApiError;
use crate::identity::Identified;

/// How often expired reservations are looked for, at most (sooner when one is due earlier).
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// A reservation held for one call.
#[derive(Debug)]
pub(super) struct Held {
    pub id: ReservationId,
    /// The budget lines it was reserved in, to charge a settle that arrives after expiry.
    pub meters: Vec<Meter>,
    pub estimate: Amounts,
    /// The lines, for the alert tiers checked against settled spend once the call settles.
    pub lines: Vec<ScopeLine>,
}

/// What the budget step of `limit` decided for an admitted call.
#[derive(Debug, Default)]
pub(super) struct Admitted {
    pub held: Option<Held>,
    /// The model the soft throttle switched an LLM call to.
    pub downgrade: Option<String>,
}

/// The budget step of `limit`: see the module docs. `Err` is the refusal to answer.
pub(super) async fn admit(
    state: &Core,
    identified: &Identified,
    metered: &Metered,
    correlation: &CorrelationId,
) -> Result<Admitted, ApiError> {
    let plan = state.guardrails.budgets.plan();
    if plan.budgets.is_empty() {
        return Ok(Admitted::default());
    }
    let refusals = Refusals {
        state,
        agent: &identified.agent.id,
        correlation,
        report: plan.mode == BudgetMode::Report,
    };
    let now = state.clock.now();
    let subject = &identified.subject;
    let lines = match plan.applicable(subject, now) {
        Ok(lines) => lines,
        Err(err) => {
            tracing::error!(correlation = %correlation, error = %err, "budget window");
            refusals
                .refuse(Refusal::Window, call_json(metered, json!({})))
                .await?;
            return Ok(Admitted::default());
        }
    };
    if lines.is_empty() {
        return Ok(Admitted::default());
    }
    let amounts = match estimate(&plan, &lines, metered) {
        Ok(amounts) => amounts,
        Err(refusal) => {
            refusals
                .refuse(refusal, call_json(metered, json!({})))
                .await?;
            // Report mode: count the call and its tokens, without a price.
            unpriced(metered)
        }
    };

    let paused = paused_lines(state, &lines, now).await?;
    if !paused.is_empty() && !running_session(state, &plan, subject, now).await? {
        let budgets: Vec<Value> = paused
            .iter()
            .map(|line| json!({"id": line.budget_id, "scope": line.scope.as_str()}))
            .collect();
        refusals
            .refuse(
                Refusal::SessionPaused,
                call_json(metered, json!({"budgets": budgets})),
            )
            .await?;
    }

    let expires_at = SignedDuration::try_from(plan.reservation_ttl)
        .ok()
        .and_then(|ttl| now.checked_add(ttl).ok())
        .unwrap_or(now);
    let outcome = state
        .store
        .budget_reserve(meters(&lines), amounts, expires_at, plan.mode)
        .await
        .map_err(|err| store_failed(correlation, &err))?;
    let (id, usage) = match outcome {
        ReserveOutcome::Exceeded { lines: usage } => {
            refusals
                .refuse(
                    Refusal::Exceeded,
                    call_json(metered, json!({"budgets": usage_json(&lines, &usage)})),
                )
                .await?;
            // Unreachable in report mode (the store reserves anyway); refuse all the same.
            return Err(ApiError::new(ErrorCode::BudgetExceeded));
        }
        ReserveOutcome::Reserved { id, lines: usage } => (id, usage),
    };
    if usage.iter().any(LineUsage::exceeds) {
        // Report mode: admitted past a limit.
        let over: Vec<(ScopeLine, LineUsage)> = lines
            .iter()
            .zip(&usage)
            .filter(|(_, usage)| usage.exceeds())
            .map(|(line, usage)| (line.clone(), usage.clone()))
            .collect();
        let (over_lines, over_usage): (Vec<_>, Vec<_>) = over.into_iter().unzip();
        refusals
            .refuse(
                Refusal::Exceeded,
                call_json(
                    metered,
                    json!({"budgets": usage_json(&over_lines, &over_usage)}),
                ),
            )
            .await?;
    }
    let held = Held {
        id,
        meters: meters(&lines),
        estimate: amounts,
        lines: lines.clone(),
    };
    if let Some(session) = &subject.session {
        state.guardrails.budgets.mark_seen(session);
    }
    // Alert tiers (and the 95% pause) count settled spend, never reservations: checked in
    // `settle`, so a burst of holds may refuse the call that would pass a limit but never pauses
    // the line.

    // The soft throttle.
    let mut delay = Duration::ZERO;
    let mut downgrade = None;
    let mut approve = Vec::new();
    let mut throttled = Vec::new();
    for (line, usage) in lines.iter().zip(&usage) {
        if !usage.assess(line.throttle_at).throttle {
            continue;
        }
        let action = match &line.throttle {
            Throttle::Delay(wait) => {
                delay = delay.max(*wait);
                "delay"
            }
            Throttle::Downgrade(model) => {
                if matches!(metered, Metered::Llm { .. }) && downgrade.is_none() {
                    downgrade = Some(model.clone());
                }
                "downgrade"
            }
            Throttle::Approve => {
                approve.push(line);
                "approve"
            }
        };
        throttled.push(json!({
            "id": line.budget_id,
            "scope": line.scope.as_str(),
            "action": action,
            "percent": threshold::percent(line.limit, usage.used_after()),
        }));
    }
    if !approve.is_empty() {
        let budgets: Vec<Value> = approve
            .iter()
            .map(|line| json!({"id": line.budget_id, "scope": line.scope.as_str()}))
            .collect();
        if let Err(err) = refusals
            .refuse(
                Refusal::ApprovalRequired,
                call_json(metered, json!({"budgets": budgets})),
            )
            .await
        {
            release_held(state, held, correlation).await;
            return Err(err);
        }
    }
    if throttled.is_empty() {
        return Ok(Admitted {
            held: Some(held),
            downgrade: None,
        });
    }
    let report = refusals.report;
    state
        .events
        .emit_best_effort(
            Event::new(
                "budget.throttled",
                if report {
                    Decision::Report
                } else {
                    Decision::Info
                },
                "budget_throttled",
            )
            .subject(identified.agent.id.clone())
            .correlation(correlation.as_str())
            .data(call_json(
                metered,
                json!({
                    "budgets": throttled,
                    "delay_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "downgrade_to": downgrade,
                }),
            )),
        )
        .await;
    if report {
        // A dry run changes nothing about the call.
        return Ok(Admitted {
            held: Some(held),
            downgrade: None,
        });
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(Admitted {
        held: Some(held),
        downgrade,
    })
}

/// What a call cost by the price table: the reported usage of an LLM call at its model's price,
/// or a tool's price per call. `None` when there is no price.
pub(super) fn cost(
    state: &Core,
    metered: &Metered,
    model: Option<&str>,
    actual: &Actual,
) -> Option<MicroUsd> {
    let plan = state.guardrails.budgets.plan();
    match (metered, actual) {
        (Metered::Tool { name }, Actual::Tool) => {
            portcullis_budget::tool_cost(&plan.prices, name).ok()
        }
        (
            Metered::Llm { .. },
            Actual::Llm {
                input_tokens,
                output_tokens,
            },
        ) => model.and_then(|model| {
            portcullis_budget::actual_llm(&plan.prices, model, *input_tokens, *output_tokens).ok()
        }),
        _ => None,
    }
}

/// Records what the call consumed in place of its reservation. The actual may pass the
/// estimate: it is recorded in full and the overage is an event. A reservation that expired
/// meanwhile is charged without one (`budget.settled_late`).
pub(super) async fn settle(
    state: &Core,
    held: Held,
    cost: Option<MicroUsd>,
    actual: &Actual,
    agent: &str,
    correlation: &CorrelationId,
) {
    let amounts = match actual {
        Actual::Tool => held.estimate,
        Actual::Llm {
            input_tokens,
            output_tokens,
        } => Amounts {
            // Unpriced with a USD budget in force was refused at reserve; a price removed by a
            // reload since then keeps the estimate.
            usd: cost.unwrap_or(held.estimate.usd),
            tokens: input_tokens.saturating_add(*output_tokens),
            calls: 1,
        },
    };
    let event = |kind: &str, decision: Decision, reason: &str, data: Value| {
        Event::new(kind, decision, reason)
            .subject(agent.to_owned())
            .correlation(correlation.as_str())
            .data(data)
    };
    let (lines, meters) = (held.lines, held.meters.clone());
    match state.store.budget_settle(held.id, amounts).await {
        Ok(settlement) => {
            let over: Vec<Value> = settlement
                .holds
                .iter()
                .filter(|hold| hold.overage() > 0)
                .map(|hold| {
                    json!({
                        "account": hold.account,
                        "unit": hold.unit.as_str(),
                        "reserved": hold.reserved,
                        "actual": hold.actual,
                        "overage": hold.overage(),
                    })
                })
                .collect();
            if !over.is_empty() {
                state
                    .events
                    .emit_best_effort(event(
                        "budget.overage",
                        Decision::Info,
                        "budget_overage",
                        json!({"reservation": held.id.0, "holds": over}),
                    ))
                    .await;
            }
        }
        Err(StoreError::NotFound) => match state.store.budget_charge(held.meters, amounts).await {
            Ok(_) => {
                state
                    .events
                    .emit_best_effort(event(
                        "budget.settled_late",
                        Decision::Info,
                        "budget_settled_late",
                        json!({"reservation": held.id.0, "actual": amounts_json(&amounts)}),
                    ))
                    .await;
            }
            Err(err) => {
                tracing::error!(correlation = %correlation, error = %err, "late budget charge failed");
            }
        },
        Err(err) => {
            // The store keeps the spend in memory (the safe side); the commit failed.
            tracing::error!(correlation = %correlation, error = %err, "budget settle failed");
        }
    }
    match state.store.budget_usage(meters).await {
        Ok(usage) => {
            let spent: Vec<u64> = usage.iter().map(|line| line.spent).collect();
            alerts(state, agent, &lines, &spent, correlation).await;
        }
        Err(err) => {
            tracing::error!(correlation = %correlation, error = %err, "cannot read settled spend for alerts");
        }
    }
}

/// Drops a reservation unused. One already gone (expired) is fine.
pub(super) async fn release_held(state: &Core, held: Held, correlation: &CorrelationId) {
    match state.store.budget_release(held.id).await {
        Ok(_) | Err(StoreError::NotFound) => {}
        Err(err) => {
            tracing::error!(correlation = %correlation, error = %err, "budget release failed");
        }
    }
}

/// Releases every reservation past its expiry, one `budget.expired` event each; returns how
/// many. Called at start-up and then by [`expire_reservations`].
pub async fn release_expired(state: &Core) -> Result<usize, StoreError> {
    let released = state
        .store
        .budget_release_expired(state.clock.now())
        .await?;
    for reservation in &released {
        state
            .events
            .emit_best_effort(
                Event::new(
                    "budget.expired",
                    Decision::Info,
                    "budget_reservation_expired",
                )
                .data(reservation_json(reservation)),
            )
            .await;
    }
    if !released.is_empty() {
        tracing::info!(
            released = released.len(),
            "expired budget reservations released"
        );
    }
    Ok(released.len())
}

/// Runs [`release_expired`] now and then every [`EXPIRY_INTERVAL`], or sooner when the next
/// reservation is due before that. Never returns.
pub async fn expire_reservations(state: std::sync::Arc<Core>) {
    loop {
        if let Err(err) = release_expired(&state).await {
            tracing::error!(error = %err, "cannot release expired budget reservations");
        }
        let now = state.clock.now();
        let next_due = state
            .store
            .budget_reservations()
            .await
            .ok()
            .and_then(|live| live.first().map(|reservation| reservation.expires_at));
        let wait = next_due.map_or(EXPIRY_INTERVAL, |due| {
            // A little past the expiry, so the release finds it due; at once when overdue.
            Duration::try_from(now.duration_until(due))
                .unwrap_or(Duration::ZERO)
                .saturating_add(Duration::from_millis(10))
                .min(EXPIRY_INTERVAL)
        });
        tokio::time::sleep(wait).await;
    }
}

/// Refusals of the budget step: an event, then an error in `enforce` mode or nothing in
/// `report` mode (the event's decision is `report`).
struct Refusals<'a> {
    state: &'a Core,
    agent: &'a str,
    correlation: &'a CorrelationId,
    report: bool,
}

impl Refusals<'_> {
    async fn refuse(&self, refusal: Refusal, data: Value) -> Result<(), ApiError> {
        let decision = if self.report {
            Decision::Report
        } else {
            Decision::Deny
        };
        self.state
            .events
            .emit_best_effort(
                Event::new("budget.refused", decision, refusal.code())
                    .subject(self.agent.to_owned())
                    .correlation(self.correlation.as_str())
                    .data(data),
            )
            .await;
        if self.report {
            Ok(())
        } else {
            Err(ApiError::new(refusal.error_code()))
        }
    }
}

/// The estimate of a call in the units of `lines`.
fn estimate(plan: &BudgetPlan, lines: &[ScopeLine], metered: &Metered) -> Result<Amounts, Refusal> {
    match metered {
        Metered::Tool { name } => Amounts::tool(&plan.prices, lines, name),
        Metered::Llm {
            model,
            input_tokens,
            max_output_tokens,
        } => Amounts::llm(
            &plan.prices,
            lines,
            model,
            *input_tokens,
            *max_output_tokens,
        ),
    }
    .map_err(|err| Refusal::from(&err))
}

/// Tokens and calls of a call, without money.
fn unpriced(metered: &Metered) -> Amounts {
    let tokens = match metered {
        Metered::Tool { .. } => 0,
        Metered::Llm {
            input_tokens,
            max_output_tokens,
            ..
        } => input_tokens.saturating_add(*max_output_tokens),
    };
    Amounts {
        usd: MicroUsd::ZERO,
        tokens,
        calls: 1,
    }
}

/// The lines whose scope pauses new sessions at `now`.
async fn paused_lines<'a>(
    state: &Core,
    lines: &'a [ScopeLine],
    now: Timestamp,
) -> Result<Vec<&'a ScopeLine>, ApiError> {
    let mut paused = Vec::new();
    for line in lines {
        let is_paused = state
            .store
            .budget_is_paused(&line.key, now)
            .await
            .map_err(|err| store_failed_quiet(&err))?;
        if is_paused {
            paused.push(line);
        }
    }
    Ok(paused)
}

/// Whether the request belongs to a running session: one this process reserved for, or one
/// with spend or holds recorded in a session budget. A request without a session is a new
/// session of its own.
async fn running_session(
    state: &Core,
    plan: &BudgetPlan,
    subject: &Subject,
    now: Timestamp,
) -> Result<bool, ApiError> {
    let Some(session) = subject.session.as_deref() else {
        return Ok(false);
    };
    if state.guardrails.budgets.seen(session) {
        return Ok(true);
    }
    let account = scope::account(Scope::Session, session);
    let today = window::day_of(&plan.zone, now);
    let probes: Vec<Meter> = Unit::ALL
        .into_iter()
        .map(|unit| Meter {
            key: String::new(),
            account: account.clone(),
            unit,
            days: DayRange::Lifetime,
            today,
            limit: 0,
        })
        .collect();
    let usage = state
        .store
        .budget_usage(probes)
        .await
        .map_err(|err| store_failed_quiet(&err))?;
    Ok(usage.iter().any(|line| line.spent > 0 || line.reserved > 0))
}

/// Marks each alert tier the lines' settled spend reached (never reservations: a burst of holds
/// may refuse the call that would pass a limit, never pause the line); the first time in a
/// window a tier is marked, it is a
/// `budget.alert` event and a webhook post, and the critical tier pauses new sessions in the
/// line's scope until the window resets.
async fn alerts(
    state: &Core,
    agent: &str,
    lines: &[ScopeLine],
    spent: &[u64],
    correlation: &CorrelationId,
) {
    for (line, &used) in lines.iter().zip(spent) {
        for tier in threshold::tiers_reached(line.limit, used) {
            let first = match state
                .store
                .budget_mark_alert(&line.key, &line.window.key, tier)
                .await
            {
                Ok(first) => first,
                Err(err) => {
                    tracing::error!(correlation = %correlation, error = %err, "cannot mark a budget alert");
                    false
                }
            };
            if !first {
                continue;
            }
            let alert = json!({
                "event": "budget.alert",
                "tier": tier.as_str(),
                "threshold": tier.percent(),
                "budget": line.budget_id,
                "scope": line.scope.as_str(),
                "account": line.account,
                "unit": line.unit.as_str(),
                "limit": line.limit,
                "used": used,
                "percent": threshold::percent(line.limit, used),
                "window": line.window.key,
                "resets_at": line.window.resets_at.map(|at| at.to_string()),
                "time": state.clock.now().to_string(),
            });
            state
                .events
                .emit_best_effort(
                    Event::new("budget.alert", Decision::Info, tier.as_str())
                        .subject(agent.to_owned())
                        .correlation(correlation.as_str())
                        .data(alert.clone()),
                )
                .await;
            state.guardrails.alerts.send(&alert);
            if tier == AlertTier::Critical {
                pause(state, line, correlation).await;
            }
        }
    }
}

async fn pause(state: &Core, line: &ScopeLine, correlation: &CorrelationId) {
    let until = line.window.resets_at;
    if let Err(err) = state.store.budget_pause(&line.key, until).await {
        tracing::error!(correlation = %correlation, error = %err, "cannot pause a budget scope");
        return;
    }
    state
        .events
        .emit_best_effort(
            Event::new("budget.paused", Decision::Info, "budget_paused")
                .correlation(correlation.as_str())
                .data(json!({
                    "budget": line.budget_id,
                    "scope": line.scope.as_str(),
                    "account": line.account,
                    "until": until.map(|at| at.to_string()),
                })),
        )
        .await;
}

/// `{"call": "tool"|"model", "name": ..}` merged with `extra`.
fn call_json(metered: &Metered, extra: Value) -> Value {
    let (call, name) = match metered {
        Metered::Tool { name } => ("tool", name),
        Metered::Llm { model, .. } => ("model", model),
    };
    let mut data = json!({"call": call, "name": name});
    if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
        data.extend(extra);
    }
    data
}

/// Each line: budget id, scope, unit, limit, usage and the percent with this request.
fn usage_json(lines: &[ScopeLine], usage: &[LineUsage]) -> Vec<Value> {
    lines
        .iter()
        .zip(usage)
        .map(|(line, usage)| {
            json!({
                "id": line.budget_id,
                "scope": line.scope.as_str(),
                "unit": line.unit.as_str(),
                "limit": line.limit,
                "spent": usage.spent,
                "reserved": usage.reserved,
                "amount": usage.amount,
                "percent": threshold::percent(line.limit, usage.used_after()),
                "exceeds": usage.exceeds(),
            })
        })
        .collect()
}

fn amounts_json(amounts: &Amounts) -> Value {
    json!({"usd_micros": amounts.usd.0, "tokens": amounts.tokens, "calls": amounts.calls})
}

fn reservation_json(reservation: &Reservation) -> Value {
    let holds: Vec<Value> = reservation
        .holds
        .iter()
        .map(|hold| json!({"account": hold.account, "unit": hold.unit.as_str(), "amount": hold.amount}))
        .collect();
    json!({
        "reservation": reservation.id.0,
        "expired_at": reservation.expires_at.to_string(),
        "holds": holds,
    })
}

fn store_failed(correlation: &CorrelationId, err: &StoreError) -> ApiError {
    tracing::error!(correlation = %correlation, error = %err, "budget store failed; refusing");
    ApiError::new(ErrorCode::StoreUnavailable)
}

fn store_failed_quiet(err: &StoreError) -> ApiError {
    tracing::error!(error = %err, "budget store failed; refusing");
    ApiError::new(ErrorCode::StoreUnavailable)
}
