//! Monotonicity properties: adding a deny or removing an allow never turns a deny into an allow.

use portcullis_core::{GatePattern, Request, Subject};
use proptest::prelude::*;

use crate::capsule::CapsuleRules;
use crate::config::{LayerModes, PolicyConfig};
use crate::contract::Contract;
use crate::engine::{PolicyEngine, PolicyState};
use crate::explain::Verdict;

fn patterns(raw: &[&str]) -> Vec<GatePattern> {
    raw.iter().map(|p| GatePattern::parse(p).unwrap()).collect()
}

fn request(agent: &str, key: &str) -> Request {
    Request {
        subject: Subject {
            agent: agent.into(),
            ..Subject::default()
        },
        action: portcullis_core::GateKey::parse(key).unwrap(),
        resource: String::new(),
        context: Default::default(),
    }
}

const VOCABULARY: &[&str] = &[
    "*",
    "tools:*",
    "tools:call*",
    "tools:call:*",
    "tools:call:a.b",
    "tools:call:a.*",
    "llm:model:m",
    "llm:*",
    "net:host:x.com",
    "net:*",
    "io:ingress:chat",
    "io:*",
];
const KEYS: &[&str] = &[
    "tools:call:a.b",
    "tools:call:a.c",
    "llm:model:m",
    "llm:model:n",
    "net:host:x.com",
    "net:port:443",
    "io:ingress:chat",
    "io:egress:chat",
];
const CEDAR_RULES: &[&str] = &[
    "permit (principal, action == Portcullis::Action::\"llm:model\", resource);",
    "permit (principal, action, resource) when { context.risk_level == 0 };",
    "forbid (principal, action == Portcullis::Action::\"tools:call\", resource);",
    "forbid (principal, action == Portcullis::Action::\"llm:model\", resource) when { context.time * 1000000000000 > 0 };",
    "permit (principal, action == Portcullis::Action::\"net:host\", resource == Portcullis::Host::\"x.com\");",
];

#[derive(Clone, Debug)]
struct Policy {
    denies: Vec<usize>,
    contracts: Vec<usize>,
    capsule: Vec<usize>,
    allow: Vec<usize>,
    cedar: Vec<usize>,
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    let picks = |len| proptest::collection::vec(0..len, 0..4);
    (
        picks(VOCABULARY.len()),
        picks(VOCABULARY.len()),
        picks(VOCABULARY.len()),
        picks(VOCABULARY.len()),
        picks(CEDAR_RULES.len()),
    )
        .prop_map(|(denies, contracts, capsule, allow, cedar)| Policy {
            denies,
            contracts,
            capsule,
            allow,
            cedar,
        })
}

fn decide_policy(policy: &Policy, key: &str) -> Verdict {
    let pick = |idxs: &[usize]| patterns(&idxs.iter().map(|i| VOCABULARY[*i]).collect::<Vec<_>>());
    let contracts: Vec<Contract> = policy
        .contracts
        .iter()
        .enumerate()
        .map(|(n, i)| {
            toml::from_str(&format!(
                "id = \"c{n}\"\npatterns = [\"{}\"]",
                VOCABULARY[*i]
            ))
            .unwrap()
        })
        .collect();
    let cedar: String = policy
        .cedar
        .iter()
        .map(|i| CEDAR_RULES[*i])
        .collect::<Vec<_>>()
        .join("\n");
    let config = PolicyConfig {
        deny: pick(&policy.denies),
        cedar_files: vec!["p.cedar".into()],
        mode: LayerModes::default(),
    };
    let engine = PolicyEngine::build(&config, &contracts, &[("p.cedar".into(), cedar)]).unwrap();
    let state = PolicyState::in_memory();
    let capsule = CapsuleRules {
        denies: pick(&policy.capsule),
        contracts: vec![],
    };
    state.capsules.adopt("cap", capsule).unwrap();
    engine
        .decide(
            &request("a", key),
            &pick(&policy.allow),
            "2026-01-15T12:00:00Z".parse().unwrap(),
            &state,
        )
        .decision
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn adding_a_deny_never_allows(policy in policy_strategy(), key in 0..KEYS.len(), layer in 0..4usize, extra in 0..VOCABULARY.len(), rule in 0..CEDAR_RULES.len()) {
        let key = KEYS[key];
        let before = decide_policy(&policy, key);
        let mut stricter = policy.clone();
        match layer {
            0 => stricter.denies.push(extra),
            1 => stricter.contracts.push(extra),
            2 => stricter.capsule.push(extra),
            _ if CEDAR_RULES[rule].starts_with("forbid") => stricter.cedar.push(rule),
            _ => {}
        }
        if before == Verdict::Deny {
            prop_assert_eq!(decide_policy(&stricter, key), Verdict::Deny);
        }
    }

    #[test]
    fn removing_an_allow_never_allows(policy in policy_strategy(), key in 0..KEYS.len(), drop_allow in any::<prop::sample::Index>(), drop_permit in any::<bool>()) {
        let key = KEYS[key];
        let before = decide_policy(&policy, key);
        let mut looser = policy.clone();
        if drop_permit {
            if let Some(pos) = looser.cedar.iter().position(|i| CEDAR_RULES[*i].starts_with("permit")) {
                looser.cedar.remove(pos);
            }
        } else if !looser.allow.is_empty() {
            looser.allow.remove(drop_allow.index(looser.allow.len()));
        }
        if before == Verdict::Deny {
            prop_assert_eq!(decide_policy(&looser, key), Verdict::Deny);
        }
    }
}
