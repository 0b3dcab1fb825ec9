//! Argument rules: the pinned input schema, then path, URL and deny-regex rules per tool pattern.
//!
//! A violation names the rule and the argument, never the value. The upstream is not called.

use std::path::{Component, Path, PathBuf};

use portcullis_netpolicy::host::Host;
use portcullis_netpolicy::rules::{RuleSet, parse_rule, registrable};
use portcullis_netpolicy::{TargetRequest, parse_target};
use serde_json::Value;

/// Most string values one deny rule inspects in one call (bounded work on deep arguments).
pub const MAX_SCANNED_VALUES: usize = 10_000;

/// One configured rule, before compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// The rule's name, quoted in violations.
    pub name: String,
    /// Exposed tool ids the rule applies to: exact, or a prefix ending in `*`.
    pub tools: Vec<String>,
    pub kind: RuleKindSpec,
}

/// What a rule checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKindSpec {
    /// The named top-level arguments are paths that must lie within one of `roots`.
    Path {
        arguments: Vec<String>,
        roots: Vec<PathBuf>,
        /// The roots are on this machine: symlinks are resolved and must stay inside.
        local: bool,
    },
    /// The named top-level arguments are `http(s)` URLs whose host must match `allow_hosts`
    /// (egress host rules: `host`, `*.suffix`, `domain:reg`, optional `:port`).
    Url {
        arguments: Vec<String>,
        allow_hosts: Vec<String>,
    },
    /// No string in the named arguments (every argument when empty) may match `pattern`.
    Deny {
        arguments: Vec<String>,
        pattern: String,
    },
}

/// Why a rule does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule `{rule}`: `tools` must list at least one tool pattern")]
    NoTools { rule: String },
    #[error("rule `{rule}`: tool pattern `{pattern}` may hold `*` only at its end")]
    BadToolPattern { rule: String, pattern: String },
    #[error("rule `{rule}`: `arguments` must name at least one argument")]
    NoArguments { rule: String },
    #[error("rule `{rule}`: root `{root}` must be an absolute path without `..`")]
    BadRoot { rule: String, root: String },
    #[error("rule `{rule}`: at least one root is required")]
    NoRoots { rule: String },
    #[error("rule `{rule}`: host rule `{host}`: {source}")]
    BadHost {
        rule: String,
        host: String,
        source: portcullis_netpolicy::rules::RuleError,
    },
    #[error("rule `{rule}`: pattern is not a valid regular expression: {source}")]
    BadRegex { rule: String, source: regex::Error },
}

/// A refused argument: which rule, which argument, and the stable reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name (`schema` for the input schema).
    pub rule: String,
    /// The top-level argument, when one is to blame.
    pub argument: Option<String>,
    /// A reason code from [`crate::REASONS`].
    pub reason: &'static str,
    /// What is wrong, without the value.
    pub detail: &'static str,
}

impl Violation {
    /// The sentence the agent sees: rule, argument and what is wrong, never the value.
    pub fn message(&self) -> String {
        match &self.argument {
            Some(argument) => format!(
                "Argument rule `{}` refused argument `{argument}`: {}.",
                self.rule, self.detail
            ),
            None => format!(
                "Argument rule `{}` refused the arguments: {}.",
                self.rule, self.detail
            ),
        }
    }
}

/// Compiled rules, checked in configuration order.
#[derive(Debug, Default)]
pub struct ArgumentRules {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    tools: Vec<ToolPattern>,
    check: Check,
}

#[derive(Debug)]
enum ToolPattern {
    Exact(String),
    Prefix(String),
}

#[derive(Debug)]
enum Check {
    Path {
        arguments: Vec<String>,
        roots: Vec<Root>,
    },
    Url {
        arguments: Vec<String>,
        hosts: RuleSet,
    },
    Deny {
        arguments: Vec<String>,
        regex: regex::Regex,
    },
}

#[derive(Debug)]
struct Root {
    lexical: PathBuf,
    /// The canonical form, for symlink checks, when the root is local and exists.
    canonical: Option<PathBuf>,
    local: bool,
}

impl ArgumentRules {
    /// Compiles `specs`. Local roots are canonicalized now (and again per check when they did
    /// not exist yet).
    pub fn compile(specs: &[RuleSpec]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(specs.len());
        for spec in specs {
            rules.push(compile_rule(spec)?);
        }
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks `arguments` of the exposed tool `tool` against every rule that applies; the
    /// first violation wins.
    pub fn check(&self, tool: &str, arguments: &Value) -> Result<(), Violation> {
        for rule in self.rules.iter().filter(|rule| rule.applies_to(tool)) {
            rule.check(arguments)?;
        }
        Ok(())
    }
}

/// Validates `arguments` against a compiled input schema.
pub fn check_schema(validator: &jsonschema::Validator, arguments: &Value) -> Result<(), Violation> {
    if validator.is_valid(arguments) {
        return Ok(());
    }
    Err(Violation {
        rule: "schema".to_owned(),
        argument: None,
        reason: "argument_schema",
        detail: "they do not match the tool's pinned input schema",
    })
}

fn compile_rule(spec: &RuleSpec) -> Result<Rule, RuleError> {
    let name = spec.name.clone();
    if spec.tools.is_empty() {
        return Err(RuleError::NoTools { rule: name });
    }
    let mut tools = Vec::with_capacity(spec.tools.len());
    for pattern in &spec.tools {
        let star_count = pattern.matches('*').count();
        let parsed = match (star_count, pattern.strip_suffix('*')) {
            (0, _) if !pattern.is_empty() => ToolPattern::Exact(pattern.clone()),
            (1, Some(prefix)) => ToolPattern::Prefix(prefix.to_owned()),
            _ => {
                return Err(RuleError::BadToolPattern {
                    rule: name,
                    pattern: pattern.clone(),
                });
            }
        };
        tools.push(parsed);
    }
    let check = match &spec.kind {
        RuleKindSpec::Path {
            arguments,
            roots,
            local,
        } => {
            if arguments.is_empty() {
                return Err(RuleError::NoArguments { rule: name });
            }
            if roots.is_empty() {
                return Err(RuleError::NoRoots { rule: name });
            }
            let mut compiled = Vec::with_capacity(roots.len());
            for root in roots {
                if !root.is_absolute() || has_parent_component(root) {
                    return Err(RuleError::BadRoot {
                        rule: name,
                        root: root.display().to_string(),
                    });
                }
                let lexical = lexical_normalize(root);
                let canonical = if *local {
                    std::fs::canonicalize(&lexical).ok()
                } else {
                    None
                };
                compiled.push(Root {
                    lexical,
                    canonical,
                    local: *local,
                });
            }
            Check::Path {
                arguments: arguments.clone(),
                roots: compiled,
            }
        }
        RuleKindSpec::Url {
            arguments,
            allow_hosts,
        } => {
            if arguments.is_empty() {
                return Err(RuleError::NoArguments { rule: name });
            }
            let mut parsed = Vec::with_capacity(allow_hosts.len());
            for host in allow_hosts {
                parsed.push(parse_rule(host, &[]).map_err(|source| RuleError::BadHost {
                    rule: name.clone(),
                    host: host.clone(),
                    source,
                })?);
            }
            Check::Url {
                arguments: arguments.clone(),
                hosts: RuleSet::new(parsed),
            }
        }
        RuleKindSpec::Deny { arguments, pattern } => Check::Deny {
            arguments: arguments.clone(),
            regex: regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|source| RuleError::BadRegex {
                    rule: name.clone(),
                    source,
                })?,
        },
    };
    Ok(Rule { name, tools, check })
}

impl Rule {
    fn applies_to(&self, tool: &str) -> bool {
        self.tools.iter().any(|pattern| match pattern {
            ToolPattern::Exact(exact) => exact == tool,
            ToolPattern::Prefix(prefix) => tool.starts_with(prefix.as_str()),
        })
    }

    fn violation(&self, argument: &str, reason: &'static str, detail: &'static str) -> Violation {
        Violation {
            rule: self.name.clone(),
            argument: Some(argument.to_owned()),
            reason,
            detail,
        }
    }

    fn check(&self, arguments: &Value) -> Result<(), Violation> {
        match &self.check {
            Check::Path {
                arguments: names,
                roots,
            } => {
                for name in names {
                    let Some(value) = arguments.get(name) else {
                        continue;
                    };
                    let Some(text) = value.as_str() else {
                        return Err(self.violation(
                            name,
                            "argument_path",
                            "the path is not a string",
                        ));
                    };
                    check_path(text, roots)
                        .map_err(|detail| self.violation(name, "argument_path", detail))?;
                }
                Ok(())
            }
            Check::Url {
                arguments: names,
                hosts,
            } => {
                for name in names {
                    let Some(value) = arguments.get(name) else {
                        continue;
                    };
                    let Some(text) = value.as_str() else {
                        return Err(self.violation(
                            name,
                            "argument_url",
                            "the URL is not a string",
                        ));
                    };
                    check_url(text, hosts)
                        .map_err(|detail| self.violation(name, "argument_url", detail))?;
                }
                Ok(())
            }
            Check::Deny {
                arguments: names,
                regex,
            } => {
                let mut budget = MAX_SCANNED_VALUES;
                let targets: Vec<(&str, &Value)> = match arguments.as_object() {
                    Some(object) if names.is_empty() => {
                        object.iter().map(|(k, v)| (k.as_str(), v)).collect()
                    }
                    Some(object) => names
                        .iter()
                        .filter_map(|name| object.get(name).map(|v| (name.as_str(), v)))
                        .collect(),
                    None => Vec::new(),
                };
                for (name, value) in targets {
                    match any_string_matches(value, regex, &mut budget) {
                        Some(false) => {}
                        Some(true) => {
                            return Err(self.violation(
                                name,
                                "argument_denied",
                                "a value matches a denied pattern",
                            ));
                        }
                        None => {
                            return Err(self.violation(
                                name,
                                "argument_denied",
                                "the arguments hold too many values to check",
                            ));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether some string in `value` matches; `None` when the value budget ran out (fail closed).
fn any_string_matches(value: &Value, regex: &regex::Regex, budget: &mut usize) -> Option<bool> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        *budget = budget.checked_sub(1)?;
        match value {
            Value::String(text) => {
                if regex.is_match(text) {
                    return Some(true);
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(object) => {
                for (key, item) in object {
                    if regex.is_match(key) {
                        return Some(true);
                    }
                    stack.push(item);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Some(false)
}

fn has_parent_component(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::ParentDir))
}

/// Removes `.` components and repeated separators; never touches `..` (refused earlier).
fn lexical_normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn check_path(text: &str, roots: &[Root]) -> Result<(), &'static str> {
    if text.is_empty() || text.contains('\0') {
        return Err("the path is empty or holds a NUL byte");
    }
    let path = Path::new(text);
    if has_parent_component(path) {
        return Err("the path holds a `..` component");
    }
    let first = roots.first().ok_or("no root is configured")?;
    let absolute = if path.is_absolute() {
        lexical_normalize(path)
    } else {
        // INVARIANT (relative-to-first-root): a relative path is taken relative to the first root.
        lexical_normalize(&first.lexical.join(path))
    };
    let Some(root) = roots
        .iter()
        .find(|root| absolute.starts_with(&root.lexical))
    else {
        return Err("the path lies outside the allowed roots");
    };
    if root.local {
        let canonical_root = match &root.canonical {
            Some(canonical) => canonical.clone(),
            None => std::fs::canonicalize(&root.lexical)
                .map_err(|_| "the allowed root does not exist")?,
        };
        let resolved =
            canonicalize_existing_prefix(&absolute).ok_or("the path cannot be resolved")?;
        if !resolved.starts_with(&canonical_root) {
            return Err("the path leaves the allowed roots through a symbolic link");
        }
    }
    Ok(())
}

/// Canonicalizes the longest existing prefix of `path` and appends the rest unchanged.
fn canonicalize_existing_prefix(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(canonical) => {
                let mut res = canonical;
                for part in rest.iter().rev() {
                    res.push(part);
                }
                return Some(res);
            }
            Err(_) => {
                let name = existing.file_name()?.to_owned();
                rest.push(name);
                if !existing.pop() {
                    return None;
                }
            }
        }
    }
}

fn check_url(text: &str, hosts: &RuleSet) -> Result<(), &'static str> {
    let target =
        parse_target(TargetRequest::url(text)).map_err(|_| "the URL is not a plain http(s) URL")?;
    let reg = match &target.host {
        Host::Name(name) => registrable(name, &[]),
        Host::Ip(_) => None,
    };
    let allowed = hosts
        .matching(&target.host, reg)
        .any(|entry| entry.port.is_none_or(|port| port == target.port));
    if allowed {
        Ok(())
    } else {
        Err("the URL's host is not on the rule's allowlist")
    }
}

#[cfg(test)]
mod tests;
