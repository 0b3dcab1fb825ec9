//! The `identify` stage: bearer token to subject, identity headers, correlation id.
//!
//! Every front calls [`Identity::identify`] first. Agents come from configuration (immutable for the
//! process lifetime) and from the store (created and revoked at run time, looked up on every
//! request so a revocation takes effect at once, also across replicas).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use portcullis_core::{ErrorCode, GatePattern, Subject};
use portcullis_store::{Store, StoreError, StoredAgent};

use crate::config::{AgentConfig, CatalogView, parse_sha256_hex};
use crate::tokens;

pub mod failures;

use failures::{AuthFailures, FailureLimits};

pub const USER_HEADER: &str = "x-portcullis-user";
pub const ROOM_HEADER: &str = "x-portcullis-room";
pub const SESSION_HEADER: &str = "x-portcullis-session";

/// Longest user, room or session value accepted in an identity header.
pub const MAX_IDENTITY_VALUE_LEN: usize = 256;

/// An authenticated agent as the pipeline sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub roles: Vec<String>,
    pub tags: Vec<String>,
    pub project: Option<String>,
    /// The policy allowlist layer's patterns for this agent.
    pub allow: Vec<GatePattern>,
    pub may_assert_identity: bool,
    /// How the agent sees the MCP catalog.
    pub catalog: CatalogView,
    pub origin: AgentOrigin,
}

/// Where an agent was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentOrigin {
    Config,
    Store,
    /// No identity: a subject such as the DNS guard's `@anonymous` ([`Identified::anonymous`]).
    Anonymous,
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identified {
    pub agent: Arc<Agent>,
    pub subject: Subject,
}

impl Identified {
    /// The subject without an identity: `anonymous` (e.g. the DNS guard's `@anonymous`, which no
    /// agent id can spell) in `project`, with an empty allowlist, so only a policy that names it
    /// (a Cedar `permit`) lets it through.
    pub fn anonymous(anonymous: &str, project: Option<String>) -> Self {
        let agent = Agent {
            id: anonymous.to_owned(),
            roles: Vec::new(),
            tags: Vec::new(),
            project: project.clone(),
            allow: Vec::new(),
            may_assert_identity: false,
            catalog: CatalogView::default(),
            origin: AgentOrigin::Anonymous,
        };
        Self {
            agent: Arc::new(agent),
            subject: Subject {
                agent: anonymous.to_owned(),
                project,
                ..Subject::default()
            },
        }
    }
}

/// Why a caller was not identified.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("no bearer token")]
    MissingToken,
    #[error("unknown token")]
    UnknownToken,
    #[error("agent `{agent}` may not assert identity headers")]
    IdentityHeaderRefused { agent: String },
    #[error("identity header `{header}` is malformed")]
    BadIdentityHeader { header: &'static str },
    #[error("agent lookup failed")]
    Store(#[from] StoreError),
}

impl IdentifyError {
    pub fn code(&self) -> ErrorCode {
        match self {
            IdentifyError::MissingToken | IdentifyError::UnknownToken => ErrorCode::Unauthorized,
            IdentifyError::IdentityHeaderRefused { .. } => ErrorCode::IdentityHeaderRefused,
            IdentifyError::BadIdentityHeader { .. } => ErrorCode::BadRequest,
            IdentifyError::Store(_) => ErrorCode::StoreUnavailable,
        }
    }
}

/// The registry of agents, from configuration and the store.
#[derive(Debug)]
pub struct Identity {
    // INVARIANT (config-agents-valid): built from a validated `Config`, so ids and hashes are unique.
    by_token: HashMap<[u8; 32], Arc<Agent>>,
    config_ids: HashMap<String, Arc<Agent>>,
    store: Arc<dyn Store>,
    failures: AuthFailures,
}

impl Identity {
    /// Builds the registry; `agents` must come from a validated configuration.
    pub fn new(agents: &[AgentConfig], store: Arc<dyn Store>) -> Self {
        let mut by_token = HashMap::new();
        let mut config_ids = HashMap::new();
        for config in agents {
            let Some(hash) = parse_sha256_hex(&config.token_sha256) else {
                continue;
            };
            let agent = Arc::new(Agent {
                id: config.id.clone(),
                roles: config.roles.clone(),
                tags: config.tags.clone(),
                project: config.project.clone(),
                allow: config
                    .allow
                    .iter()
                    .filter_map(|p| GatePattern::parse(p).ok())
                    .collect(),
                may_assert_identity: config.may_assert_identity,
                catalog: config.catalog,
                origin: AgentOrigin::Config,
            });
            by_token.insert(hash, Arc::clone(&agent));
            config_ids.insert(config.id.clone(), agent);
        }
        Self {
            by_token,
            config_ids,
            store,
            failures: AuthFailures::new(FailureLimits {
                per_peer: crate::config::DEFAULT_AUTH_FAILURES_PER_PEER,
                global: crate::config::DEFAULT_AUTH_FAILURES_GLOBAL,
                window: crate::config::DEFAULT_AUTH_FAILURE_WINDOW,
            }),
        }
    }

    /// Replaces the default limits of failed authentication.
    pub fn with_failure_limits(mut self, limits: FailureLimits) -> Self {
        self.failures = AuthFailures::new(limits);
        self
    }

    /// Failed authentication in the current window (every surface shares it).
    pub fn failures(&self) -> &AuthFailures {
        &self.failures
    }

    /// Whether `headers` carry the bearer token of a known agent (nothing else is checked and
    /// nothing recorded; a store error answers false).
    pub async fn knows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(tokens::bearer)
        else {
            return false;
        };
        let hash = tokens::sha256(token);
        if self.by_token.contains_key(&hash) {
            return true;
        }
        matches!(self.store.agent_by_token_hash(hash).await, Ok(Some(_)))
    }

    /// True when `id` names an agent declared in configuration.
    pub fn is_config_agent(&self, id: &str) -> bool {
        self.config_ids.contains_key(id)
    }

    pub fn config_agents(&self) -> impl Iterator<Item = &Arc<Agent>> {
        self.config_ids.values()
    }

    /// Authenticates the bearer token in `headers` and reads the identity headers.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Identified, IdentifyError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(tokens::bearer)
            .ok_or(IdentifyError::MissingToken)?;
        self.identify_token(token, headers).await
    }

    /// Authenticates `token` (from `Authorization` or, on the proxy, `Proxy-Authorization`).
    pub async fn identify_token(
        &self,
        token: &str,
        headers: &HeaderMap,
    ) -> Result<Identified, IdentifyError> {
        let hash = tokens::sha256(token);
        let agent = match self.by_token.get(&hash) {
            Some(agent) => Arc::clone(agent),
            None => match self.store.agent_by_token_hash(hash).await? {
                Some(stored) => Arc::new(agent_from_store(stored)),
                None => return Err(IdentifyError::UnknownToken),
            },
        };
        let user = identity_header(headers, USER_HEADER)?;
        let room = identity_header(headers, ROOM_HEADER)?;
        let session = identity_header(headers, SESSION_HEADER)?;
        let asserted = user.is_some() || room.is_some() || session.is_some();
        if asserted && !agent.may_assert_identity {
            return Err(IdentifyError::IdentityHeaderRefused {
                agent: agent.id.clone(),
            });
        }
        let subject = Subject {
            agent: agent.id.clone(),
            user,
            room,
            session,
            node: None,
            project: agent.project.clone(),
            roles: agent.roles.clone(),
            tags: agent.tags.clone(),
        };
        Ok(Identified { agent, subject })
    }
}

fn agent_from_store(stored: StoredAgent) -> Agent {
    Agent {
        allow: stored
            .allow
            .iter()
            .filter_map(|p| GatePattern::parse(p).ok())
            .collect(),
        id: stored.id,
        roles: stored.roles,
        tags: stored.tags,
        project: stored.project,
        may_assert_identity: stored.may_assert_identity,
        // The store refuses values it does not know when it reads them.
        catalog: CatalogView::parse(&stored.catalog).unwrap_or_default(),
        origin: AgentOrigin::Store,
    }
}

/// Reads one identity header: absent is fine; present must be one printable value.
fn identity_header(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<Option<String>, IdentifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = IdentifyError::BadIdentityHeader { header: name };
    if values.next().is_some() {
        return Err(bad);
    }
    let text = value
        .to_str()
        .map_err(|_| IdentifyError::BadIdentityHeader { header: name })?;
    let valid = !text.is_empty()
        && text.len() <= MAX_IDENTITY_VALUE_LEN
        && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if valid {
        Ok(Some(text.to_owned()))
    } else {
        Err(bad)
    }
}

/// Agent ids: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
