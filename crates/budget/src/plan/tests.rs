//! Config checking tests: defaults, every refusal with its key, round trips.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn parse(text: &str) -> BudgetsConfig {
    toml::from_str(text).unwrap()
}

#[track_caller]
fn check_issue(text: &str, key: &str, needle: &str) {
    let issues = parse(text).compile().unwrap_err();
    assert!(
        issues
            .iter()
            .any(|issue| issue.key == key && issue.message.contains(needle)),
        "{text}: {issues:?}"
    );
}

const ONE: &str = "[[budgets]]\nid = \"b\"\nscope = \"user\"\nunit = \"usd\"\nwindow = \"day\"\n";

#[test]
fn defaults_are_the_starter_budgets() {
    let plan = BudgetsConfig::default().compile().unwrap();
    assert_eq!(plan.mode, BudgetMode::Enforce);
    assert_eq!(plan.zone, TimeZone::UTC);
    assert_eq!(plan.reservation_ttl, Duration::from_secs(900));
    let summary: Vec<(&str, Scope, Window, u64)> = plan
        .budgets
        .iter()
        .map(|b| (b.id.as_str(), b.scope, b.window, b.limit))
        .collect();
    assert_eq!(
        summary,
        [
            ("session", Scope::Session, Window::Lifetime, 500_000),
            ("user-daily", Scope::User, Window::Day, 5_000_000),
            ("global-monthly", Scope::Global, Window::Month, 120_000_000),
        ]
    );
    assert!(
        plan.budgets
            .iter()
            .all(|b| b.throttle_at == 80 && b.throttle == Throttle::Delay(Duration::from_secs(1)))
    );
    assert_eq!(plan.prices.default_tool, Some(MicroUsd(0)));
    assert_eq!(plan.prices.default_model, None);
    assert_eq!(parse(""), BudgetsConfig::default());
}

#[test]
fn parses_a_full_section() {
    let plan = parse(
        r#"
        mode = "report"
        time_zone = "Europe/Berlin"
        reservation_ttl = "2m"
        [prices.models."gpt-4o-mini"]
        input_per_1m = "0.15"
        output_per_1m = "0.60"
        [prices.default_model]
        input_per_1m = "10"
        output_per_1m = "30"
        [prices.tools]
        "github.*" = "0.001"
        [[budgets]]
        id = "tokens"
        scope = "agent"
        subject = "bot-1"
        unit = "tokens"
        window = "rolling_30d"
        limit = 1000000
        throttle_at = 90
        throttle_action = "downgrade"
        downgrade_to = "gpt-4o-mini"
        [[budgets]]
        id = "calls"
        scope = "global"
        subject = "ignored"
        unit = "calls"
        window = "month"
        limit = "500"
        throttle_action = "approve"
        "#,
    )
    .compile()
    .unwrap();
    assert_eq!(plan.mode, BudgetMode::Report);
    assert_eq!(plan.reservation_ttl, Duration::from_secs(120));
    assert_eq!(plan.prices.models[0].1.output_per_1m, MicroUsd(600_000));
    assert_eq!(
        plan.prices.tools,
        [("github.*".to_owned(), MicroUsd(1_000))]
    );
    let tokens = &plan.budgets[0];
    assert_eq!(
        (tokens.limit, tokens.throttle_at, &tokens.throttle),
        (
            1_000_000,
            90,
            &Throttle::Downgrade("gpt-4o-mini".to_owned())
        )
    );
    assert_eq!(tokens.subject.as_deref(), Some("bot-1"));
    let calls = &plan.budgets[1];
    assert_eq!((calls.limit, &calls.throttle), (500, &Throttle::Approve));
    assert_eq!(calls.subject, None, "global budgets have no subject");
}

#[test]
fn every_bad_key_is_named() {
    check_issue("time_zone = \"Mars/Olympus\"", "time_zone", "IANA");
    check_issue("reservation_ttl = \"soon\"", "reservation_ttl", "duration");
    check_issue("reservation_ttl = \"0s\"", "reservation_ttl", "between");
    check_issue("reservation_ttl = \"25h\"", "reservation_ttl", "between");
    check_issue(
        &format!("{ONE}limit = \"5.0000001\""),
        "budgets[0].limit",
        "6 decimals",
    );
    check_issue(
        &format!("{ONE}limit = \"-5\""),
        "budgets[0].limit",
        "decimal",
    );
    check_issue(
        &format!("{ONE}limit = 5"),
        "budgets[0].limit",
        "decimal string",
    );
    check_issue(
        "[[budgets]]\nid = \"b\"\nscope = \"user\"\nunit = \"tokens\"\nwindow = \"day\"\nlimit = \"1.5\"",
        "budgets[0].limit",
        "whole number",
    );
    check_issue(
        "[[budgets]]\nid = \"b\"\nscope = \"user\"\nunit = \"usd\"\nwindow = \"lifetime\"\nlimit = \"1\"",
        "budgets[0].window",
        "only for `session`",
    );
    check_issue(
        &format!("{ONE}limit = \"1\"\n{ONE}limit = \"2\""),
        "budgets[1].id",
        "duplicate budget id `b`",
    );
    check_issue(
        "[[budgets]]\nid = \"no spaces\"\nscope = \"user\"\nunit = \"usd\"\nwindow = \"day\"\nlimit = \"1\"",
        "budgets[0].id",
        "letters",
    );
    check_issue(
        &format!("{ONE}limit = \"1\"\nthrottle_at = 0"),
        "budgets[0].throttle_at",
        "percent",
    );
    check_issue(
        &format!("{ONE}limit = \"1\"\nthrottle_at = 101"),
        "budgets[0].throttle_at",
        "percent",
    );
    check_issue(
        &format!("{ONE}limit = \"1\"\nthrottle_action = \"downgrade\""),
        "budgets[0].downgrade_to",
        "needs the model",
    );
    check_issue(
        &format!("{ONE}limit = \"1\"\ndelay = \"2m\""),
        "budgets[0].delay",
        "60s",
    );
    check_issue(
        &format!("{ONE}limit = \"1\"\nsubject = \"\""),
        "budgets[0].subject",
        "1-256",
    );
    check_issue(
        "[prices.models.\"gpt\"]\ninput_per_1m = \"x\"\noutput_per_1m = \"1\"",
        "prices.models.\"gpt\".input_per_1m",
        "decimal",
    );
    check_issue(
        "[prices.tools]\n\"a*b\" = \"1\"",
        "prices.tools.\"a*b\"",
        "one `*`",
    );
    check_issue(
        "[prices]\ndefault_tool = \"free\"",
        "prices.default_tool",
        "decimal",
    );
}

#[test]
fn unknown_keys_and_values_fail_to_parse() {
    for text in [
        "modes = \"enforce\"",
        "mode = \"off\"",
        &format!("{ONE}limit = \"1\"\nscopes = \"user\""),
        "[[budgets]]\nid = \"b\"\nscope = \"team\"\nunit = \"usd\"\nwindow = \"day\"\nlimit = \"1\"",
        "[[budgets]]\nid = \"b\"\nscope = \"user\"\nunit = \"eur\"\nwindow = \"day\"\nlimit = \"1\"",
        "[[budgets]]\nid = \"b\"\nscope = \"user\"\nunit = \"usd\"\nwindow = \"week\"\nlimit = \"1\"",
        "[prices.models.\"gpt\"]\ninput_per_1m = \"1\"",
    ] {
        assert!(toml::from_str::<BudgetsConfig>(text).is_err(), "{text}");
    }
}

#[test]
fn deny_unpriced_tools_drops_the_default_tool_price() {
    let plan = parse("[prices]\ndeny_unpriced_tools = true")
        .compile()
        .unwrap();
    assert_eq!(plan.prices.default_tool, None);
}

#[test]
fn budgets_round_trip_through_their_definition() {
    let plan = parse(&format!(
        "{ONE}limit = \"2.5\"\n[[budgets]]\nid = \"d\"\nscope = \"room\"\nunit = \"calls\"\nwindow = \"day\"\nlimit = 7\nthrottle_action = \"downgrade\"\ndowngrade_to = \"small\"\n[[budgets]]\nid = \"e\"\nscope = \"room\"\nunit = \"calls\"\nwindow = \"day\"\nlimit = 7\ndelay = \"45s\""
    ))
    .compile()
    .unwrap();
    for budget in &plan.budgets {
        assert_eq!(&budget.to_def().compile().unwrap(), budget);
    }
    assert_eq!(
        plan.budgets[0].to_def().limit,
        LimitValue::Text("2.50".to_owned())
    );
}

#[test]
fn put_and_remove_keep_ids_unique() {
    let mut plan = BudgetsConfig::default().compile().unwrap();
    let mut replacement = plan.budgets[1].clone();
    replacement.limit = 1;
    assert!(plan.put_budget(replacement.clone()).is_some());
    assert_eq!(plan.budgets.len(), 3);
    assert_eq!(plan.budgets[1], replacement);
    let mut extra = replacement;
    extra.id = "extra".to_owned();
    assert!(plan.put_budget(extra).is_none());
    assert_eq!(plan.budgets.len(), 4);
    assert!(plan.remove_budget("extra").is_some());
    assert!(plan.remove_budget("extra").is_none());
}
