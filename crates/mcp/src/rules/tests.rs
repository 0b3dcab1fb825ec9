#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use serde_json::json;

use super::*;

fn spec(tools: &[&str], kind: RuleKindSpec) -> RuleSpec {
    RuleSpec {
        name: "r".into(),
        tools: tools.iter().map(|t| (*t).to_owned()).collect(),
        prompts: vec![],
        resources: vec![],
        kind,
    }
}

fn path_rule(root: &Path) -> RuleSpec {
    RuleSpec {
        name: "files".into(),
        tools: vec!["fs.*".into()],
        prompts: vec!["fs.*".into()],
        resources: vec!["fs".into()],
        kind: RuleKindSpec::Path {
            arguments: vec!["path".into()],
            roots: vec![root.to_path_buf()],
            local: true,
        },
    }
}

fn object(value: Value) -> Arguments {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Checks `args` for `<upstream>.<tool>` and compares the refusal's reason.
#[track_caller]
fn check(rules: &ArgumentRules, key: &str, args: Value, expected: Option<&str>) {
    let (upstream, tool) = key.split_once('.').unwrap();
    let res = rules.check_tool(upstream, tool, object(args));
    assert_eq!(res.as_ref().err().map(|v| v.reason), expected, "{res:?}");
}

/// Checks `args` and compares what would be forwarded.
#[track_caller]
fn forwarded(rules: &ArgumentRules, key: &str, args: Value, expected: Value) {
    let (upstream, tool) = key.split_once('.').unwrap();
    let res = rules.check_tool(upstream, tool, object(args)).unwrap();
    assert_eq!(Value::Object(res), expected);
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
fn regression_17_1_relative_paths_are_forwarded_as_checked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let rules = ArgumentRules::compile(&[path_rule(&root)]).unwrap();
    let under = |rest: &str| root.join(rest).display().to_string();
    // An upstream working in `/` would read `/etc/shadow` for `etc/shadow`: it gets the path
    // that was checked instead.
    forwarded(
        &rules,
        "fs.read",
        json!({"path": "etc/shadow", "n": 1}),
        json!({"path": under("etc/shadow"), "n": 1}),
    );
    forwarded(
        &rules,
        "fs.read",
        json!({"path": "./a//b/./c"}),
        json!({"path": under("a/b/c")}),
    );
    let absolute = format!("{}/./x", root.display());
    forwarded(
        &rules,
        "fs.read",
        json!({"path": absolute}),
        json!({"path": under("x")}),
    );
    // Other tools' arguments pass unchanged.
    forwarded(
        &rules,
        "other.read",
        json!({"path": "etc/shadow"}),
        json!({"path": "etc/shadow"}),
    );
    // Prompts get the same rewrite.
    let prompt = rules
        .check_prompt("fs", "summarize", object(json!({"path": "notes.txt"})))
        .unwrap();
    assert_eq!(prompt["path"], json!(under("notes.txt")));
}

#[test]
fn rewritten_paths_are_seen_by_the_rules_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let deny_root = RuleSpec {
        name: "no-secret-dir".into(),
        tools: vec!["fs.*".into()],
        prompts: vec![],
        resources: vec![],
        kind: RuleKindSpec::Deny {
            arguments: vec!["path".into()],
            pattern: "/root/secret".into(),
        },
    };
    // The deny rule comes first and sees `secret/x` as written; the second pass sees the
    // forwarded absolute path and refuses it.
    let rules = ArgumentRules::compile(&[deny_root, path_rule(&root)]).unwrap();
    check(
        &rules,
        "fs.read",
        json!({"path": "secret/x"}),
        Some("argument_denied"),
    );
    check(&rules, "fs.read", json!({"path": "public/x"}), None);
}

#[test]
fn rules_are_keyed_by_upstream_and_original_name() {
    let rules = ArgumentRules::compile(&[spec(
        &["fx.echo"],
        RuleKindSpec::Deny {
            arguments: vec![],
            pattern: "bad".into(),
        },
    )])
    .unwrap();
    check(
        &rules,
        "fx.echo",
        json!({"m": "bad"}),
        Some("argument_denied"),
    );
    check(&rules, "other.echo", json!({"m": "bad"}), None);
    // A bare name (what `prefix = "never"` exposes) is not a pattern.
    for pattern in ["echo", ".echo", "fx.", "a*b"] {
        let res = ArgumentRules::compile(&[spec(
            &[pattern],
            RuleKindSpec::Deny {
                arguments: vec![],
                pattern: "x".into(),
            },
        )]);
        assert!(
            matches!(res, Err(RuleError::BadPattern { .. })),
            "{pattern}"
        );
    }
    // Prefixes stay free-form: `*` and `fx*` are fine.
    ArgumentRules::compile(&[spec(
        &["*", "fx*"],
        RuleKindSpec::Deny {
            arguments: vec![],
            pattern: "x".into(),
        },
    )])
    .unwrap();
}

#[test]
fn unmatched_rules_are_named() {
    let rules = ArgumentRules::compile(&[
        spec(
            &["fx.echo"],
            RuleKindSpec::Deny {
                arguments: vec![],
                pattern: "x".into(),
            },
        ),
        RuleSpec {
            name: "typo".into(),
            tools: vec!["fx.ehco".into()],
            prompts: vec!["fx.nope".into()],
            resources: vec!["gone".into()],
            kind: RuleKindSpec::Deny {
                arguments: vec![],
                pattern: "x".into(),
            },
        },
    ])
    .unwrap();
    let tools = vec!["fx.echo".to_owned(), "fx.add".to_owned()];
    let upstreams = vec!["fx".to_owned()];
    let listed = Listed {
        tools: &tools,
        prompts: &[],
        resource_upstreams: &upstreams,
    };
    assert_eq!(rules.unmatched(&listed), vec!["typo"]);
}

#[test]
fn urls_need_an_allowed_host_and_port() {
    let rules = ArgumentRules::compile(&[spec(
        &["fetch.fetch"],
        RuleKindSpec::Url {
            arguments: vec!["url".into()],
            allow_hosts: vec![
                "example.com".into(),
                "*.docs.rs".into(),
                "api.example.org:8443".into(),
            ],
        },
    )])
    .unwrap();
    let cases = [
        ("https://example.com/a", None),
        ("http://example.com/a", None),
        ("https://example.com:443/a", None),
        ("http://example.com:443/a", None),
        ("https://x.docs.rs/", None),
        ("https://api.example.org:8443/", None),
        // 16.7: an entry without a port admits only 80 and 443.
        ("https://example.com:8443/", Some("argument_url")),
        ("http://example.com:22/", Some("argument_url")),
        ("https://api.example.org/", Some("argument_url")),
        ("https://evil.com/", Some("argument_url")),
        ("http://127.0.0.1/", Some("argument_url")),
        ("https://user@example.com/", Some("argument_url")),
        ("file:///etc/passwd", Some("argument_url")),
    ];
    for (url, expected) in cases {
        check(&rules, "fetch.fetch", json!({"url": url}), expected);
    }
}

#[test]
fn deny_regexes_see_nested_strings() {
    let rules = ArgumentRules::compile(&[RuleSpec {
        name: "no-rm".into(),
        tools: vec!["*".into()],
        prompts: vec![],
        resources: vec![],
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
        .check_tool("shell", "run", object(json!({"cmd": "rm -rf /"})))
        .unwrap_err();
    assert_eq!(
        violation.message(),
        "Argument rule `no-rm` refused argument `cmd`: a value matches a denied pattern."
    );
}

#[test]
fn regression_17_17_deny_rules_match_normalized_text() {
    let rules = ArgumentRules::compile(&[spec(
        &["*"],
        RuleKindSpec::Deny {
            arguments: vec![],
            pattern: r"rm -rf".into(),
        },
    )])
    .unwrap();
    for cmd in [
        "rm -rf /",
        "r\u{200b}m -rf /",
        "r\u{2060}m\u{00a0}-rf /",
        "rm\t-rf /",
        "rm  \n -rf /",
        "ｒｍ －ｒｆ /",
        "r\u{0000}m -rf /",
        "r\u{202e}m -rf /",
    ] {
        check(
            &rules,
            "shell.run",
            json!({"cmd": cmd}),
            Some("argument_denied"),
        );
        // Object keys too.
        check(
            &rules,
            "shell.run",
            json!({"env": {cmd: "1"}}),
            Some("argument_denied"),
        );
    }
    check(&rules, "shell.run", json!({"cmd": "rm -r f"}), None);
    // A pattern written for the raw text still matches it.
    let raw = ArgumentRules::compile(&[spec(
        &["*"],
        RuleKindSpec::Deny {
            arguments: vec![],
            pattern: "\u{200b}".into(),
        },
    )])
    .unwrap();
    check(
        &raw,
        "shell.run",
        json!({"cmd": "a\u{200b}b"}),
        Some("argument_denied"),
    );
}

#[test]
fn prompt_arguments_cross_the_same_rules() {
    let rules = ArgumentRules::compile(&[RuleSpec {
        name: "no-rm".into(),
        tools: vec![],
        prompts: vec!["fx.*".into()],
        resources: vec![],
        kind: RuleKindSpec::Deny {
            arguments: vec![],
            pattern: r"rm\s+-rf".into(),
        },
    }])
    .unwrap();
    let refused = rules
        .check_prompt("fx", "shell_help", object(json!({"task": "rm -rf /"})))
        .unwrap_err();
    assert_eq!(refused.reason, "argument_denied");
    assert_eq!(refused.argument(), Some("task"));
    rules
        .check_prompt("fx", "shell_help", object(json!({"task": "ls"})))
        .unwrap();
    // The rule names prompts only: tools with the same key pass.
    check(&rules, "fx.shell_help", json!({"task": "rm -rf /"}), None);
    rules
        .check_prompt("other", "shell_help", object(json!({"task": "rm -rf /"})))
        .unwrap();
}

#[test]
fn resource_uris_cross_path_url_and_deny_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let rules = ArgumentRules::compile(&[RuleSpec {
        name: "files".into(),
        tools: vec![],
        prompts: vec![],
        resources: vec!["fs".into()],
        kind: RuleKindSpec::Path {
            arguments: vec![],
            roots: vec![root.clone()],
            local: true,
        },
    }])
    .unwrap();
    let inside = format!("file://{}/a.txt", root.display());
    let localhost = format!("FILE://localhost{}/a.txt", root.display());
    let escaped_dots = format!("file://{}/%2e%2e/%2e%2e/etc/passwd", root.display());
    let cases = [
        (inside.as_str(), None),
        (localhost.as_str(), None),
        ("file:///etc/passwd", Some("argument_path")),
        (escaped_dots.as_str(), Some("argument_path")),
        ("file://other/etc/passwd", Some("argument_path")),
        ("file:///etc/passwd%00", Some("argument_path")),
        ("file:///x%zz", Some("argument_path")),
        ("test://static/resource/1", Some("argument_path")),
    ];
    for (uri, expected) in cases {
        let res = rules.check_resource("fs", uri);
        assert_eq!(res.as_ref().err().map(|v| v.reason), expected, "{uri}");
    }
    // Other upstreams' resources are not the rule's business.
    rules.check_resource("other", "file:///etc/passwd").unwrap();
    let refused = rules
        .check_resource("fs", "file:///etc/passwd")
        .unwrap_err();
    assert_eq!(
        refused.message(),
        "Argument rule `files` refused the resource URI: the path lies outside the allowed roots."
    );

    let rules = ArgumentRules::compile(&[
        RuleSpec {
            name: "web".into(),
            tools: vec![],
            prompts: vec![],
            resources: vec!["web*".into()],
            kind: RuleKindSpec::Url {
                arguments: vec![],
                allow_hosts: vec!["example.com".into()],
            },
        },
        RuleSpec {
            name: "no-ssh".into(),
            tools: vec![],
            prompts: vec![],
            resources: vec!["*".into()],
            kind: RuleKindSpec::Deny {
                arguments: vec![],
                pattern: r"\.ssh/".into(),
            },
        },
    ])
    .unwrap();
    let cases = [
        ("web1", "https://example.com/x", None),
        ("web1", "https://example.com:8080/x", Some("argument_url")),
        ("web1", "https://evil.com/x", Some("argument_url")),
        ("files", "file:///home/u/.ssh/id", Some("argument_denied")),
        ("files", "file:///home/u/%2essh/id", Some("argument_denied")),
        ("files", "file:///home/u/notes", None),
    ];
    for (upstream, uri, expected) in cases {
        let res = rules.check_resource(upstream, uri);
        assert_eq!(res.as_ref().err().map(|v| v.reason), expected, "{uri}");
    }
}

#[test]
fn bad_rules_are_refused() {
    let bad = |kind| ArgumentRules::compile(&[spec(&["a.b"], kind)]).is_err();
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
    assert!(bad(RuleKindSpec::Path {
        arguments: vec![],
        roots: vec!["/a".into()],
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
    // A rule must name something.
    assert!(
        ArgumentRules::compile(&[spec(
            &[],
            RuleKindSpec::Deny {
                arguments: vec![],
                pattern: "x".into()
            }
        )])
        .is_err()
    );
}

proptest::proptest! {
    /// Whatever an agent writes, a path the rule lets through is forwarded absolute, within a
    /// root, and checking it again changes nothing (the rules' second pass relies on this).
    #[test]
    fn forwarded_paths_are_fixed_points_within_a_root(
        parts in proptest::collection::vec(
            proptest::sample::select(vec!["a", "b", ".", "..", "", "/", "srv", "data", "etc", "~"]),
            0..8,
        ),
    ) {
        let text = parts.join("/");
        let roots = [
            path::Root::compile(Path::new("/srv/data"), false).unwrap(),
            path::Root::compile(Path::new("/tmp/x"), false).unwrap(),
        ];
        if let Ok(forwarded) = path::check_path(&text, &roots) {
            let within = ["/srv/data", "/tmp/x"]
                .iter()
                .any(|root| Path::new(&forwarded).starts_with(root));
            proptest::prop_assert!(within, "{text:?} -> {forwarded:?}");
            proptest::prop_assert!(!forwarded.split('/').any(|part| part == ".." || part == "."));
            proptest::prop_assert_eq!(path::check_path(&forwarded, &roots), Ok(forwarded.clone()));
        }
    }
}
