//! Argument rules: path, URL and deny-regex rules on tool arguments, prompt arguments and
//! resource URIs, after the pinned input schema.
//!
//! Rules are keyed by upstream and the upstream's own names (`<upstream>.<tool>`,
//! `<upstream>.<prompt>`, `<upstream>` for resources), never by the name an agent sees, so the
//! prefix mode or a renamed exposure cannot escape them. Checking answers what to forward: a
//! `path` rule replaces the path it checked by its normalized absolute form. A violation names
//! the rule and the argument, never the value; the upstream is not called.

use std::borrow::Cow;
use std::path::PathBuf;

use portcullis_netpolicy::rules::{RuleSet, parse_rule};
use serde_json::{Map, Value};

mod normalize;
mod path;
mod url;

pub use normalize::normalize;

use path::{Root, check_path, file_uri_path, percent_decode};
use url::check_url;

/// Most string values one deny rule inspects in one call (bounded work on deep arguments).
pub const MAX_SCANNED_VALUES: usize = 10_000;

/// Tool and prompt arguments: a JSON object.
pub type Arguments = Map<String, Value>;

/// One configured rule, before compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    /// The rule's name, quoted in violations.
    pub name: String,
    /// Tools whose arguments the rule checks, as `<upstream>.<tool>` with the upstream's own tool
    /// name: exact, or a prefix ending in `*`.
    pub tools: Vec<String>,
    /// Prompts whose arguments the rule checks, as `<upstream>.<prompt>` (exact or prefix).
    pub prompts: Vec<String>,
    /// Upstreams whose resource URIs the rule checks (exact names or a prefix ending in `*`).
    pub resources: Vec<String>,
    pub kind: RuleKindSpec,
}

/// What a rule checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKindSpec {
    /// The named top-level arguments are paths that must lie within one of `roots`; on
    /// resources, the URI must be a `file://` URI whose path lies within one of them.
    Path {
        arguments: Vec<String>,
        roots: Vec<PathBuf>,
        /// The roots are on this machine: symlinks are resolved and must stay inside.
        local: bool,
    },
    /// The named top-level arguments (on resources, the URI) are `http(s)` URLs whose host
    /// must match `allow_hosts` (egress host rules: `host`, `*.suffix`, `domain:reg`, optional
    /// `:port`; without a port only 80 and 443).
    Url {
        arguments: Vec<String>,
        allow_hosts: Vec<String>,
    },
    /// No string in the named arguments (every argument when empty; on resources, the URI) may
    /// match `pattern`, as written or normalized ([`normalize`]).
    Deny {
        arguments: Vec<String>,
        pattern: String,
    },
}

/// Why a rule does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule `{rule}`: name at least one tool, prompt or resource pattern")]
    NoTargets { rule: String },
    #[error(
        "rule `{rule}`: pattern `{pattern}` may hold `*` only at its end, and tools and prompts are named `<upstream>.<name>`"
    )]
    BadPattern { rule: String, pattern: String },
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

/// A refused request: which rule, what it blamed, and the stable reason code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name (`schema` for the input schema).
    pub rule: String,
    pub blamed: Blamed,
    /// A reason code from [`crate::REASONS`].
    pub reason: &'static str,
    /// What is wrong, without the value.
    pub detail: &'static str,
}

/// What a violation blames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blamed {
    /// One top-level argument.
    Argument(String),
    /// The arguments as a whole (the input schema).
    Arguments,
    /// A resource URI.
    ResourceUri,
}

impl Violation {
    /// The sentence the agent sees: rule, argument and what is wrong, never the value.
    pub fn message(&self) -> String {
        match &self.blamed {
            Blamed::Argument(argument) => format!(
                "Argument rule `{}` refused argument `{argument}`: {}.",
                self.rule, self.detail
            ),
            Blamed::Arguments => format!(
                "Argument rule `{}` refused the arguments: {}.",
                self.rule, self.detail
            ),
            Blamed::ResourceUri => format!(
                "Argument rule `{}` refused the resource URI: {}.",
                self.rule, self.detail
            ),
        }
    }

    /// The argument to blame, when one is.
    pub fn argument(&self) -> Option<&str> {
        match &self.blamed {
            Blamed::Argument(argument) => Some(argument),
            Blamed::Arguments | Blamed::ResourceUri => None,
        }
    }
}

/// What the upstreams list, for [`ArgumentRules::unmatched`]: `<upstream>.<name>` keys for
/// tools and prompts, upstream names for resources.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listed<'a> {
    pub tools: &'a [String],
    pub prompts: &'a [String],
    pub resource_upstreams: &'a [String],
}

/// Compiled rules, checked in configuration order.
#[derive(Debug, Default)]
pub struct ArgumentRules {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    tools: Vec<NamePattern>,
    prompts: Vec<NamePattern>,
    resources: Vec<NamePattern>,
    check: Check,
}

#[derive(Debug)]
enum NamePattern {
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

    /// Checks the arguments of `tool` (the upstream's own name) of `upstream` against every
    /// rule that names it; the first violation wins. Answers the arguments to forward.
    pub fn check_tool(
        &self,
        upstream: &str,
        tool: &str,
        arguments: Arguments,
    ) -> Result<Arguments, Violation> {
        let key = format!("{upstream}.{tool}");
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|rule| matches_any(&rule.tools, &key))
            .collect();
        check_arguments(&rules, arguments)
    }

    /// Checks the arguments of `prompt` (the upstream's own name) of `upstream`, as
    /// [`Self::check_tool`] does for tools.
    pub fn check_prompt(
        &self,
        upstream: &str,
        prompt: &str,
        arguments: Arguments,
    ) -> Result<Arguments, Violation> {
        let key = format!("{upstream}.{prompt}");
        let rules: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|rule| matches_any(&rule.prompts, &key))
            .collect();
        check_arguments(&rules, arguments)
    }

    /// Checks a resource URI about to be read from `upstream` against every rule that names the
    /// upstream's resources. The URI is forwarded unchanged (it must match what the upstream
    /// lists); a `path` rule refuses every URI that is not a `file://` URI within its roots.
    pub fn check_resource(&self, upstream: &str, uri: &str) -> Result<(), Violation> {
        for rule in self
            .rules
            .iter()
            .filter(|rule| matches_any(&rule.resources, upstream))
        {
            rule.check_uri(uri)?;
        }
        Ok(())
    }

    /// Names of the rules that match nothing in `listed` (a typo, or a renamed tool): the
    /// gateway warns about them.
    pub fn unmatched(&self, listed: &Listed<'_>) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|rule| {
                let any = |patterns: &[NamePattern], names: &[String]| {
                    names.iter().any(|name| matches_any(patterns, name))
                };
                !(any(&rule.tools, listed.tools)
                    || any(&rule.prompts, listed.prompts)
                    || any(&rule.resources, listed.resource_upstreams))
            })
            .map(|rule| rule.name.as_str())
            .collect()
    }
}

/// Validates `arguments` against a compiled input schema.
pub fn check_schema(validator: &jsonschema::Validator, arguments: &Value) -> Result<(), Violation> {
    if validator.is_valid(arguments) {
        return Ok(());
    }
    Err(Violation {
        rule: "schema".to_owned(),
        blamed: Blamed::Arguments,
        reason: "argument_schema",
        detail: "they do not match the tool's pinned input schema",
    })
}

/// Runs `rules` in order over `arguments`, rewriting as they go; when anything was rewritten,
/// every rule runs again over the result, so each rule has seen exactly what is forwarded.
fn check_arguments(rules: &[&Rule], mut arguments: Arguments) -> Result<Arguments, Violation> {
    let mut rewritten = false;
    for rule in rules {
        rewritten |= rule.apply(&mut arguments)?;
    }
    if rewritten {
        for rule in rules {
            // INVARIANT (checked-is-forwarded): a rewritten path is a fixed point of its rule,
            // so a second rewrite means the rules disagree; refuse rather than forward it.
            if rule.apply(&mut arguments)? {
                return Err(Violation {
                    rule: rule.name.clone(),
                    blamed: Blamed::Arguments,
                    reason: "argument_path",
                    detail: "the rules rewrite the path differently",
                });
            }
        }
    }
    Ok(arguments)
}

fn matches_any(patterns: &[NamePattern], name: &str) -> bool {
    patterns.iter().any(|pattern| match pattern {
        NamePattern::Exact(exact) => exact == name,
        NamePattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
    })
}

fn compile_patterns(
    rule: &str,
    patterns: &[String],
    dotted: bool,
) -> Result<Vec<NamePattern>, RuleError> {
    let bad = |pattern: &String| RuleError::BadPattern {
        rule: rule.to_owned(),
        pattern: pattern.clone(),
    };
    let mut res = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let star_count = pattern.matches('*').count();
        let parsed = match (star_count, pattern.strip_suffix('*')) {
            (0, _) if !pattern.is_empty() => NamePattern::Exact(pattern.clone()),
            (1, Some(prefix)) => NamePattern::Prefix(prefix.to_owned()),
            _ => return Err(bad(pattern)),
        };
        // `<upstream>.<name>`: an exact pattern needs both parts, so a bare tool name written
        // for `prefix = "never"` is refused rather than silently matching nothing.
        if let NamePattern::Exact(exact) = &parsed
            && dotted
            && !exact
                .split_once('.')
                .is_some_and(|(upstream, name)| !upstream.is_empty() && !name.is_empty())
        {
            return Err(bad(pattern));
        }
        res.push(parsed);
    }
    Ok(res)
}

fn compile_rule(spec: &RuleSpec) -> Result<Rule, RuleError> {
    let name = spec.name.clone();
    if spec.tools.is_empty() && spec.prompts.is_empty() && spec.resources.is_empty() {
        return Err(RuleError::NoTargets { rule: name });
    }
    let tools = compile_patterns(&name, &spec.tools, true)?;
    let prompts = compile_patterns(&name, &spec.prompts, true)?;
    let resources = compile_patterns(&name, &spec.resources, false)?;
    let needs_arguments = !(tools.is_empty() && prompts.is_empty());
    let check = match &spec.kind {
        RuleKindSpec::Path {
            arguments,
            roots,
            local,
        } => {
            if needs_arguments && arguments.is_empty() {
                return Err(RuleError::NoArguments { rule: name });
            }
            if roots.is_empty() {
                return Err(RuleError::NoRoots { rule: name });
            }
            let mut compiled = Vec::with_capacity(roots.len());
            for root in roots {
                compiled.push(
                    Root::compile(root, *local).ok_or_else(|| RuleError::BadRoot {
                        rule: name.clone(),
                        root: root.display().to_string(),
                    })?,
                );
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
            if needs_arguments && arguments.is_empty() {
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
    Ok(Rule {
        name,
        tools,
        prompts,
        resources,
        check,
    })
}

impl Rule {
    fn violation(&self, argument: &str, reason: &'static str, detail: &'static str) -> Violation {
        Violation {
            rule: self.name.clone(),
            blamed: Blamed::Argument(argument.to_owned()),
            reason,
            detail,
        }
    }

    fn uri_violation(&self, reason: &'static str, detail: &'static str) -> Violation {
        Violation {
            rule: self.name.clone(),
            blamed: Blamed::ResourceUri,
            reason,
            detail,
        }
    }

    /// Checks `arguments`, rewriting checked paths to their normalized absolute form; answers
    /// whether anything changed.
    fn apply(&self, arguments: &mut Arguments) -> Result<bool, Violation> {
        match &self.check {
            Check::Path {
                arguments: names,
                roots,
            } => {
                let mut rewritten = false;
                for name in names {
                    let Some(value) = arguments.get_mut(name) else {
                        continue;
                    };
                    let Value::String(text) = value else {
                        return Err(self.violation(
                            name,
                            "argument_path",
                            "the path is not a string",
                        ));
                    };
                    let checked = check_path(text, roots)
                        .map_err(|detail| self.violation(name, "argument_path", detail))?;
                    if *text != checked {
                        *text = checked;
                        rewritten = true;
                    }
                }
                Ok(rewritten)
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
                Ok(false)
            }
            Check::Deny {
                arguments: names,
                regex,
            } => {
                let mut budget = MAX_SCANNED_VALUES;
                let targets: Vec<(&str, &Value)> = if names.is_empty() {
                    arguments.iter().map(|(k, v)| (k.as_str(), v)).collect()
                } else {
                    names
                        .iter()
                        .filter_map(|name| arguments.get(name).map(|v| (name.as_str(), v)))
                        .collect()
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
                Ok(false)
            }
        }
    }

    fn check_uri(&self, uri: &str) -> Result<(), Violation> {
        match &self.check {
            Check::Path { roots, .. } => {
                let path = file_uri_path(uri)
                    .map_err(|detail| self.uri_violation("argument_path", detail))?;
                check_path(&path, roots)
                    .map(drop)
                    .map_err(|detail| self.uri_violation("argument_path", detail))
            }
            Check::Url { hosts, .. } => {
                check_url(uri, hosts).map_err(|detail| self.uri_violation("argument_url", detail))
            }
            Check::Deny { regex, .. } => {
                let decoded = percent_decode(uri);
                let denied = text_matches(regex, uri)
                    || decoded
                        .as_deref()
                        .is_some_and(|decoded| text_matches(regex, decoded));
                if denied {
                    Err(self.uri_violation("argument_denied", "it matches a denied pattern"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Whether `regex` matches `text` as written or normalized.
fn text_matches(regex: &regex::Regex, text: &str) -> bool {
    if regex.is_match(text) {
        return true;
    }
    match normalize(text) {
        Cow::Borrowed(_) => false,
        Cow::Owned(normalized) => regex.is_match(&normalized),
    }
}

/// Whether some string (or object key) in `value` matches; `None` when the value budget ran out
/// (fail closed).
fn any_string_matches(value: &Value, regex: &regex::Regex, budget: &mut usize) -> Option<bool> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        *budget = budget.checked_sub(1)?;
        match value {
            Value::String(text) => {
                if text_matches(regex, text) {
                    return Some(true);
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(object) => {
                for (key, item) in object {
                    if text_matches(regex, key) {
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

#[cfg(test)]
mod tests;
