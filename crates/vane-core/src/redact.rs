//! Masks anything that looks like a secret before it is written anywhere: the
//! operations log (every field), stderr logs, error messages in tool results,
//! exports, checkpoints and stored artifacts, and the free text a tool stores
//! (context, notes, decisions). One layer, used by every writer.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

fn patterns() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // ASCII classes and scoped case-insensitivity: a Unicode-aware,
        // globally case-insensitive pattern takes milliseconds to compile
        Regex::new(concat!(
            r"(",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.)*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
            r"|(?-u:\b)sk-(ant-)?[A-Za-z0-9_\-]{16,}",
            r"|(?-u:\b)gh[pousr]_[A-Za-z0-9]{20,}",
            r"|(?-u:\b)github_pat_[A-Za-z0-9_]{20,}",
            r"|(?-u:\b)xox[abprs]-[A-Za-z0-9\-]{10,}",
            r"|(?-u:\b)AKIA[0-9A-Z]{16}(?-u:\b)",
            r"|(?-u:\b)AIza[0-9A-Za-z_\-]{30,}",
            r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
            r"|(?-u:\b)[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+[A-Za-z0-9._~+/\-]{12,}=*",
            r"|(?-u:\b)(?i-u:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|client[_\-]?secret|auth)(?-u:\b)([ \t]*[=:][ \t]*|\x22[ \t]*:[ \t]*\x22)[^ \t\r\n\x22',;]{4,}",
            r")"
        ))
        .expect("redaction patterns are valid")
    })
}

/// Returns `text` with secrets replaced by `[REDACTED]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    patterns().replace_all(text, "[REDACTED]")
}

/// Redacts every string in `v`, nested ones included (keys too).
pub fn redact_value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        Value::Object(m) => {
            let needs_key = m.keys().any(|k| matches!(redact(k), Cow::Owned(_)));
            if needs_key {
                let old = std::mem::take(m);
                for (k, mut val) in old {
                    redact_value(&mut val);
                    m.insert(redact(&k).into_owned(), val);
                }
            } else {
                m.values_mut().for_each(redact_value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_plain_text_kept() {
        for s in [
            "key sk-ant-REDACTMEREDACTMEREDACTME1234 here",
            "token=abcd1234efgh",
            "Authorization: Bearer abcdefghijklmnop.qrs",
            "ghp_0123456789abcdefghijABCDEFGHIJ",
            "AKIAIOSFODNN7EXAMPLE", // vane:allow-secret
            "{\"api_key\": \"s3cr3t-value\"}",
            "password: hunter22",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", // vane:allow-secret
        ] {
            let r = redact(s);
            assert!(r.contains("[REDACTED]"), "{s} -> {r}");
            for secret in [
                "REDACTME",
                "abcd1234efgh",
                "abcdefghijklmnop",
                "0123456789abcdef",
                "IOSFODNN7",
                "s3cr3t",
                "hunter22",
                "MIIE",
            ] {
                assert!(!r.contains(secret), "{s} -> {r}");
            }
        }
        assert_eq!(
            redact("task T1 moved to done by agent-1"),
            "task T1 moved to done by agent-1"
        );
        let mut v = serde_json::json!({"a": ["ok", {"b": "token=abcd1234efgh"}]});
        redact_value(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["ok", {"b": "[REDACTED]"}]}));
    }
}
