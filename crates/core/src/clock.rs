//! The one source of wall-clock time; everything else takes `now` from a [`Clock`].

use std::fmt;

use jiff::Timestamp;

/// Wall-clock time as seen by the gateway. Tests substitute a manual clock.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place allowed to read the system clock"
    )]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
