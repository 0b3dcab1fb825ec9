//! Guardrails on every request: the kill switch (checked right after `identify`), call-rate
//! limits and budgets (the `limit` stage). The pipeline consults them; the admin API changes the
//! kill switch and the budgets.

pub mod alerts;
pub mod budgets;
pub mod killswitch;
pub mod rates;

use std::sync::Arc;

use portcullis_core::Clock;

use crate::config::Config;

/// The guardrails' run-time state, shared by every front.
#[derive(Debug)]
pub struct Guardrails {
    pub killswitch: killswitch::KillSwitch,
    pub rates: rates::RateLimits,
    /// The budget plan in force (counters live in the store).
    pub budgets: budgets::Budgets,
    /// Budget alerts beyond the ledger (the `[alerts]` webhook), or nothing.
    pub alerts: alerts::AlertSender,
}

impl Guardrails {
    /// Builds the guardrails of a validated configuration; the kill switch starts released until
    /// [`killswitch::KillSwitch::restore`] reads the store, and the budgets are the
    /// configuration's until [`budgets::Budgets::restore`] applies the stored changes. `Err`
    /// when `[budgets]` does not compile (validation refuses such configurations earlier).
    pub fn new(
        config: &Config,
        clock: Arc<dyn Clock>,
        alerts: alerts::AlertSender,
    ) -> Result<Self, Vec<portcullis_budget::ConfigIssue>> {
        Ok(Self {
            killswitch: killswitch::KillSwitch::default(),
            rates: rates::RateLimits::new(&config.limits, clock),
            budgets: budgets::Budgets::new(&config.budgets)?,
            alerts,
        })
    }
}

/// How often idle rate counters are dropped.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops idle rate counters every [`SWEEP_INTERVAL`].
pub async fn sweep(guardrails: Arc<Guardrails>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        guardrails.rates.sweep();
    }
}

#[cfg(test)]
mod tests;
