//! Which budget counters a request touches: [`applicable`] turns budgets and a subject into
//! [`ScopeLine`]s.
//!
//! Spend is recorded per *account* (a scope and its value, such as `user:alice`) and unit, in
//! day buckets, independent of budget ids. A budget reads the account's buckets in its window,
//! so two budgets on the same account and unit (a daily and a monthly one, or one added later)
//! count the same spend.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use portcullis_core::Subject;

use crate::book::Meter;
use crate::config::{Scope, Unit};
use crate::plan::{Budget, BudgetPlan, Throttle};
use crate::window::{self, WindowError, WindowSpan};

/// The account name of the `global` scope.
pub const GLOBAL_ACCOUNT: &str = "global";

/// One budget as it applies to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeLine {
    /// Stable name of this budget's counter for this scope value: `<budget id>@<account>`, such
    /// as `user-daily@user:alice`. Alert tiers and pauses are keyed by it.
    pub key: String,
    pub budget_id: String,
    pub scope: Scope,
    /// The scope value (`alice`), or `global`.
    pub value: String,
    /// Where spend is recorded: `<scope>:<value>` (`user:alice`), or `global`.
    pub account: String,
    pub unit: Unit,
    /// Micro-USD for `usd`, tokens or calls otherwise.
    pub limit: u64,
    /// The window at the time of the request (days counted, alert key, reset time).
    pub window: WindowSpan,
    pub throttle_at: u8,
    pub throttle: Throttle,
}

/// The account a scope value records its spend in: `<scope>:<value>`, or `global`.
pub fn account(scope: Scope, value: &str) -> String {
    match scope {
        Scope::Global => GLOBAL_ACCOUNT.to_owned(),
        _ => format!("{}:{value}", scope.as_str()),
    }
}

/// The subject's value for `scope`, if it has one (`global` always does).
pub fn scope_value(subject: &Subject, scope: Scope) -> Option<&str> {
    match scope {
        Scope::Session => subject.session.as_deref(),
        Scope::Agent => Some(subject.agent.as_str()),
        Scope::User => subject.user.as_deref(),
        Scope::Room => subject.room.as_deref(),
        Scope::Project => subject.project.as_deref(),
        Scope::Global => Some(GLOBAL_ACCOUNT),
    }
    .filter(|value| !value.is_empty())
}

/// The budgets that apply to a request by `subject` at `now`, in budget order.
///
/// A budget applies when the subject has a value for its scope (a request without a user is
/// counted by no `user` budget) and, for a budget with a fixed `subject`, that value is it.
pub fn applicable(
    budgets: &[Budget],
    zone: &TimeZone,
    subject: &Subject,
    now: Timestamp,
) -> Result<Vec<ScopeLine>, WindowError> {
    let mut res = Vec::new();
    for budget in budgets {
        let Some(value) = scope_value(subject, budget.scope) else {
            continue;
        };
        if budget
            .subject
            .as_deref()
            .is_some_and(|fixed| fixed != value)
        {
            continue;
        }
        let account = account(budget.scope, value);
        res.push(ScopeLine {
            key: format!("{}@{account}", budget.id),
            budget_id: budget.id.clone(),
            scope: budget.scope,
            value: value.to_owned(),
            account,
            unit: budget.unit,
            limit: budget.limit,
            window: window::span(budget.window, zone, now)?,
            throttle_at: budget.throttle_at,
            throttle: budget.throttle.clone(),
        });
    }
    Ok(res)
}

impl BudgetPlan {
    /// [`applicable`] with this plan's budgets and zone.
    pub fn applicable(
        &self,
        subject: &Subject,
        now: Timestamp,
    ) -> Result<Vec<ScopeLine>, WindowError> {
        applicable(&self.budgets, &self.zone, subject, now)
    }
}

impl ScopeLine {
    /// What the store needs to check and record this line.
    pub fn meter(&self) -> Meter {
        Meter {
            key: self.key.clone(),
            account: self.account.clone(),
            unit: self.unit,
            days: self.window.days,
            today: self.window.today,
            limit: self.limit,
        }
    }
}

/// The meters of `lines`, in order.
pub fn meters(lines: &[ScopeLine]) -> Vec<Meter> {
    lines.iter().map(ScopeLine::meter).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::config::{BudgetDef, BudgetsConfig, Window};

    fn subject(user: Option<&str>) -> Subject {
        Subject {
            agent: "bot".to_owned(),
            user: user.map(str::to_owned),
            session: Some("s1".to_owned()),
            ..Subject::default()
        }
    }

    #[test]
    fn lines_follow_the_subject_and_fixed_values() {
        let mut config = BudgetsConfig::default();
        let mut alice = BudgetDef::new("alice", Scope::User, Unit::Calls, Window::Day, "10");
        alice.subject = Some("alice".to_owned());
        config.budgets.push(alice);
        config.budgets.push(BudgetDef::new(
            "rooms",
            Scope::Room,
            Unit::Usd,
            Window::Day,
            "1",
        ));
        let plan = config.compile().unwrap();
        let now = "2026-03-08T12:00:00Z".parse().unwrap();
        let keys = |user| -> Vec<String> {
            plan.applicable(&subject(user), now)
                .unwrap()
                .into_iter()
                .map(|line| line.key)
                .collect()
        };
        assert_eq!(
            keys(Some("alice")),
            [
                "session@session:s1",
                "user-daily@user:alice",
                "global-monthly@global",
                "alice@user:alice"
            ]
        );
        assert_eq!(
            keys(Some("bob")),
            [
                "session@session:s1",
                "user-daily@user:bob",
                "global-monthly@global"
            ]
        );
        assert_eq!(keys(None), ["session@session:s1", "global-monthly@global"]);
        let lines = plan.applicable(&subject(Some("alice")), now).unwrap();
        assert_eq!(lines[1].window.key, "day:2026-03-08");
        assert_eq!(lines[3].account, lines[1].account);
        assert_eq!(lines[1].meter().limit, 5_000_000);
    }
}
