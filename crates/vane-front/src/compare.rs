//! Comparing the active worker's answer with the canary's: structured content
//! and `isError`, after dropping volatile fields (timestamps, durations,
//! per-process counters) named by `[runtime.shadow] ignore_fields`.

use serde_json::Value;

/// Field-name patterns: `name`, `prefix*`, `*suffix`.
#[derive(Debug, Clone)]
pub struct Ignore(Vec<String>);

impl Ignore {
    pub fn new(patterns: &[String]) -> Ignore {
        Ignore(patterns.to_vec())
    }

    /// `key` at JSON pointer `path`: patterns starting with `/` are exact
    /// pointers; the others match a field name at any depth.
    fn matches(&self, key: &str, path: &str) -> bool {
        self.0.iter().any(|p| {
            if p.starts_with('/') {
                p == path
            } else if let Some(suffix) = p.strip_prefix('*') {
                key.ends_with(suffix)
            } else if let Some(prefix) = p.strip_suffix('*') {
                key.starts_with(prefix)
            } else {
                key == p
            }
        })
    }

    /// A copy without the ignored fields.
    pub fn normalise(&self, v: &Value) -> Value {
        self.normalise_at(v, &mut String::new())
    }

    fn normalise_at(&self, v: &Value, at: &mut String) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    if !self.matches(k, at) {
                        out.insert(k.clone(), self.normalise_at(x, at));
                    }
                    at.truncate(len);
                }
                Value::Object(out)
            }
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&i.to_string());
                    out.push(self.normalise_at(x, at));
                    at.truncate(len);
                }
                Value::Array(out)
            }
            other => other.clone(),
        }
    }
}

/// The first place two values differ, as a JSON pointer, with both sides.
pub fn first_difference(a: &Value, b: &Value) -> Option<(String, Value, Value)> {
    fn walk(a: &Value, b: &Value, at: &mut String) -> Option<(String, Value, Value)> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    let r = match y.get(k) {
                        Some(vb) => walk(va, vb, at),
                        None => Some((at.clone(), va.clone(), Value::Null)),
                    };
                    if r.is_some() {
                        return r;
                    }
                    at.truncate(len);
                }
                for (k, vb) in y {
                    if !x.contains_key(k) {
                        return Some((format!("{at}/{k}"), Value::Null, vb.clone()));
                    }
                }
                None
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    if let Some(r) = walk(va, vb, at) {
                        return Some(r);
                    }
                    at.truncate(len);
                }
                if x.len() != y.len() {
                    return Some((
                        format!("{at}/length"),
                        Value::from(x.len()),
                        Value::from(y.len()),
                    ));
                }
                None
            }
            _ if a == b => None,
            _ => Some((at.clone(), a.clone(), b.clone())),
        }
    }
    walk(a, b, &mut String::new())
}

fn clip(v: Value) -> Value {
    let s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Value::String(format!("{}…", &s[..end]))
    } else {
        v
    }
}

/// Compares two answers (structured content + `isError`); `None` when equal
/// after normalising, otherwise `{path, active, canary}` (values clipped).
pub fn compare(
    ignore: &Ignore,
    active: (&Option<Value>, bool),
    canary: (&Option<Value>, bool),
) -> Option<Value> {
    if active.1 != canary.1 {
        return Some(serde_json::json!({
            "path": "isError", "active": active.1, "canary": canary.1,
        }));
    }
    let a = ignore.normalise(active.0.as_ref().unwrap_or(&Value::Null));
    let b = ignore.normalise(canary.0.as_ref().unwrap_or(&Value::Null));
    first_difference(&a, &b).map(|(path, x, y)| {
        serde_json::json!({ "path": if path.is_empty() { "/".to_string() } else { path }, "active": clip(x), "canary": clip(y) })
    })
}

/// Where an answer says which store revision it read (`status`'s
/// `/roadmap/revision`, or a top-level `revision`).
const REVISION_AT: [&str; 2] = ["/roadmap/revision", "/revision"];

fn revision_of(v: &Option<Value>) -> Option<u64> {
    let v = v.as_ref()?;
    REVISION_AT
        .iter()
        .find_map(|p| v.pointer(p).and_then(Value::as_u64))
}

/// What comparing two answers found.
#[derive(Debug, Clone, PartialEq)]
pub enum Judged {
    Same,
    /// a real difference: `{path, active, canary}`
    Differ(Value),
    /// the two reads saw different store revisions (a write landed between
    /// them) and their answers differ beyond the revision itself: not
    /// comparable, neither same nor different
    Moved,
}

/// [`compare`], aware of the store moving between the two reads: when the
/// answers name different revisions, the revisions themselves are not a
/// difference, and any other difference makes the pair [`Judged::Moved`].
pub fn judge(
    ignore: &Ignore,
    active: (&Option<Value>, bool),
    canary: (&Option<Value>, bool),
) -> Judged {
    let (ra, rc) = (revision_of(active.0), revision_of(canary.0));
    // an error on one side only is never explained by the store moving
    if ra == rc || active.1 != canary.1 {
        return match compare(ignore, active, canary) {
            None => Judged::Same,
            Some(d) => Judged::Differ(d),
        };
    }
    let strip = |v: &Option<Value>| {
        let mut v = v.clone();
        if let Some(x) = v.as_mut() {
            for p in REVISION_AT {
                if let Some(r) = x.pointer_mut(p) {
                    *r = Value::Null;
                }
            }
        }
        v
    };
    let (a, c) = (strip(active.0), strip(canary.0));
    match compare(ignore, (&a, active.1), (&c, canary.1)) {
        None => Judged::Same,
        Some(_) => Judged::Moved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_store_that_moved_between_the_reads_is_not_a_difference() {
        let ig = Ignore::new(&[]);
        let a = Some(json!({"roadmap": {"revision": 7, "tasks": 3}}));
        let b = Some(json!({"roadmap": {"revision": 9, "tasks": 3}}));
        assert_eq!(judge(&ig, (&a, false), (&b, false)), Judged::Same);
        let c = Some(json!({"roadmap": {"revision": 9, "tasks": 4}}));
        assert_eq!(judge(&ig, (&a, false), (&c, false)), Judged::Moved);
        // at the same revision, the same difference is real
        let d = Some(json!({"roadmap": {"revision": 7, "tasks": 4}}));
        assert!(matches!(
            judge(&ig, (&a, false), (&d, false)),
            Judged::Differ(_)
        ));
        assert!(matches!(
            judge(&ig, (&a, false), (&b, true)),
            Judged::Differ(_)
        ));
        // answers without a revision are compared as they are
        let (x, y) = (Some(json!({"n": 1})), Some(json!({"n": 2})));
        assert!(matches!(
            judge(&ig, (&x, false), (&y, false)),
            Judged::Differ(_)
        ));
    }

    #[test]
    fn volatile_fields_are_ignored_and_real_differences_found() {
        let ig = Ignore::new(&["*_at".into(), "recent_calls".into(), "took_ms".into()]);
        let a = Some(
            json!({"tasks": [{"id": "A", "updated_at": "1"}], "recent_calls": {"n": 3}, "took_ms": 4}),
        );
        let b = Some(
            json!({"tasks": [{"id": "A", "updated_at": "2"}], "recent_calls": {"n": 9}, "took_ms": 7}),
        );
        assert_eq!(compare(&ig, (&a, false), (&b, false)), None);
        // a pointer ignores one place only
        let ig2 = Ignore::new(&["/version".into()]);
        let (x, y) = (
            Some(json!({"version": "1", "task": {"version": 1}})),
            Some(json!({"version": "2", "task": {"version": 1}})),
        );
        assert_eq!(compare(&ig2, (&x, false), (&y, false)), None);
        let z = Some(json!({"version": "2", "task": {"version": 2}}));
        assert_eq!(
            compare(&ig2, (&x, false), (&z, false)).unwrap()["path"],
            "/task/version"
        );
        let c = Some(json!({"tasks": [{"id": "B", "updated_at": "2"}]}));
        let d = compare(&ig, (&a, false), (&c, false)).unwrap();
        assert_eq!(d["path"], "/tasks/0/id");
        assert_eq!(d["active"], "A");
        assert_eq!(d["canary"], "B");
        assert_eq!(
            compare(&ig, (&a, false), (&a, true)).unwrap()["path"],
            "isError"
        );
        let e = Some(json!({"tasks": [{"id": "A"}, {"id": "C"}]}));
        assert_eq!(
            compare(&ig, (&a, false), (&e, false)).unwrap()["path"],
            "/tasks/length"
        );
        let f = Some(json!({"tasks": [{"id": "A"}], "extra": 1}));
        assert_eq!(
            compare(&ig, (&a, false), (&f, false)).unwrap()["path"],
            "/extra"
        );
    }
}
