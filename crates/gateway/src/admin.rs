//! The admin surface: operator authentication, the admin rate limit, and the `/admin/*` routes.

use std::net::{IpAddr, SocketAddr};
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
        Ok(Self {
            limit,
            window: Duration::from_secs(window),
        })
    }

    fn quota(self) -> Option<Quota> {
        let period = self.window.checked_div(self.limit.get())?;
        Some(Quota::with_period(period)?.allow_burst(self.limit))
    }
}

/// Who passed admin authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCaller {
    /// Presented the admin token.
    Token,
    /// `PORTCULLIS_DEBUG=1` and a loopback peer.
    DebugLoopback,
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
    debug_open_on_loopback: bool,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for AdminGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminGuard")
            .field("token_configured", &self.token_sha256.is_some())
            .field("debug_open_on_loopback", &self.debug_open_on_loopback)
            .finish_non_exhaustive()
    }
}

impl AdminGuard {
    pub fn new(token_sha256: Option<[u8; 32]>, rate_limit: RateLimit, debug: bool) -> Self {
        Self {
            token_sha256,
            debug_open_on_loopback: debug,
            limiter: rate_limit.quota().map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// Rate limit first (per client address and per presented token), then authentication.
    pub fn check(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<AdminCaller, AdminRefusal> {
        let presented = presented_token(headers);
        let presented_hash = presented.map(tokens::sha256);
        let peer_ip = peer.map(|addr| addr.ip());
        self.rate_limit(peer_ip, presented_hash.as_ref())?;

        if let (Some(hash), Some(expected)) = (&presented_hash, &self.token_sha256) {
            if tokens::digest_eq(hash, expected) {
                return Ok(AdminCaller::Token);
            }
            return Err(AdminRefusal::WrongToken);
        }
        if self.debug_open_on_loopback && peer_ip.is_some_and(|ip| ip.is_loopback()) {
            return Ok(AdminCaller::DebugLoopback);
        }
        match presented_hash {
            Some(_) => Err(AdminRefusal::WrongToken),
            None => Err(AdminRefusal::MissingToken),
        }
    }

    fn rate_limit(
        &self,
        peer: Option<IpAddr>,
        token: Option<&[u8; 32]>,
    ) -> Result<(), AdminRefusal> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > MAX_LIMITER_KEYS {
            limiter.retain_recent();
        }
        let mut keys = vec![match peer {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_owned(),
        }];
        if let Some(hash) = token {
            keys.push(format!("token:{}", hex::encode(hash)));
        }
        for key in &keys {
            if let Err(not_until) = limiter.check_key(key) {
                let wait = not_until.wait_time_from(self.clock.now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(AdminRefusal::RateLimited {
                    retry_after_secs: secs.max(1),
                });
            }
        }
        Ok(())
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
        for bad in ["", "60", "0/60", "60/0", "a/b", "-1/60", "60/999999"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sixty_first_request_is_limited() {
        let guard = AdminGuard::new(
            Some(tokens::sha256("t")),
            RateLimit::parse("60/60").unwrap(),
            false,
        );
        let mut headers = HeaderMap::new();
        headers.insert(ADMIN_HEADER, "t".parse().unwrap());
        let peer = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
        for _ in 0..60 {
            assert_eq!(guard.check(&headers, peer), Ok(AdminCaller::Token));
        }
        assert!(matches!(
            guard.check(&headers, peer),
            Err(AdminRefusal::RateLimited { retry_after_secs }) if retry_after_secs >= 1
        ));
    }

    #[test]
    fn debug_opens_loopback_only() {
        let guard = AdminGuard::new(None, RateLimit::parse("1000/1").unwrap(), true);
        let headers = HeaderMap::new();
        let loopback = Some(SocketAddr::from(([127, 0, 0, 1], 1)));
        let remote = Some(SocketAddr::from(([192, 0, 2, 1], 1)));
        assert_eq!(
            guard.check(&headers, loopback),
            Ok(AdminCaller::DebugLoopback)
        );
        assert_eq!(
            guard.check(&headers, remote),
            Err(AdminRefusal::MissingToken)
        );
        assert_eq!(guard.check(&headers, None), Err(AdminRefusal::MissingToken));
    }
}
