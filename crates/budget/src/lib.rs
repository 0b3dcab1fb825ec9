//! Budgets for agent spend: the `[budgets]` configuration, calendar windows, prices, thresholds
//! and the in-memory reservation [`Book`] the store keeps authoritative.
//!
//! Pure: no I/O, no clock, no async runtime. Every function takes `now`; the gateway owns the
//! clock and the store owns persistence (it keeps a [`Book`] under one lock and persists the
//! [`Change`]s it returns). The one outside input is jiff's time zone database, read when a
//! configuration is compiled.
//!
//! How a request flows through it:
//! 1. [`BudgetsConfig::compile`] checks the section into a [`BudgetPlan`] (zone, prices and
//!    limits parsed; micro-USD integers from decimal strings, never floats).
//! 2. [`BudgetPlan::applicable`] lists the [`ScopeLine`]s a request's subject touches, each with a
//!    stable key, its limit and its window at `now` ([`window`]).
//! 3. [`Amounts::llm`] / [`Amounts::tool`] price the request ([`cost`]); an unpriced model or tool
//!    is an error only when a USD line applies.
//! 4. The store reserves the amounts in every line's [`Meter`] at once ([`Book::reserve`]),
//!    later settles the actual ([`Book::settle`]) or releases it.
//! 5. [`threshold`] says which alert tiers a step crossed, whether the soft throttle or the
//!    95% session pause applies, and whether the hard stop was passed.
//!
//! Must never depend on: tokio, SQLite, HTTP, the file system, the system clock.
//!
//! Invariants:
//! - Money is integer micro-USD; prices round up, so an estimate never undercounts its price.
//! - In `enforce` mode a reservation that would take any line past its limit changes nothing.
//! - Spend is recorded per account and unit, independent of budget ids: a budget reads what its
//!   account recorded in its window, whichever budget was in force when it was recorded.
//! - Windows are half-open at local midnight in the configured zone; no instant is in two days.

pub mod book;
pub mod config;
pub mod cost;
pub mod decimal;
pub mod plan;
pub mod reason;
pub mod scope;
pub mod threshold;
pub mod window;

pub use book::{
    AccountSnapshot, Book, BookError, Change, Hold, LineUsage, Meter, Reservation, ReservationId,
    ReserveOutcome, SettledHold, Settlement,
};
pub use config::{
    BudgetDef, BudgetMode, BudgetsConfig, LimitValue, ModelPrice, PriceTable, Scope,
    ThrottleAction, Unit, Window,
};
pub use cost::{Amounts, CostError, actual_llm, estimate_llm, tool_cost};
pub use decimal::{DecimalError, format_usd, parse_usd};
pub use plan::{Budget, BudgetPlan, ConfigIssue, Prices, Throttle, TokenPrice};
pub use reason::{REASONS, Refusal};
pub use scope::{ScopeLine, applicable};
pub use threshold::{AlertTier, Assessment};
pub use window::{DayRange, WindowError, WindowSpan};
