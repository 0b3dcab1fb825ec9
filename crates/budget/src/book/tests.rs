//! Book tests: atomic reserve across lines, settle with overage, release, expiry, restore.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use jiff::civil::date;
use proptest::prelude::*;

use super::*;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + secs).unwrap()
}

fn meter(key: &str, account: &str, unit: Unit, limit: u64) -> Meter {
    let today = date(2026, 1, 1);
    Meter {
        key: key.to_owned(),
        account: account.to_owned(),
        unit,
        days: DayRange::Days {
            first: today,
            last: today,
        },
        today,
        limit,
    }
}

fn usd(micros: u64) -> Amounts {
    Amounts {
        usd: portcullis_core::MicroUsd(micros),
        tokens: 0,
        calls: 1,
    }
}

#[track_caller]
fn reserve_ok(book: &mut Book, meters: &[Meter], amounts: &Amounts) -> ReservationId {
    match book
        .reserve(meters, amounts, ts(60), BudgetMode::Enforce)
        .unwrap()
    {
        (ReserveOutcome::Reserved { id, .. }, Some(Change::Reserved(_))) => id,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

#[test]
fn a_refusal_in_any_line_changes_nothing() {
    let mut book = Book::new(1);
    let meters = [
        meter("user@user:a", "user:a", Unit::Usd, 1_000),
        meter("calls@user:a", "user:a", Unit::Calls, 2),
    ];
    reserve_ok(&mut book, &meters, &usd(400));
    reserve_ok(&mut book, &meters, &usd(400));
    // USD would still fit (800 + 100 <= 1000) but calls would be 3 > 2.
    let (outcome, change) = book
        .reserve(&meters, &usd(100), ts(60), BudgetMode::Enforce)
        .unwrap();
    let ReserveOutcome::Exceeded { lines } = outcome else {
        panic!("expected a refusal");
    };
    assert!(change.is_none());
    assert_eq!(
        lines.iter().map(LineUsage::exceeds).collect::<Vec<_>>(),
        [false, true]
    );
    let usage = book.usage(&meters);
    assert_eq!((usage[0].reserved, usage[1].reserved), (800, 2));
}

#[test]
fn report_mode_reserves_past_the_limit_and_says_so() {
    let mut book = Book::new(1);
    let meters = [meter("k", "user:a", Unit::Usd, 100)];
    let (outcome, change) = book
        .reserve(&meters, &usd(150), ts(60), BudgetMode::Report)
        .unwrap();
    let ReserveOutcome::Reserved { lines, .. } = outcome else {
        panic!("report mode never refuses");
    };
    assert!(lines[0].exceeds() && change.is_some());
    assert_eq!(book.usage(&meters)[0].reserved, 150);
}

#[test]
fn settle_records_the_actual_and_reports_the_overage() {
    let mut book = Book::new(1);
    let meters = [meter("k", "user:a", Unit::Usd, 1_000)];
    let low = reserve_ok(&mut book, &meters, &usd(300));
    let high = reserve_ok(&mut book, &meters, &usd(300));
    let (settled, change) = book.settle(low, &usd(100)).unwrap();
    assert_eq!(settled.holds[0].overage(), 0);
    assert!(matches!(change, Change::Settled { ref charges, .. } if charges[0].amount == 100));
    let (settled, _) = book.settle(high, &usd(450)).unwrap();
    assert_eq!(settled.holds[0].overage(), 150);
    let usage = &book.usage(&meters)[0];
    assert_eq!((usage.spent, usage.reserved), (550, 0));
    assert_eq!(
        book.settle(high, &usd(1)).unwrap_err(),
        BookError::UnknownReservation(high)
    );
}

#[test]
fn two_budgets_on_one_account_share_one_hold() {
    let mut book = Book::new(1);
    let mut month = meter("month@user:a", "user:a", Unit::Usd, 10_000);
    month.days = DayRange::Days {
        first: date(2026, 1, 1),
        last: date(2026, 1, 31),
    };
    let meters = [meter("day@user:a", "user:a", Unit::Usd, 1_000), month];
    let id = reserve_ok(&mut book, &meters, &usd(500));
    let usage = book.usage(&meters);
    assert_eq!((usage[0].reserved, usage[1].reserved), (500, 500));
    book.settle(id, &usd(500)).unwrap();
    let usage = book.usage(&meters);
    assert_eq!((usage[0].spent, usage[1].spent), (500, 500));
    assert_eq!(book.accounts().len(), 1);
}

#[test]
fn release_and_expiry_free_the_holds() {
    let mut book = Book::new(1);
    let meters = [meter("k", "user:a", Unit::Usd, 1_000)];
    let first = reserve_ok(&mut book, &meters, &usd(300));
    let (_, later) = book
        .reserve(&meters, &usd(200), ts(120), BudgetMode::Enforce)
        .unwrap();
    assert!(later.is_some());
    book.release(first).unwrap();
    assert_eq!(book.usage(&meters)[0].reserved, 200);
    let (released, change) = book.release_expired(ts(119));
    assert!(released.is_empty() && change.is_none());
    let (released, change) = book.release_expired(ts(120));
    assert_eq!(released.len(), 1);
    assert!(matches!(change, Some(Change::Released { ref ids }) if ids.len() == 1));
    assert_eq!(book.usage(&meters)[0].reserved, 0);
    assert!(book.reservations().is_empty());
}

#[test]
fn restore_rebuilds_the_same_state_and_ids_move_on() {
    let mut book = Book::new(7);
    let meters = [meter("k", "user:a", Unit::Usd, 1_000)];
    let settled = reserve_ok(&mut book, &meters, &usd(300));
    book.settle(settled, &usd(250)).unwrap();
    let live = reserve_ok(&mut book, &meters, &usd(100));
    assert_eq!(live.0 >> 32, 7);
    let mut restored = Book::new(7);
    for account in book.accounts() {
        for (day, amount) in &account.days {
            restored.restore_spend(&account.account, account.unit, *day, *amount);
        }
    }
    for reservation in book.reservations() {
        restored.restore_reservation(reservation);
    }
    assert_eq!(restored.usage(&meters), book.usage(&meters));
    assert!(reserve_ok(&mut restored, &meters, &usd(1)) > live);
}

#[test]
fn alerts_fire_once_per_key_and_window() {
    let mut book = Book::new(1);
    assert!(
        book.mark_alert("k", "day:2026-01-01", AlertTier::Info)
            .is_some()
    );
    assert!(
        book.mark_alert("k", "day:2026-01-01", AlertTier::Info)
            .is_none()
    );
    assert!(
        book.mark_alert("k", "day:2026-01-01", AlertTier::Warning)
            .is_some()
    );
    assert!(
        book.mark_alert("k", "day:2026-01-02", AlertTier::Info)
            .is_some()
    );
    book.restore_alert("j", "w", AlertTier::Critical);
    assert!(book.mark_alert("j", "w", AlertTier::Critical).is_none());
}

#[test]
fn pauses_last_until_their_time_or_an_unpause() {
    let mut book = Book::new(1);
    book.pause("k", Some(ts(100)));
    book.pause("forever", None);
    assert!(book.is_paused("k", ts(99)) && !book.is_paused("k", ts(100)));
    assert!(book.is_paused("forever", ts(1_000_000)));
    assert!(book.unpause("forever").is_some());
    assert!(book.unpause("forever").is_none());
    assert!(!book.is_paused("forever", ts(0)));
    assert_eq!(book.pauses(), [("k".to_owned(), Some(ts(100)))]);
}

#[test]
fn old_day_buckets_leave_memory_but_not_the_lifetime_total() {
    let mut book = Book::new(1);
    book.restore_spend("session:s", Unit::Usd, date(2025, 1, 1), 5);
    book.restore_spend("session:s", Unit::Usd, date(2026, 1, 1), 7);
    let account = &book.accounts()[0];
    assert_eq!(account.days, [(date(2026, 1, 1), 7)]);
    let mut lifetime = meter("k", "session:s", Unit::Usd, 100);
    lifetime.days = DayRange::Lifetime;
    assert_eq!(book.usage(&[lifetime])[0].spent, 12);
}

proptest! {
    /// Whatever the order of reserves, settles at or below the estimate and releases, spent +
    /// reserved never passes any limit in `enforce` mode.
    #[test]
    fn enforce_never_overshoots(
        steps in proptest::collection::vec((0u8..3, 1u64..400, 0usize..8), 1..200),
        limit_a in 0u64..2_000, limit_b in 0u64..2_000,
    ) {
        let mut book = Book::new(1);
        let meters = [
            meter("a", "user:a", Unit::Usd, limit_a),
            meter("b", "global", Unit::Usd, limit_b),
        ];
        let mut live: Vec<(ReservationId, u64)> = Vec::new();
        for (op, amount, pick) in steps {
            match op {
                0 => {
                    if let (ReserveOutcome::Reserved { id, .. }, _) = book
                        .reserve(&meters[pick % 2..], &usd(amount), ts(60), BudgetMode::Enforce)
                        .unwrap()
                    {
                        live.push((id, amount));
                    }
                }
                1 if !live.is_empty() => {
                    let (id, reserved) = live.remove(pick % live.len());
                    book.settle(id, &usd(reserved / 2)).unwrap();
                }
                _ if !live.is_empty() => {
                    let (id, _) = live.remove(pick % live.len());
                    book.release(id).unwrap();
                }
                _ => {}
            }
            for line in book.usage(&meters) {
                prop_assert!(line.used_before() <= line.limit, "{line:?}");
            }
        }
    }
}
