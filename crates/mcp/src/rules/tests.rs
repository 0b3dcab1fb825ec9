#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::json;

use super::*;

fn path_rule(root: &Path) -> RuleSpec {
    RuleSpec {
        name: "files".into(),
        tools: vec!["fs.*".into()],
        kind: RuleKindSpec::Path {
            arguments: vec!["path".into()],
            roots: vec![root.to_path_buf()],
            local: true,
        },
    }
}

#[track_caller]
fn check(rules: &ArgumentRules, tool: &str, args: Value, expected: Option<&str>) {
    let res = rules.check(tool, &args);
    assert_eq!(res.as_ref().err().map(|v| v.reason), expected, "{res:?}");
}

#[test]
fn paths_stay_within_their_roots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "a").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
    let rules = ArgumentRules::compile(&[path_rule(&root)]).unwrap();
    let inside = root.join("a.txt").display().to_string();
    check(&rules, "fs.read", json!({"path": inside}), None);
    check(&rules, "fs.read", json!({"path": "a.txt"}), None);
    check(&rules, "fs.read", json!({"path": "new/file.txt"}), None);
    check(
        &rules,
        "fs.read",
        json!({"path": "/etc/passwd"}),
        Some("argument_path"),
    );
    check(
        &rules,
        "fs.read",
        json!({"path": "../x"}),
        Some("argument_path"),
    );
    let dotdot = format!("{}/../root/a.txt", root.display());
    check(
        &rules,
        "fs.read",
        json!({"path": dotdot}),
        Some("argument_path"),
    );
    check(
        &rules,
        "fs.read",
        json!({"path": "escape/passwd"}),
        Some("argument_path"),
    );
    check(&rules, "fs.read", json!({"path": 7}), Some("argument_path"));
    // Another tool, another argument: the rule does not apply.
    check(&rules, "other.read", json!({"path": "/etc/passwd"}), None);
    check(&rules, "fs.read", json!({"file": "/etc/passwd"}), None);
}

#[test]
fn urls_need_an_allowed_host() {
    let rules = ArgumentRules::compile(&[RuleSpec {
        name: "web".into(),
        tools: vec!["fetch.fetch".into()],
        kind: RuleKindSpec::Url {
            arguments: vec!["url".into()],
            allow_hosts: vec!["example.com".into(), "*.docs.rs".into()],
        },
    }])
    .unwrap();
    check(
        &rules,
        "fetch.fetch",
        json!({"url": "https://example.com/a"}),
        None,
    );
    check(
        &rules,
        "fetch.fetch",
        json!({"url": "https://x.docs.rs/"}),
        None,
    );
    check(
        &rules,
        "fetch.fetch",
        json!({"url": "https://evil.com/"}),
        Some("argument_url"),
    );
    check(
        &rules,
        "fetch.fetch",
        json!({"url": "http://127.0.0.1/"}),
        Some("argument_url"),
    );
    check(
        &rules,
        "fetch.fetch",
        json!({"url": "https://user@example.com/"}),
        Some("argument_url"),
    );
    check(
        &rules,
        "fetch.fetch",
        json!({"url": "file:///etc/passwd"}),
        Some("argument_url"),
    );
}

#[test]
fn deny_regexes_see_nested_strings() {
    let rules = ArgumentRules::compile(&[RuleSpec {
        name: "no-rm".into(),
        tools: vec!["*".into()],
        kind: RuleKindSpec::Deny {
            arguments: vec![],
            pattern: r"rm\s+-rf".into(),
        },
    }])
    .unwrap();
    check(&rules, "shell.run", json!({"cmd": "ls"}), None);
    check(
        &rules,
        "shell.run",
        json!({"cmd": ["sh", {"c": "rm -rf /"}]}),
        Some("argument_denied"),
    );
    let violation = rules
        .check("shell.run", &json!({"cmd": "rm -rf /"}))
        .unwrap_err();
    assert_eq!(
        violation.message(),
        "Argument rule `no-rm` refused argument `cmd`: a value matches a denied pattern."
    );
}

#[test]
fn bad_rules_are_refused() {
    let bad = |kind| {
        ArgumentRules::compile(&[RuleSpec {
            name: "r".into(),
            tools: vec!["a".into()],
            kind,
        }])
        .is_err()
    };
    assert!(bad(RuleKindSpec::Path {
        arguments: vec!["p".into()],
        roots: vec!["rel".into()],
        local: false
    }));
    assert!(bad(RuleKindSpec::Path {
        arguments: vec!["p".into()],
        roots: vec!["/a/../b".into()],
        local: false
    }));
    assert!(bad(RuleKindSpec::Url {
        arguments: vec!["u".into()],
        allow_hosts: vec!["a*b".into()]
    }));
    assert!(bad(RuleKindSpec::Deny {
        arguments: vec![],
        pattern: "(".into()
    }));
    assert!(
        ArgumentRules::compile(&[RuleSpec {
            name: "r".into(),
            tools: vec!["a*b".into()],
            kind: RuleKindSpec::Deny {
                arguments: vec![],
                pattern: "x".into()
            }
        }])
        .is_err()
    );
}
