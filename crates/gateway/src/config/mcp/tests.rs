#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use super::*;
use crate::config::load_str;

const UPSTREAM: &str = r#"
[[upstreams]]
name = "fx"
[upstreams.stdio]
command = "fx-server"
"#;

#[track_caller]
fn load(extra: &str) -> Config {
    load_str(&format!("{UPSTREAM}{extra}"), "t.toml", &BTreeMap::new()).unwrap()
}

/// The key paths of every issue `extra` raises.
#[track_caller]
fn issues(extra: &str) -> Vec<String> {
    match load_str(&format!("{UPSTREAM}{extra}"), "t.toml", &BTreeMap::new()) {
        Ok(_) => Vec::new(),
        Err(err) => err.issues.into_iter().map(|issue| issue.path).collect(),
    }
}

#[test]
fn upstream_pii_defaults_pass_personal_data_and_redact_secrets() {
    let config = load("");
    let pii = config.upstreams[0].pii;
    for strategies in [pii.arguments, pii.results] {
        let table = strategies.table();
        assert_eq!(table.secret, Strategy::Redact);
        for personal in [
            table.email,
            table.phone,
            table.credit_card,
            table.us_ssn,
            table.iban,
            table.ip,
        ] {
            assert_eq!(personal, Strategy::Allow);
        }
    }
    let args = pii.arguments_config(&config.pii);
    assert_eq!(args.max_input_bytes, config.pii.max_input_bytes);
    assert_eq!(args.detectors, config.pii.detectors);
    assert_eq!(args.strategies.email, Strategy::Allow);
}

#[test]
fn upstream_pii_strategies_are_set_per_type_and_side() {
    let config = load(
        "[upstreams.pii]\narguments = { email = \"synthetic\", credit_card = \"block\" }\n\
         results = { email = \"redact\", secret = \"block\" }\n",
    );
    let pii = config.upstreams[0].pii;
    assert_eq!(pii.arguments.email, Strategy::Synthetic);
    assert_eq!(pii.arguments.credit_card, Strategy::Block);
    assert_eq!(pii.arguments.phone, Strategy::Allow);
    assert_eq!(pii.arguments.secret, Strategy::Redact);
    assert_eq!(pii.results.email, Strategy::Redact);
    assert_eq!(pii.results.secret, Strategy::Block);
    assert_eq!(
        pii.results_config(&config.pii).strategies.secret,
        Strategy::Block
    );
    assert_eq!(
        issues("[upstreams.pii]\narguments = { secret = \"allow\" }\n"),
        vec!["upstreams[0].pii.arguments.secret"]
    );
    assert_eq!(
        issues("[upstreams.pii]\nresults = { secret = \"synthetic\" }\n"),
        vec!["upstreams[0].pii.results.secret"]
    );
    assert_eq!(
        issues("[upstreams.pii]\narguments = { name = \"redact\" }\n").len(),
        1
    );
    assert_eq!(
        issues("[upstreams.pii]\narguments = { email = \"shred\" }\n").len(),
        1
    );
}

#[test]
fn risk_entries_name_upstream_tools_and_a_tier() {
    let config = load(
        "[[tools.risk]]\ntools = [\"fx.crash\"]\ntier = \"critical\"\n\
         [[tools.risk]]\ntools = [\"fx.*\"]\ntier = \"medium\"\n",
    );
    let tiers = portcullis_mcp::RiskTiers::compile(&risk_specs(&config.tools)).unwrap();
    assert_eq!(tiers.tier("fx", "crash", None), RiskTier::Critical);
    assert_eq!(tiers.tier("fx", "echo", None), RiskTier::Medium);
    assert_eq!(tiers.tier("other", "echo", None), RiskTier::Low);
    assert_eq!(
        issues("[[tools.risk]]\ntools = [\"crash\"]\ntier = \"high\"\n"),
        vec!["tools.risk"]
    );
    assert_eq!(
        issues("[[tools.risk]]\ntools = [\"fx.crash\"]\ntier = \"severe\"\n").len(),
        1
    );
}

#[test]
fn rules_target_tools_prompts_or_resources() {
    let config = load(
        "[[tools.rules]]\nname = \"no-rm\"\nprompts = [\"fx.*\"]\nkind = \"deny\"\n\
         pattern = \"rm\"\n\
         [[tools.rules]]\nname = \"files\"\nresources = [\"fx\"]\nkind = \"path\"\n\
         roots = [\"/srv\"]\nlocal = false\n",
    );
    let specs = rule_specs(&config.tools);
    assert_eq!(specs[0].prompts, vec!["fx.*".to_owned()]);
    assert_eq!(specs[1].resources, vec!["fx".to_owned()]);
    // A rule that names nothing, and a bare tool name, are refused.
    assert_eq!(
        issues("[[tools.rules]]\nname = \"x\"\nkind = \"deny\"\npattern = \"rm\"\n"),
        vec!["tools.rules"]
    );
    assert_eq!(
        issues(
            "[[tools.rules]]\nname = \"x\"\ntools = [\"read_file\"]\nkind = \"deny\"\n\
             pattern = \"rm\"\n"
        ),
        vec!["tools.rules"]
    );
}

#[test]
fn rules_naming_no_upstream_are_warned_about() {
    let config = load(
        "[[tools.rules]]\nname = \"ok\"\ntools = [\"fx.read_file\"]\nkind = \"deny\"\n\
         pattern = \"x\"\n\
         [[tools.rules]]\nname = \"wide\"\ntools = [\"f*\"]\nkind = \"deny\"\npattern = \"x\"\n\
         [[tools.rules]]\nname = \"res\"\nresources = [\"fx\"]\nkind = \"deny\"\n\
         pattern = \"x\"\n\
         [[tools.rules]]\nname = \"typo\"\ntools = [\"xf.read_file\", \"fxx*\"]\n\
         kind = \"deny\"\npattern = \"x\"\n\
         [[tools.risk]]\ntools = [\"gone.*\"]\ntier = \"high\"\n",
    );
    let warnings = rule_warnings(&config);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("`typo`"));
    assert!(warnings[1].contains("tools.risk[0]"));
    let doctor = crate::doctor::audit(
        &config,
        &crate::doctor::HostFacts::gather(std::path::Path::new("/nonexistent"), false),
    );
    let item = doctor.iter().find(|c| c.id == "tool_rules").unwrap();
    assert_eq!(item.status, crate::doctor::Status::Warn);
    assert!(item.detail.contains("`typo`"));
}
