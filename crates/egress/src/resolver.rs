//! The resolver the proxy and the DNS guard ask: the system's (hickory) or a counting fixture.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use portcullis_netpolicy::{DnsFixture, LookupAnswer};

/// Most addresses kept from one lookup.
pub const MAX_ANSWERS: usize = 64;

/// Why a lookup gave no addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("the name does not exist")]
    NxDomain,
    #[error("the lookup failed")]
    Failed,
}

/// Looks up the A and AAAA records of a canonical name, once.
#[async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, LookupError>;
}

/// The machine's resolver configuration (`/etc/resolv.conf`), through hickory.
#[derive(Clone)]
pub struct SystemResolver {
    inner: Arc<TokioResolver>,
}

/// Why the system resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the system resolver configuration: {0}")]
pub struct SystemResolverError(#[from] NetError);

impl SystemResolver {
    /// Reads the system configuration. Lookups go to its name servers, never to `/etc/hosts`
    /// search lists beyond what hickory applies.
    pub fn from_system() -> Result<Self, SystemResolverError> {
        let inner = TokioResolver::builder_tokio()?.build()?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }
}

impl fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemResolver").finish_non_exhaustive()
    }
}

#[async_trait]
impl Resolver for SystemResolver {
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        // A trailing dot makes the name fully qualified, so no search domain is appended.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.inner.lookup_ip(fqdn.as_str()).await {
            Ok(found) => Ok(found.iter().take(MAX_ANSWERS).collect()),
            Err(NetError::Dns(DnsError::NoRecordsFound(no)))
                if no.response_code == ResponseCode::NXDomain =>
            {
                Err(LookupError::NxDomain)
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(_) => Err(LookupError::Failed),
        }
    }
}

/// A resolver answering from a [`DnsFixture`] and counting the queries it gets.
#[derive(Debug, Default)]
pub struct FixtureResolver {
    fixture: DnsFixture,
    queries: AtomicU64,
}

impl FixtureResolver {
    pub fn new(fixture: DnsFixture) -> Self {
        Self {
            fixture,
            queries: AtomicU64::new(0),
        }
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Resolver for FixtureResolver {
    async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        match self.fixture.lookup(name) {
            LookupAnswer::Addrs(addrs) => Ok(addrs.into_iter().take(MAX_ANSWERS).collect()),
            LookupAnswer::NxDomain => Err(LookupError::NxDomain),
            LookupAnswer::Failed => Err(LookupError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(fixture: &FixtureResolver, name: &str, expected: Result<Vec<&str>, LookupError>) {
        let got = futures_lite_block(fixture.lookup(name));
        let expected =
            expected.map(|addrs| addrs.iter().map(|a| a.parse().unwrap()).collect::<Vec<_>>());
        assert_eq!(got, expected, "{name}");
    }

    fn futures_lite_block<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn fixture_answers_and_counts() {
        let fixture = DnsFixture::parse(
            r#"{"a.test":{"A":["127.0.0.2"],"AAAA":["::1"]},"gone.test":{"rcode":"NXDOMAIN"},"bad.test":{"rcode":"SERVFAIL"}}"#,
        )
        .unwrap();
        let resolver = FixtureResolver::new(fixture);
        check(&resolver, "a.test", Ok(vec!["127.0.0.2", "::1"]));
        check(&resolver, "gone.test", Err(LookupError::NxDomain));
        check(&resolver, "bad.test", Err(LookupError::Failed));
        check(&resolver, "other.test", Err(LookupError::NxDomain));
        assert_eq!(resolver.queries(), 4);
    }
}
