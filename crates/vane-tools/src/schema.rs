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

/// What a schema is for: what a model reads (input) or what a client checks
/// (output). Both are published in every `tools/list`, so both are paid for
/// in every agent's context and in every client's validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Arguments: descriptions of properties and real constraints stay (a
    /// model needs them, the registry enforces them); generator noise goes.
    Input,
    /// Results: only structure stays. A validator accepts every answer it
    /// accepted before (nothing here narrows), and pays for less.
    Output,
}

/// Keywords that never change what a schema accepts and that the purpose
/// does not need. `format` is among them: schemars' `uint`, `int64` …
/// are no standard format and validators ignore them.
fn dropped(purpose: Purpose, key: &str) -> bool {
    match purpose {
        Purpose::Input => matches!(key, "title" | "format" | "$comment" | "examples"),
        Purpose::Output => matches!(
            key,
            "title"
                | "format"
                | "$comment"
                | "examples"
                | "description"
                | "default"
                // constraints that only cost: vane's answers come from its
                // own types, which already keep these bounds
                | "minimum"
                | "maximum"
                | "minLength"
                | "maxLength"
                | "minItems"
                | "maxItems"
        ),
    }
}

/// Shrinks a (portable) schema to what `purpose` needs without changing what
/// it accepts beyond dropping constraints (outputs only): annotation and
/// generator keywords are removed, `$defs` used once are inlined, and the
/// descriptions of `$defs` (a type's doc comment, written for Rust readers)
/// go. The result is the full schema the registry checks against and
/// `tool_manifest` publishes; `tools/list` publishes [`for_models`] and
/// [`shallow`] views of it.
pub fn compact(schema: &mut Map<String, Value>, purpose: Purpose) {
    // descriptions of whole types are Rust doc comments: not for models
    if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
        for d in defs.values_mut() {
            if let Value::Object(m) = d {
                m.remove("description");
            }
        }
    }
    inline_single_use_defs(schema);
    strip(schema, purpose);
}

fn strip(schema: &mut Map<String, Value>, purpose: Purpose) {
    schema.retain(|k, _| !dropped(purpose, k));
    for (key, v) in schema.iter_mut() {
        let k = key.as_str();
        if ONE.contains(&k) {
            if let Value::Object(m) = v {
                strip(m, purpose);
            }
        } else if LIST.contains(&k) {
            if let Value::Array(a) = v {
                for s in a.iter_mut() {
                    if let Value::Object(m) = s {
                        strip(m, purpose);
                    }
                }
            }
        } else if MAP.contains(&k) {
            if let Value::Object(m) = v {
                for s in m.values_mut() {
                    if let Value::Object(m) = s {
                        strip(m, purpose);
                    }
                }
            }
        }
    }
    // after the subschemas, so that a branch already folded can fold here
    consts_as_enum(schema);
    nullable_in_type(schema);
    if schema.get("additionalProperties") == Some(&json!({})) {
        schema.remove("additionalProperties"); // the default: accepts anything
    }
}

/// `{"oneOf": [{"type": "string", "const": "a", "description": "…"}, …]}`
/// (how schemars writes a documented unit enum) becomes `{"type":
/// "string", "enum": ["a", …]}`, the branches' descriptions joined into one
/// ("a: …; b: …"). The same values are accepted: consts never overlap.
fn consts_as_enum(schema: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = schema.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut notes = Vec::new();
    for b in branches {
        let Value::Object(b) = b else { return };
        let (Some(Value::String(c)), Some(Value::String(t))) = (b.get("const"), b.get("type"))
        else {
            return;
        };
        if t != "string"
            || b.keys()
                .any(|k| !matches!(k.as_str(), "const" | "type" | "description"))
        {
            return;
        }
        if let Some(Value::String(d)) = b.get("description") {
            notes.push(format!("{c}: {d}"));
        }
        values.push(Value::String(c.clone()));
    }
    schema.remove("oneOf");
    schema.insert("type".into(), json!("string"));
    schema.insert("enum".into(), Value::Array(values));
    if !notes.is_empty() && !schema.contains_key("description") {
        schema.insert("description".into(), json!(notes.join("; ")));
    }
}

/// `{"anyOf": [S, {"type": "null"}]}` (how schemars writes an optional
/// inlined type) becomes S with `"null"` added to its `type` — the same
/// values accepted — when S's other keywords apply to its one type only.
fn nullable_in_type(schema: &mut Map<String, Value>) {
    let Some(Value::Array(any)) = schema.get("anyOf") else {
        return;
    };
    if any.len() != 2 || any[1] != json!({"type": "null"}) {
        return;
    }
    let Value::Object(s) = &any[0] else { return };
    let Some(Value::String(ty)) = s.get("type") else {
        return;
    };
    // keywords that would refuse null even with "null" in `type`
    let narrowing = ["const", "anyOf", "oneOf", "allOf", "not", "$ref", "if"];
    if s.keys().any(|k| narrowing.contains(&k.as_str())) {
        return;
    }
    let mut merged = s.clone();
    merged.insert("type".into(), json!([ty, "null"]));
    if let Some(Value::Array(e)) = merged.get_mut("enum") {
        e.push(Value::Null); // an enum refuses null unless it lists it
    }
    schema.remove("anyOf");
    for (k, v) in merged {
        schema.entry(k).or_insert(v);
    }
}

/// An input schema as `tools/list` publishes it, for the model that writes
/// the arguments: what each field is, its type and allowed values. Bounds
/// (lengths, ranges, patterns) and the `null` an optional field also
/// accepts are left to the registry, which checks every call against the
/// full schema and names the violated bound in its error.
pub fn for_models(full: &Map<String, Value>) -> Map<String, Value> {
    let mut m = full.clone();
    loosen(&mut m);
    m
}

fn loosen(schema: &mut Map<String, Value>) {
    schema.retain(|k, _| {
        !matches!(
            k.as_str(),
            "minimum" | "maximum" | "minLength" | "maxLength" | "pattern" | "minItems" | "maxItems"
        )
    });
    // an optional value of a type with constraints: `anyOf [X, null]` → X
    if let Some(Value::Array(any)) = schema.get("anyOf") {
        if any.len() == 2 && any[1] == json!({"type": "null"}) {
            if let Value::Object(x) = any[0].clone() {
                schema.remove("anyOf");
                for (k, v) in x {
                    schema.entry(k).or_insert(v);
                }
            }
        }
    }
    if let Some(Value::Array(types)) = schema.get("type") {
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if rest.len() == 1 {
            schema.insert("type".into(), rest[0].clone());
            if let Some(Value::Array(e)) = schema.get_mut("enum") {
                e.retain(|v| !v.is_null());
            }
        }
    }
    for (key, v) in schema.iter_mut() {
        let k = key.as_str();
        let subs: Vec<&mut Value> = if ONE.contains(&k) {
            vec![v]
        } else if LIST.contains(&k) {
            v.as_array_mut()
                .map(|a| a.iter_mut().collect())
                .unwrap_or_default()
        } else if MAP.contains(&k) {
            v.as_object_mut()
                .map(|m| m.values_mut().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for s in subs {
            if let Value::Object(m) = s {
                loosen(m);
            }
        }
    }
}

/// An output schema as `tools/list` publishes it: the answer's fields to
/// `depth` levels (their names and types); anything deeper is typed, not
/// described. Every answer the full
/// schema accepts, this one accepts (only constraints are dropped); the
/// registry checks answers against the full schema, which `tool_manifest`
/// publishes. Clients pay for every keyword of an output schema twice: in
/// the list's bytes and in validating each answer.
pub fn shallow(full: &Map<String, Value>, depth: usize) -> Map<String, Value> {
    let mut m = full.clone();
    inline_all_defs(&mut m);
    cut(&mut m, depth);
    drop_required(&mut m);
    m
}

/// `required` lists go too: which fields an answer always carries is in the
/// full schema; a validator of the published one pays for none of it.
fn drop_required(schema: &mut Map<String, Value>) {
    schema.remove("required");
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for p in props.values_mut() {
            if let Value::Object(m) = p {
                drop_required(m);
            }
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(Value::Object(m)) = schema.get_mut(k) {
            drop_required(m);
        }
    }
}

fn cut(schema: &mut Map<String, Value>, depth: usize) {
    if depth == 0 {
        // the type alone (with its nullability); for branches, the union of
        // their types; `{}` when a branch has none
        if !schema.contains_key("type") {
            if let Some(t) = branch_types(schema) {
                schema.insert("type".into(), t);
            }
        }
        schema.retain(|k, _| k == "type");
        return;
    }
    for (key, v) in schema.iter_mut() {
        let k = key.as_str();
        if ONE.contains(&k) || LIST.contains(&k) {
            // an array's items, a branch: the same value, the same depth
            let next = if k == "additionalProperties" {
                depth - 1
            } else {
                depth
            };
            match v {
                Value::Object(m) => cut(m, next),
                Value::Array(a) => a.iter_mut().for_each(|x| {
                    if let Value::Object(m) = x {
                        cut(m, next)
                    }
                }),
                _ => {}
            }
        } else if k == "properties" {
            if let Value::Object(props) = v {
                for p in props.values_mut() {
                    if let Value::Object(m) = p {
                        cut(m, depth - 1);
                    }
                }
            }
        }
    }
    // a branch list whose branches were all cut to the same bare type
    for k in ["anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = schema.get(k) {
            if a.iter()
                .any(|b| b.as_object().is_some_and(|m| m.is_empty()))
            {
                schema.remove(k); // one branch accepts anything: so does the list
            }
        }
    }
}

/// The union of the types of `anyOf`/`oneOf` branches, when each has one.
fn branch_types(schema: &Map<String, Value>) -> Option<Value> {
    let branches = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))?
        .as_array()?;
    let mut all: Vec<Value> = Vec::new();
    for b in branches {
        match b.get("type")? {
            Value::String(t) => all.push(json!(t)),
            Value::Array(ts) => all.extend(ts.iter().cloned()),
            _ => return None,
        }
    }
    let mut uniq: Vec<Value> = Vec::new();
    for t in all {
        if !uniq.contains(&t) {
            uniq.push(t);
        }
    }
    Some(if uniq.len() == 1 {
        uniq.remove(0)
    } else {
        Value::Array(uniq)
    })
}

/// Inlines every non-recursive definition wherever it is referenced.
fn inline_all_defs(schema: &mut Map<String, Value>) {
    let Some(Value::Object(defs)) = schema.get("$defs").cloned() else {
        return;
    };
    let mut kept = Map::new();
    for (name, body) in &defs {
        let mut own = std::collections::BTreeMap::from([(name.clone(), 0)]);
        count_refs(body, &mut own);
        if own[name] > 0 {
            kept.insert(name.clone(), body.clone());
        }
    }
    schema.remove("$defs");
    // definitions may refer to each other: repeat until no ref is left
    for _ in 0..16 {
        let mut changed = false;
        for (name, body) in &defs {
            if kept.contains_key(name) {
                continue;
            }
            let target = format!("#/$defs/{name}");
            while replace_ref(schema, &target, body) {
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    if !kept.is_empty() {
        schema.insert("$defs".into(), Value::Object(kept));
    }
}

/// Replaces every `{"$ref": "#/$defs/X"}` whose definition is referenced
/// exactly once (and does not refer to itself) by the definition, and drops
/// the definition. Repeats until nothing changes (inlining can make another
/// definition single-use).
fn inline_single_use_defs(schema: &mut Map<String, Value>) {
    loop {
        let Some(Value::Object(defs)) = schema.get("$defs") else {
            return;
        };
        let mut counts: std::collections::BTreeMap<String, usize> =
            defs.keys().map(|k| (k.clone(), 0)).collect();
        count_refs(&Value::Object(schema.clone()), &mut counts);
        let once: Vec<String> = counts
            .into_iter()
            .filter(|(name, n)| {
                *n == 1 && {
                    let mut own = std::collections::BTreeMap::from([(name.clone(), 0)]);
                    count_refs(&defs[name], &mut own);
                    own[name] == 0
                }
            })
            .map(|(name, _)| name)
            .collect();
        let Some(name) = once.into_iter().next() else {
            return;
        };
        let Some(Value::Object(defs)) = schema.get_mut("$defs") else {
            return;
        };
        let Some(body) = defs.remove(&name) else {
            return;
        };
        if defs.is_empty() {
            schema.remove("$defs");
        }
        let target = format!("#/$defs/{name}");
        replace_ref(schema, &target, &body);
    }
}

fn count_refs(v: &Value, counts: &mut std::collections::BTreeMap<String, usize>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                if k == "$ref" {
                    if let Some(name) = val.as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
                        if let Some(n) = counts.get_mut(name) {
                            *n += 1;
                        }
                    }
                } else {
                    count_refs(val, counts);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| count_refs(x, counts)),
        _ => {}
    }
}

/// Replaces the one object holding `"$ref": target` by `body` merged with
/// that object's other keywords (a `description` beside a `$ref`).
fn replace_ref(m: &mut Map<String, Value>, target: &str, body: &Value) -> bool {
    if m.get("$ref").and_then(Value::as_str) == Some(target) {
        m.remove("$ref");
        if let Value::Object(b) = body {
            for (k, v) in b {
                m.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        return true;
    }
    for v in m.values_mut() {
        if replace_in(v, target, body) {
            return true;
        }
    }
    false
}

fn replace_in(v: &mut Value, target: &str, body: &Value) -> bool {
    match v {
        Value::Object(m) => replace_ref(m, target, body),
        Value::Array(a) => a.iter_mut().any(|x| replace_in(x, target, body)),
        _ => false,
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

    /// The published output view accepts everything the full schema
    /// accepts; the model's input view leaves out bounds and the optional
    /// `null`, never meaning.
    #[test]
    fn published_views_keep_meaning_and_drop_only_costs() {
        let mut full = json!({
            "title": "Out",
            "type": "object",
            "$defs": {
                "Status": {"description": "rust docs", "type": "string", "enum": ["a", "b"]},
                "Entry": {"type": "object", "properties": {
                    "id": {"type": "string", "minLength": 1, "format": "id"},
                    "status": {"$ref": "#/$defs/Status"},
                    "n": {"type": "integer", "format": "uint", "minimum": 0, "maximum": 9}
                }, "required": ["id", "status"]}
            },
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/Entry"}},
                "first": {"anyOf": [{"$ref": "#/$defs/Entry"}, {"type": "null"}]},
                "mode": {"anyOf": [{"oneOf": [
                    {"type": "string", "const": "x", "description": "the x way"},
                    {"type": "string", "const": "y"}
                ]}, {"type": "null"}]},
                "state": {"$ref": "#/$defs/Status"},
                "count": {"type": ["integer", "null"], "minimum": 1, "maximum": 5}
            },
            "required": ["items"],
            "additionalProperties": false
        });
        let m = full.as_object_mut().unwrap();
        compact(m, Purpose::Input);
        let input = Value::Object(m.clone());
        // no generator noise, the single-use Status is still shared (used
        // twice), `mode` is one enum with its notes, bounds kept
        assert!(input.get("title").is_none(), "{input}");
        assert!(input["$defs"]["Status"].get("description").is_none());
        assert_eq!(input["properties"]["mode"]["enum"], json!(["x", "y", null]));
        assert_eq!(input["properties"]["mode"]["description"], "x: the x way");
        assert_eq!(input["properties"]["count"]["maximum"], 5);
        let models = Value::Object(for_models(input.as_object().unwrap()));
        assert_eq!(models["properties"]["count"], json!({"type": "integer"}));
        assert_eq!(models["properties"]["mode"]["enum"], json!(["x", "y"]));
        let out = Value::Object(shallow(input.as_object().unwrap(), 1));
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "items": {"type": "array"},
                    "first": {"type": ["object", "null"]},
                    "mode": {"type": ["string", "null"]},
                    "state": {"type": "string"},
                    "count": {"type": ["integer", "null"]}
                },
                "additionalProperties": false
            })
        );
        // every value the full schema accepts, the published views accept
        let accepted = [
            json!({"items": []}),
            json!({"items": [{"id": "a", "status": "b", "n": 3}], "first": null, "mode": "y", "state": "a", "count": 2}),
            json!({"items": [], "first": {"id": "z", "status": "a"}, "mode": null, "count": null}),
        ];
        let refused = [
            json!({"items": [{"id": "", "status": "a"}]}),
            json!({"items": [], "count": 6}),
            json!({"items": [], "state": "c"}),
        ];
        let full_v = jsonschema::validator_for(&input).unwrap();
        let out_v = jsonschema::validator_for(&out).unwrap();
        let models_v = jsonschema::validator_for(&models).unwrap();
        for a in &accepted {
            assert!(full_v.is_valid(a), "{a}");
            assert!(out_v.is_valid(a), "{out} refused {a}");
        }
        // a model is not told about the optional `null` (the registry
        // still takes it): what it may write without null, the registry takes
        assert!(models_v.is_valid(
            &accepted[1]
                .as_object()
                .map(|m| {
                    let mut m = m.clone();
                    m.retain(|_, v| !v.is_null());
                    Value::Object(m)
                })
                .unwrap()
        ));
        assert!(!models_v.is_valid(&json!({"items": [], "first": null})));
        for r in &refused {
            assert!(!full_v.is_valid(r), "the full schema keeps its bounds: {r}");
        }
        // the model's view leaves out bounds, not meaning
        let mv = jsonschema::validator_for(&models).unwrap();
        assert!(mv.is_valid(&json!({"items": [], "count": 6})));
        assert!(!mv.is_valid(&json!({"items": [], "state": "c"})));
        assert!(!mv.is_valid(&json!({"items": [], "unknown": 1})));
    }
}
