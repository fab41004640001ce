//! vane-telemetry: the signals every later decision (rollback, budgets,
//! upgrades) is taken from.
//!
//! - [`opslog`]: the operations log, `.vane/telemetry/operations.jsonl` — one
//!   versioned JSON event per line, written by a background thread from a
//!   bounded queue (a tool call never waits on the disk), whole lines under a
//!   file lock (several processes never interleave), size-based rotation.
//! - [`redact`]: secrets are masked wherever text is logged.
//! - [`metrics`]: Prometheus exposition (`/metrics`) and a recent-window view
//!   (call rate, error rate, p95) for `status`.
//! - [`otel`]: OpenTelemetry spans and the `mcp.server.operation.duration`
//!   histogram, exported over OTLP/HTTP when configured; W3C `traceparent`
//!   from a request's `_meta` is honoured as the parent.
//! - [`summary`] and [`tail`]: reading the log back.
//!
//! It must never block or fail a tool call: every error here is logged to
//! stderr and swallowed.
#![forbid(unsafe_code)]

pub mod event;
pub mod metrics;
pub mod opslog;
pub mod otel;
pub mod redact;
pub mod summary;
pub mod tail;

pub use event::{Event, ProcessInfo, SCHEMA_VERSION};
pub use opslog::OpsLog;

use std::sync::Arc;

/// Everything a server process records: the log, metrics, spans.
pub struct Telemetry {
    /// false: `[telemetry] enabled = false` — no log, no metrics, no spans
    pub enabled: bool,
    pub log: Option<Arc<OpsLog>>,
    pub metrics: Arc<metrics::Metrics>,
    pub otel: otel::Otel,
    pub process: ProcessInfo,
    /// identifies one client connection (stdio has no session header)
    pub session_id: String,
}

impl Telemetry {
    /// No log, no export; metrics are still kept in memory.
    pub fn disabled(process: ProcessInfo) -> Telemetry {
        Telemetry {
            enabled: false,
            log: None,
            metrics: Arc::new(metrics::Metrics::new()),
            otel: otel::Otel::disabled(),
            process,
            session_id: new_session_id(),
        }
    }

    pub fn event(&self, kind: &'static str) -> Event {
        Event::new(kind, &self.process)
    }

    pub fn emit(&self, ev: Event) {
        if let Some(l) = &self.log {
            l.emit(ev);
        }
    }

    pub fn emit_tool_call(&self, call: event::ToolCall) {
        if let Some(l) = &self.log {
            l.emit_tool_call(call);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.log.as_ref().map(|l| l.dropped()).unwrap_or(0)
    }

    /// Flushes the log and the exporters.
    pub fn shutdown(&self) {
        if let Some(l) = &self.log {
            l.shutdown();
        }
        self.otel.shutdown();
    }
}

/// A random 128-bit id in hex.
pub fn new_session_id() -> String {
    use opentelemetry_sdk::trace::IdGenerator;
    opentelemetry_sdk::trace::RandomIdGenerator::default()
        .new_trace_id()
        .to_string()
}
