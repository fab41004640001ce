//! Tool schemas every MCP client accepts.
//!
//! JSON Schema allows a boolean wherever a schema may stand (`true` = any
//! value, `false` = none), and schemars emits `true` for a free-form
//! `serde_json::Value` field. Claude Code's validator of `tools/list` (the
//! TypeScript SDK's, which requires every entry of `properties` to be an
//! object) rejects such a schema — and with it the server's whole tool list.
//! So every schema vane publishes is rewritten here to the same meaning
//! without booleans: `true` becomes `{}`, `false` becomes `{"not": {}}`.
//!
//! The one boolean kept is `"additionalProperties": false`: it is what every
//! client (Claude Code included) reads as "no unknown fields", what OpenAI's
//! strict function calling requires literally, and what the registry's
//! unknown-field check looks for.

use serde_json::{json, Map, Value};

/// Keywords whose value is one subschema.
const ONE: &[&str] = &[
    "additionalProperties",
    "items",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];

/// Keywords whose value is an array of subschemas.
const LIST: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value is a map of name → subschema.
const MAP: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Rewrites `schema` (a schema object) so that no subschema is a boolean,
/// `"additionalProperties": false` excepted.
pub fn portable(schema: &mut Map<String, Value>) {
    for (key, v) in schema.iter_mut() {
        let k = key.as_str();
        if ONE.contains(&k) {
            if k == "additionalProperties" && *v == Value::Bool(false) {
                continue;
            }
            sub(v);
        } else if LIST.contains(&k) {
            if let Value::Array(a) = v {
                a.iter_mut().for_each(sub);
            } else {
                sub(v); // draft-04 `items` as one schema under another name: not ours
            }
        } else if MAP.contains(&k) {
            if let Value::Object(m) = v {
                m.values_mut().for_each(sub);
            }
        }
    }
}

fn sub(v: &mut Value) {
    match v {
        Value::Bool(true) => *v = json!({}),
        Value::Bool(false) => *v = json!({"not": {}}),
        Value::Object(m) => portable(m),
        // `items` as an array (draft 4–2019): a list of subschemas
        Value::Array(a) => a.iter_mut().for_each(sub),
        _ => {}
    }
}

/// JSON pointers of every boolean subschema in `schema`, the kept
/// `"additionalProperties": false` excepted. Empty for a portable schema.
pub fn boolean_subschemas(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
    let Value::Object(m) = v else { return };
    for (key, val) in m {
        let k = key.as_str();
        let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
        if ONE.contains(&k) {
            if k == "additionalProperties" && *val == Value::Bool(false) {
                continue;
            }
            check(val, &here, out);
        } else if LIST.contains(&k) {
            if let Value::Array(a) = val {
                for (i, s) in a.iter().enumerate() {
                    check(s, &format!("{here}/{i}"), out);
                }
            }
        } else if MAP.contains(&k) {
            if let Value::Object(props) = val {
                for (name, s) in props {
                    let name = name.replace('~', "~0").replace('/', "~1");
                    check(s, &format!("{here}/{name}"), out);
                }
            }
        }
    }
}

fn check(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Bool(_) => out.push(at.to_string()),
        Value::Array(a) => {
            for (i, s) in a.iter().enumerate() {
                check(s, &format!("{at}/{i}"), out);
            }
        }
        other => walk(other, at, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_become_schemas_and_are_found() {
        let mut s = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "any": true,
                "none": false,
                "list": {"type": "array", "items": true},
                "either": {"anyOf": [true, {"type": "string"}]},
                "open": {"type": "object", "additionalProperties": true}
            },
            "$defs": {"Free": true, "Nested": {"properties": {"x": true}}}
        });
        let found = boolean_subschemas(&s);
        assert_eq!(
            found,
            vec![
                "/properties/any",
                "/properties/none",
                "/properties/list/items",
                "/properties/either/anyOf/0",
                "/properties/open/additionalProperties",
                "/$defs/Free",
                "/$defs/Nested/properties/x",
            ]
        );
        portable(s.as_object_mut().unwrap());
        assert!(boolean_subschemas(&s).is_empty(), "{s}");
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["any"], json!({}));
        assert_eq!(s["properties"]["none"], json!({"not": {}}));
        assert_eq!(s["$defs"]["Nested"]["properties"]["x"], json!({}));
        // the same meaning: a validator accepts and refuses the same values
        let v = jsonschema::validator_for(&s).unwrap();
        assert!(v.is_valid(&json!({"any": [1, {"a": null}], "open": {"k": 1}})));
        assert!(!v.is_valid(&json!({"none": 1})));
        assert!(!v.is_valid(&json!({"unknown": 1})));
    }
}
