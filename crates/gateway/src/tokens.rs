//! Bearer tokens: generation, hashing and constant-time comparison.
//!
//! Only SHA-256 digests of tokens are kept anywhere; the clear token is shown once.

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest admin token accepted from configuration.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Longest bearer token read from a request; longer ones are refused before hashing.
pub const MAX_TOKEN_LEN: usize = 512;

/// A fresh random token with a recognizable prefix (`pcl_agent_...`, `pcl_admin_...`), 256 bits.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of two digests.
pub fn digest_eq(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.ct_eq(right).into()
}

/// The token in an `Authorization: Bearer <token>` header value, if well-formed.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let valid = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    valid.then_some(token)
}

/// The SHA-256 of every token the configuration knows (the admin token, agents declared by
/// hash), so that a pasted one is redacted both ways like a configured secret.
pub fn configured_hashes(config: &crate::config::Config) -> Vec<[u8; 32]> {
    let agents = config
        .agents
        .iter()
        .filter_map(|agent| crate::config::parse_sha256_hex(&agent.token_sha256));
    crate::server::configured_admin_token(config)
        .into_iter()
        .chain(agents)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert!(generate("pcl_agent_").starts_with("pcl_agent_"));
        assert_ne!(generate("x"), generate("x"));
        assert!(digest_eq(&sha256("a"), &sha256("a")));
        assert!(!digest_eq(&sha256("a"), &sha256("b")));
    }
}
