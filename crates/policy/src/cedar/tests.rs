//! Cedar layer: schema, strict validation at load, runtime errors deny, slicing.

use portcullis_core::{GateKey, Subject};

use super::*;
use crate::catalog::resolve;

fn layer(text: &str) -> Result<CedarLayer, Vec<PolicyLoadError>> {
    CedarLayer::compile(&[("t.cedar".to_owned(), text.to_owned())])
}

fn request(key: &str, arguments: serde_json::Value) -> Request {
    Request {
        subject: Subject {
            agent: "bridge".into(),
            project: Some("web".into()),
            roles: vec!["dev".into()],
            ..Subject::default()
        },
        action: GateKey::parse(key).unwrap(),
        resource: String::new(),
        context: portcullis_core::request::RequestContext {
            arguments,
            risk: RiskTier::High,
        },
    }
}

#[track_caller]
fn check(policies: &str, key: &str, arguments: serde_json::Value, expected: CedarOutcome) {
    let layer = layer(policies).unwrap();
    let now: Timestamp = "2026-01-14T09:30:00Z".parse().unwrap(); // a Wednesday
    let request = request(key, arguments);
    assert_eq!(
        layer.evaluate(&request, resolve(key).unwrap(), now),
        expected,
        "{key}"
    );
}

#[test]
fn generated_schema_parses() {
    let (schema, warnings) = Schema::from_cedarschema_str(&schema_text()).unwrap();
    assert_eq!(warnings.count(), 0);
    assert!(schema.action_entities().is_ok());
    assert!(schema_text().contains("action \"net:port\""));
}

#[test]
fn outcomes() {
    let policies = r#"
        @id("office")
        permit (principal == Portcullis::Agent::"bridge", action == Portcullis::Action::"tools:call", resource in Portcullis::Upstream::"github")
        when { context.hour >= 8 && context.hour < 18 && context.weekday <= 5 };
        @id("risky")
        forbid (principal, action == Portcullis::Action::"llm:model", resource) when { context.risk == "high" };
        @id("overflows")
        forbid (principal, action == Portcullis::Action::"net:host", resource) when { context.risk_level * 4611686018427387904 > 0 };
        @id("tag")
        permit (principal, action == Portcullis::Action::"net:port", resource)
        when { context.arguments.hasTag("x") && context.arguments.getTag("x") == "y" };
    "#;
    check(
        policies,
        "tools:call:github.create_issue",
        serde_json::json!({}),
        CedarOutcome::Permit("office".into()),
    );
    check(
        policies,
        "tools:call:gitlab.create_issue",
        serde_json::json!({}),
        CedarOutcome::NoDecision,
    );
    check(
        policies,
        "llm:model:m",
        serde_json::json!(null),
        CedarOutcome::Forbid("risky".into()),
    );
    check(
        policies,
        "io:egress:chat",
        serde_json::json!(null),
        CedarOutcome::NoPolicies,
    );
    // A policy that errors at run time (overflow at risk `high`) is reported, so the engine
    // denies with `policy_error`.
    check(
        policies,
        "net:host:a.com",
        serde_json::json!({"z": 1}),
        CedarOutcome::Error(Some("overflows".into())),
    );
    check(
        policies,
        "net:port:443",
        serde_json::json!({"x": "y"}),
        CedarOutcome::Permit("tag".into()),
    );
    check(
        policies,
        "net:port:443",
        serde_json::json!({"x": 1}),
        CedarOutcome::NoDecision,
    );
}

#[test]
fn arguments_become_tags() {
    let policies = r#"
        @id("repo")
        permit (principal, action, resource) when {
            context.arguments.hasTag("repo") && context.arguments.getTag("repo") == "acme/web" &&
            context.arguments.hasTag("n") && context.arguments.getTag("n") == "3" &&
            principal has project && principal.project == "web"
        };
    "#;
    check(
        policies,
        "tools:call:a.b",
        serde_json::json!({"repo": "acme/web", "n": 3}),
        CedarOutcome::Permit("repo".into()),
    );
    let too_long = "x".repeat(MAX_CEDAR_ARGUMENT_BYTES + 1);
    check(
        policies,
        "tools:call:a.b",
        serde_json::json!({"repo": too_long}),
        CedarOutcome::Error(None),
    );
}

#[test]
fn slices_by_resource() {
    // The erroring policy applies only to one tool; others never evaluate it.
    let policies = r#"
        @id("only-a-b")
        forbid (principal, action, resource == Portcullis::Tool::"a.b") when { context.time * 1000000000000 > 0 };
        @id("all")
        permit (principal, action == Portcullis::Action::"tools:call", resource);
    "#;
    check(
        policies,
        "tools:call:a.b",
        serde_json::json!({}),
        CedarOutcome::Error(Some("only-a-b".into())),
    );
    check(
        policies,
        "tools:call:a.c",
        serde_json::json!({}),
        CedarOutcome::Permit("all".into()),
    );
    let compiled = layer(policies).unwrap();
    let slice = compiled.slices.get("tools:call").unwrap();
    assert_eq!(slice.any_resource.policies().count(), 1);
    assert_eq!(
        compiled
            .slices
            .get("llm:model")
            .unwrap()
            .any_resource
            .policies()
            .count(),
        0
    );
}

#[track_caller]
fn check_refused(text: &str, expected_prefix: &str) {
    let errors = layer(text).unwrap_err();
    let first = errors.first().unwrap().to_string();
    assert!(first.starts_with(expected_prefix), "{first}");
}

#[test]
fn invalid_policies_refuse_the_load() {
    check_refused(
        "permit (principal, action, resource",
        "cedar source `t.cedar`:",
    );
    check_refused(
        "permit (principal, action, resource) when { context.nope };",
        "cedar validation (strict)",
    );
    check_refused(
        "permit (principal == Portcullis::Nobody::\"x\", action, resource);",
        "cedar validation (strict)",
    );
    check_refused(
        "permit (principal, action == Portcullis::Action::\"tools:list\", resource);",
        "cedar validation (strict)",
    );
    // Strict mode: reading an optional attribute or a tag without `has`/`hasTag` does not validate.
    check_refused(
        "permit (principal, action, resource) when { principal.node == \"n1\" };",
        "cedar validation (strict)",
    );
    check_refused(
        "permit (principal, action, resource) when { context.arguments.getTag(\"x\") == \"y\" };",
        "cedar validation (strict)",
    );
    // Strict mode: comparing a Long with a String does not validate.
    check_refused(
        "permit (principal, action, resource) when { context.hour == \"8\" };",
        "cedar validation (strict)",
    );
    check_refused(
        "permit (principal == ?principal, action, resource);",
        "cedar source `t.cedar` holds a template",
    );
    check_refused(
        "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);",
        "cedar policy id `x` appears more than once",
    );
    let huge = " ".repeat(MAX_CEDAR_SOURCE_BYTES + 1);
    check_refused(&huge, "cedar source `t.cedar` is larger than");
}

#[test]
fn unnamed_policies_get_file_ids() {
    check(
        "permit (principal, action, resource);",
        "tools:call:a.b",
        serde_json::json!({}),
        CedarOutcome::Permit("t.cedar#0".into()),
    );
}

#[test]
fn documented_examples_validate() {
    let doc = crate::docs::policy_markdown();
    let examples: Vec<&str> = doc
        .split("```cedar\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert_eq!(examples.len(), 2);
    for example in examples {
        layer(example).unwrap();
    }
}

#[test]
fn resource_and_any_resource_sets_merge() {
    let specific_permit = r#"
        @id("b") permit (principal, action, resource == Portcullis::Tool::"a.b");
        @id("a") forbid (principal, action, resource) when { context.risk == "high" };
    "#;
    check(
        specific_permit,
        "tools:call:a.b",
        serde_json::json!({}),
        CedarOutcome::Forbid("a".into()),
    );
    let specific_forbid = r#"
        @id("b") forbid (principal, action, resource == Portcullis::Tool::"a.b");
        @id("a") permit (principal, action, resource);
    "#;
    check(
        specific_forbid,
        "tools:call:a.b",
        serde_json::json!({}),
        CedarOutcome::Forbid("b".into()),
    );
    check(
        specific_forbid,
        "tools:call:a.c",
        serde_json::json!({}),
        CedarOutcome::Permit("a".into()),
    );
    let specific_error = r#"
        @id("b") permit (principal, action, resource == Portcullis::Tool::"a.b") when { context.time * 1000000000000 > 0 };
        @id("a") permit (principal, action, resource);
    "#;
    check(
        specific_error,
        "tools:call:a.b",
        serde_json::json!({}),
        CedarOutcome::Error(Some("b".into())),
    );
    let only_specific =
        r#"@id("b") permit (principal, action, resource == Portcullis::Tool::"a.b");"#;
    check(
        only_specific,
        "tools:call:a.b",
        serde_json::json!({}),
        CedarOutcome::Permit("b".into()),
    );
    check(
        only_specific,
        "tools:call:a.c",
        serde_json::json!({}),
        CedarOutcome::NoPolicies,
    );
}
