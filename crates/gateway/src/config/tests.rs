//! Configuration loading: defaults, unknown keys, locations, environment overrides, the example.

use std::collections::BTreeMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[track_caller]
fn check_err(
    text: &str,
    env_pairs: &[(&str, &str)],
    path: &str,
    line: Option<usize>,
    needle: &str,
) {
    let err = load_str(text, "test.toml", &env(env_pairs)).unwrap_err();
    let issue = err
        .issues
        .iter()
        .find(|issue| issue.path == path)
        .unwrap_or_else(|| panic!("no issue at `{path}` in {err}"));
    assert_eq!(issue.line, line, "{err}");
    assert!(issue.message.contains(needle), "{err}");
}

#[test]
fn empty_file_is_the_defaults() {
    let config = load_str("", "test.toml", &BTreeMap::new()).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.server.bind, "127.0.0.1:8090");
    assert_eq!(config.admin.rate_limit, "60/60");
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    check_err(
        "[server]\nbind = \"127.0.0.1:1\"\nbindd = 3\n",
        &[],
        "server.bindd",
        Some(3),
        "unknown field",
    );
    check_err("[nonsense]\n", &[], "nonsense", Some(1), "unknown field");
}

#[test]
fn semantic_errors_name_key_and_line() {
    check_err(
        "[server]\n\nbind = \"localhost\"\n",
        &[],
        "server.bind",
        Some(3),
        "socket address",
    );
    check_err(
        "[admin]\nrate_limit = \"0/60\"\n",
        &[],
        "admin.rate_limit",
        Some(2),
        "limit/window",
    );
    let two_agents = format!(
        "[[agents]]\nid = \"a\"\ntoken_sha256 = \"{h}\"\n[[agents]]\nid = \"a\"\ntoken_sha256 = \"{h}\"\n",
        h = "ab".repeat(32)
    );
    check_err(&two_agents, &[], "agents[1].id", Some(5), "declared twice");
    check_err(
        &two_agents,
        &[],
        "agents[1].token_sha256",
        Some(6),
        "share one token",
    );
    check_err(
        "[[agents]]\nid = \"a\"\ntoken_sha256 = \"zz\"\n",
        &[],
        "agents[0].token_sha256",
        Some(3),
        "64 hex digits",
    );
    check_err(
        &format!(
            "[[agents]]\nid = \"a\"\ntoken_sha256 = \"{}\"\nallow = [\"to*ls\"]\n",
            "ab".repeat(32)
        ),
        &[],
        "agents[0].allow[0]",
        Some(4),
        "gate-key pattern",
    );
}

#[test]
fn type_errors_have_a_line() {
    check_err(
        "[server]\nmax_body_bytes = \"big\"\n",
        &[],
        "server.max_body_bytes",
        Some(2),
        "invalid type",
    );
    check_err(
        "[server]\nshutdown_grace = \"soon\"\n",
        &[],
        "server.shutdown_grace",
        Some(2),
        "duration",
    );
}

#[test]
fn environment_overrides_win_and_are_named_in_errors() {
    let config = load_str(
        "[server]\nbind = \"127.0.0.1:1\"\n",
        "test.toml",
        &env(&[
            ("PORTCULLIS_SERVER_BIND", "127.0.0.1:0"),
            ("PORTCULLIS_SERVER_MAX_BODY_BYTES", "2048"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.bind, "127.0.0.1:0");
    assert_eq!(config.server.max_body_bytes, 2048);
    let token = "x".repeat(40);
    let config = load_str("", "t", &env(&[("PORTCULLIS_ADMIN_TOKEN", &token)])).unwrap();
    assert_eq!(config.admin.token.as_deref(), Some(token.as_str()));
    check_err(
        "",
        &[("PORTCULLIS_SERVER_MAX_BODY_BYTES", "big")],
        "server.max_body_bytes",
        None,
        "PORTCULLIS_SERVER_MAX_BODY_BYTES",
    );
    check_err(
        "",
        &[("PORTCULLIS_SERVER_BIND", "nowhere")],
        "server.bind",
        None,
        "socket address",
    );
    check_err(
        "",
        &[("PORTCULLIS_WHATEVER_KEY", "1")],
        "",
        None,
        "PORTCULLIS_WHATEVER_KEY",
    );
    check_err(
        "",
        &[("PORTCULLIS_SERVER_NOPE", "1")],
        "server.nope",
        None,
        "unknown field",
    );
    // Special variables are not overrides.
    load_str(
        "",
        "t",
        &env(&[("PORTCULLIS_DEBUG", "1"), ("PORTCULLIS_DATA_DIR", "/tmp/x")]),
    )
    .unwrap();
}

#[test]
fn example_parses_to_the_defaults_and_mentions_every_key() {
    let config = load_str(EXAMPLE, "example", &BTreeMap::new()).unwrap();
    assert_eq!(config, Config::default());
    let schema = json_schema();
    for key in schema_keys(&schema) {
        assert!(
            EXAMPLE.contains(&format!("{key} =")) || EXAMPLE.contains(&format!("# {key} =")),
            "docs/portcullis.example.toml does not document `{key}`"
        );
    }
}

/// Leaf key names of every object in the schema (sections and their keys).
fn schema_keys(schema: &serde_json::Value) -> Vec<String> {
    let mut keys = Vec::new();
    let mut stack = vec![schema];
    while let Some(node) = stack.pop() {
        match node {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    for (name, value) in props {
                        let is_section =
                            value.get("$ref").is_some() || value.get("items").is_some();
                        if !is_section {
                            keys.push(name.clone());
                        }
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn config_doc_is_current() {
    let expected = crate::config::render_reference();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/CONFIG.md");
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/CONFIG.md is stale; regenerate with `PORTCULLIS_BLESS=1 cargo test -p portcullis-gateway config_doc`"
    );
}

/// Like `check_err`, without the line.
#[track_caller]
fn check_cluster_err(text: &str, path: &str, needle: &str) {
    let err = load_str(text, "test.toml", &BTreeMap::new()).unwrap_err();
    let found = err
        .issues
        .iter()
        .any(|issue| issue.path == path && issue.message.contains(needle));
    assert!(found, "no issue at `{path}` containing `{needle}` in {err}");
}

#[test]
fn cluster_section_errors_name_their_key() {
    let node = "[cluster]\nid = \"n1\"\nkid = \"n1-key\"\nkey_file = \"n1.key\"\n";
    let peer = |id: &str, url: &str, secret: &str| {
        format!("[[cluster.peers]]\nid = \"{id}\"\nurl = \"{url}\"\ntoken_secret = \"{secret}\"\n")
    };
    let good = peer("n2", "http://127.0.0.1:8091", "n2_admin");
    load_str(&format!("{node}{good}"), "t", &BTreeMap::new()).unwrap();
    check_cluster_err("[cluster]\nid = \"n1\"\n", "cluster", "or none of them");
    check_cluster_err(&good, "cluster.id", "needs `id`");
    check_cluster_err(
        &format!("{node}{}", peer("n1", "http://127.0.0.1:1", "s1")),
        "cluster.peers[0].id",
        "own id",
    );
    check_cluster_err(
        &format!("{node}{good}{good}"),
        "cluster.peers[1].id",
        "listed twice",
    );
    for url in [
        "ftp://127.0.0.1",
        "http://user:pw@127.0.0.1",
        "http://127.0.0.1/?q=1",
        "127.0.0.1:8091",
    ] {
        check_cluster_err(
            &format!("{node}{}", peer("n2", url, "s")),
            "cluster.peers[0].url",
            "base URL",
        );
    }
    check_cluster_err(
        &format!("{node}{}", peer("n2", "http://127.0.0.1:1", "bad name")),
        "cluster.peers[0].token_secret",
        "name the secret",
    );
    check_cluster_err(
        &format!("{node}relay_attempts = 0\n"),
        "cluster.relay_attempts",
        "between 1 and 10",
    );
    check_cluster_err(
        &format!("{node}parent = {{ id = \"n 2\", url = \"http://h\", token_secret = \"s\" }}\n"),
        "cluster.parent.id",
        "printable ASCII",
    );
}

#[test]
fn upstream_urls_are_plain_http() {
    let upstream =
        |url: &str| format!("[[upstreams]]\nname = \"u\"\n[upstreams.http]\nurl = \"{url}\"\n");
    check_err(
        &upstream("https://tools.example/mcp"),
        &[],
        "upstreams[0].http.url",
        Some(4),
        "HTTPS upstreams are not supported yet",
    );
    check_err(
        &upstream("ftp://tools.example/mcp"),
        &[],
        "upstreams[0].http.url",
        Some(4),
        "is not an http URL",
    );
    assert!(load_str(&upstream("http://127.0.0.1:9/mcp"), "test.toml", &env(&[])).is_ok());
}
