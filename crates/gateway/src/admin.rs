//! The admin surface: operator authentication, the admin rate limit, and the `/admin/*` routes.
//!
//! Successes and failures are counted apart. A request with the admin token passes the admin
//! rate limit (`admin.rate_limit`, kept per token), which nobody without the token can use up.
//! A request without it is answered 401, and failed authentications are limited per peer and
//! globally by the HTTP layer (`identity::failures`), which never limits a valid token. There is
//! no way in without the token: debug mode opens nothing.

use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use portcullis_core::ErrorCode;

use crate::error::ApiError;
use crate::tokens;

pub mod policy_routes;
pub mod routes;

/// Header that carries the admin token as an alternative to `Authorization: Bearer`.
pub const ADMIN_HEADER: &str = "x-portcullis-admin";

/// Keys kept by the rate limiter before idle ones are dropped.
const MAX_LIMITER_KEYS: usize = 10_000;

/// `limit/window_secs`, e.g. `60/60`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: NonZeroU32,
    pub window: Duration,
    // INVARIANT (quota-nonzero): `window / limit` is at least one nanosecond; `parse` refuses
    // pairs that round to zero (a zero period would disable the limiter).
    quota: Quota,
}

impl RateLimit {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad =
            || format!("`{raw}` is not `limit/window_secs` with both at least 1, e.g. `60/60`");
        let (limit, window) = raw.split_once('/').ok_or_else(bad)?;
        let limit: u32 = limit.trim().parse().map_err(|_| bad())?;
        let window: u64 = window.trim().parse().map_err(|_| bad())?;
        let limit = NonZeroU32::new(limit).ok_or_else(bad)?;
        if window == 0 || window > 86_400 {
            return Err(bad());
        }
        let window = Duration::from_secs(window);
        // INVARIANT (quota-nonzero): kept here.
        let quota = window
            .checked_div(limit.get())
            .and_then(Quota::with_period)
            .map(|quota| quota.allow_burst(limit))
            .ok_or_else(|| {
                format!("`{raw}` allows more than one request per nanosecond; use a smaller limit")
            })?;
        Ok(Self {
            limit,
            window,
            quota,
        })
    }
}

/// Who passed admin authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCaller {
    /// Presented the admin token.
    Token,
}

/// Why an admin request was refused, for the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRefusal {
    RateLimited { retry_after_secs: u64 },
    MissingToken,
    WrongToken,
}

impl AdminRefusal {
    pub fn error(self) -> ApiError {
        match self {
            AdminRefusal::RateLimited { retry_after_secs } => {
                ApiError::rate_limited(retry_after_secs)
            }
            AdminRefusal::MissingToken | AdminRefusal::WrongToken => {
                ApiError::new(ErrorCode::Unauthorized)
            }
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            AdminRefusal::RateLimited { .. } => "rate_limited",
            AdminRefusal::MissingToken => "unauthorized",
            AdminRefusal::WrongToken => "unauthorized",
        }
    }
}

/// Admin authentication plus the admin rate limit.
pub struct AdminGuard {
    token_sha256: Option<[u8; 32]>,
    /// Requests with the valid token, per token.
    limiter: DefaultKeyedRateLimiter<[u8; 32]>,
    clock: DefaultClock,
}

impl std::fmt::Debug for AdminGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminGuard")
            .field("token_configured", &self.token_sha256.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminGuard {
    pub fn new(token_sha256: Option<[u8; 32]>, rate_limit: RateLimit) -> Self {
        Self {
            token_sha256,
            limiter: RateLimiter::keyed(rate_limit.quota),
            clock: DefaultClock::default(),
        }
    }

    /// Authentication, then the admin rate limit of the token. The peer is not consulted: a
    /// loopback caller needs the token like any other.
    pub fn check(&self, headers: &HeaderMap) -> Result<AdminCaller, AdminRefusal> {
        let Some(presented) = presented_token(headers) else {
            return Err(AdminRefusal::MissingToken);
        };
        let hash = tokens::sha256(presented);
        if !self.matches(&hash) {
            return Err(AdminRefusal::WrongToken);
        }
        self.rate_limit(hash)?;
        Ok(AdminCaller::Token)
    }

    /// Whether `headers` carry the admin token (no rate limit counted).
    pub fn token_matches(&self, headers: &HeaderMap) -> bool {
        presented_token(headers).is_some_and(|token| self.matches(&tokens::sha256(token)))
    }

    fn matches(&self, hash: &[u8; 32]) -> bool {
        self.token_sha256
            .as_ref()
            .is_some_and(|expected| tokens::digest_eq(hash, expected))
    }

    fn rate_limit(&self, token: [u8; 32]) -> Result<(), AdminRefusal> {
        if self.limiter.len() > MAX_LIMITER_KEYS {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&token).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            AdminRefusal::RateLimited {
                retry_after_secs: secs.max(1),
            }
        })
    }
}

/// The admin token from `Authorization: Bearer` or `X-Portcullis-Admin`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(tokens::bearer);
    bearer.or_else(|| {
        headers
            .get(ADMIN_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|token| {
                !token.is_empty()
                    && token.len() <= tokens::MAX_TOKEN_LEN
                    && token.bytes().all(|b| b.is_ascii_graphic())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rate_limits() {
        let limit = RateLimit::parse("60/60").unwrap();
        assert_eq!(limit.limit.get(), 60);
        assert_eq!(limit.window, Duration::from_secs(60));
        for bad in [
            "",
            "60",
            "0/60",
            "60/0",
            "a/b",
            "-1/60",
            "60/999999",
            // Rounds to a zero period: would silently disable the limiter.
            "4000000000/1",
        ] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sixty_first_request_is_limited() {
        let guard = AdminGuard::new(
            Some(tokens::sha256("t")),
            RateLimit::parse("60/60").unwrap(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(ADMIN_HEADER, "t".parse().unwrap());
        for _ in 0..60 {
            assert_eq!(guard.check(&headers), Ok(AdminCaller::Token));
        }
        assert!(matches!(
            guard.check(&headers),
            Err(AdminRefusal::RateLimited { retry_after_secs }) if retry_after_secs >= 1
        ));
    }

    #[test]
    fn failures_do_not_use_up_the_token_limit() {
        let guard = AdminGuard::new(Some(tokens::sha256("t")), RateLimit::parse("2/60").unwrap());
        let mut wrong = HeaderMap::new();
        wrong.insert(ADMIN_HEADER, "guess".parse().unwrap());
        for _ in 0..100 {
            assert_eq!(guard.check(&wrong), Err(AdminRefusal::WrongToken));
        }
        assert_eq!(
            guard.check(&HeaderMap::new()),
            Err(AdminRefusal::MissingToken),
            "loopback without a token is refused"
        );
        let mut right = HeaderMap::new();
        right.insert(ADMIN_HEADER, "t".parse().unwrap());
        assert_eq!(guard.check(&right), Ok(AdminCaller::Token));
        assert!(guard.token_matches(&right));
        assert!(!guard.token_matches(&wrong));
    }
}
