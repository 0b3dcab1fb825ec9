//! What a request costs: LLM calls by tokens, tool calls per call, in integer micro-USD.
//!
//! Names match a price key exactly, or a key ending in `*` by prefix; an exact key beats any
//! pattern and a longer pattern beats a shorter one. Token costs round up to the next micro-USD,
//! so a request is never estimated below its price.

use portcullis_core::MicroUsd;

use crate::config::Unit;
use crate::plan::{Prices, TokenPrice};
use crate::scope::ScopeLine;

/// How much of each unit a request uses (an estimate before it runs, the actual after).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Amounts {
    pub usd: MicroUsd,
    pub tokens: u64,
    pub calls: u64,
}

/// Why a request could not be priced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error("model `{0}` has no price and no default model price is configured")]
    UnknownModel(String),
    #[error("tool `{0}` has no price and no default tool price is configured")]
    UnknownTool(String),
}

impl Amounts {
    /// The amount in `unit` (micro-USD for `usd`).
    pub const fn get(&self, unit: Unit) -> u64 {
        match unit {
            Unit::Usd => self.usd.0,
            Unit::Tokens => self.tokens,
            Unit::Calls => self.calls,
        }
    }

    /// One LLM call of `input_tokens` + `output_tokens` (for an estimate: the request's
    /// `max_tokens`). The model's price is looked up only when one of `lines` counts USD: an
    /// unpriced model is refused exactly when a USD budget applies.
    pub fn llm(
        prices: &Prices,
        lines: &[ScopeLine],
        model: &str,
        input_tokens: u64,
        output_tokens: u64,
    ) -> Result<Amounts, CostError> {
        let usd = if needs_usd(lines) {
            llm_cost(prices, model, input_tokens, output_tokens)?
        } else {
            MicroUsd::ZERO
        };
        Ok(Amounts {
            usd,
            tokens: input_tokens.saturating_add(output_tokens),
            calls: 1,
        })
    }

    /// One tool call; priced only when one of `lines` counts USD (see [`Amounts::llm`]).
    pub fn tool(prices: &Prices, lines: &[ScopeLine], tool: &str) -> Result<Amounts, CostError> {
        let usd = if needs_usd(lines) {
            tool_cost(prices, tool)?
        } else {
            MicroUsd::ZERO
        };
        Ok(Amounts {
            usd,
            tokens: 0,
            calls: 1,
        })
    }
}

/// Whether any of `lines` counts USD.
pub fn needs_usd(lines: &[ScopeLine]) -> bool {
    lines.iter().any(|line| line.unit == Unit::Usd)
}

/// The estimate of an LLM call before it runs: input tokens plus the most it may answer.
pub fn estimate_llm(
    prices: &Prices,
    model: &str,
    input_tokens: u64,
    max_output_tokens: u64,
) -> Result<MicroUsd, CostError> {
    llm_cost(prices, model, input_tokens, max_output_tokens)
}

/// The actual cost of an LLM call from the usage the provider reported.
pub fn actual_llm(
    prices: &Prices,
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<MicroUsd, CostError> {
    llm_cost(prices, model, input_tokens, output_tokens)
}

/// The price of one call of `tool`.
pub fn tool_cost(prices: &Prices, tool: &str) -> Result<MicroUsd, CostError> {
    lookup(&prices.tools, tool)
        .or(prices.default_tool)
        .ok_or_else(|| CostError::UnknownTool(tool.to_owned()))
}

/// The price of `model`, if it has one.
pub fn model_price(prices: &Prices, model: &str) -> Option<TokenPrice> {
    lookup(&prices.models, model).or(prices.default_model)
}

fn llm_cost(
    prices: &Prices,
    model: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<MicroUsd, CostError> {
    let price =
        model_price(prices, model).ok_or_else(|| CostError::UnknownModel(model.to_owned()))?;
    // u64 * u64 fits u128; the sum of two such products too.
    let numerator = u128::from(input_tokens) * u128::from(price.input_per_1m.0)
        + u128::from(output_tokens) * u128::from(price.output_per_1m.0);
    let micros = numerator.div_ceil(1_000_000);
    Ok(MicroUsd(u64::try_from(micros).unwrap_or(u64::MAX)))
}

/// The entry for `name`: its exact key, else the longest `*` pattern that prefixes it.
fn lookup<T: Copy>(entries: &[(String, T)], name: &str) -> Option<T> {
    let mut best: Option<(usize, T)> = None;
    for (key, value) in entries {
        match key.strip_suffix('*') {
            None if key == name => return Some(*value),
            Some(prefix)
                if name.starts_with(prefix)
                    && best.is_none_or(|(best_len, _)| prefix.len() > best_len) =>
            {
                best = Some((prefix.len(), *value));
            }
            _ => {}
        }
    }
    best.map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn prices() -> Prices {
        let price = |input, output| TokenPrice {
            input_per_1m: MicroUsd(input),
            output_per_1m: MicroUsd(output),
        };
        Prices {
            models: vec![
                ("gpt-4o-mini".to_owned(), price(150_000, 600_000)),
                ("gpt-4o*".to_owned(), price(2_500_000, 10_000_000)),
                ("gpt-*".to_owned(), price(1, 1)),
            ],
            tools: vec![
                ("github.*".to_owned(), MicroUsd(1_000)),
                ("github.create_issue".to_owned(), MicroUsd(5_000)),
            ],
            default_model: None,
            default_tool: None,
        }
    }

    #[test]
    fn llm_cost_rounds_up_per_million() {
        let prices = prices();
        // 1000 * 0.15 + 500 * 0.60 = 450 micro-USD.
        assert_eq!(
            estimate_llm(&prices, "gpt-4o-mini", 1_000, 500),
            Ok(MicroUsd(450))
        );
        // 1 token at 0.15/1M is 0.15 micro-USD: rounded up to 1.
        assert_eq!(actual_llm(&prices, "gpt-4o-mini", 1, 0), Ok(MicroUsd(1)));
        assert_eq!(actual_llm(&prices, "gpt-4o-mini", 0, 0), Ok(MicroUsd(0)));
        // The longer pattern wins over `gpt-*`.
        assert_eq!(
            actual_llm(&prices, "gpt-4o-2024", 1_000_000, 0),
            Ok(MicroUsd(2_500_000))
        );
        assert_eq!(
            actual_llm(&prices, "gpt-3.5", 1_000_000, 0),
            Ok(MicroUsd(1))
        );
        assert_eq!(
            actual_llm(&prices, "claude", 1, 1),
            Err(CostError::UnknownModel("claude".to_owned()))
        );
        assert_eq!(
            actual_llm(&prices, "gpt-4o", u64::MAX, u64::MAX),
            Ok(MicroUsd(u64::MAX))
        );
    }

    #[test]
    fn tool_prices_exact_beats_pattern_and_default_fills_in() {
        let mut prices = prices();
        assert_eq!(
            tool_cost(&prices, "github.create_issue"),
            Ok(MicroUsd(5_000))
        );
        assert_eq!(tool_cost(&prices, "github.list"), Ok(MicroUsd(1_000)));
        assert_eq!(
            tool_cost(&prices, "shell.run"),
            Err(CostError::UnknownTool("shell.run".to_owned()))
        );
        prices.default_tool = Some(MicroUsd(7));
        assert_eq!(tool_cost(&prices, "shell.run"), Ok(MicroUsd(7)));
    }
}
