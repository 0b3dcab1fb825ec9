//! Budgets at run time: the plan in force and the sessions seen.
//!
//! The plan is the `[budgets]` configuration, with the budgets added, replaced or removed through
//! the admin API applied on top. Those changes are stored (policy records of kind `budget`) and
//! re-applied at start-up, so they survive restarts. The counters themselves live in the store
//! (docs/BUDGETS.md); the `limit` and `settle` stages (`crate::pipeline`) use them.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use jiff::Timestamp;
use portcullis_budget::scope::{GLOBAL_ACCOUNT, account};
use portcullis_budget::{
    Budget, BudgetDef, BudgetPlan, BudgetsConfig, ConfigIssue, Meter, Scope, Unit, threshold,
    window,
};
use portcullis_store::{PolicyRecordKind, Store, StoreError};
use serde::{Deserialize, Serialize};

pub mod admin;

/// Sessions remembered as running; past it the oldest are forgotten (a forgotten session with
/// spend in a session budget is still recognized through the store).
pub const MAX_SEEN_SESSIONS: usize = 100_000;

/// The budget plan in force and the sessions seen.
#[derive(Debug)]
pub struct Budgets {
    plan: ArcSwap<BudgetPlan>,
    seen: Mutex<SeenSessions>,
}

/// A run-time change to the plan, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoredChange {
    /// Added or replaced through `POST /admin/budgets`.
    Put { budget: BudgetDef },
    /// Removed through `DELETE /admin/budgets/{id}` (also a budget of the configuration).
    Remove,
}

/// Why a stored change could not be applied at start-up.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read stored budgets: {0}")]
    Store(#[from] StoreError),
    #[error("stored budget `{id}` does not parse: {message}")]
    Invalid { id: String, message: String },
}

#[derive(Debug, Default)]
struct SeenSessions {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Budgets {
    /// The plan of a `[budgets]` section; `Err` when it does not compile (a validated
    /// configuration always does).
    pub fn new(config: &BudgetsConfig) -> Result<Self, Vec<ConfigIssue>> {
        Ok(Self::from_plan(config.compile()?))
    }

    pub fn from_plan(plan: BudgetPlan) -> Self {
        Self {
            plan: ArcSwap::from_pointee(plan),
            seen: Mutex::new(SeenSessions::default()),
        }
    }

    /// The plan in force.
    pub fn plan(&self) -> Arc<BudgetPlan> {
        self.plan.load_full()
    }

    /// Re-applies the changes made through the admin API; returns how many. A stored change
    /// that no longer parses refuses start-up (its limit would otherwise be silently lost).
    pub async fn restore(&self, store: &dyn Store) -> Result<usize, RestoreError> {
        let records = store.list_policy_records(PolicyRecordKind::Budget).await?;
        let mut plan = BudgetPlan::clone(&self.plan());
        for (id, body) in &records {
            let invalid = |message: String| RestoreError::Invalid {
                id: id.clone(),
                message,
            };
            let change: StoredChange =
                serde_json::from_str(body).map_err(|err| invalid(err.to_string()))?;
            match change {
                StoredChange::Put { budget } => {
                    let budget = compile(&budget).map_err(invalid)?;
                    plan.put_budget(budget);
                }
                StoredChange::Remove => {
                    plan.remove_budget(id);
                }
            }
        }
        self.plan.store(Arc::new(plan));
        Ok(records.len())
    }

    /// Adds `budget` or replaces the one with its id; returns the replaced one.
    pub fn put(&self, budget: Budget) -> Option<Budget> {
        let mut replaced = None;
        self.plan.rcu(|plan| {
            let mut plan = BudgetPlan::clone(plan);
            replaced = plan.put_budget(budget.clone());
            plan
        });
        replaced
    }

    /// Removes budget `id`; returns it, or `None` when there was none.
    pub fn remove(&self, id: &str) -> Option<Budget> {
        let mut removed = None;
        self.plan.rcu(|plan| {
            let mut plan = BudgetPlan::clone(plan);
            removed = plan.remove_budget(id);
            plan
        });
        removed
    }

    /// Whether `session` was seen running (a reservation was made for it) by this process.
    pub fn seen(&self, session: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set
            .contains(session)
    }

    /// Remembers `session` as running.
    pub fn mark_seen(&self, session: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.set.contains(session) {
            return;
        }
        if seen.order.len() >= MAX_SEEN_SESSIONS {
            if let Some(oldest) = seen.order.pop_front() {
                seen.set.remove(&oldest);
            }
        }
        seen.set.insert(session.to_owned());
        seen.order.push_back(session.to_owned());
    }
}

/// Most lines [`lines`] lists (budgets counted per scope value have one line per value).
pub const MAX_LINES: usize = 10_000;

/// One budget as it stands for one scope value: the admin view and the metrics gauges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineView {
    /// `<budget id>@<account>`, the key alerts and pauses use.
    pub key: String,
    pub budget: String,
    pub scope: Scope,
    /// `<scope>:<value>`, or `global`.
    pub account: String,
    pub unit: Unit,
    /// Micro-USD for `usd`.
    pub limit: u64,
    pub spent: u64,
    pub reserved: u64,
    pub resets_at: Option<Timestamp>,
    /// Until when new sessions are paused (`Some(None)`: until lifted).
    pub paused: Option<Option<Timestamp>>,
}

impl LineView {
    /// Spent + reserved as a whole percent of the limit.
    pub fn percent(&self) -> u64 {
        threshold::percent(self.limit, self.spent.saturating_add(self.reserved))
    }
}

/// Every budget line at `now`: each budget of the plan, for its fixed value (or `global`), or for
/// every value of its scope with spend or holds recorded. At most [`MAX_LINES`]; the flag says
/// whether some were left out.
pub async fn lines(
    plan: &BudgetPlan,
    store: &dyn Store,
    now: Timestamp,
) -> Result<(Vec<LineView>, bool), StoreError> {
    let accounts = store.budget_accounts().await?;
    let pauses = store.budget_pauses().await?;
    let mut meters = Vec::new();
    let mut spans = Vec::new();
    let mut truncated = false;
    for budget in &plan.budgets {
        let Ok(span) = window::span(budget.window, &plan.zone, now) else {
            continue;
        };
        let names: Vec<String> = match (&budget.subject, budget.scope) {
            (_, Scope::Global) => vec![GLOBAL_ACCOUNT.to_owned()],
            (Some(value), scope) => vec![account(scope, value)],
            (None, scope) => {
                let prefix = format!("{}:", scope.as_str());
                accounts
                    .iter()
                    .filter(|snapshot| {
                        snapshot.unit == budget.unit && snapshot.account.starts_with(&prefix)
                    })
                    .map(|snapshot| snapshot.account.clone())
                    .collect()
            }
        };
        for name in names {
            if meters.len() >= MAX_LINES {
                truncated = true;
                break;
            }
            meters.push(Meter {
                key: format!("{}@{name}", budget.id),
                account: name,
                unit: budget.unit,
                days: span.days,
                today: span.today,
                limit: budget.limit,
            });
            spans.push((budget, span.resets_at));
        }
    }
    let usage = store.budget_usage(meters).await?;
    let views = usage
        .into_iter()
        .zip(spans)
        .map(|(usage, (budget, resets_at))| {
            let paused = pauses
                .iter()
                .find(|(key, until)| *key == usage.key && until.is_none_or(|until| now < until))
                .map(|(_, until)| *until);
            LineView {
                key: usage.key,
                budget: budget.id.clone(),
                scope: budget.scope,
                account: usage.account,
                unit: usage.unit,
                limit: usage.limit,
                spent: usage.spent,
                reserved: usage.reserved,
                resets_at,
                paused,
            }
        })
        .collect();
    Ok((views, truncated))
}

/// Sets the budget gauges from the store, just before `/metrics` renders them: one series per
/// budget, scope kind and unit (spend and holds summed over the budget's lines), so metrics never
/// carry a user, room, session or agent value. A store error leaves them as they were.
pub async fn update_gauges(state: &crate::http::AppState) {
    let plan = state.guardrails.budgets.plan();
    let Ok((views, _)) = lines(&plan, state.store.as_ref(), state.clock.now()).await else {
        return;
    };
    for (labels, gauges) in gauge_values(&views) {
        let labels = [
            ("budget", labels.0),
            ("scope", labels.1.to_owned()),
            ("unit", labels.2.to_owned()),
        ];
        for (name, value) in [
            ("portcullis_budget_limit", gauges.limit),
            ("portcullis_budget_spent", gauges.spent),
            ("portcullis_budget_reserved", gauges.reserved),
            ("portcullis_budget_lines", gauges.lines),
        ] {
            state.metrics.set_gauge(name, &labels, value as f64);
        }
    }
}

/// The gauges of one budget: the limit of each line, spend and holds summed over its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetGauges {
    pub limit: u64,
    pub spent: u64,
    pub reserved: u64,
    pub lines: u64,
}

/// Aggregates `views` by budget id, scope kind and unit (the labels metrics may carry).
pub fn gauge_values(
    views: &[LineView],
) -> std::collections::BTreeMap<(String, &'static str, &'static str), BudgetGauges> {
    let mut res = std::collections::BTreeMap::new();
    for view in views {
        let gauges: &mut BudgetGauges = res
            .entry((view.budget.clone(), view.scope.as_str(), view.unit.as_str()))
            .or_default();
        gauges.limit = gauges.limit.max(view.limit);
        gauges.spent = gauges.spent.saturating_add(view.spent);
        gauges.reserved = gauges.reserved.saturating_add(view.reserved);
        gauges.lines += 1;
    }
    res
}

/// Checks one budget as the admin API receives it; the message names each bad field.
pub fn compile(def: &BudgetDef) -> Result<Budget, String> {
    def.compile().map_err(|issues| {
        issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests;
