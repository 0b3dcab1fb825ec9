//! The egress roads under a store that fails on command: an action whose admission record is not
//! durable is refused with `store_unavailable` before its execute step (nothing is dialed or
//! looked up), for agents and for the DNS guard's anonymous subject.

use std::sync::Arc;

use async_trait::async_trait;
use portcullis_core::ErrorCode;
use portcullis_egress::{
    DecisionRecord, EgressAction, EgressRecord, EgressRoad, EgressSteps, Leave, RecordHead,
    Refused, Surface,
};
use portcullis_netpolicy::GateKeys;

use super::{AgentRoad, AnonymousRoad};
use crate::config;

const TOKEN: &str = "egress-road-test-token";

/// Steps that allow everything and count what the road called.
#[derive(Debug, Default)]
struct Probe {
    validated: usize,
    executed: usize,
}

impl Probe {
    fn decision(&self, allow: bool, reason: &str) -> DecisionRecord {
        DecisionRecord {
            head: RecordHead {
                connection: "c1".to_owned(),
                surface: Surface::Connect,
                agent: "fetcher".to_owned(),
                project: None,
                correlation_id: None,
                target: "svc.example:443".to_owned(),
            },
            allow,
            reason: reason.to_owned().into(),
            rule: None,
            lease: None,
            resolved: Vec::new(),
            dialed: None,
        }
    }
}

#[async_trait]
impl EgressSteps for Probe {
    async fn validate(&mut self) -> Result<(), Refused> {
        self.validated += 1;
        Ok(())
    }

    fn admission(&self) -> Option<DecisionRecord> {
        Some(self.decision(true, "egress_allowed_rule"))
    }

    async fn execute(&mut self, _leave: Leave) -> Result<(), Refused> {
        self.executed += 1;
        Ok(())
    }

    fn ends_later(&self) -> bool {
        false
    }

    fn record(&self, allow: bool, reason: &str) -> EgressRecord {
        EgressRecord::Decision(self.decision(allow, reason))
    }
}

async fn run(
    road: &dyn EgressRoad,
    surface: Surface,
    keys: &GateKeys,
) -> (Result<(), ErrorCode>, Probe) {
    let mut probe = Probe::default();
    let action = EgressAction {
        surface,
        project: None,
        keys,
        correlation_id: None,
    };
    let ran = road.run(action, &mut probe).await;
    (ran.map(drop).map_err(|refused| refused.code), probe)
}

#[tokio::test]
async fn an_egress_action_whose_admission_cannot_be_recorded_is_refused_before_execute() {
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
    let agent = AgentRoad {
        state: gw.state.clone(),
        identified,
    };
    let anonymous = AnonymousRoad {
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
    let dns_keys = GateKeys {
        host: keys.host.clone(),
        keys: keys.keys.get(..2).unwrap().to_vec(),
    };
    let cases: [(&dyn EgressRoad, Surface, &GateKeys); 3] = [
        (&agent, Surface::Http, &keys),
        (&agent, Surface::Connect, &keys),
        (&anonymous, Surface::Dns, &dns_keys),
    ];

    for (road, surface, keys) in cases {
        let (ran, probe) = run(road, surface, keys).await;
        assert_eq!(ran, Ok(()), "{surface:?}");
        assert_eq!((probe.validated, probe.executed), (1, 1), "{surface:?}");
    }

    faulty.fail(true);
    for (road, surface, keys) in cases {
        let (ran, probe) = run(road, surface, keys).await;
        assert_eq!(ran, Err(ErrorCode::StoreUnavailable), "{surface:?}");
        assert_eq!((probe.validated, probe.executed), (1, 0), "{surface:?}");
    }

    faulty.fail(false);
    let (ran, probe) = run(&anonymous, Surface::Dns, &dns_keys).await;
    assert_eq!((ran, probe.executed), (Ok(()), 1));
}
