//! The event schema of the operations log (version [`SCHEMA_VERSION`]).
//!
//! Every line is one JSON object with the common fields
//! `{"v", "ts", "kind", "process": {"role", "version", "pid"}}` and the
//! fields of its kind:
//!
//! | kind | fields |
//! |---|---|
//! | `tool_call` | `tool`, `ok`, `error_code`, `error_message` (errors only, redacted), `duration_us`, `request_id`, `session_id`, `task_id`, `trace_id`, `span_id`, `args_bytes`, `args_hash`, `result_bytes`, `result_hash` (hashes are `xxh3:` + 16 hex digits) |
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
            ts: now_ts(),
            kind,
            process: process.clone(),
            fields: Map::new(),
        }
    }

    /// Adds a field. Strings are redacted when the line is written (on the
    /// writer thread, off the caller's path).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn to_line(&self) -> Vec<u8> {
        let mut redacted = self.clone();
        for v in redacted.fields.values_mut() {
            crate::redact::redact_value(v);
        }
        let mut line = serde_json::to_vec(&redacted).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The hot-path event: built by the caller without allocating a map,
/// serialised (and redacted) on the writer thread.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCall {
    pub tool: String,
    pub ok: bool,
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub duration_us: u64,
    pub request_id: String,
    pub session_id: String,
    pub task_id: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    pub args_bytes: usize,
    pub args_hash: String,
    pub result_bytes: usize,
    pub result_hash: String,
}

/// `xxh3:` + the 64-bit XXH3 of `bytes` in hex: cheap enough for every call.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

#[derive(Serialize)]
struct ToolCallLine<'a> {
    v: u32,
    ts: &'a str,
    kind: &'static str,
    process: &'a ProcessInfo,
    #[serde(flatten)]
    call: &'a ToolCall,
}

impl ToolCall {
    pub fn to_line(&self, ts: &str, process: &ProcessInfo) -> Vec<u8> {
        // every text field a client chose (the tool name, ids, the task) or
        // a tool wrote (the error) goes through redaction; a copy is made
        // only when something was masked
        let r = |s: &str| match crate::redact::redact(s) {
            std::borrow::Cow::Owned(o) => Some(o),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let (tool, code, msg) = (
            r(&self.tool),
            self.error_code.as_deref().and_then(r),
            self.error_message.as_deref().and_then(r),
        );
        let (req, session, task) = (
            r(&self.request_id),
            r(&self.session_id),
            self.task_id.as_deref().and_then(r),
        );
        let masked = [&tool, &code, &msg, &req, &session, &task]
            .iter()
            .any(|x| x.is_some());
        let redacted = masked.then(|| {
            let mut c = self.clone();
            c.tool = tool.unwrap_or(c.tool);
            c.error_code = code.or(c.error_code);
            c.error_message = msg.or(c.error_message);
            c.request_id = req.unwrap_or(c.request_id);
            c.session_id = session.unwrap_or(c.session_id);
            c.task_id = task.or(c.task_id);
            c
        });
        let call = redacted.as_ref().unwrap_or(self);
        let mut line = serde_json::to_vec(&ToolCallLine {
            v: SCHEMA_VERSION,
            ts,
            kind: "tool_call",
            process,
            call,
        })
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

pub fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
