//! Guardrails on every request: the kill switch (checked right after `identify`) and call-rate
//! limits (the `limit` stage). The pipeline consults them; the admin API changes the kill switch.

pub mod alerts;
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
    /// Budget alerts beyond the ledger (the `[alerts]` webhook), or nothing.
    pub alerts: alerts::AlertSender,
}

impl Guardrails {
    /// Builds the guardrails of a validated configuration; the kill switch starts released until
    /// [`killswitch::KillSwitch::restore`] reads the store.
    pub fn new(config: &Config, clock: Arc<dyn Clock>, alerts: alerts::AlertSender) -> Self {
        Self {
            killswitch: killswitch::KillSwitch::default(),
            rates: rates::RateLimits::new(&config.limits, clock),
            alerts,
        }
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
