//! The Portcullis gateway: configuration, pipeline assembly, the HTTP surface and the admin API.
//!
//! This is the one crate that sees everything: it builds the store, the identity registry and the
//! event sink from a validated [`config::Config`], and serves them with axum. Fronts (admin, MCP,
//! OpenAI-compatible, egress) translate their protocol into the stages of [`pipeline`] and the
//! outcome back.
//!
//! Invariants:
//! - Every error answered over HTTP goes through [`error::ApiError`]: a registry code, its status
//!   and its fixed message; internal details only reach the log.
//! - Nothing here reads the system clock except through the injected [`portcullis_core::Clock`].
//! - Tokens are compared as SHA-256 digests in constant time and never logged or stored in clear.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod doctor;
pub mod egress;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod guardrails;
pub mod http;
pub mod identity;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod secrets;
pub mod server;
#[cfg(test)]
mod testing;
pub mod tokens;

pub use config::Config;
pub use server::{ServeError, ServeOptions, serve};
