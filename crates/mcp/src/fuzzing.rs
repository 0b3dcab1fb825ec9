//! The MCP adapter's part of the `mcp_front` fuzz property: argument rules, the ledger's shape of
//! arguments and secret redaction on what an agent sends. The gateway's `fuzzing` module runs it
//! on every body, and `crates/mcp/tests/fuzz_corpus.rs` replays the corpus through it.
//!
//! A body is read as JSON-RPC (`tools/call`, `prompts/get`, `resources/read`, alone or in a
//! batch) or, when it is a bare object, as the arguments of every fixture tool and prompt.

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::REASONS;
use crate::redact::Redactor;
use crate::rules::{ArgumentRules, Arguments, RuleKindSpec, RuleSpec, Violation, normalize};
use crate::shape::{arguments_hash, arguments_shape};

/// A configured secret the fixture redactor holds.
pub const FUZZ_SECRET: &str = "fuzz-held-secret-0123456789";
/// The fixture's tools and prompts, as `(upstream, own name)`.
pub const FUZZ_TOOLS: &[(&str, &str)] = &[
    ("fs", "read_file"),
    ("fs", "write_file"),
    ("web", "fetch"),
    ("shell", "run"),
];
pub const FUZZ_PROMPTS: &[(&str, &str)] = &[("fs", "summarize"), ("shell", "explain")];
/// Upstreams whose resources the fixture reads.
pub const FUZZ_UPSTREAMS: &[&str] = &["fs", "web", "shell"];

/// Path rule roots: relative paths resolve against the first.
const FS_ROOTS: &[&str] = &["/srv/data", "/tmp/work/"];
const WRITE_ROOTS: &[&str] = &["/tmp/work"];
const NO_RM: &str = r"rm\s+-rf";
const NO_PASSWD: &str = "(?i)passwd|shadow";
/// Most strings one input's checks look at (bounds the time of one run).
const MAX_CHECKED_STRINGS: usize = 2_000;

/// The compiled fixture: rules, their patterns compiled again for the independent checks, and
/// the redactor.
struct Fixture {
    rules: ArgumentRules,
    no_rm: regex::Regex,
    no_passwd: regex::Regex,
    redactor: Redactor,
}

static FIXTURE: LazyLock<Result<Fixture, String>> = LazyLock::new(|| {
    let owned = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
    let roots = |items: &[&str]| items.iter().map(PathBuf::from).collect();
    let specs = [
        RuleSpec {
            name: "fs-roots".into(),
            tools: owned(&["fs.read_file", "fs.write_*"]),
            prompts: owned(&["fs.summarize"]),
            resources: owned(&["fs"]),
            kind: RuleKindSpec::Path {
                arguments: owned(&["path", "dest"]),
                roots: roots(FS_ROOTS),
                local: false,
            },
        },
        RuleSpec {
            name: "fs-write".into(),
            tools: owned(&["fs.write_file"]),
            prompts: Vec::new(),
            resources: Vec::new(),
            kind: RuleKindSpec::Path {
                arguments: owned(&["path"]),
                roots: roots(WRITE_ROOTS),
                local: false,
            },
        },
        RuleSpec {
            name: "web-hosts".into(),
            tools: owned(&["web.fetch"]),
            prompts: Vec::new(),
            resources: owned(&["web"]),
            kind: RuleKindSpec::Url {
                arguments: owned(&["url"]),
                allow_hosts: owned(&["example.com", "*.example.org:8443", "domain:example.net"]),
            },
        },
        RuleSpec {
            name: "no-rm".into(),
            tools: owned(&["shell.*", "fs.*"]),
            prompts: owned(&["shell.*"]),
            resources: Vec::new(),
            kind: RuleKindSpec::Deny {
                arguments: Vec::new(),
                pattern: NO_RM.into(),
            },
        },
        RuleSpec {
            name: "no-passwd".into(),
            tools: owned(&["fs.read_file"]),
            prompts: Vec::new(),
            resources: owned(&["*"]),
            kind: RuleKindSpec::Deny {
                arguments: owned(&["path"]),
                pattern: NO_PASSWD.into(),
            },
        },
    ];
    let compile = |pattern: &str| regex::Regex::new(pattern).map_err(|err| err.to_string());
    Ok(Fixture {
        rules: ArgumentRules::compile(&specs).map_err(|err| err.to_string())?,
        no_rm: compile(NO_RM)?,
        no_passwd: compile(NO_PASSWD)?,
        redactor: Redactor::new([FUZZ_SECRET]).map_err(|err| err.to_string())?,
    })
});

fn fixture() -> Result<&'static Fixture, String> {
    FIXTURE
        .as_ref()
        .map_err(|err| format!("the fuzz fixture does not build: {err}"))
}

/// Checks one request body; answers the first violated property.
pub fn check_body(data: &[u8]) -> Result<(), String> {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    let messages = match &body {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for message in messages {
        let Value::Object(message) = message else {
            continue;
        };
        if !message.contains_key("jsonrpc") && !message.contains_key("method") {
            for (upstream, tool) in FUZZ_TOOLS {
                check_tool(upstream, tool, message)?;
            }
            for (upstream, prompt) in FUZZ_PROMPTS {
                check_prompt(upstream, prompt, message)?;
            }
            continue;
        }
        let params = message.get("params");
        let text = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_str);
        let arguments = match params.and_then(|p| p.get("arguments")) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(arguments)) => arguments.clone(),
            Some(_) => continue,
        };
        match message.get("method").and_then(Value::as_str) {
            Some("tools/call") => {
                if let Some((upstream, tool)) = text("name").and_then(|n| n.split_once('.')) {
                    check_tool(upstream, tool, &arguments)?;
                }
            }
            Some("prompts/get") => {
                if let Some((upstream, prompt)) = text("name").and_then(|n| n.split_once('.')) {
                    check_prompt(upstream, prompt, &arguments)?;
                }
            }
            Some("resources/read") => {
                if let Some(uri) = text("uri") {
                    check_resource(uri)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The arguments of `tool` of `upstream`, through the rules, the ledger's shape and the
/// redactor.
pub fn check_tool(upstream: &str, tool: &str, arguments: &Arguments) -> Result<(), String> {
    let fixture = fixture()?;
    let checked = fixture.rules.check_tool(upstream, tool, arguments.clone());
    if checked != fixture.rules.check_tool(upstream, tool, arguments.clone()) {
        return Err("a rule check is not deterministic".into());
    }
    let key = format!("{upstream}.{tool}");
    match checked {
        Ok(forwarded) => {
            if fixture
                .rules
                .check_tool(upstream, tool, forwarded.clone())
                .as_ref()
                != Ok(&forwarded)
            {
                return Err(format!(
                    "`{key}`: the forwarded arguments are not a fixed point"
                ));
            }
            check_forwarded(fixture, Kind::Tool, &key, arguments, &forwarded)?;
        }
        Err(violation) => check_violation(&violation, arguments)?,
    }
    check_shape_and_redaction(fixture, arguments)
}

/// The arguments of `prompt` of `upstream`, as [`check_tool`] does for tools.
pub fn check_prompt(upstream: &str, prompt: &str, arguments: &Arguments) -> Result<(), String> {
    let fixture = fixture()?;
    let checked = fixture
        .rules
        .check_prompt(upstream, prompt, arguments.clone());
    let key = format!("{upstream}.{prompt}");
    match checked {
        Ok(forwarded) => {
            let again = fixture
                .rules
                .check_prompt(upstream, prompt, forwarded.clone());
            if again.as_ref() != Ok(&forwarded) {
                return Err(format!(
                    "`{key}`: the forwarded arguments are not a fixed point"
                ));
            }
            check_forwarded(fixture, Kind::Prompt, &key, arguments, &forwarded)
        }
        Err(violation) => check_violation(&violation, arguments),
    }
}

/// A resource URI read from each fixture upstream: `fs` admits only `file://` URIs within its
/// roots, `web` only allowed URLs, and no upstream a URI naming a password file.
pub fn check_resource(uri: &str) -> Result<(), String> {
    let fixture = fixture()?;
    for upstream in FUZZ_UPSTREAMS {
        let checked = fixture.rules.check_resource(upstream, uri);
        if checked != fixture.rules.check_resource(upstream, uri) {
            return Err("a resource check is not deterministic".into());
        }
        if let Err(violation) = checked {
            if violation.argument().is_some() || !REASONS.iter().any(|r| r.code == violation.reason)
            {
                return Err(format!("a resource violation blames {violation:?}"));
            }
            continue;
        }
        if matches_denied(&fixture.no_passwd, uri) {
            return Err(format!("`{uri}` passed `no-passwd` on `{upstream}`"));
        }
        let is_file = uri
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file://"));
        if *upstream == "fs" && !is_file {
            return Err(format!(
                "`{uri}` passed `fs-roots` though not a file:// URI"
            ));
        }
        if *upstream == "web"
            && portcullis_netpolicy::parse_target(portcullis_netpolicy::TargetRequest::url(uri))
                .is_err()
        {
            return Err(format!("`{uri}` passed `web-hosts` though not a plain URL"));
        }
    }
    Ok(())
}

/// Whether arguments are a tool's or a prompt's: rules name them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tool,
    Prompt,
}

/// What checking answered to forward: the same arguments, paths absolute and normalized within
/// their roots, URLs plain, and nothing a deny rule names, as written or normalized. `key` is
/// `<upstream>.<name>`; the matches below mirror the fixture's rules.
fn check_forwarded(
    fixture: &Fixture,
    kind: Kind,
    key: &str,
    arguments: &Arguments,
    forwarded: &Arguments,
) -> Result<(), String> {
    if !arguments.keys().eq(forwarded.keys()) {
        return Err(format!("`{key}`: the rules added or removed an argument"));
    }
    let tool = kind == Kind::Tool;
    let mut path_rules: Vec<(&str, &[&str])> = Vec::new();
    let fs_roots = if tool {
        key == "fs.read_file" || key.starts_with("fs.write_")
    } else {
        key == "fs.summarize"
    };
    if fs_roots {
        path_rules.extend([("path", FS_ROOTS), ("dest", FS_ROOTS)]);
    }
    if tool && key == "fs.write_file" {
        path_rules.push(("path", WRITE_ROOTS));
    }
    for (name, roots) in path_rules {
        let Some(value) = forwarded.get(name) else {
            continue;
        };
        let Some(text) = value.as_str() else {
            return Err(format!("`{key}`: a non-string `{name}` passed a path rule"));
        };
        let path = Path::new(text);
        let normal = path.is_absolute()
            && !text.contains("//")
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !normal || !roots.iter().any(|root| path.starts_with(root)) {
            return Err(format!(
                "`{key}`: `{name}` = `{text}` passed outside {roots:?}"
            ));
        }
    }
    if tool
        && key == "web.fetch"
        && let Some(url) = forwarded.get("url")
    {
        let plain = url.as_str().is_some_and(|url| {
            portcullis_netpolicy::parse_target(portcullis_netpolicy::TargetRequest::url(url))
                .is_ok()
        });
        if !plain {
            return Err(format!("`{key}`: `url` passed though not a plain URL"));
        }
    }
    let no_rm = key.starts_with("shell.") || (tool && key.starts_with("fs."));
    if no_rm {
        let mut budget = MAX_CHECKED_STRINGS;
        for (name, value) in forwarded {
            if any_string(value, &mut budget, &|text| {
                matches_denied(&fixture.no_rm, text)
            }) {
                return Err(format!("`{key}`: `{name}` passed `no-rm`"));
            }
        }
    }
    if tool
        && key == "fs.read_file"
        && let Some(path) = forwarded.get("path")
    {
        let mut budget = MAX_CHECKED_STRINGS;
        if any_string(path, &mut budget, &|text| {
            matches_denied(&fixture.no_passwd, text)
        }) {
            return Err(format!("`{key}`: `path` passed `no-passwd`"));
        }
    }
    Ok(())
}

/// A refusal names a known rule and reason, and never quotes an argument's value.
fn check_violation(violation: &Violation, arguments: &Arguments) -> Result<(), String> {
    let known_rule = [
        "schema",
        "fs-roots",
        "fs-write",
        "web-hosts",
        "no-rm",
        "no-passwd",
    ]
    .contains(&violation.rule.as_str());
    if !known_rule || !REASONS.iter().any(|r| r.code == violation.reason) {
        return Err(format!("an unknown rule or reason: {violation:?}"));
    }
    let message = violation.message();
    // Text the message may hold anyway: the sentence, the rule, the argument's name.
    let allowed = format!(
        "Argument rule `{}` refused argument `{}`: the arguments resource URI {}.",
        violation.rule,
        violation.argument().unwrap_or_default(),
        violation.detail
    );
    let mut budget = MAX_CHECKED_STRINGS;
    for value in arguments.values() {
        if any_string(value, &mut budget, &|text| {
            text.len() >= 8 && message.contains(text) && !allowed.contains(text)
        }) {
            return Err(format!("a violation quotes a value: {message}"));
        }
    }
    Ok(())
}

/// The ledger keeps the arguments' hash and shape (types, never values); the redactor leaves no
/// held secret in any string or key, and normalizing is idempotent on every string.
fn check_shape_and_redaction(fixture: &Fixture, arguments: &Arguments) -> Result<(), String> {
    let value = Value::Object(arguments.clone());
    let hash = arguments_hash(&value);
    if hash.len() != 64 || hash != arguments_hash(&value) {
        return Err("the arguments hash is not a stable SHA-256".into());
    }
    let shape = arguments_shape(&value);
    let mut stack = vec![&shape];
    while let Some(node) = stack.pop() {
        match node {
            Value::String(kind) => {
                let known = ["null", "boolean", "number", "string", "array", "object"];
                if !known.contains(&kind.as_str()) {
                    return Err(format!("the shape holds a value: {kind:?}"));
                }
            }
            Value::Object(map) => stack.extend(map.values()),
            Value::Number(_) => {}
            other => return Err(format!("the shape holds {other}")),
        }
    }
    let mut redacted = value.clone();
    fixture.redactor.redact_held_value(&mut redacted);
    if fixture.redactor.redact_value(&mut redacted).is_err() {
        return Ok(());
    }
    let mut budget = MAX_CHECKED_STRINGS;
    if any_string(&redacted, &mut budget, &|text| {
        text.to_ascii_lowercase().contains(FUZZ_SECRET)
    }) {
        return Err("a held secret survived redaction".into());
    }
    let mut budget = MAX_CHECKED_STRINGS;
    if any_string(&value, &mut budget, &|text| {
        let once = normalize(text);
        normalize(&once) != once
    }) {
        return Err("normalizing twice changes a string".into());
    }
    Ok(())
}

/// Whether `regex` matches `text` as written or normalized, as deny rules look.
fn matches_denied(regex: &regex::Regex, text: &str) -> bool {
    regex.is_match(text) || regex.is_match(&normalize(text))
}

/// Whether `test` holds for some string or object key in `value`, looking at no more than
/// `budget` strings in all.
fn any_string(value: &Value, budget: &mut usize, test: &dyn Fn(&str) -> bool) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        let Some(left) = budget.checked_sub(1) else {
            return false;
        };
        *budget = left;
        match value {
            Value::String(text) => {
                if test(text) {
                    return true;
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.keys().any(|key| test(key)) {
                    return true;
                }
                stack.extend(map.values());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    false
}
