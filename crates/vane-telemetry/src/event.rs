//! The event schema of the operations log (version [`SCHEMA_VERSION`]).
//!
//! Every line is one JSON object with the common fields
//! `{"v", "ts", "kind", "process": {"role", "version", "pid"}}` and the
//! fields of its kind:
//!
//! | kind | fields |
//! |---|---|
//! | `tool_call` | `tool`, `ok`, `error_code`, `duration_us`, `request_id`, `session_id`, `task_id`, `trace_id`, `span_id`, `args_bytes`, `args_sha256`, `result_bytes`, `result_sha256` |
//! | `task` | `task_id`, `from`, `to`, `actor`, `forced`, `version` |
//! | `critic` | `critic`, `status`, `exit_code`, `duration_ms`, `remediation_task` |
//! | `flag` | `key`, `value`, `previous`, `actor` |
//! | `process` | `event` (`start` / `stop` / `crash`), `detail` |
//! | `alert` | `alert`, `message`, `value`, `threshold` |
//!
//! Arguments and results are never logged verbatim: sizes and hashes only.
//! Text fields pass through [`crate::redact`].

use serde::Serialize;
use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u32 = 1;

/// Who wrote an event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessInfo {
    /// `server` today; `front` / `worker` / `canary` in the blue/green runtime
    pub role: String,
    pub version: String,
    pub pid: u32,
}

impl ProcessInfo {
    pub fn current(role: &str, version: &str) -> ProcessInfo {
        ProcessInfo {
            role: role.into(),
            version: version.into(),
            pid: std::process::id(),
        }
    }
}

/// One event; `fields` are the kind-specific fields.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub v: u32,
    pub ts: String,
    pub kind: &'static str,
    pub process: ProcessInfo,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    pub fn new(kind: &'static str, process: &ProcessInfo) -> Event {
        Event {
            v: SCHEMA_VERSION,
            ts: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind,
            process: process.clone(),
            fields: Map::new(),
        }
    }

    /// Adds a field; strings are redacted.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        let v = match value.into() {
            Value::String(s) => Value::String(crate::redact::redact(&s).into_owned()),
            other => other,
        };
        self.fields.insert(key.to_string(), v);
        self
    }

    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}
