//! Renders docs/GATE_KEYS.md, docs/gate-keys.schema.json and docs/POLICY.md from the code.

use crate::catalog::{CATALOG, EntryKind, TailRule};
use crate::explain::{ALLOW_REASONS, REASONS, layer};

/// Every generated document: `(path relative to the repository root, contents)`.
pub fn generated() -> Vec<(&'static str, String)> {
    vec![
        ("docs/GATE_KEYS.md", gate_keys_markdown()),
        ("docs/gate-keys.schema.json", gate_keys_schema()),
        ("docs/POLICY.md", policy_markdown()),
    ]
}

const GENERATED_NOTE: &str = "Generated from `crates/policy` by its tests; edit the code, then run\n\
`PORTCULLIS_BLESS=1 cargo test -p portcullis-policy generated_docs` to rewrite this file.\n";

/// docs/GATE_KEYS.md: the catalog as tables.
pub fn gate_keys_markdown() -> String {
    let mut res = format!(
        "# Gate keys\n\n{GENERATED_NOTE}\n\
         A gate key names one thing Portcullis checks: colon-separated segments such as\n\
         `tools:call:github.create_issue`. Matching is case-sensitive; host segments are canonical\n\
         lower case and IPv6 hosts are bracketed (`net:host:[2001:db8::1]`). A pattern is an exact key\n\
         or a prefix followed by one `*` at its very end (`tools:*`); there is no other wildcard. A\n\
         pattern in config (denies, contracts, agents' `allow`) that can match no key below is a\n\
         config error. \"Checked by\" names the front that asks the policy engine about the key,\n\
         and when.\n\n## Static keys\n\n| key | title | summary | Cedar action | checked by |\n|---|---|---|---|---|\n"
    );
    for entry in CATALOG
        .iter()
        .filter(|entry| entry.kind == EntryKind::Static)
    {
        res.push_str(&format!(
            "| `{}` | {} | {} | `{}` | {} |\n",
            entry.id, entry.title, entry.summary, entry.cedar_action, entry.checked_by
        ));
    }
    res.push_str(
        "\n## Dynamic families\n\n| family | title | summary | example | Cedar action | checked by |\n|---|---|---|---|---|---|\n",
    );
    for entry in CATALOG
        .iter()
        .filter(|entry| entry.kind == EntryKind::Family)
    {
        res.push_str(&format!(
            "| `{}` | {} | {}{} | `{}` | `{}` | {} |\n",
            entry.id,
            entry.title,
            entry.summary,
            match entry.tail {
                TailRule::Any => "",
                TailRule::LowerCase => " The tail has no upper case.",
                TailRule::Port => " The tail is a port number.",
            },
            entry.example,
            entry.cedar_action,
            entry.checked_by
        ));
    }
    res
}

/// docs/gate-keys.schema.json: JSON Schema of a gate key and of a gate-key pattern.
pub fn gate_keys_schema() -> String {
    let mut key_choices: Vec<serde_json::Value> = Vec::new();
    let mut key_regexes: Vec<String> = Vec::new();
    for entry in CATALOG {
        match entry.kind {
            EntryKind::Static => key_choices.push(serde_json::json!({
                "const": entry.id,
                "title": entry.title,
                "description": entry.summary,
            })),
            EntryKind::Family => {
                let tail = match entry.tail {
                    TailRule::Any => "[!-~]+",
                    TailRule::LowerCase => "[!-@\\[-~]+",
                    TailRule::Port => "[1-9][0-9]{0,4}",
                };
                key_regexes.push(format!("^{}{tail}$", entry.prefix));
                key_choices.push(serde_json::json!({
                    "pattern": format!("^{}{tail}$", entry.prefix),
                    "title": entry.title,
                    "description": format!("{} Family `{}`, e.g. `{}`.", entry.summary, entry.id, entry.example),
                }));
            }
        }
    }
    let schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Portcullis gate keys",
        "description": "Generated from the gate-key catalog in crates/policy; do not edit.",
        "$defs": {
            "gate_key": {
                "description": "A concrete gate key from the catalog (case-sensitive).",
                "type": "string",
                "maxLength": portcullis_core::gatekey::MAX_GATE_KEY_LEN,
                "anyOf": key_choices,
            },
            "gate_pattern": {
                "description": "An exact gate key, or a prefix followed by one trailing `*`.",
                "type": "string",
                "maxLength": portcullis_core::gatekey::MAX_GATE_KEY_LEN,
                "anyOf": [
                    {"$ref": "#/$defs/gate_key"},
                    {"pattern": "^[!-)+-~]*\\*$"},
                ],
            },
        },
        "$ref": "#/$defs/gate_pattern",
    });
    let mut res = serde_json::to_string_pretty(&schema).unwrap_or_default();
    res.push('\n');
    res
}

/// docs/POLICY.md: layers, contracts, report mode, the request JSON, the Cedar schema, reasons.
pub fn policy_markdown() -> String {
    let mut res = format!("# Policy\n\n{GENERATED_NOTE}\n");
    res.push_str(POLICY_LAYERS);
    res.push_str("\n## The Cedar schema\n\nGenerated from the gate-key catalog (one action per family):\n\n```cedarschema\n");
    res.push_str(&crate::cedar::schema_text());
    res.push_str("```\n");
    res.push_str(POLICY_CEDAR);
    res.push_str("\n## Reason codes\n\nDenies (each maps onto a registry code in docs/ERROR_CODES.md):\n\n| reason | maps to | meaning |\n|---|---|---|\n");
    for info in REASONS {
        res.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            info.code,
            info.maps_to.as_str(),
            info.summary
        ));
    }
    res.push_str("\nAllows:\n\n| reason | meaning |\n|---|---|\n");
    for (code, summary) in ALLOW_REASONS {
        res.push_str(&format!("| `{code}` | {summary} |\n"));
    }
    res.push_str(&format!(
        "\nLayer names: {}.\n",
        layer::ALL
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    res
}

const POLICY_LAYERS: &str = r#"Every tool call, LLM call and egress connection asks the policy engine one question per gate key
(see GATE_KEYS.md) and gets one explained answer:

```json
{"decision":"deny","layer":"contract","rule":"freeze-github","reason":"contract_denied"}
```

`rule` is the id of the deciding rule (a deny pattern, a contract id, an allowlist pattern, a Cedar
policy id) or `null`. When a layer in report mode would have denied, the answer also carries
`"report":{"layer":...,"rule":...,"reason":...}` naming the first such deny, and the event is
recorded with decision `report`.

## Layers

Evaluated in this order; the first enforced deny wins.

1. `immutable`: `[policy] deny` patterns. Always enforced (`[policy.mode] immutable = "report"`
   is refused at load), and never dropped or narrowed at run time: a reload that would is refused
   (below). Only a restart changes them.
2. `contract`: `[[contracts]]` and contracts from the admin API (below).
3. `capsule`: denies and contracts adopted from capsules, ids `<capsule id>::<pattern>` and
   `<capsule id>::<contract id>`.
4. `allowlist`: the agent's `allow` patterns. A match admits, unless Cedar forbids.
5. `cedar`: Cedar policies from `[policy] cedar_files`. A `permit` admits (even without an allowlist
   match); a `forbid` denies (even with an allowlist match); an evaluation error in any policy that
   applies denies with `policy_error` (Cedar itself would skip the policy; Portcullis does not).
6. `default`: nothing admitted: deny with `no_allow`.

An allow therefore needs an allowlist match or a Cedar `permit`, and no deny from any layer. A key
that is not in the catalog is denied (`default`, `unknown_gate_key`) before any layer runs.

### Modes

```toml
[policy]
deny = ["net:host:169.254.169.254", "tools:call:shell.*"]
cedar_files = ["policies/base.cedar"]

[policy.mode]   # each "enforce" (default) or "report"; `immutable` only "enforce"
immutable = "enforce"
contract = "enforce"
capsule = "enforce"
cedar = "report"
default = "enforce"
```

In report mode a layer's deny does not end the decision: evaluation carries on, and an allow at
the end carries the first reported deny. `default = "report"` admits what nothing allows (a rollout
aid) with reason `report_only`.

## Contracts

```toml
[[contracts]]
id = "freeze-github"
patterns = ["tools:call:github.*"]
subject = { roles = ["intern"], tags = [], agents = [], nodes = [] }
valid_from = "2026-01-01T00:00:00Z"
valid_to = "2026-01-02T00:00:00Z"
auto_renew_secs = 86400
immutable = true
quota = { limit = 100, window_secs = 3600 }
```

- **Subject**: the lists combine with AND, entries in one list with OR; an empty list matches
  everyone (`nodes` matches the subject's node).
- **Window**: half-open `[valid_from, valid_to)`; a missing bound is open. RFC 3339 times.
- **Auto-renew**: once `valid_to` passes, the contract re-arms for back-to-back terms of
  `auto_renew_secs` (term k is `[valid_to + k*n, valid_to + (k+1)*n)`).
- **Quota**: inside its window a quota contract allows `limit` hits per window of `window_secs`
  (windows aligned to the Unix epoch, shared by every matching subject), then denies with
  `contract_quota_exhausted`. A hit is counted only when the whole decision allows. Counters live
  in the store: a hit is durable before the action it admits (it shares the group commit of the
  decision's `policy.decision` record, so it costs no fsync of its own), and a restart, even after
  SIGKILL, keeps every count. Explaining a request reads the counters and never counts.
- **Immutable**: while active, an immutable contract cannot be deleted, and a replacement must stay
  immutable, cover at least the same patterns and subjects, reach at least the end of the current
  term, and keep any quota at least as strict (409 from the admin API). To retire an auto-renewing
  immutable contract, replace it with one without `auto_renew_secs` whose `valid_to` is the current
  term's end; it can be deleted once that passes. The same holds for `[[contracts]]` across
  reloads: a reload that drops or weakens an active immutable configuration contract, or puts
  the `contract` layer in report mode while one is active (the `capsule` layer while an adopted
  capsule's contract is), is refused. A capsule's immutable contract keeps its capsule:
  `DELETE /admin/capsules/{id}` answers 409 while it is active.

### Immutable holds

A reload (`SIGHUP` or `POST /admin/policy/reload`) compares the new configuration with the one
serving. Each immutable deny it would drop or narrow, and each active immutable contract it would
drop or weaken, is one entry of the 422 answer's `errors` (and of the `policy.reload_failed`
event); the serving policy stays whole. Such changes take a restart: at start, Portcullis compares
the immutable denies and immutable contracts of its configuration with those the store saw at the
previous start, and records any difference as a `policy.immutable_changed` event
(`denies_added`, `denies_removed`, `contracts_added`, `contracts_removed`, `contracts_changed`)
before it serves.

## The request

`POST /admin/policy/explain` and `portcullis policy eval --request REQUEST.json [--at RFC3339]` take
the pipeline's request:

```json
{
  "subject": {"agent": "coder", "user": "alice", "room": "ops", "session": "s1", "node": "n1",
              "project": "web", "roles": ["dev"], "tags": ["ci"]},
  "action": "tools:call:github.create_issue",
  "resource": "github.create_issue",
  "context": {"arguments": {"repo": "acme/web", "title": "bug"}, "risk": "low"}
}
```

Only `subject.agent` and `action` are required. `resource` defaults to the key's tail
(`github.create_issue`), `risk` to `low` (`low|medium|high|critical`). The time is the gateway's
clock, or `--at`. Arguments are never logged.

Live decisions carry the same context: the fronts pass a tool call's top-level arguments and risk
tier (`[[tools.risk]]`, raised by the tool's annotations), a prompt's arguments, a resource read's
URI, so `when` / `unless` conditions on them hold live as in explain. Explain with the request a
live decision was made for (the same subject, key, resource, context and `at`) answers exactly
what the gate answered, without counting a quota hit.

## Operating the policy

Every route below is an admin route (admin token, admin rate limit) and answers errors in the
`{"error":{"code","message"}}` envelope.

| surface | what it does | events |
|---|---|---|
| `POST /admin/policy/explain` | the decision for one request (body above): `{decision, layer, rule, reason, report}`; changes nothing | none |
| `portcullis policy eval --config FILE --request REQUEST.json [--at RFC3339]` | the same answer offline, from a configuration file and the same code path | none |
| `POST /admin/policy/reload`, `SIGHUP` | re-reads the configuration's `[policy]`, `[[contracts]]` and Cedar files; a load error, or an immutable item the reload would drop or weaken, answers 422 `config_invalid` naming each (`errors: [{file, message}]`), and the previous policy keeps serving | `policy.reloaded`, `policy.reload_failed` |
| start | compares the immutable denies and contracts with what the store saw at the previous start; a store error refuses the start | `policy.immutable_changed` |
| `GET /admin/contracts` | every contract with its `origin` (`config` or `admin`) and whether it is `active` now | none |
| `POST /admin/contracts` | adds or replaces a run-time contract (JSON as in the TOML above); stored, so it survives restarts; 409 `conflict` when an active immutable contract would be weakened | `contract.created`, `contract.replaced` |
| `DELETE /admin/contracts/{id}` | removes a run-time contract; 409 while an immutable one is active, 404 when unknown | `contract.deleted` |

Each decision of the pipeline's gate stage is a `policy.decision` event with the gate key, layer,
rule and any reported deny; never the resource's arguments. A reload swaps the engine atomically:
a decision in flight finishes on the engine it started with, and the next one sees the new engine,
so no request is decided by a half-loaded policy.
"#;

const POLICY_CEDAR: &str = r#"
Every policy is validated in strict mode against this schema when the policy loads (start, SIGHUP,
`POST /admin/policy/reload`); any error refuses the load and the previous policy keeps serving.
Templates are refused. A policy's rule id is its `@id("...")` annotation, else `<file>#<n>`.

The request maps onto Cedar like this:

| Cedar | from |
|---|---|
| `principal` | `Portcullis::Agent::"<subject.agent>"` with `roles`, `tags`, and `project`, `node` when present |
| `action` | `Portcullis::Action::"<family>"` from the catalog (`tools:call`, `net:host`, ...) |
| `resource` | the family's type (`Tool`, `Prompt`, `Resource`, `Model`, `Host`, `Stream`), id `resource` or the key's tail; a `Tool` or `Prompt` `<upstream>.<name>` is `in Portcullis::Upstream::"<upstream>"`; a `Resource` is its URI |
| `context.key`, `context.target` | the full gate key and its tail |
| `context.time`, `.hour`, `.weekday` | Unix seconds; UTC hour 0-23; weekday 1 (Monday) - 7 |
| `context.risk`, `.risk_level` | `low`, `medium`, `high` or `critical`, and 0-3 |
| `context.arguments` | entity whose tags are the top-level arguments (strings; other values as JSON text): a tool call's or prompt's arguments, `{"uri": ...}` for a resource read, an LLM request's top-level fields except `messages`, `input`, `prompt`, `tools` and `functions` (so `model`, `temperature`, `max_tokens`, `user`, `metadata`, ...) |
| `context.user`, `.room`, `.session` | present only when the identity-asserting agent stated them |

Only the policies that can apply are evaluated: at load, policies are sliced by action and by
`resource ==` constraint, so the cost of a decision follows the slice, not the whole set.

### Examples

Allow the chat bridge to call GitHub tools in office hours:

```cedar
@id("bridge-github-office-hours")
permit (
  principal == Portcullis::Agent::"bridge",
  action == Portcullis::Action::"tools:call",
  resource in Portcullis::Upstream::"github"
)
when { context.hour >= 8 && context.hour < 18 && context.weekday <= 5 };
```

Forbid high-risk actions in one room, and writes outside one repository:

```cedar
@id("no-high-risk-in-lobby")
forbid (principal, action, resource)
when { context has room && context.room == Portcullis::Room::"lobby" && context.risk_level >= 2 };

@id("only-acme-web")
forbid (principal, action == Portcullis::Action::"tools:call", resource == Portcullis::Tool::"github.create_issue")
unless { context.arguments.hasTag("repo") && context.arguments.getTag("repo") == "acme/web" };
```

Strict validation refuses reading an optional attribute (`principal.project`, `context.room`) or a
tag without a `has` / `hasTag` guard. What can still fail at run time, such as arithmetic overflow
(`context.time * 1000000000000`), denies with `policy_error` when the policy applies: Cedar would
skip the failing policy, Portcullis does not.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in docs match the code; `PORTCULLIS_BLESS=1` rewrites them.
    #[test]
    fn generated_docs_are_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bless = std::env::var_os("PORTCULLIS_BLESS").is_some_and(|value| value == "1");
        for (path, expected) in generated() {
            let file = root.join(path);
            if bless {
                std::fs::write(&file, &expected).unwrap();
                continue;
            }
            let actual = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                actual == expected,
                "{path} is out of date; regenerate with \
                 `PORTCULLIS_BLESS=1 cargo test -p portcullis-policy generated_docs`"
            );
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DocumentedConfig {
        #[serde(default)]
        policy: crate::PolicyConfig,
        #[serde(default)]
        contracts: Vec<crate::Contract>,
    }

    /// The TOML and JSON examples in POLICY.md parse, and the contract example validates.
    #[test]
    fn documented_examples_parse() {
        let doc = policy_markdown();
        let block = |fence: &str| -> Vec<String> {
            doc.split(fence)
                .skip(1)
                .filter_map(|rest| rest.split("```").next())
                .map(str::to_owned)
                .collect()
        };
        let tomls = block("```toml\n");
        assert_eq!(tomls.len(), 2);
        for text in &tomls {
            let parsed: DocumentedConfig = toml::from_str(text).unwrap();
            for pattern in &parsed.policy.deny {
                crate::catalog::check_pattern(pattern).unwrap();
            }
            for contract in &parsed.contracts {
                assert_eq!(contract.validate(), vec![]);
            }
        }
        let jsons = block("```json\n");
        let request: portcullis_core::Request = serde_json::from_str(&jsons[1]).unwrap();
        assert_eq!(request.subject.agent, "coder");
    }

    #[test]
    fn schema_is_valid_json() {
        let schema: serde_json::Value = serde_json::from_str(&gate_keys_schema()).unwrap();
        assert_eq!(schema["$ref"], "#/$defs/gate_pattern");
    }
}
