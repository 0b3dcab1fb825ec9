//! Call-rate limits: GCRA (governor) counters keyed per agent, project and tool or model name,
//! timed by the injected clock.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use portcullis_core::Clock;

use crate::config::limits::{LimitMode, LimitsConfig, NamePattern, RateKey, RateTarget};

/// Counters one rule keeps before idle ones are swept; past it (after a sweep) the rule refuses.
pub const MAX_KEYS_PER_RULE: usize = 100_000;

/// What a call is, for the rules that apply to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallName<'a> {
    Tool(&'a str),
    Model(&'a str),
}

impl<'a> CallName<'a> {
    fn name(self) -> &'a str {
        match self {
            CallName::Tool(name) | CallName::Model(name) => name,
        }
    }
}

/// A rule without room for a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateHit {
    /// The rule's id.
    pub rule: String,
    /// Whole seconds until the rule has room again (at least 1).
    pub retry_after_secs: u64,
}

/// The rate rules in force.
#[derive(Debug)]
pub struct RateLimits {
    mode: LimitMode,
    rules: Vec<CompiledRule>,
}

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, LimiterClock, NoOpMiddleware<Nanos>>;

#[derive(Debug)]
struct CompiledRule {
    id: String,
    applies_to: RateTarget,
    pattern: NamePattern,
    per: Vec<RateKey>,
    limiter: Limiter,
    clock: LimiterClock,
}

/// Governor time from the gateway's clock: nanoseconds since the Unix epoch.
#[derive(Clone, Debug)]
struct LimiterClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let nanos = self.0.now().as_nanosecond().max(0);
        Nanos::from(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl RateLimits {
    /// Compiles the rules of a validated `[limits]`; a rule that does not compile is skipped
    /// and logged (validation refuses such configurations before this point).
    pub fn new(config: &LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        let clock = LimiterClock(clock);
        let rules = config
            .rates
            .iter()
            .filter_map(|rule| {
                let pattern = NamePattern::parse(&rule.pattern).ok()?;
                let calls = NonZeroU32::new(rule.calls)?;
                let period = rule.window.as_std().checked_div(rule.calls)?;
                let quota =
                    Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(calls);
                Some(CompiledRule {
                    id: rule.id.clone(),
                    applies_to: rule.applies_to,
                    pattern,
                    per: rule.per.clone(),
                    limiter: RateLimiter::new(
                        quota,
                        DefaultKeyedStateStore::default(),
                        clock.clone(),
                    ),
                    clock: clock.clone(),
                })
            })
            .collect();
        Self {
            mode: config.mode,
            rules,
        }
    }

    pub fn mode(&self) -> LimitMode {
        self.mode
    }

    /// Takes one call from every rule that applies; the first rule without room is the answer.
    /// Rules checked before it have counted the call (GCRA cells are not given back).
    pub fn check(
        &self,
        agent: &str,
        project: Option<&str>,
        call: CallName<'_>,
    ) -> Result<(), RateHit> {
        for rule in &self.rules {
            let applies = match (rule.applies_to, call) {
                (RateTarget::All, _)
                | (RateTarget::Tools, CallName::Tool(_))
                | (RateTarget::Models, CallName::Model(_)) => true,
                (RateTarget::Tools, CallName::Model(_))
                | (RateTarget::Models, CallName::Tool(_)) => false,
            };
            if !applies || !rule.pattern.matches(call.name()) {
                continue;
            }
            rule.check(agent, project, call)?;
        }
        Ok(())
    }

    /// Drops counters that are back to a fresh state.
    pub fn sweep(&self) {
        for rule in &self.rules {
            rule.limiter.retain_recent();
            rule.limiter.shrink_to_fit();
        }
    }
}

impl CompiledRule {
    fn check(&self, agent: &str, project: Option<&str>, call: CallName<'_>) -> Result<(), RateHit> {
        let mut key = String::new();
        for dimension in &self.per {
            // Separator bytes that no id, project or name may hold apart (`\u{1}`).
            key.push('\u{1}');
            key.push_str(match dimension {
                RateKey::Agent => agent,
                RateKey::Project => project.unwrap_or(""),
                RateKey::Name => call.name(),
            });
        }
        if self.limiter.len() >= MAX_KEYS_PER_RULE {
            self.limiter.retain_recent();
            if self.limiter.len() >= MAX_KEYS_PER_RULE {
                tracing::warn!(rule = %self.id, "rate rule has too many live counters; refusing");
                return Err(RateHit {
                    rule: self.id.clone(),
                    retry_after_secs: 1,
                });
            }
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&self.clock));
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            RateHit {
                rule: self.id.clone(),
                retry_after_secs: secs.max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use portcullis_test_support::ManualClock;

    use super::*;
    use crate::config::ConfigDuration;
    use crate::config::limits::RateRule;

    fn rule(
        id: &str,
        applies_to: RateTarget,
        pattern: &str,
        per: &[RateKey],
        calls: u32,
        secs: u64,
    ) -> RateRule {
        RateRule {
            id: id.to_owned(),
            applies_to,
            pattern: pattern.to_owned(),
            per: per.to_vec(),
            calls,
            window: ConfigDuration::from_secs(secs),
        }
    }

    fn limits(rules: Vec<RateRule>) -> (RateLimits, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at_epoch_2026());
        let config = LimitsConfig {
            mode: LimitMode::Enforce,
            rates: rules,
        };
        (RateLimits::new(&config, clock.clone()), clock)
    }

    #[test]
    fn per_agent_rule_admits_the_burst_then_names_the_wait() {
        let (limits, clock) = limits(vec![rule(
            "a",
            RateTarget::All,
            "*",
            &[RateKey::Agent],
            2,
            60,
        )]);
        let call = CallName::Tool("t");
        assert_eq!(limits.check("x", None, call), Ok(()));
        assert_eq!(limits.check("x", None, call), Ok(()));
        let hit = limits.check("x", None, call).unwrap_err();
        assert_eq!(hit.rule, "a");
        assert_eq!(hit.retry_after_secs, 30);
        // Another agent has its own counter.
        assert_eq!(limits.check("y", None, call), Ok(()));
        clock.advance(SignedDuration::from_secs(29));
        assert_eq!(
            limits.check("x", None, call).unwrap_err().retry_after_secs,
            1
        );
        clock.advance(SignedDuration::from_secs(1));
        assert_eq!(limits.check("x", None, call), Ok(()));
    }

    #[test]
    fn rules_apply_by_kind_and_pattern_and_key_by_name() {
        let (limits, _clock) = limits(vec![
            rule("gh", RateTarget::Tools, "github.*", &[], 1, 60),
            rule(
                "model",
                RateTarget::Models,
                "*",
                &[RateKey::Agent, RateKey::Name],
                1,
                60,
            ),
        ]);
        assert_eq!(limits.check("x", None, CallName::Tool("fs.read")), Ok(()));
        assert_eq!(limits.check("x", None, CallName::Tool("fs.read")), Ok(()));
        assert_eq!(limits.check("x", None, CallName::Tool("github.a")), Ok(()));
        // One counter shared by every caller and every matching tool.
        assert_eq!(
            limits
                .check("y", None, CallName::Tool("github.b"))
                .unwrap_err()
                .rule,
            "gh"
        );
        assert_eq!(limits.check("x", None, CallName::Model("m1")), Ok(()));
        assert_eq!(limits.check("x", None, CallName::Model("m2")), Ok(()));
        assert_eq!(
            limits
                .check("x", None, CallName::Model("m1"))
                .unwrap_err()
                .rule,
            "model"
        );
        assert_eq!(limits.check("y", None, CallName::Model("m1")), Ok(()));
    }
}
