//! What the ledger keeps of tool arguments: their SHA-256 and their shape (keys and types),
//! never their values.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Deepest level of nested objects a shape describes; deeper objects show as `"object"`.
pub const MAX_SHAPE_DEPTH: usize = 4;
/// Most keys of one object a shape lists; the rest are counted under `"…"`.
pub const MAX_SHAPE_KEYS: usize = 64;

/// Hex SHA-256 of the arguments' RFC 8785 canonical JSON (`null` hashes as `null`).
pub fn arguments_hash(arguments: &Value) -> String {
    let bytes = serde_jcs::to_vec(arguments).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// Keys and types: `{"path":"string","opts":{"n":"number"},"tags":"array"}`.
pub fn arguments_shape(arguments: &Value) -> Value {
    shape_at(arguments, 0)
}

fn shape_at(value: &Value, depth: usize) -> Value {
    match value {
        Value::Null => Value::from("null"),
        Value::Bool(_) => Value::from("boolean"),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        Value::Array(_) => Value::from("array"),
        Value::Object(_) if depth >= MAX_SHAPE_DEPTH => Value::from("object"),
        Value::Object(object) => {
            let mut res = serde_json::Map::new();
            for (key, item) in object.iter().take(MAX_SHAPE_KEYS) {
                res.insert(key.clone(), shape_at(item, depth + 1));
            }
            if object.len() > MAX_SHAPE_KEYS {
                res.insert("…".to_owned(), Value::from(object.len() - MAX_SHAPE_KEYS));
            }
            Value::Object(res)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn shapes_carry_no_values() {
        let args = json!({"path": "/secret/file", "n": 3, "o": {"deep": [1, 2]}, "x": null});
        let shape = arguments_shape(&args);
        assert_eq!(
            shape,
            json!({"path": "string", "n": "number", "o": {"deep": "array"}, "x": "null"})
        );
        assert!(!shape.to_string().contains("secret"));
        assert_eq!(arguments_hash(&args).len(), 64);
        assert_eq!(
            arguments_hash(&json!({"b": 1, "a": 2})),
            arguments_hash(&json!({"a": 2, "b": 1}))
        );
    }
}
