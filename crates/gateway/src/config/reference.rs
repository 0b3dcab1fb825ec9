//! Renders `docs/CONFIG.md`, the reference of every configuration key, from the JSON Schema.

use serde_json::Value;

/// The Markdown reference: one table per section with each key's type, default and meaning.
pub fn render_reference() -> String {
    let schema = super::json_schema();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the configuration model (`portcullis config schema` prints the JSON Schema);\n\
         a test fails when this file drifts. Regenerate with\n\
         `PORTCULLIS_BLESS=1 cargo test -p portcullis-gateway config_doc`.\n\n\
         Every key is optional. Unknown keys are errors. Any key of a section can be set from the\n\
         environment as `PORTCULLIS_<SECTION>_<KEY>` (for example `PORTCULLIS_SERVER_BIND`);\n\
         `PORTCULLIS_DATA_DIR`, `PORTCULLIS_CONFIG` and `PORTCULLIS_DEBUG` are read directly.\n\
         `docs/portcullis.example.toml` (`portcullis config example`) shows every key commented.\n",
    );
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let Some(sections) = schema.get("properties").and_then(Value::as_object) else {
        return out;
    };
    // Sorted explicitly: serde_json's map order depends on features other crates enable.
    let mut sections: Vec<_> = sections.iter().collect();
    sections.sort_by(|a, b| a.0.cmp(b.0));
    for (section, section_schema) in sections {
        let description = text(section_schema.get("description"));
        let target = resolve(section_schema, &defs);
        let is_array = section_schema.get("type").and_then(Value::as_str) == Some("array");
        let heading = if is_array {
            format!("[[{section}]]")
        } else {
            format!("[{section}]")
        };
        out.push_str(&format!("\n## `{heading}`\n\n{description}\n\n"));
        let Some(keys) = target.get("properties").and_then(Value::as_object) else {
            continue;
        };
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        let mut keys: Vec<_> = keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, key_schema) in keys {
            let default = key_schema
                .get("default")
                .map(|value| format!("`{value}`"))
                .unwrap_or_else(|| "none".to_owned());
            out.push_str(&format!(
                "| `{key}` | {} | {default} | {} |\n",
                type_of(key_schema, &defs),
                text(key_schema.get("description")).replace('\n', " ")
            ));
        }
    }
    out
}

fn text(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Follows `$ref` and array `items` to the object schema of a section.
fn resolve<'a>(schema: &'a Value, defs: &'a Value) -> &'a Value {
    let inner = schema.get("items").unwrap_or(schema);
    match inner
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => defs.get(name).unwrap_or(inner),
        None => inner,
    }
}

fn type_of(schema: &Value, defs: &Value) -> String {
    let target = resolve(schema, defs);
    if let Some(values) = target.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    if let Some(variants) = target.get("oneOf").and_then(Value::as_array) {
        let names: Vec<String> = variants
            .iter()
            .filter_map(|v| {
                v.get("const")
                    .or_else(|| v.get("enum").and_then(|e| e.get(0)))
            })
            .map(|v| format!("`{v}`"))
            .collect();
        if !names.is_empty() {
            return names.join(" \\| ");
        }
    }
    match schema.get("type") {
        Some(Value::String(kind)) if kind == "array" => {
            format!(
                "list of {}",
                type_of(schema.get("items").unwrap_or(&Value::Null), defs)
            )
        }
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .filter(|k| *k != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => target
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("value")
            .to_owned(),
    }
}
