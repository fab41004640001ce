//! The front: the process the MCP client talks to. It forwards every request
//! to the active worker, retries what is safe to retry when a worker dies or
//! faults, shadows read-only calls to a dry-run canary, switches workers
//! (promote / rollback) with the previous one kept as a hot standby, and
//! rolls back by itself when a new worker misbehaves.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest, ContentBlock,
    Implementation, ListResourceTemplatesRequest, ListResourceTemplatesResult,
    ListResourcesRequest, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig, ServerResult, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use vane_core::config::Runtime;
use vane_core::contract::health::Decision;
use vane_core::contract::meta;
use vane_core::{ErrorCode, VaneError};
use vane_tools::server::{error_result, INSTRUCTIONS};
use vane_tools::ToolCtx;

mod admin;
mod calls;
mod direct;
mod rollout;
mod session;
mod workers;

pub use rollout::Reason;
use rollout::WatchState;
pub use session::{Access, FrontServer, Session};

use crate::compare::Ignore;
use crate::worker::{rss_of, CallError, Role, Spec, Timing, Worker, WorkerEvent};

/// Tools whose latency is the work itself (not counted toward the p95 SLO,
/// and given the long timeout).
const LONG_TOOLS: [&str; 2] = ["cmd_run", "critics_run"];
const MAX_DECISIONS: usize = 50;

#[derive(Default)]
struct Routes {
    active: Option<Arc<Worker>>,
    standby: Option<(Arc<Worker>, Instant)>,
    canary: Option<Arc<Worker>>,
    failed: Vec<Arc<Worker>>,
    watch: Option<WatchState>,
    restarting: bool,
}

/// A forwarded call whose metrics are still to be recorded.
pub struct CallDone {
    name: String,
    started: Instant,
}

pub struct Front {
    pub ctx: Arc<ToolCtx>,
    /// the front's own tools, through the registry's pipeline
    tools: vane_tools::registry::Registry,
    /// itself, for the tools' handlers
    me: std::sync::Weak<Front>,
    /// the admin tools of this build's workers (the active worker's own
    /// marks in tools/list count too)
    worker_admin: std::collections::HashSet<&'static str>,
    pub(crate) cfg: Runtime,
    base: Spec,
    timing: Timing,
    routes: Mutex<Routes>,
    active_tx: watch::Sender<Option<Arc<Worker>>>,
    next_id: AtomicU64,
    /// the clients' sessions (notifications go to each)
    sessions: Mutex<Vec<std::sync::Weak<Session>>>,
    /// the stdio client's session (the direct path serves it)
    stdio: std::sync::OnceLock<Arc<Session>>,
    session_seq: AtomicU64,
    events: mpsc::UnboundedSender<WorkerEvent>,
    decisions: Mutex<VecDeque<Decision>>,
    shadow_slots: Arc<Semaphore>,
    ignore: Ignore,
    started: Instant,
    key_seq: AtomicU64,
    key_prefix: String,
    restarts: AtomicU64,
    pub socket: Mutex<Option<PathBuf>>,
    /// the client's stdout, shared by the direct path's threads and rmcp
    pub(crate) client_out: std::sync::OnceLock<Arc<crate::pipes::Out>>,
    /// the event loop, for work the direct path's threads hand over
    rt: tokio::runtime::Handle,
    /// calls running as tasks, by the client's request id (for cancelling)
    tasks: Mutex<HashMap<String, CancellationToken>>,
    /// calls on the direct path, by the client's request id
    direct: Mutex<HashMap<String, DirectEntry>>,
}

/// Where a direct-path call waits, and until when.
struct DirectEntry {
    worker: Arc<Worker>,
    n: u64,
    deadline: Instant,
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn error_code(r: &CallToolResult) -> Option<&str> {
    if r.is_error != Some(true) {
        return None;
    }
    r.structured_content
        .as_ref()
        .and_then(|v| v["error"]["code"].as_str())
}

fn err(code: ErrorCode, msg: impl Into<String>) -> VaneError {
    VaneError::new(code, msg)
}

impl Front {
    /// `binary`: what workers run (normally this very executable).
    pub fn new(
        ctx: Arc<ToolCtx>,
        binary: PathBuf,
        state_dir: Option<PathBuf>,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> Arc<Front> {
        let cfg = ctx.config.runtime.clone();
        let timing = Timing {
            ready_timeout: ms(cfg.ready_timeout_ms),
            ping_interval: ms(cfg.ping_interval_ms),
            ping_timeout: ms(cfg.ping_timeout_ms),
            ping_failures_to_open: cfg.ping_failures_to_open,
        };
        let base = Spec {
            binary,
            dry_run: false,
            workspace: ctx.ws.root.clone(),
            state_dir,
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Arc::new_cyclic(|me: &std::sync::Weak<Front>| Front {
            tools: vane_tools::front_tools::registry(me.clone()),
            me: me.clone(),
            worker_admin: vane_tools::handlers::registry()
                .tools()
                .iter()
                .filter(|d| d.admin)
                .map(|d| d.name)
                .collect(),
            ignore: Ignore::new(&cfg.shadow.ignore_fields),
            shadow_slots: Arc::new(Semaphore::new(cfg.shadow.max_in_flight.max(1))),
            cfg,
            base,
            timing,
            routes: Mutex::new(Routes::default()),
            active_tx: watch::channel(None).0,
            next_id: AtomicU64::new(1),
            sessions: Mutex::new(Vec::new()),
            stdio: std::sync::OnceLock::new(),
            session_seq: AtomicU64::new(0),
            events,
            decisions: Mutex::new(VecDeque::new()),
            started: Instant::now(),
            key_seq: AtomicU64::new(0),
            key_prefix: format!("front:{}:{:x}", std::process::id(), nanos),
            restarts: AtomicU64::new(0),
            socket: Mutex::new(None),
            client_out: std::sync::OnceLock::new(),
            rt: tokio::runtime::Handle::current(),
            tasks: Mutex::new(HashMap::new()),
            direct: Mutex::new(HashMap::new()),
            ctx,
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: &str, fields: Value) {
        let t = &self.ctx.telemetry;
        let mut ev = t.event("runtime").with("event", event);
        if let Value::Object(m) = fields {
            for (k, v) in m {
                ev = ev.with(&k, v);
            }
        }
        t.emit(ev);
    }

    /// Records an automatic or operator decision: operations log + memory.
    fn decide(&self, action: &str, fields: Value) {
        tracing::warn!(target: "vane::front", "{action}: {fields}");
        let d = Decision {
            at: now_rfc3339(),
            action: action.to_string(),
            fields: match &fields {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            },
        };
        self.emit(action, fields);
        let mut q = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_DECISIONS {
            q.pop_front();
        }
        q.push_back(d);
    }

    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
