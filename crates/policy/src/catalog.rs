//! The catalog of every gate key Portcullis checks: static keys and dynamic families.

use portcullis_core::GatePattern;

/// Whether an entry is one key or a family of keys sharing a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Exactly the key `id`.
    Static,
    /// Every key `prefix` + a non-empty tail.
    Family,
}

/// What the tail of a family key may hold (beyond the gate-key syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailRule {
    /// Any non-empty tail.
    Any,
    /// A canonical host: no ASCII upper case (names are lower-cased, IPv6 bracketed).
    LowerCase,
    /// A decimal port 1-65535.
    Port,
}

/// One catalog entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The key (`tools:call`) or the family's display form (`tools:call:<tool>`).
    pub id: &'static str,
    pub kind: EntryKind,
    /// For a static key, the key; for a family, the literal part before the tail.
    pub prefix: &'static str,
    pub tail: TailRule,
    pub title: &'static str,
    pub summary: &'static str,
    pub example: &'static str,
    /// The Cedar action (in namespace `Portcullis`) a key of this entry is evaluated as.
    pub cedar_action: &'static str,
    /// The Cedar entity type of the request's resource.
    pub resource_type: &'static str,
    /// Which front checks keys of this entry, and when (docs/GATE_KEYS.md prints it).
    pub checked_by: &'static str,
}

/// Why a pattern is refused by the catalog.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("pattern `{0}` can match no gate key in the catalog")]
    MatchesNothing(String),
}

const fn fixed(
    id: &'static str,
    title: &'static str,
    summary: &'static str,
    cedar_action: &'static str,
    resource_type: &'static str,
    checked_by: &'static str,
) -> CatalogEntry {
    CatalogEntry {
        id,
        kind: EntryKind::Static,
        prefix: id,
        tail: TailRule::Any,
        title,
        summary,
        example: id,
        cedar_action,
        resource_type,
        checked_by,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a const table constructor; one row per catalog entry reads best"
)]
const fn family(
    id: &'static str,
    prefix: &'static str,
    tail: TailRule,
    title: &'static str,
    summary: &'static str,
    example: &'static str,
    cedar_action: &'static str,
    resource_type: &'static str,
    checked_by: &'static str,
) -> CatalogEntry {
    CatalogEntry {
        id,
        kind: EntryKind::Family,
        prefix,
        tail,
        title,
        summary,
        example,
        cedar_action,
        resource_type,
        checked_by,
    }
}

/// Every gate key and family, static keys first. Docs and the JSON Schema are rendered from this.
pub const CATALOG: &[CatalogEntry] = &[
    fixed(
        "io:ingress:chat",
        "Chat input",
        "A chat message entering an agent's context (gate in).",
        "io:ingress",
        "Stream",
        "The LLM front, at gate in of every chat request (the messages entering the model's context).",
    ),
    fixed(
        "io:egress:chat",
        "Chat output",
        "A chat message leaving through an agent (gate out).",
        "io:egress",
        "Stream",
        "The LLM front, at gate in of every chat and embeddings request, beside `llm:model:<model>`; `/v1/models` lists only models both allow.",
    ),
    family(
        "io:ingress:<kind>.<id>",
        "io:ingress:",
        TailRule::Any,
        "Input from a source",
        "Data from a source of a kind (tools, llm, net) entering an agent's context.",
        "io:ingress:tools.github",
        "io:ingress",
        "Stream",
        "The MCP front: `io:ingress:tools.<upstream>` at gate in of every tool call, prompt get and resource read. The LLM front: `io:ingress:llm.<provider>` at gate out of every chat and embeddings call (the provider's answer entering the agent's context; the provider the model asked for resolves to), and in `/v1/models`. No front checks the `net` kind yet.",
    ),
    family(
        "io:egress:<kind>.<id>",
        "io:egress:",
        TailRule::Any,
        "Output to a sink",
        "Data leaving towards a sink of a kind (tools, llm, net).",
        "io:egress:tools.github",
        "io:egress",
        "Stream",
        "The MCP front: `io:egress:tools.<upstream>` at gate out of every tool call, prompt get and resource read (the answer going back to the agent). No front checks the `llm` and `net` kinds yet.",
    ),
    family(
        "tools:call:<tool>",
        "tools:call:",
        TailRule::Any,
        "Call one tool",
        "Calling the named tool (`<upstream>.<tool>`); a tool denied here is also not listed.",
        "tools:call:github.create_issue",
        "tools:call",
        "Tool",
        "The MCP front, at gate in of every `tools/call` and when listing tools.",
    ),
    family(
        "tools:prompt:<upstream>.<prompt>",
        "tools:prompt:",
        TailRule::Any,
        "Get one prompt",
        "Getting the named prompt of an upstream (`<upstream>.<prompt>`, the upstream's own name); a prompt denied here is also not listed.",
        "tools:prompt:github.review",
        "tools:prompt",
        "Prompt",
        "The MCP front, at gate in of every `prompts/get` and when listing prompts.",
    ),
    family(
        "tools:resource:<upstream>",
        "tools:resource:",
        TailRule::Any,
        "Read an upstream's resources",
        "Reading a resource of the named upstream; the URI is the request's resource (and `context.arguments.uri`), so contracts and Cedar can match it. A resource denied here is also not listed.",
        "tools:resource:files",
        "tools:resource",
        "Resource",
        "The MCP front, at gate in of every `resources/read` and when listing resources.",
    ),
    family(
        "llm:model:<model>",
        "llm:model:",
        TailRule::Any,
        "Use one model",
        "Sending a request to the named LLM model.",
        "llm:model:gpt-4o-mini",
        "llm:model",
        "Model",
        "The LLM front, at gate in of every chat and embeddings request (and for a budget downgrade's target model); `/v1/models` lists only allowed models.",
    ),
    family(
        "net:host:<host>",
        "net:host:",
        TailRule::LowerCase,
        "Connect to a host",
        "Egress to an exact host: a lower-case name, an IPv4 literal or a bracketed IPv6 literal.",
        "net:host:api.github.com",
        "net:host",
        "Host",
        "The forward proxy (every HTTP request and CONNECT tunnel), the DNS guard (every answer, as `@anonymous` unless the client maps to a project) and `/egress/preview`.",
    ),
    family(
        "net:domain:<domain>",
        "net:domain:",
        TailRule::LowerCase,
        "Connect within a domain",
        "Egress to any host under a registrable domain (lower case).",
        "net:domain:github.com",
        "net:domain",
        "Host",
        "As `net:host:<host>`, for hosts with a registrable domain.",
    ),
    family(
        "net:port:<port>",
        "net:port:",
        TailRule::Port,
        "Connect to a port",
        "Egress to a TCP port, 1-65535.",
        "net:port:443",
        "net:port",
        "Host",
        "As `net:host:<host>`, for the target's port.",
    ),
];

/// The catalog entry a concrete key belongs to: the static key when one matches exactly, else the
/// family whose prefix it extends with a valid tail.
pub fn resolve(key: &str) -> Option<&'static CatalogEntry> {
    if let Some(entry) = CATALOG
        .iter()
        .find(|entry| entry.kind == EntryKind::Static && entry.id == key)
    {
        return Some(entry);
    }
    CATALOG.iter().find(|entry| {
        entry.kind == EntryKind::Family
            && key
                .strip_prefix(entry.prefix)
                .is_some_and(|tail| tail_is_valid(entry.tail, tail, true))
    })
}

/// The tail of a key resolved to a family (`github.create_issue` for `tools:call:github.create_issue`),
/// or the whole key for a static entry.
pub fn tail<'k>(entry: &CatalogEntry, key: &'k str) -> &'k str {
    match entry.kind {
        EntryKind::Static => key,
        EntryKind::Family => key.strip_prefix(entry.prefix).unwrap_or(key),
    }
}

/// Refuses a pattern that can match no key in the catalog: "a pattern in config that can match no
/// key in the catalog is a config error".
pub fn check_pattern(pattern: &GatePattern) -> Result<(), CatalogError> {
    if pattern_can_match(pattern) {
        Ok(())
    } else {
        Err(CatalogError::MatchesNothing(pattern.as_str().to_owned()))
    }
}

fn pattern_can_match(pattern: &GatePattern) -> bool {
    let prefix = pattern.prefix();
    if !pattern.is_wildcard() {
        return resolve(prefix).is_some();
    }
    CATALOG.iter().any(|entry| match entry.kind {
        EntryKind::Static => entry.id.starts_with(prefix),
        EntryKind::Family => {
            entry.prefix.starts_with(prefix)
                || prefix
                    .strip_prefix(entry.prefix)
                    .is_some_and(|partial| tail_is_valid(entry.tail, partial, false))
        }
    })
}

/// Checks a tail (`complete`) or the start of one (`!complete`, from a wildcard pattern).
fn tail_is_valid(rule: TailRule, tail: &str, complete: bool) -> bool {
    if complete && tail.is_empty() {
        return false;
    }
    match rule {
        TailRule::Any => true,
        TailRule::LowerCase => !tail.bytes().any(|b| b.is_ascii_uppercase()),
        TailRule::Port => {
            if !tail.bytes().all(|b| b.is_ascii_digit()) || tail.starts_with('0') {
                return false;
            }
            if complete {
                tail.parse::<u16>().is_ok_and(|port| port > 0)
            } else {
                tail.len() <= 5
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(pattern: &str, expected: bool) {
        let parsed = GatePattern::parse(pattern).unwrap();
        assert_eq!(check_pattern(&parsed).is_ok(), expected, "{pattern}");
    }

    #[test]
    fn patterns_against_catalog() {
        check("*", true);
        check("tools:*", true);
        // No key is `tools:call` itself: a call is always to one tool.
        check("tools:call", false);
        check("tools:call:github.create_issue", true);
        check("tools:call:github.*", true);
        check("t*", true);
        check("io:ingress:chat", true);
        check("io:ingress:tools.github", true);
        check("net:port:443", true);
        check("net:port:4*", true);
        check("net:host:api.github.com", true);
        check("net:host:[2001:db8::1]", true);
        check("net:host:API.github.com", false);
        check("net:port:0", false);
        check("net:port:65536", false);
        check("net:port:http", false);
        check("tool:call", false);
        check("tools:calls", false);
        check("x*", false);
        check("llm:model", false);
        check("llm:model:*", true);
        check("Tools:*", false);
    }

    /// Every key is checked by some front, and the catalog says which.
    #[test]
    fn every_entry_names_its_front() {
        for entry in CATALOG {
            assert!(
                entry.checked_by.starts_with("The ") || entry.checked_by.starts_with("As `"),
                "{}",
                entry.id
            );
        }
    }

    #[test]
    fn resolves_static_before_family() {
        assert_eq!(resolve("io:ingress:chat").unwrap().kind, EntryKind::Static);
        assert_eq!(
            resolve("io:ingress:tools.x").unwrap().id,
            "io:ingress:<kind>.<id>"
        );
        assert_eq!(resolve("net:port:8443").unwrap().cedar_action, "net:port");
        assert!(resolve("net:port:99999").is_none());
        assert!(resolve("tools:list").is_none());
        let entry = resolve("tools:call:a.b").unwrap();
        assert_eq!(tail(entry, "tools:call:a.b"), "a.b");
    }
}
