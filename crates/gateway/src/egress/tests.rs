//! The egress policy gates under a store that fails on command: an allow whose records are not
//! durable is refused, for agents and for the DNS guard's anonymous subject.

use std::sync::Arc;

use portcullis_core::ErrorCode;
use portcullis_egress::{EgressGate, GateRequest, RecordError, Surface};
use portcullis_netpolicy::GateKeys;

use super::{AgentGate, AnonymousGate};
use crate::config;

const TOKEN: &str = "egress-gate-test-token";

#[tokio::test]
async fn an_egress_allow_that_cannot_be_recorded_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cedar = dir.path().join("dns.cedar");
    std::fs::write(
        &cedar,
        "permit (principal == Portcullis::Agent::\"@anonymous\", action, resource);\n",
    )
    .unwrap();
    let text = format!(
        "[budgets]\nbudgets = []\n[policy]\ncedar_files = [{cedar:?}]\n\
         [[agents]]\nid = \"fetcher\"\ntoken_sha256 = \"{}\"\nallow = [\"net:*\"]\n",
        hex::encode(crate::tokens::sha256(TOKEN)),
        cedar = cedar.to_str().unwrap(),
    );
    let config = config::load_str(&text, "test.toml", &Default::default()).unwrap();
    let mut faulty = None;
    let gw = crate::testing::gateway_wrapped(config, dir, |store| {
        let wrapped = Arc::new(portcullis_store::faulty::FaultyStore::new(store));
        faulty = Some(Arc::clone(&wrapped));
        wrapped
    })
    .await;
    let faulty = faulty.unwrap();
    let identified = gw
        .state
        .identity
        .identify_token(TOKEN, &Default::default())
        .await
        .unwrap();
    let agent = AgentGate {
        state: gw.state.clone(),
        identified,
    };
    let anonymous = AnonymousGate {
        state: gw.state.clone(),
    };
    let keys = GateKeys {
        host: "svc.example".to_owned(),
        keys: vec![
            "net:host:svc.example".to_owned(),
            "net:domain:svc.example".to_owned(),
            "net:port:443".to_owned(),
        ],
    };
    let proxied = GateRequest {
        surface: Surface::Connect,
        project: None,
        keys: &keys,
        correlation_id: None,
    };
    let dns_keys = GateKeys {
        host: keys.host.clone(),
        keys: keys.keys.get(..2).unwrap().to_vec(),
    };
    let dns = GateRequest {
        surface: Surface::Dns,
        project: None,
        keys: &dns_keys,
        correlation_id: None,
    };

    assert_eq!(agent.decide(proxied).await, Ok(()));
    let (verdict, pending) = agent.decide_deferred(proxied).await;
    assert_eq!((verdict, pending.commit().await), (Ok(()), Ok(())));
    assert_eq!(anonymous.decide(dns).await, Ok(()));

    faulty.fail(true);
    assert_eq!(
        agent.decide(proxied).await,
        Err(ErrorCode::StoreUnavailable)
    );
    let (verdict, pending) = agent.decide_deferred(proxied).await;
    assert_eq!(
        (verdict, pending.commit().await),
        (Ok(()), Err(RecordError))
    );
    assert_eq!(
        anonymous.decide(dns).await,
        Err(ErrorCode::StoreUnavailable)
    );

    faulty.fail(false);
    assert_eq!(anonymous.decide(dns).await, Ok(()));
}
