//! Portcullis domain types shared by every other crate.
//!
//! Pure: no I/O, no global clock, no async runtime. Time enters through [`clock::Clock`], which the
//! gateway owns and passes down.
//!
//! Invariants:
//! - [`error::ErrorCode`] strings are an API: once shipped they are never renamed or reused.
//! - A [`gatekey::GateKey`] is always syntactically valid; a [`gatekey::GatePattern`] has at most
//!   one `*`, and only at its end.
//! - Money is integer micro-USD ([`money::MicroUsd`]); no floats in accounting.

pub mod clock;
pub mod correlation;
pub mod error;
pub mod event;
pub mod gatekey;
pub mod money;
pub mod request;
pub mod subject;

pub use clock::{Clock, SystemClock};
pub use correlation::CorrelationId;
pub use error::ErrorCode;
pub use event::{Decision, Event};
pub use gatekey::{GateKey, GatePattern};
pub use money::MicroUsd;
pub use request::Request;
pub use subject::Subject;
