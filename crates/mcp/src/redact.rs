//! Secret redaction of everything coming back from upstreams: the sanitizer's
//! [`portcullis_sanitize::redact::Redactor`] (configured values plus known secret formats), shared
//! with the LLM front.

pub use portcullis_sanitize::redact::{MAX_SCANNED_STRING, REDACTED, RedactError, Redactor};
