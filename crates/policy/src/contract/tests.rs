//! Contract windows, auto-renew, subject filters and immutability, with injected times.

use super::*;

fn at(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn contract(toml_text: &str) -> Contract {
    toml::from_str(&format!(
        "id = \"c\"\npatterns = [\"tools:*\"]\n{toml_text}"
    ))
    .unwrap()
}

#[track_caller]
fn check_active(toml_text: &str, now: &str, expected: bool) {
    assert_eq!(
        contract(toml_text).is_active(at(now)),
        expected,
        "{toml_text} at {now}"
    );
}

#[test]
fn windows_are_half_open() {
    let window = "valid_from = \"2026-01-01T00:00:00Z\"\nvalid_to = \"2026-01-02T00:00:00Z\"";
    check_active(window, "2025-12-31T23:59:59Z", false);
    check_active(window, "2026-01-01T00:00:00Z", true);
    check_active(window, "2026-01-01T23:59:59Z", true);
    check_active(window, "2026-01-02T00:00:00Z", false);
    check_active("", "1990-01-01T00:00:00Z", true);
    check_active(
        "valid_to = \"2026-01-02T00:00:00+01:00\"",
        "2026-01-01T22:59:59Z",
        true,
    );
    check_active(
        "valid_to = \"2026-01-02T00:00:00+01:00\"",
        "2026-01-01T23:00:00Z",
        false,
    );
}

#[test]
fn auto_renew_re_arms() {
    let renewing = "valid_to = \"2026-01-01T00:00:00Z\"\nauto_renew_secs = 3600";
    check_active(renewing, "2026-01-01T00:00:00Z", true);
    check_active(renewing, "2027-06-01T12:34:56Z", true);
    let term = contract(renewing)
        .term_at(at("2026-01-01T02:30:00Z"))
        .unwrap();
    assert_eq!(term.start, Some(at("2026-01-01T02:00:00Z")));
    assert_eq!(term.end, Some(at("2026-01-01T03:00:00Z")));
    let term = contract(renewing)
        .term_at(at("2025-12-31T02:30:00Z"))
        .unwrap();
    assert_eq!(term.end, Some(at("2026-01-01T00:00:00Z")));
}

#[track_caller]
fn check_errors(toml_text: &str, expected: &[ContractError]) {
    assert_eq!(contract(toml_text).validate(), expected, "{toml_text}");
}

#[test]
fn validation() {
    check_errors("", &[]);
    check_errors(
        "valid_from = \"2026-01-02T00:00:00Z\"\nvalid_to = \"2026-01-01T00:00:00Z\"",
        &[ContractError::EmptyWindow],
    );
    check_errors("auto_renew_secs = 60", &[ContractError::BadAutoRenew]);
    check_errors(
        "valid_to = \"2026-01-01T00:00:00Z\"\nauto_renew_secs = 0",
        &[ContractError::BadAutoRenew],
    );
    check_errors(
        "quota = { limit = 1, window_secs = 0 }",
        &[ContractError::BadQuotaWindow],
    );
    let mut bad = contract("");
    bad.patterns = vec![GatePattern::parse("tool:*").unwrap()];
    bad.id = String::new();
    assert_eq!(bad.validate().len(), 2);
    assert!(toml::from_str::<Contract>("id = \"c\"\npatterns = []\nextra = 1").is_err());
    assert!(toml::from_str::<Contract>("id = \"c\"\npatterns = [\"x*y\"]").is_err());
}

#[track_caller]
fn check_subject(filter: &str, subject: Subject, expected: bool) {
    let contract = contract(&format!("subject = {filter}"));
    assert_eq!(
        contract.subject.matches(&subject),
        expected,
        "{filter} vs {subject:?}"
    );
}

#[test]
fn subject_filters() {
    let agent = |agent: &str, roles: &[&str], node: Option<&str>| Subject {
        agent: agent.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        node: node.map(str::to_owned),
        ..Subject::default()
    };
    check_subject("{}", agent("a", &[], None), true);
    check_subject("{ agents = [\"a\"] }", agent("a", &[], None), true);
    check_subject("{ agents = [\"a\"] }", agent("b", &[], None), false);
    check_subject("{ agents = [\"a\"] }", agent("A", &[], None), false);
    check_subject("{ roles = [\"x\", \"y\"] }", agent("a", &["y"], None), true);
    check_subject("{ roles = [\"x\"] }", agent("a", &["y"], None), false);
    check_subject(
        "{ agents = [\"a\"], roles = [\"x\"] }",
        agent("a", &["y"], None),
        false,
    );
    check_subject("{ nodes = [\"n1\"] }", agent("a", &[], Some("n1")), true);
    check_subject("{ nodes = [\"n1\"] }", agent("a", &[], None), false);
    check_subject("{ tags = [\"t\"] }", agent("a", &[], None), false);
}

const IMMUTABLE: &str =
    "immutable = true\nvalid_from = \"2026-01-01T00:00:00Z\"\nvalid_to = \"2026-02-01T00:00:00Z\"";

#[test]
fn immutable_cannot_be_deleted_while_active() {
    let old = contract(IMMUTABLE);
    assert_eq!(
        can_delete(&old, at("2026-01-15T00:00:00Z")),
        Err(ImmutabilityError::Delete)
    );
    assert_eq!(can_delete(&old, at("2025-12-01T00:00:00Z")), Ok(()));
    assert_eq!(can_delete(&old, at("2026-02-01T00:00:00Z")), Ok(()));
    assert_eq!(
        can_delete(&contract(""), at("2026-01-15T00:00:00Z")),
        Ok(())
    );
}

#[track_caller]
fn check_replace(new_toml: &str, expected: Result<(), ImmutabilityError>) {
    let old = contract(IMMUTABLE);
    let new = contract(new_toml);
    assert_eq!(
        can_replace(&old, &new, at("2026-01-15T00:00:00Z")),
        expected,
        "{new_toml}"
    );
}

#[test]
fn immutable_cannot_be_shortened_or_weakened() {
    check_replace(IMMUTABLE, Ok(()));
    check_replace(
        "immutable = true\nvalid_to = \"2026-03-01T00:00:00Z\"",
        Ok(()),
    );
    check_replace("immutable = true", Ok(()));
    check_replace(
        "immutable = true\nvalid_to = \"2026-01-20T00:00:00Z\"",
        Err(ImmutabilityError::Shorten),
    );
    check_replace(
        "immutable = true\nvalid_from = \"2026-01-20T00:00:00Z\"",
        Err(ImmutabilityError::Shorten),
    );
    check_replace(
        "valid_to = \"2026-03-01T00:00:00Z\"",
        Err(ImmutabilityError::Weaken),
    );
    check_replace(
        "immutable = true\nsubject = { roles = [\"x\"] }",
        Err(ImmutabilityError::Weaken),
    );
    check_replace(
        "immutable = true\nquota = { limit = 5, window_secs = 60 }",
        Err(ImmutabilityError::Weaken),
    );
    let mut narrower = contract("immutable = true");
    narrower.patterns = vec![GatePattern::parse("tools:call:*").unwrap()];
    let old = contract(IMMUTABLE);
    assert_eq!(
        can_replace(&old, &narrower, at("2026-01-15T00:00:00Z")),
        Err(ImmutabilityError::Weaken)
    );
    // Inactive (expired) immutable contracts may change freely.
    assert_eq!(
        can_replace(&old, &contract(""), at("2026-03-01T00:00:00Z")),
        Ok(())
    );
}

#[test]
fn auto_renewing_immutable_can_be_retired() {
    let old =
        contract("immutable = true\nvalid_to = \"2026-01-01T00:00:00Z\"\nauto_renew_secs = 86400");
    let now = at("2026-01-10T12:00:00Z");
    assert_eq!(can_delete(&old, now), Err(ImmutabilityError::Delete));
    // Dropping auto-renew with valid_to at the current term's end is allowed...
    let retiring = contract("immutable = true\nvalid_to = \"2026-01-11T00:00:00Z\"");
    assert_eq!(can_replace(&old, &retiring, now), Ok(()));
    // ...but not ending sooner.
    let early = contract("immutable = true\nvalid_to = \"2026-01-10T18:00:00Z\"");
    assert_eq!(
        can_replace(&old, &early, now),
        Err(ImmutabilityError::Shorten)
    );
    assert_eq!(can_delete(&retiring, at("2026-01-11T00:00:00Z")), Ok(()));
}

#[test]
fn quota_windows_align_to_epoch() {
    let quota = Quota {
        limit: 1,
        window_secs: 3600,
    };
    assert_eq!(
        Contract::quota_window_start(quota, at("2026-01-01T05:59:59Z")),
        at("2026-01-01T05:00:00Z")
    );
}
