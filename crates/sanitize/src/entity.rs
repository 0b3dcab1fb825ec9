//! The entity types the sanitizer detects, with their stable names.

use serde::{Deserialize, Serialize};

/// One kind of sensitive value.
///
/// The order of the variants is the tie-break order when two detections overlap with the same
/// length: earlier wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Secret,
    Email,
    CreditCard,
    Iban,
    UsSsn,
    Ip,
    Phone,
}

impl EntityType {
    /// Every type, in tie-break order.
    pub const ALL: [EntityType; 7] = [
        EntityType::Secret,
        EntityType::Email,
        EntityType::CreditCard,
        EntityType::Iban,
        EntityType::UsSsn,
        EntityType::Ip,
        EntityType::Phone,
    ];

    /// The stable upper-case label used in placeholders, stats and the CLI (`EMAIL`).
    pub const fn label(self) -> &'static str {
        match self {
            EntityType::Secret => "SECRET",
            EntityType::Email => "EMAIL",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::Iban => "IBAN",
            EntityType::UsSsn => "US_SSN",
            EntityType::Ip => "IP",
            EntityType::Phone => "PHONE",
        }
    }

    /// Parses a label as printed by [`EntityType::label`].
    pub fn from_label(label: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|ty| ty.label() == label)
    }

    /// Position in [`EntityType::ALL`], for per-type tables.
    pub const fn index(self) -> usize {
        match self {
            EntityType::Secret => 0,
            EntityType::Email => 1,
            EntityType::CreditCard => 2,
            EntityType::Iban => 3,
            EntityType::UsSsn => 4,
            EntityType::Ip => 5,
            EntityType::Phone => 6,
        }
    }
}

impl std::fmt::Display for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Counts per entity type; never values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    per_type: [u32; 7],
}

impl Counts {
    /// The count for one type.
    pub fn get(&self, ty: EntityType) -> u32 {
        self.per_type.get(ty.index()).copied().unwrap_or(0)
    }

    /// Adds one occurrence of `ty`.
    pub fn add(&mut self, ty: EntityType) {
        if let Some(slot) = self.per_type.get_mut(ty.index()) {
            *slot = slot.saturating_add(1);
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (slot, n) in self.per_type.iter_mut().zip(other.per_type) {
            *slot = slot.saturating_add(n);
        }
    }

    /// The sum over all types.
    pub fn total(&self) -> u64 {
        self.per_type.iter().map(|n| u64::from(*n)).sum()
    }

    /// The non-zero counts as a JSON object `{"EMAIL": 2, ...}`, for records.
    pub fn to_json(&self) -> serde_json::Value {
        self.iter()
            .map(|(ty, n)| (ty.label().to_owned(), serde_json::Value::from(n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// The non-zero counts, in [`EntityType::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (EntityType, u32)> + '_ {
        EntityType::ALL
            .into_iter()
            .map(|ty| (ty, self.get(ty)))
            .filter(|(_, n)| *n > 0)
    }
}

impl std::fmt::Display for Counts {
    /// `EMAIL=2, PHONE=1`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (ty, n) in self.iter() {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{ty}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_index_matches_order() {
        for (idx, ty) in EntityType::ALL.into_iter().enumerate() {
            assert_eq!(EntityType::from_label(ty.label()), Some(ty));
            assert_eq!(ty.index(), idx);
        }
    }

    #[test]
    fn counts_display_lists_non_zero_types() {
        let mut counts = Counts::default();
        counts.add(EntityType::Phone);
        counts.add(EntityType::Email);
        counts.add(EntityType::Email);
        assert_eq!(counts.to_string(), "EMAIL=2, PHONE=1");
        assert_eq!(counts.total(), 3);
    }
}
