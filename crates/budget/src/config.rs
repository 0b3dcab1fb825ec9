//! The `[budgets]` configuration section as the gateway deserializes it, with its defaults.
//!
//! These types only describe the file; [`BudgetsConfig::compile`] checks them and builds the
//! [`crate::BudgetPlan`] the rest of the crate works with.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default time zone of calendar windows.
pub const DEFAULT_TIME_ZONE: &str = "UTC";
/// Default lifetime of a reservation before [`crate::Book::release_expired`] releases it.
pub const DEFAULT_RESERVATION_TTL: &str = "15m";
/// Default soft-throttle threshold, in percent of the limit.
pub const DEFAULT_THROTTLE_AT: u8 = 80;
/// Default pause of the `delay` throttle action.
pub const DEFAULT_DELAY: &str = "1s";

/// `[budgets]`. Every field has a default, so an empty section is valid.
///
/// ```toml
/// [budgets]
/// mode = "enforce"
/// time_zone = "Europe/Berlin"
/// reservation_ttl = "15m"
/// [budgets.prices.models."gpt-4o-mini"]
/// input_per_1m = "0.15"
/// output_per_1m = "0.60"
/// [budgets.prices.tools]
/// "github.*" = "0.001"
/// [[budgets.budgets]]
/// id = "user-daily"
/// scope = "user"
/// unit = "usd"
/// window = "day"
/// limit = "5.00"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// `enforce` refuses a request that would pass a limit; `report` lets it through and only
    /// records the would-be refusal as an event. Default `enforce`.
    pub mode: BudgetMode,
    /// IANA time zone in which `day` and `month` windows roll over at local midnight (and the
    /// days of `rolling_30d` are counted). Default `UTC`.
    pub time_zone: String,
    /// How long a reservation lives before it is released as expired, like `"15m"`; keep it
    /// longer than the slowest request. Between 1s and 24h. Default `15m`.
    pub reservation_ttl: String,
    /// Prices of models and tools, as exact decimal USD strings.
    pub prices: PriceTable,
    /// The budgets in force. Default: the three starter budgets (each session $0.50 over its
    /// lifetime, each user $5.00 a day, everything together $120.00 a month). Listing any budget
    /// replaces all three; `budgets = []` turns budgets off.
    pub budgets: Vec<BudgetDef>,
}

/// Refuse over-limit requests, or only report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMode {
    /// Refuse a request that would pass a limit with `budget_exceeded`.
    #[default]
    Enforce,
    /// Admit every request, count its spend, and report what would have been refused.
    Report,
}

/// `[budgets.prices]`: what models and tools cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PriceTable {
    /// `[budgets.prices.models."<model>"]`: price per model name. A name may end in `*` to
    /// cover every model it prefixes (`"gpt-4o*"`); an exact name beats a pattern, and a longer
    /// pattern beats a shorter one. Default empty.
    pub models: BTreeMap<String, ModelPrice>,
    /// `[budgets.prices.tools]`: USD per call by tool name or pattern (`"github.*" = "0.001"`),
    /// matched like model names. Default empty.
    pub tools: BTreeMap<String, String>,
    /// Price of a model not listed in `models`. Unset (the default): a call to an unlisted model
    /// is refused while a USD budget applies to it.
    pub default_model: Option<ModelPrice>,
    /// USD per call of a tool not listed in `tools`. Default `"0"`: tools are free unless
    /// priced. To refuse unlisted tools under a USD budget instead, set `deny_unpriced_tools`.
    pub default_tool: Option<String>,
    /// Refuse a call to a tool not listed in `tools` while a USD budget applies to it, ignoring
    /// `default_tool`. Default `false`.
    pub deny_unpriced_tools: bool,
}

/// The price of one model, in USD per million tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// USD per 1,000,000 input (prompt) tokens, like `"0.15"`; at most 6 decimals.
    pub input_per_1m: String,
    /// USD per 1,000,000 output (completion) tokens, like `"0.60"`; at most 6 decimals.
    pub output_per_1m: String,
}

/// `[[budgets.budgets]]`: one limit on one scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetDef {
    /// Unique id, 1-64 characters of `[A-Za-z0-9._-]`.
    pub id: String,
    /// Whose spend this budget counts.
    pub scope: Scope,
    /// One value of the scope (`"alice"` for a user, an agent id, a project name). Unset: every
    /// value of the scope gets its own counter against the same limit (one per agent, say).
    /// Ignored for `global`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// What is counted.
    pub unit: Unit,
    /// Over which period.
    pub window: Window,
    /// The limit: a decimal USD string for `usd` (`"5.00"`, at most 6 decimals), a whole number
    /// (or a string of digits) for `tokens` and `calls`.
    pub limit: LimitValue,
    /// Percent of the limit (1-100) from which the soft throttle applies. Default 80.
    #[serde(default = "default_throttle_at")]
    pub throttle_at: u8,
    /// What the soft throttle does. Default `delay`.
    #[serde(default)]
    pub throttle_action: ThrottleAction,
    /// How long `delay` waits before the request goes on, like `"1s"`; at most 60s. Default
    /// `1s`.
    #[serde(default = "default_delay")]
    pub delay: String,
    /// The model (or route alias) `downgrade` switches to; required with `downgrade`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade_to: Option<String>,
}

/// A limit as written in TOML: a string or a whole number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum LimitValue {
    Whole(u64),
    Text(String),
}

/// The dimension of the subject a budget counts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One agent session (`X-Portcullis-Session`, the MCP session, or one per request).
    Session,
    /// One agent (by id).
    Agent,
    /// One human the agent acts for (`X-Portcullis-User`).
    User,
    /// One chat room (`X-Portcullis-Room`).
    Room,
    /// One project (the agent's `project`).
    Project,
    /// Everything together.
    Global,
}

/// What a budget counts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Money, counted in integer micro-USD.
    Usd,
    /// LLM tokens, input and output together.
    Tokens,
    /// Calls (tool calls and LLM calls), one each.
    Calls,
}

/// The period a budget's limit covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// The calendar day in `time_zone`, from local midnight to local midnight.
    Day,
    /// The calendar month in `time_zone`, from local midnight of its first day.
    Month,
    /// The last 30 calendar days in `time_zone`, today included.
    #[serde(rename = "rolling_30d")]
    Rolling30d,
    /// Forever; only for `session` budgets.
    Lifetime,
}

/// What happens to a request once a budget is at or over `throttle_at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleAction {
    /// Wait `delay`, then go on.
    #[default]
    Delay,
    /// Switch the request to the model (or route alias) in `downgrade_to`.
    Downgrade,
    /// Hand the request to the approval stage (refused until approvals exist).
    Approve,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        Self {
            mode: BudgetMode::Enforce,
            time_zone: DEFAULT_TIME_ZONE.to_owned(),
            reservation_ttl: DEFAULT_RESERVATION_TTL.to_owned(),
            prices: PriceTable::default(),
            budgets: default_budgets(),
        }
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            models: BTreeMap::new(),
            tools: BTreeMap::new(),
            default_model: None,
            default_tool: Some("0".to_owned()),
            deny_unpriced_tools: false,
        }
    }
}

/// The starter budgets of seed 002: session $0.50 lifetime, user $5.00/day, global $120/month.
pub fn default_budgets() -> Vec<BudgetDef> {
    [
        ("session", Scope::Session, Window::Lifetime, "0.50"),
        ("user-daily", Scope::User, Window::Day, "5.00"),
        ("global-monthly", Scope::Global, Window::Month, "120.00"),
    ]
    .into_iter()
    .map(|(id, scope, window, limit)| BudgetDef::new(id, scope, Unit::Usd, window, limit))
    .collect()
}

impl BudgetDef {
    /// A budget with the default throttle (80%, `delay` of 1s) and no fixed subject.
    pub fn new(id: &str, scope: Scope, unit: Unit, window: Window, limit: &str) -> Self {
        Self {
            id: id.to_owned(),
            scope,
            subject: None,
            unit,
            window,
            limit: LimitValue::Text(limit.to_owned()),
            throttle_at: DEFAULT_THROTTLE_AT,
            throttle_action: ThrottleAction::Delay,
            delay: DEFAULT_DELAY.to_owned(),
            downgrade_to: None,
        }
    }
}

fn default_throttle_at() -> u8 {
    DEFAULT_THROTTLE_AT
}

fn default_delay() -> String {
    DEFAULT_DELAY.to_owned()
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Session,
        Scope::Agent,
        Scope::User,
        Scope::Room,
        Scope::Project,
        Scope::Global,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Session => "session",
            Scope::Agent => "agent",
            Scope::User => "user",
            Scope::Room => "room",
            Scope::Project => "project",
            Scope::Global => "global",
        }
    }
}

impl Unit {
    pub const ALL: [Unit; 3] = [Unit::Usd, Unit::Tokens, Unit::Calls];

    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Usd => "usd",
            Unit::Tokens => "tokens",
            Unit::Calls => "calls",
        }
    }

    /// The unit named `name` (`usd`, `tokens`, `calls`).
    pub fn parse(name: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|unit| unit.as_str() == name)
    }
}

impl Window {
    pub const fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
            Window::Rolling30d => "rolling_30d",
            Window::Lifetime => "lifetime",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
