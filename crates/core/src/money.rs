//! Money as integer micro-USD.

use serde::{Deserialize, Serialize};

/// An amount in millionths of a US dollar. Accounting never uses floats.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct MicroUsd(pub u64);

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);

    pub const fn from_dollars(dollars: u64) -> Self {
        Self(dollars.saturating_mul(1_000_000))
    }

    pub const fn saturating_add(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_add(other.0))
    }
}
