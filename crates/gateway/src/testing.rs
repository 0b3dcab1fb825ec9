//! Router-level test harness: a gateway state on a temporary data dir with a manual clock.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use portcullis_store::{SqliteOptions, SqliteStore, Store};
use portcullis_test_support::ManualClock;
use tower::ServiceExt as _;

use crate::admin::{AdminGuard, RateLimit};
use crate::config::Config;
use crate::events::Events;
use crate::http::{AppParts, AppState, app};
use crate::identity::Identity;
use crate::metrics::Metrics;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghij";

pub struct TestGateway {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

/// A gateway for `config`, its data in `dir` (pass an existing dir to simulate a restart).
pub async fn gateway_in(config: Config, dir: tempfile::TempDir) -> TestGateway {
    gateway_wrapped(config, dir, |store| store).await
}

/// A gateway whose store is `wrap` of the SQLite store (fault injection).
pub async fn gateway_wrapped(
    config: Config,
    dir: tempfile::TempDir,
    wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>,
) -> TestGateway {
    let clock = Arc::new(ManualClock::at_epoch_2026());
    let sqlite: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &dir.path().join("data"),
            SqliteOptions {
                checkpoint_every: 1000,
                checkpoint_interval: std::time::Duration::from_secs(3600),
                clock: clock.clone(),
            },
        )
        .unwrap(),
    );
    let store = wrap(sqlite);
    let config = Arc::new(config);
    let policy = crate::server::load_policy(&config, &store).await.unwrap();
    let metrics = Metrics::new();
    let guardrails = crate::guardrails::Guardrails::new(
        &config,
        clock.clone(),
        crate::guardrails::alerts::AlertSender::disabled(),
    )
    .unwrap();
    guardrails.killswitch.restore(store.as_ref()).await.unwrap();
    guardrails.budgets.restore(store.as_ref()).await.unwrap();
    let llm = crate::llm::LlmRuntime::start(&config, &crate::secrets::Secrets::default()).unwrap();
    let egress = Arc::new(crate::egress::EgressState::new(
        portcullis_netpolicy::EgressConfig::default(),
        portcullis_netpolicy::EgressPolicy::from_config(
            &portcullis_netpolicy::EgressConfig::default(),
        )
        .unwrap(),
        Arc::new(portcullis_egress::FixtureResolver::new(
            portcullis_netpolicy::DnsFixture::parse("{}").unwrap(),
        )),
        clock.clone(),
    ));
    let core = Arc::new(crate::pipeline::Core {
        identity: Identity::new(&config.agents, Arc::clone(&store)),
        events: Events::new(Arc::clone(&store), metrics.clone()),
        config,
        store: Arc::clone(&store),
        metrics,
        clock: clock.clone(),
        policy: Arc::new(policy),
        secrets: Arc::new(crate::secrets::Secrets::default()),
        guardrails: Arc::new(guardrails),
    });
    let state = AppState::new(AppParts {
        core,
        admin: AdminGuard::new(
            Some(crate::tokens::sha256(ADMIN_TOKEN)),
            RateLimit::parse("1000/1").unwrap(),
        ),
        mcp: Arc::new(crate::mcp::McpRuntime::empty()),
        llm: Arc::new(llm),
        egress,
        cluster: Arc::new(crate::cluster::ClusterRuntime::new(
            crate::cluster::ClusterSettings::default(),
        )),
    });
    TestGateway {
        state,
        clock,
        store,
        dir,
    }
}

pub async fn gateway(config: Config) -> TestGateway {
    gateway_in(config, tempfile::tempdir().unwrap()).await
}

impl TestGateway {
    /// Sends an admin request; answers the status and the JSON body (`null` when empty).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"));
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Body::from(body.unwrap_or("").to_owned()))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// The kinds of every ledger record so far.
    pub async fn ledger_kinds(&self) -> Vec<String> {
        self.state.events.settle_trailing().await;
        self.store
            .ledger_page(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|record| record.kind)
            .collect()
    }
}
