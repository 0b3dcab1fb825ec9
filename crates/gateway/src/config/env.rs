//! `PORTCULLIS_<SECTION>_<KEY>` environment overrides.

use std::collections::BTreeMap;

use crate::config::{ConfigIssue, SPECIAL_ENV};

/// Sections that environment variables may override (array sections such as `agents` cannot be).
const SECTIONS: &[&str] = &[
    "server",
    "admin",
    "store",
    "ledger",
    "observability",
    "capsules",
    "cluster",
    "egress",
    "secrets",
    "limits",
    "alerts",
];

const PREFIX: &str = "PORTCULLIS_";

/// One override: `var` sets `section.key` to `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub var: String,
    pub section: String,
    pub key: String,
    pub value: toml::Value,
}

/// Collects the overrides in `env`; an unknown section is an error naming the variable.
pub fn overrides(env: &BTreeMap<String, String>) -> Result<Vec<Override>, Vec<ConfigIssue>> {
    let mut res = Vec::new();
    let mut issues = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            continue;
        };
        if SPECIAL_ENV.contains(&var.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let found = SECTIONS.iter().find_map(|section| {
            lower
                .strip_prefix(section)
                .and_then(|tail| tail.strip_prefix('_'))
                .filter(|key| !key.is_empty())
                .map(|key| (*section, key))
        });
        match found {
            Some((section, key)) => res.push(Override {
                var: var.clone(),
                section: section.to_owned(),
                key: key.to_owned(),
                value: parse_value(raw),
            }),
            None => issues.push(ConfigIssue {
                path: String::new(),
                line: None,
                message: format!(
                    "environment variable `{var}` does not name a configuration key \
                     (expected PORTCULLIS_<SECTION>_<KEY> with a section among {})",
                    SECTIONS.join(", ")
                ),
            }),
        }
    }
    if issues.is_empty() {
        Ok(res)
    } else {
        Err(issues)
    }
}

/// Booleans, integers and arrays are read as TOML; anything else is a string.
fn parse_value(raw: &str) -> toml::Value {
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"));
    match parsed {
        Some(
            value @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Array(_)),
        ) => value,
        _ => toml::Value::String(raw.to_owned()),
    }
}

/// Writes the overrides into the parsed file.
pub fn apply(table: &mut toml::Table, overrides: &[Override]) -> Result<(), ConfigIssue> {
    for item in overrides {
        let section = table
            .entry(item.section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match section {
            toml::Value::Table(section) => {
                section.insert(item.key.clone(), item.value.clone());
            }
            _ => {
                return Err(ConfigIssue {
                    path: item.section.clone(),
                    line: None,
                    message: format!("`{}` must be a table to apply `{}`", item.section, item.var),
                });
            }
        }
    }
    Ok(())
}

/// The variable that set `path`, if one did.
pub fn origin_of<'a>(overrides: &'a [Override], path: &str) -> Option<&'a str> {
    overrides
        .iter()
        .find(|item| {
            let key = format!("{}.{}", item.section, item.key);
            path == key
                || path.starts_with(&format!("{key}."))
                || path.starts_with(&format!("{key}["))
        })
        .map(|item| item.var.as_str())
}

pub fn is_overridden(overrides: &[Override], path: &str) -> bool {
    origin_of(overrides, path).is_some()
}
