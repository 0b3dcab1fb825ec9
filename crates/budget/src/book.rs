//! The reservation book: spend counters, live reservations, fired alerts and pauses, in memory.
//!
//! The store keeps one [`Book`] under one lock as the authoritative state and persists the
//! [`Change`] each mutation returns, in order; at open it rebuilds the book from what it
//! persisted with the `restore_*` methods. The book itself does no I/O and reads no clock.
//!
//! Accounting model: spend is recorded per account (`user:alice`) and unit in day buckets, plus
//! a running total for `lifetime`. A reservation holds an amount once per distinct account and
//! unit of a request (two budgets on the same account and unit share the hold), and counts
//! against every window of that account while it lives.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;
use jiff::ToSpan;
use jiff::civil::Date;

use crate::config::{BudgetMode, Unit};
use crate::cost::Amounts;
use crate::threshold::{self, AlertTier, Assessment};
use crate::window::DayRange;

/// Most live reservations the book holds; a reservation past it is refused.
pub const MAX_LIVE_RESERVATIONS: usize = 1_000_000;
/// Day buckets older than this many days before the newest one are dropped from memory (no
/// window but `lifetime`, which uses the running total, reaches that far back).
pub const KEEP_DAYS: i64 = 62;

/// One budget counter as the store sees it: where to record, what to read, the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meter {
    /// The budget line's key (`user-daily@user:alice`), carried into [`LineUsage`].
    pub key: String,
    /// The account spend is recorded in (`user:alice`).
    pub account: String,
    pub unit: Unit,
    /// The days whose spend counts against `limit`.
    pub days: DayRange,
    /// The day bucket new spend goes to.
    pub today: Date,
    pub limit: u64,
}

/// A reservation's id: unique across restarts of the same store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(pub u64);

/// A meter's state around one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineUsage {
    pub key: String,
    pub account: String,
    pub unit: Unit,
    pub limit: u64,
    /// Spend recorded in the window (before this request).
    pub spent: u64,
    /// Held by live reservations (before this request).
    pub reserved: u64,
    /// This request's amount (0 for a plain usage read).
    pub amount: u64,
}

/// The answer to [`Book::reserve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Held in every line. In `report` mode some lines may be over their limit
    /// ([`LineUsage::exceeds`]); in `enforce` mode none is.
    Reserved {
        id: ReservationId,
        lines: Vec<LineUsage>,
    },
    /// Refused (`enforce` mode): at least one line would pass its limit. Nothing changed.
    Exceeded { lines: Vec<LineUsage> },
}

/// An amount held (or charged) in one account and unit, in one day bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub account: String,
    pub unit: Unit,
    pub day: Date,
    pub amount: u64,
}

/// A live reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub expires_at: Timestamp,
    pub holds: Vec<Hold>,
}

/// The answer to [`Book::settle`]: each hold with its reserved and actual amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    pub id: ReservationId,
    pub holds: Vec<SettledHold>,
}

/// One hold of a settled reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledHold {
    pub account: String,
    pub unit: Unit,
    pub day: Date,
    pub reserved: u64,
    pub actual: u64,
}

/// Spend and holds of one account and unit (for the admin view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSnapshot {
    pub account: String,
    pub unit: Unit,
    /// Everything ever recorded.
    pub total: u64,
    pub reserved: u64,
    /// Recent day buckets (at most [`KEEP_DAYS`] back from the newest), oldest first.
    pub days: Vec<(Date, u64)>,
}

/// One state change, for the store to persist in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Reserved(Reservation),
    /// The reservation is gone; `charges` are added to the spend buckets.
    Settled {
        id: ReservationId,
        charges: Vec<Hold>,
    },
    /// `charges` are added to the spend buckets (spend recorded without a reservation).
    Charged {
        charges: Vec<Hold>,
    },
    Released {
        ids: Vec<ReservationId>,
    },
    AlertFired {
        key: String,
        window: String,
        tier: AlertTier,
    },
    Paused {
        key: String,
        until: Option<Timestamp>,
    },
    Unpaused {
        key: String,
    },
}

/// Why the book refused a mutation. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("no live reservation {0:?} (settled, released or expired)")]
    UnknownReservation(ReservationId),
    #[error("{MAX_LIVE_RESERVATIONS} reservations are live already")]
    TooManyReservations,
}

/// The in-memory state. See the module docs.
#[derive(Debug, Default)]
pub struct Book {
    accounts: HashMap<(String, Unit), Account>,
    reservations: HashMap<ReservationId, Reservation>,
    /// `(expires_at, id)` of every live reservation.
    /// INVARIANT (expiry-index): holds exactly the live reservations; every insert into and
    /// removal from `reservations` goes through `insert_reservation`/`take_reservation`.
    expiries: BTreeSet<(Timestamp, ReservationId)>,
    next_id: u64,
    alerts: HashSet<(String, String, AlertTier)>,
    pauses: BTreeMap<String, Option<Timestamp>>,
}

#[derive(Debug, Default)]
struct Account {
    total: u64,
    reserved: u64,
    days: BTreeMap<Date, u64>,
}

impl LineUsage {
    /// Spent + reserved before this request.
    pub fn used_before(&self) -> u64 {
        self.spent.saturating_add(self.reserved)
    }

    /// Spent + reserved with this request.
    pub fn used_after(&self) -> u64 {
        self.used_before().saturating_add(self.amount)
    }

    /// Whether this request passes the limit.
    pub fn exceeds(&self) -> bool {
        self.used_after() > self.limit
    }

    /// Thresholds this request reaches (see [`threshold::assess`]).
    pub fn assess(&self, throttle_at: u8) -> Assessment {
        threshold::assess(
            self.limit,
            self.used_before(),
            self.used_after(),
            throttle_at,
        )
    }
}

impl SettledHold {
    /// How much the actual passed the reservation.
    pub fn overage(&self) -> u64 {
        self.actual.saturating_sub(self.reserved)
    }
}

impl Book {
    /// An empty book whose reservation ids start at `epoch << 32`. The store persists a counter
    /// of opens and passes it here, so ids are never reused across restarts.
    pub fn new(epoch: u32) -> Self {
        Self {
            next_id: u64::from(epoch) << 32,
            ..Self::default()
        }
    }

    /// Reserves `amounts` in every meter at once: in `enforce` mode, refuses (changing nothing)
    /// when in any meter spent + reserved + amount would pass the limit.
    pub fn reserve(
        &mut self,
        meters: &[Meter],
        amounts: &Amounts,
        expires_at: Timestamp,
        mode: BudgetMode,
    ) -> Result<(ReserveOutcome, Option<Change>), BookError> {
        let lines = self.lines(meters, amounts);
        if mode == BudgetMode::Enforce && lines.iter().any(LineUsage::exceeds) {
            return Ok((ReserveOutcome::Exceeded { lines }, None));
        }
        if self.reservations.len() >= MAX_LIVE_RESERVATIONS {
            return Err(BookError::TooManyReservations);
        }
        let holds = holds(meters, amounts);
        for hold in &holds {
            let account = self.account_mut(&hold.account, hold.unit);
            account.reserved = account.reserved.saturating_add(hold.amount);
        }
        let id = ReservationId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        let reservation = Reservation {
            id,
            expires_at,
            holds,
        };
        self.insert_reservation(reservation.clone());
        Ok((
            ReserveOutcome::Reserved { id, lines },
            Some(Change::Reserved(reservation)),
        ))
    }

    /// Replaces reservation `id` with the actual amounts, which may be higher than reserved:
    /// the whole actual is recorded, and [`SettledHold::overage`] reports the excess.
    pub fn settle(
        &mut self,
        id: ReservationId,
        actual: &Amounts,
    ) -> Result<(Settlement, Change), BookError> {
        let reservation = self
            .take_reservation(id)
            .ok_or(BookError::UnknownReservation(id))?;
        let mut settled = Vec::with_capacity(reservation.holds.len());
        let mut charges = Vec::with_capacity(reservation.holds.len());
        for hold in reservation.holds {
            let amount = actual.get(hold.unit);
            let account = self.account_mut(&hold.account, hold.unit);
            account.reserved = account.reserved.saturating_sub(hold.amount);
            account.add(hold.day, amount);
            settled.push(SettledHold {
                account: hold.account.clone(),
                unit: hold.unit,
                day: hold.day,
                reserved: hold.amount,
                actual: amount,
            });
            charges.push(Hold { amount, ..hold });
        }
        Ok((
            Settlement { id, holds: settled },
            Change::Settled { id, charges },
        ))
    }

    /// Drops reservation `id` without recording spend (the request failed or was refused).
    pub fn release(&mut self, id: ReservationId) -> Result<(Reservation, Change), BookError> {
        let reservation = self
            .take_reservation(id)
            .ok_or(BookError::UnknownReservation(id))?;
        self.unhold(&reservation);
        Ok((reservation, Change::Released { ids: vec![id] }))
    }

    /// Releases every reservation that expired at or before `now`, oldest first.
    pub fn release_expired(&mut self, now: Timestamp) -> (Vec<Reservation>, Option<Change>) {
        let due: Vec<ReservationId> = self
            .expiries
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .map(|(_, id)| *id)
            .collect();
        let mut released = Vec::with_capacity(due.len());
        for id in &due {
            if let Some(reservation) = self.take_reservation(*id) {
                self.unhold(&reservation);
                released.push(reservation);
            }
        }
        let change = (!due.is_empty()).then_some(Change::Released { ids: due });
        (released, change)
    }

    /// Records `amounts` in every meter's account without a check or reservation (spend that
    /// happened anyway, such as a settle that arrived after its reservation expired). Returns
    /// the lines as they were before.
    pub fn charge(&mut self, meters: &[Meter], amounts: &Amounts) -> (Vec<LineUsage>, Change) {
        let lines = self.lines(meters, amounts);
        let charges = holds(meters, amounts);
        for charge in &charges {
            self.account_mut(&charge.account, charge.unit)
                .add(charge.day, charge.amount);
        }
        (lines, Change::Charged { charges })
    }

    /// The meters' state, with `amount` 0.
    pub fn usage(&self, meters: &[Meter]) -> Vec<LineUsage> {
        self.lines(meters, &Amounts::default())
    }

    /// Every account with recorded spend or holds, ordered by account and unit.
    pub fn accounts(&self) -> Vec<AccountSnapshot> {
        let mut res: Vec<AccountSnapshot> = self
            .accounts
            .iter()
            .map(|((account, unit), state)| AccountSnapshot {
                account: account.clone(),
                unit: *unit,
                total: state.total,
                reserved: state.reserved,
                days: state.days.iter().map(|(day, n)| (*day, *n)).collect(),
            })
            .collect();
        res.sort_by(|a, b| (&a.account, a.unit).cmp(&(&b.account, b.unit)));
        res
    }

    /// Live reservations, ordered by expiry.
    pub fn reservations(&self) -> Vec<Reservation> {
        self.expiries
            .iter()
            .filter_map(|(_, id)| self.reservations.get(id).cloned())
            .collect()
    }

    /// Marks alert `tier` fired for `key` in `window`; the change is `Some` only the first time.
    pub fn mark_alert(&mut self, key: &str, window: &str, tier: AlertTier) -> Option<Change> {
        self.alerts
            .insert((key.to_owned(), window.to_owned(), tier))
            .then(|| Change::AlertFired {
                key: key.to_owned(),
                window: window.to_owned(),
                tier,
            })
    }

    /// Pauses new sessions under `key` until `until` (or until unpaused).
    pub fn pause(&mut self, key: &str, until: Option<Timestamp>) -> Change {
        self.pauses.insert(key.to_owned(), until);
        Change::Paused {
            key: key.to_owned(),
            until,
        }
    }

    /// Lifts the pause of `key`; `None` when it was not paused.
    pub fn unpause(&mut self, key: &str) -> Option<Change> {
        self.pauses.remove(key).map(|_| Change::Unpaused {
            key: key.to_owned(),
        })
    }

    /// Whether `key` is paused at `now`.
    pub fn is_paused(&self, key: &str, now: Timestamp) -> bool {
        self.pauses
            .get(key)
            .is_some_and(|until| until.is_none_or(|until| now < until))
    }

    /// Every pause, ordered by key (including ones whose `until` has passed).
    pub fn pauses(&self) -> Vec<(String, Option<Timestamp>)> {
        self.pauses
            .iter()
            .map(|(key, until)| (key.clone(), *until))
            .collect()
    }

    /// Restores recorded spend (at open).
    pub fn restore_spend(&mut self, account: &str, unit: Unit, day: Date, amount: u64) {
        self.account_mut(account, unit).add(day, amount);
    }

    /// Restores a live reservation (at open), expired or not; ids issued later are above it.
    pub fn restore_reservation(&mut self, reservation: Reservation) {
        self.next_id = self.next_id.max(reservation.id.0.saturating_add(1));
        for hold in &reservation.holds {
            let account = self.account_mut(&hold.account, hold.unit);
            account.reserved = account.reserved.saturating_add(hold.amount);
        }
        self.insert_reservation(reservation);
    }

    /// Restores a fired alert (at open).
    pub fn restore_alert(&mut self, key: &str, window: &str, tier: AlertTier) {
        self.alerts
            .insert((key.to_owned(), window.to_owned(), tier));
    }

    /// Restores a pause (at open).
    pub fn restore_pause(&mut self, key: &str, until: Option<Timestamp>) {
        self.pauses.insert(key.to_owned(), until);
    }

    fn lines(&self, meters: &[Meter], amounts: &Amounts) -> Vec<LineUsage> {
        meters
            .iter()
            .map(|meter| {
                let (spent, reserved) = self
                    .accounts
                    .get(&(meter.account.clone(), meter.unit))
                    .map_or((0, 0), |account| {
                        (account.spent_in(&meter.days), account.reserved)
                    });
                LineUsage {
                    key: meter.key.clone(),
                    account: meter.account.clone(),
                    unit: meter.unit,
                    limit: meter.limit,
                    spent,
                    reserved,
                    amount: amounts.get(meter.unit),
                }
            })
            .collect()
    }

    fn account_mut(&mut self, account: &str, unit: Unit) -> &mut Account {
        self.accounts.entry((account.to_owned(), unit)).or_default()
    }

    fn unhold(&mut self, reservation: &Reservation) {
        for hold in &reservation.holds {
            let account = self.account_mut(&hold.account, hold.unit);
            account.reserved = account.reserved.saturating_sub(hold.amount);
        }
    }

    fn insert_reservation(&mut self, reservation: Reservation) {
        // INVARIANT (expiry-index): index and map change together.
        self.expiries
            .insert((reservation.expires_at, reservation.id));
        self.reservations.insert(reservation.id, reservation);
    }

    fn take_reservation(&mut self, id: ReservationId) -> Option<Reservation> {
        // INVARIANT (expiry-index): index and map change together.
        let reservation = self.reservations.remove(&id)?;
        self.expiries.remove(&(reservation.expires_at, id));
        Some(reservation)
    }
}

impl Account {
    fn spent_in(&self, days: &DayRange) -> u64 {
        match days {
            DayRange::Days { first, last } if first <= last => self
                .days
                .range(*first..=*last)
                .fold(0u64, |sum, (_, n)| sum.saturating_add(*n)),
            DayRange::Days { .. } => 0,
            DayRange::Lifetime => self.total,
        }
    }

    fn add(&mut self, day: Date, amount: u64) {
        self.total = self.total.saturating_add(amount);
        let bucket = self.days.entry(day).or_default();
        *bucket = bucket.saturating_add(amount);
        let oldest_kept = self
            .days
            .last_key_value()
            .and_then(|(newest, _)| newest.checked_sub(KEEP_DAYS.days()).ok());
        let oldest = self.days.first_key_value().map(|(oldest, _)| *oldest);
        if let (Some(oldest), Some(oldest_kept)) = (oldest, oldest_kept) {
            if oldest < oldest_kept {
                self.days = self.days.split_off(&oldest_kept);
            }
        }
    }
}

/// The distinct `(account, unit)` holds of a request, in meter order.
fn holds(meters: &[Meter], amounts: &Amounts) -> Vec<Hold> {
    let mut res: Vec<Hold> = Vec::with_capacity(meters.len());
    for meter in meters {
        if res
            .iter()
            .any(|hold| hold.account == meter.account && hold.unit == meter.unit)
        {
            continue;
        }
        res.push(Hold {
            account: meter.account.clone(),
            unit: meter.unit,
            day: meter.today,
            amount: amounts.get(meter.unit),
        });
    }
    res
}

#[cfg(test)]
mod tests;
