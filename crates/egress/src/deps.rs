//! What the gateway plugs into the proxy and the DNS guard: identity, events, leases, policy.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use portcullis_core::clock::Clock;
use portcullis_core::error::ErrorCode;
use portcullis_netpolicy::{EgressPolicy, Lease};

use crate::live::LiveConnections;
use crate::resolver::Resolver;
use crate::road::EgressRoad;

/// An authenticated agent, its project, and the road its actions cross.
#[derive(Clone, Debug)]
pub struct Caller {
    pub agent: String,
    pub project: Option<String>,
    /// Runs this caller's actions down the gateway's road (its policy engine, for this agent).
    pub road: Arc<dyn EgressRoad>,
}

/// The subject of DNS-guard decisions: DNS carries no credential, so the guard decides as this
/// anonymous subject of the client's project. Agent ids cannot hold `@`, so no agent is it.
pub const ANONYMOUS: &str = "@anonymous";

/// An egress record that could not be made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the egress record could not be made durable")]
pub struct RecordError;

impl Caller {
    /// The borrowed form the decision function takes.
    pub fn as_policy(&self) -> portcullis_netpolicy::Caller<'_> {
        portcullis_netpolicy::Caller {
            agent: Some(self.agent.as_str()),
            project: self.project.as_deref(),
        }
    }
}

/// The credential a client sent in `Proxy-Authorization`. Its `Debug` never shows the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `Basic base64(agent:token)`.
    Basic { agent: &'a str, token: &'a str },
    /// `Bearer token`.
    Bearer { token: &'a str },
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { agent, .. } => f
                .debug_struct("Basic")
                .field("agent", agent)
                .field("token", &"<redacted>")
                .finish(),
            Credential::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// Checks a proxy credential; implemented by the gateway against its agent registry.
#[async_trait]
pub trait ProxyAuth: Send + Sync + fmt::Debug {
    /// The caller the credential belongs to, or `None` when it is unknown or wrong.
    async fn authenticate(&self, credential: Credential<'_>) -> Option<Caller>;

    /// A registry code refusing every request of `caller` right now (the gateway's kill switch
    /// answers `killswitch_engaged`), or `None` to go on to the egress decision. Called right
    /// after a successful [`ProxyAuth::authenticate`].
    async fn refusal(&self, caller: &Caller) -> Option<ErrorCode> {
        let _ = caller;
        None
    }
}

/// Which surface made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// An absolute-form HTTP request forwarded in origin-form.
    Http,
    /// A CONNECT tunnel.
    Connect,
    /// A DNS-guard answer.
    Dns,
}

impl Surface {
    pub const fn as_str(self) -> &'static str {
        match self {
            Surface::Http => "http",
            Surface::Connect => "connect",
            Surface::Dns => "dns",
        }
    }
}

/// Who and what a record is about; shared by the decision and the close record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHead {
    /// Links the decision record to its close record (a UUID v4).
    pub connection: String,
    pub surface: Surface,
    pub agent: String,
    pub project: Option<String>,
    /// From `X-Request-Id` when the client sent a well-formed one.
    pub correlation_id: Option<String>,
    /// `host:port` when the target parsed, else the raw target cut to [`crate::MAX_RECORDED_TARGET`].
    pub target: String,
}

/// One egress decision, allowed or denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRecord {
    pub head: RecordHead,
    pub allow: bool,
    /// A stable reason code (`egress_allowed_rule`, `egress_not_allowed`, `policy_denied`, ...).
    pub reason: Cow<'static, str>,
    pub rule: Option<String>,
    pub lease: Option<String>,
    /// The answers of the one lookup, in order (empty for IP literals and denials before it).
    pub resolved: Vec<IpAddr>,
    /// The vetted address that will be dialed.
    pub dialed: Option<SocketAddr>,
}

/// The end of an allowed connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseRecord {
    pub head: RecordHead,
    pub dialed: SocketAddr,
    /// Bytes written to the target.
    pub bytes_up: u64,
    /// Bytes read from the target.
    pub bytes_down: u64,
    pub duration_ms: u64,
    /// `egress_closed`, or why the connection ended early (see [`crate::REASONS`]).
    pub reason: &'static str,
}

/// Where the proxy sends the records the road does not write; implemented by the gateway. The
/// road writes every record of an action that crosses it; these are the refusals before it
/// (the kill switch, a request that is not a proxy request, a target that does not parse) and
/// the close record of a connection whose road was dropped while it was being dialed.
#[async_trait]
pub trait EgressEvents: Send + Sync + fmt::Debug {
    /// Records a decision. For an allow, `Err` means the record is not durable; for a deny it is
    /// only logged.
    async fn decision(&self, record: DecisionRecord) -> Result<(), RecordError>;
    async fn close(&self, record: CloseRecord);
}

/// The leases in force; implemented by the gateway over its store.
#[async_trait]
pub trait LeaseSource: Send + Sync + fmt::Debug {
    async fn leases(&self) -> Vec<Lease>;
}

/// A fixed set of leases (tests, or a snapshot the caller refreshes by swapping deps).
#[derive(Clone, Debug, Default)]
pub struct StaticLeases(pub Vec<Lease>);

#[async_trait]
impl LeaseSource for StaticLeases {
    async fn leases(&self) -> Vec<Lease> {
        self.0.clone()
    }
}

/// The current policy, swappable at run time (`POST /admin/egress/settings`). Each decision
/// reads it once, so a swap applies to the next request and never half-way through one.
#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<Arc<EgressPolicy>>,
}

impl PolicyHandle {
    pub fn new(policy: EgressPolicy) -> Self {
        Self {
            current: RwLock::new(Arc::new(policy)),
        }
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<EgressPolicy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the policy; returns the previous one.
    pub fn replace(&self, policy: EgressPolicy) -> Arc<EgressPolicy> {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *guard, Arc::new(policy))
    }
}

/// Limits of the forward proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Open CONNECT tunnels per agent; one more gets 429 `egress_tunnel_limit`. Default 256.
    pub tunnels_per_agent: usize,
    /// A tunnel with no byte moving for this long is closed; also bounds the wait for an
    /// upstream's response head. Default 5 minutes.
    pub idle_timeout: Duration,
    /// Dialing the vetted address; past it 504. Default 10 s.
    pub connect_timeout: Duration,
    /// The client must send its request head within this. Default 30 s.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (at least 8192, hyper's minimum); past it 431. Default 16 KiB.
    pub max_header_bytes: usize,
    /// Most request headers; past it 431. Default 100.
    pub max_headers: usize,
    /// Copy CONNECT tunnels with splice(2) on Linux (no copy through user space). Default true;
    /// ignored elsewhere.
    pub splice_tunnels: bool,
    /// Most client connections open at once; one more is answered 429
    /// `egress_connection_limit` and closed. Default 1024.
    pub max_connections: usize,
    /// Most client connections open at once from one address, with the same answer. Default 256.
    pub max_connections_per_ip: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            tunnels_per_agent: 256,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            splice_tunnels: true,
            max_connections: 1024,
            max_connections_per_ip: 256,
        }
    }
}

/// Everything the forward proxy needs.
#[derive(Clone, Debug)]
pub struct ProxyDeps {
    pub policy: Arc<PolicyHandle>,
    pub auth: Arc<dyn ProxyAuth>,
    pub events: Arc<dyn EgressEvents>,
    pub resolver: Arc<dyn Resolver>,
    pub leases: Arc<dyn LeaseSource>,
    pub clock: Arc<dyn Clock>,
    pub limits: ProxyLimits,
    /// The open tunnels and in-flight requests, by caller; the gateway cuts them on a kill
    /// switch or a revocation.
    pub live: Arc<LiveConnections>,
}

/// Limits of the DNS guard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsLimits {
    /// TTL of the answers the guard returns, in seconds. Default 30.
    pub answer_ttl: u32,
    /// A TCP client idle for this long is disconnected. Default 10 s.
    pub tcp_idle_timeout: Duration,
    /// Most TCP clients served at once; more wait in the listen queue. Default 64.
    pub max_tcp_clients: usize,
    /// Most queries answered in flight at once over UDP; more wait. Default 256.
    pub max_udp_in_flight: usize,
}

impl Default for DnsLimits {
    fn default() -> Self {
        Self {
            answer_ttl: 30,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_clients: 64,
            max_udp_in_flight: 256,
        }
    }
}

/// Everything the DNS guard needs. DNS carries no credential: the guard answers a client with
/// the posture and leases of the project its address maps to (`EgressPolicy::dns_project`,
/// the global posture when unmapped), on the road as the anonymous subject [`ANONYMOUS`] of
/// that project.
#[derive(Clone, Debug)]
pub struct DnsDeps {
    pub policy: Arc<PolicyHandle>,
    pub resolver: Arc<dyn Resolver>,
    pub leases: Arc<dyn LeaseSource>,
    pub clock: Arc<dyn Clock>,
    /// The road of anonymous DNS clients (the kill switch, then the policy engine).
    pub road: Arc<dyn EgressRoad>,
    pub limits: DnsLimits,
}
