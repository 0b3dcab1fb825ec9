//! Checking `[budgets]` and compiling it into a [`BudgetPlan`]: zone, prices and limits parsed.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::tz::TimeZone;
use portcullis_core::MicroUsd;

use crate::config::{
    BudgetDef, BudgetMode, BudgetsConfig, LimitValue, ModelPrice, PriceTable, Scope,
    ThrottleAction, Unit, Window,
};
use crate::decimal::{format_usd, parse_usd};

/// Most budgets one configuration may hold.
pub const MAX_BUDGETS: usize = 256;
/// Most model or tool prices one configuration may hold.
pub const MAX_PRICES: usize = 4096;
/// Longest `subject` value, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;
/// Longest `delay` of the `delay` throttle action.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Shortest and longest `reservation_ttl`.
pub const TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));

/// A checked `[budgets]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetPlan {
    pub mode: BudgetMode,
    pub zone: TimeZone,
    pub reservation_ttl: Duration,
    pub prices: Prices,
    /// INVARIANT (unique-budget-ids): no two budgets share an id; kept by [`BudgetPlan::compile`]
    /// and [`BudgetPlan::put_budget`].
    pub budgets: Vec<Budget>,
}

/// One checked budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub id: String,
    pub scope: Scope,
    /// The one scope value counted, or `None` for every value (always `None` for `global`).
    pub subject: Option<String>,
    pub unit: Unit,
    pub window: Window,
    /// Micro-USD for `usd`, tokens or calls otherwise.
    pub limit: u64,
    /// Percent, 1-100.
    pub throttle_at: u8,
    pub throttle: Throttle,
}

/// The soft throttle's action, with its parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Throttle {
    Delay(Duration),
    Downgrade(String),
    Approve,
}

/// Checked prices in micro-USD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prices {
    /// `(name or pattern, price)`; see [`crate::cost`] for matching.
    pub models: Vec<(String, TokenPrice)>,
    pub tools: Vec<(String, MicroUsd)>,
    pub default_model: Option<TokenPrice>,
    pub default_tool: Option<MicroUsd>,
}

/// Micro-USD per 1,000,000 tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenPrice {
    pub input_per_1m: MicroUsd,
    pub output_per_1m: MicroUsd,
}

/// One problem in `[budgets]`: the key path inside the section (`budgets[2].window`,
/// `time_zone`) and one sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigIssue {
    pub key: String,
    pub message: String,
}

impl BudgetsConfig {
    /// Checks the section and builds the plan; `Err` lists every problem found, in file order.
    pub fn compile(&self) -> Result<BudgetPlan, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut issue = |key: String, message: String| issues.push(ConfigIssue { key, message });
        let zone = match TimeZone::get(&self.time_zone) {
            Ok(zone) => Some(zone),
            Err(_) => {
                issue(
                    "time_zone".to_owned(),
                    format!(
                        "`{}` is not an IANA time zone name like \"UTC\" or \"Europe/Berlin\"",
                        self.time_zone
                    ),
                );
                None
            }
        };
        let reservation_ttl = match parse_duration(&self.reservation_ttl) {
            Ok(ttl) if ttl >= TTL_RANGE.0 && ttl <= TTL_RANGE.1 => Some(ttl),
            Ok(_) => {
                issue(
                    "reservation_ttl".to_owned(),
                    "must be between 1s and 24h".to_owned(),
                );
                None
            }
            Err(message) => {
                issue("reservation_ttl".to_owned(), message);
                None
            }
        };
        let prices = compile_prices(&self.prices, &mut issue);
        if self.budgets.len() > MAX_BUDGETS {
            issue(
                "budgets".to_owned(),
                format!("at most {MAX_BUDGETS} budgets are allowed"),
            );
        }
        let mut seen = BTreeSet::new();
        let mut budgets = Vec::with_capacity(self.budgets.len());
        for (idx, def) in self.budgets.iter().enumerate() {
            if !seen.insert(def.id.as_str()) {
                issue(
                    format!("budgets[{idx}].id"),
                    format!("duplicate budget id `{}`", def.id),
                );
            }
            match def.compile() {
                Ok(budget) => budgets.push(budget),
                Err(found) => {
                    for found in found {
                        issue(format!("budgets[{idx}].{}", found.key), found.message);
                    }
                }
            }
        }
        match (zone, reservation_ttl) {
            (Some(zone), Some(reservation_ttl)) if issues.is_empty() => Ok(BudgetPlan {
                mode: self.mode,
                zone,
                reservation_ttl,
                prices,
                budgets,
            }),
            _ => Err(issues),
        }
    }
}

impl BudgetDef {
    /// Checks one budget (as `POST /admin/budgets` receives it); issue keys are field names.
    pub fn compile(&self) -> Result<Budget, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut issue = |key: &str, message: String| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                message,
            });
        };
        if !valid_id(&self.id) {
            issue(
                "id",
                format!(
                    "`{}` is not 1-64 characters of letters, digits, `.`, `_` or `-`",
                    self.id
                ),
            );
        }
        if self
            .subject
            .as_ref()
            .is_some_and(|subject| subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES)
        {
            issue(
                "subject",
                format!("must be 1-{MAX_SUBJECT_BYTES} bytes; leave it out to count every value"),
            );
        }
        if self.window == Window::Lifetime && self.scope != Scope::Session {
            issue(
                "window",
                format!(
                    "`lifetime` is only for `session` budgets, not `{}`",
                    self.scope
                ),
            );
        }
        let limit = match parse_limit(self.unit, &self.limit) {
            Ok(limit) => limit,
            Err(message) => {
                issue("limit", message);
                0
            }
        };
        if !(1..=100).contains(&self.throttle_at) {
            issue("throttle_at", "must be a percent from 1 to 100".to_owned());
        }
        let delay = match parse_duration(&self.delay) {
            Ok(delay) if delay <= MAX_DELAY => delay,
            Ok(_) => {
                issue("delay", "must be at most 60s".to_owned());
                Duration::ZERO
            }
            Err(message) => {
                issue("delay", message);
                Duration::ZERO
            }
        };
        let throttle = match (self.throttle_action, &self.downgrade_to) {
            (ThrottleAction::Delay, _) => Throttle::Delay(delay),
            (ThrottleAction::Approve, _) => Throttle::Approve,
            (ThrottleAction::Downgrade, Some(model)) if !model.trim().is_empty() => {
                Throttle::Downgrade(model.clone())
            }
            (ThrottleAction::Downgrade, _) => {
                issue(
                    "downgrade_to",
                    "`downgrade` needs the model or route alias to switch to".to_owned(),
                );
                Throttle::Approve
            }
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Budget {
            id: self.id.clone(),
            scope: self.scope,
            subject: self.subject.clone().filter(|_| self.scope != Scope::Global),
            unit: self.unit,
            window: self.window,
            limit,
            throttle_at: self.throttle_at,
            throttle,
        })
    }
}

impl BudgetPlan {
    /// Adds `budget`, replacing the one with the same id; returns the replaced one.
    pub fn put_budget(&mut self, budget: Budget) -> Option<Budget> {
        // INVARIANT (unique-budget-ids): replace in place instead of pushing a second copy.
        match self.budgets.iter_mut().find(|old| old.id == budget.id) {
            Some(old) => Some(std::mem::replace(old, budget)),
            None => {
                self.budgets.push(budget);
                None
            }
        }
    }

    /// Removes the budget `id`; returns it, or `None` when there was none.
    pub fn remove_budget(&mut self, id: &str) -> Option<Budget> {
        let idx = self.budgets.iter().position(|budget| budget.id == id)?;
        Some(self.budgets.remove(idx))
    }
}

impl Budget {
    /// The configuration form of this budget (for persisting budgets added at run time).
    pub fn to_def(&self) -> BudgetDef {
        let (throttle_action, delay, downgrade_to) = match &self.throttle {
            Throttle::Delay(delay) => (ThrottleAction::Delay, format_duration(*delay), None),
            Throttle::Downgrade(model) => (
                ThrottleAction::Downgrade,
                crate::config::DEFAULT_DELAY.to_owned(),
                Some(model.clone()),
            ),
            Throttle::Approve => (
                ThrottleAction::Approve,
                crate::config::DEFAULT_DELAY.to_owned(),
                None,
            ),
        };
        BudgetDef {
            id: self.id.clone(),
            scope: self.scope,
            subject: self.subject.clone(),
            unit: self.unit,
            window: self.window,
            limit: match self.unit {
                Unit::Usd => LimitValue::Text(format_usd(MicroUsd(self.limit))),
                Unit::Tokens | Unit::Calls => LimitValue::Whole(self.limit),
            },
            throttle_at: self.throttle_at,
            throttle_action,
            delay,
            downgrade_to,
        }
    }
}

/// Parses a friendly duration (`"30s"`, `"15m"`, `"1h 30m"`), as the gateway's durations are.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration like `30s`, `15m` or `1h 30m`"))?;
    Duration::try_from(signed).map_err(|_| format!("`{raw}` must not be negative"))
}

fn format_duration(duration: Duration) -> String {
    match jiff::SignedDuration::try_from(duration) {
        Ok(signed) => format!("{signed:#}"),
        Err(_) => format!("{}s", duration.as_secs()),
    }
}

fn parse_limit(unit: Unit, limit: &LimitValue) -> Result<u64, String> {
    match (unit, limit) {
        (Unit::Usd, LimitValue::Text(text)) => {
            parse_usd(text).map(|m| m.0).map_err(|err| err.to_string())
        }
        (Unit::Usd, LimitValue::Whole(_)) => {
            Err("a `usd` limit is a decimal string like \"5.00\"".to_owned())
        }
        (_, LimitValue::Whole(n)) => Ok(*n),
        (_, LimitValue::Text(text)) => text
            .parse::<u64>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("`{text}` is not a whole number of {unit}")),
    }
}

fn compile_prices(table: &PriceTable, issue: &mut dyn FnMut(String, String)) -> Prices {
    let mut prices = Prices::default();
    if table.models.len() > MAX_PRICES || table.tools.len() > MAX_PRICES {
        issue(
            "prices".to_owned(),
            format!("at most {MAX_PRICES} model and {MAX_PRICES} tool prices are allowed"),
        );
    }
    let mut name_issue = |key: String, name: &str| {
        if !valid_pattern(name) {
            issue(
                key,
                format!("`{name}` is not a name, or a name ending in one `*`"),
            );
        }
    };
    for name in table.models.keys() {
        name_issue(format!("prices.models.\"{name}\""), name);
    }
    for name in table.tools.keys() {
        name_issue(format!("prices.tools.\"{name}\""), name);
    }
    for (name, price) in &table.models {
        if let Some(price) = token_price(&format!("prices.models.\"{name}\""), price, issue) {
            prices.models.push((name.clone(), price));
        }
    }
    for (name, price) in &table.tools {
        match parse_usd(price) {
            Ok(price) => prices.tools.push((name.clone(), price)),
            Err(err) => issue(format!("prices.tools.\"{name}\""), err.to_string()),
        }
    }
    if let Some(price) = &table.default_model {
        prices.default_model = token_price("prices.default_model", price, issue);
    }
    if let Some(price) = table
        .default_tool
        .as_ref()
        .filter(|_| !table.deny_unpriced_tools)
    {
        match parse_usd(price) {
            Ok(price) => prices.default_tool = Some(price),
            Err(err) => issue("prices.default_tool".to_owned(), err.to_string()),
        }
    }
    prices
}

fn token_price(
    key: &str,
    price: &ModelPrice,
    issue: &mut dyn FnMut(String, String),
) -> Option<TokenPrice> {
    let input = parse_usd(&price.input_per_1m)
        .map_err(|err| issue(format!("{key}.input_per_1m"), err.to_string()))
        .ok();
    let output = parse_usd(&price.output_per_1m)
        .map_err(|err| issue(format!("{key}.output_per_1m"), err.to_string()))
        .ok();
    Some(TokenPrice {
        input_per_1m: input?,
        output_per_1m: output?,
    })
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A price key: 1-256 visible ASCII characters with at most one `*`, only at the end.
fn valid_pattern(name: &str) -> bool {
    let body = name.strip_suffix('*').unwrap_or(name);
    (1..=256).contains(&name.len())
        && !body.contains('*')
        && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
