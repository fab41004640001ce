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
    ServerConfig, ServerResult, Tool, ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;
use vane_core::config::Runtime;
use vane_core::{ErrorCode, VaneError};
use vane_tools::server::{error_result, INSTRUCTIONS};
use vane_tools::ToolCtx;

mod direct;

use crate::compare::{compare, Ignore};
use crate::worker::{rss_of, CallError, Role, Spec, Timing, Worker, WorkerEvent};

/// Tools whose latency is the work itself (not counted toward the p95 SLO,
/// and given the long timeout).
const LONG_TOOLS: [&str; 2] = ["cmd_run", "critics_run"];
/// The front's own admin tools (listed and callable when ADMIN_TOOLS is on).
pub const FRONT_TOOLS: [&str; 4] = [
    "worker_health",
    "route_switch",
    "upgrade_start",
    "upgrade_status",
];
const MAX_DECISIONS: usize = 50;

/// Why the front rolled back by itself: the metric, its value and the limit.
#[derive(Debug, Clone)]
pub struct Reason {
    pub metric: &'static str,
    pub value: Value,
    pub threshold: Value,
    pub detail: String,
}

struct WatchState {
    worker: u64,
    since: Instant,
    baseline_rss: u64,
    rss_over_since: Option<Instant>,
}

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
    pub(crate) cfg: Runtime,
    base: Spec,
    timing: Timing,
    routes: Mutex<Routes>,
    active_tx: watch::Sender<Option<Arc<Worker>>>,
    next_id: AtomicU64,
    client: Mutex<Option<Peer<RoleServer>>>,
    client_protocol: Mutex<Value>,
    /// the tail of `_meta["vane/client"]` as JSON text:
    /// `,"protocol_version":…,"session_id":…}`
    client_meta: Mutex<String>,
    /// the client finished the handshake: `tools/call` may take the direct path
    pub initialized: std::sync::atomic::AtomicBool,
    events: mpsc::UnboundedSender<WorkerEvent>,
    decisions: Mutex<VecDeque<Value>>,
    shadow_slots: Arc<Semaphore>,
    ignore: Ignore,
    listed: Mutex<Vec<String>>,
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

fn client_meta(protocol: &Value, session_id: &impl serde::Serialize) -> String {
    let v = json!({ "protocol_version": protocol, "session_id": session_id });
    // `{"protocol_version":…,"session_id":…}` → `,"protocol_version":…}`
    let s = v.to_string();
    format!(",{}", &s[1..])
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
        Arc::new(Front {
            ignore: Ignore::new(&cfg.shadow.ignore_fields),
            shadow_slots: Arc::new(Semaphore::new(cfg.shadow.max_in_flight.max(1))),
            cfg,
            base,
            timing,
            routes: Mutex::new(Routes::default()),
            active_tx: watch::channel(None).0,
            next_id: AtomicU64::new(1),
            client: Mutex::new(None),
            client_protocol: Mutex::new(Value::Null),
            client_meta: Mutex::new(client_meta(&Value::Null, &ctx.telemetry.session_id)),
            initialized: std::sync::atomic::AtomicBool::new(false),
            events,
            decisions: Mutex::new(VecDeque::new()),
            listed: Mutex::new(Vec::new()),
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
        let mut d = json!({ "at": now_rfc3339(), "action": action });
        if let (Value::Object(m), Value::Object(f)) = (&mut d, &fields) {
            for (k, v) in f {
                m.insert(k.clone(), v.clone());
            }
        }
        tracing::warn!(target: "vane::front", "{action}: {fields}");
        self.emit(action, fields);
        let mut q = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_DECISIONS {
            q.pop_front();
        }
        q.push_back(d);
    }

    pub fn decisions(&self) -> Vec<Value> {
        self.decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn spawn_worker(
        self: &Arc<Self>,
        spec: Spec,
    ) -> impl std::future::Future<Output = Result<Arc<Worker>, String>> + Send + 'static {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let timing = self.timing.clone();
        let events = self.events.clone();
        let front = self.clone();
        async move {
            let t0 = Instant::now();
            let r = Worker::spawn(id, spec.clone(), &timing, events).await;
            match &r {
                Ok(w) => front.emit(
                    "worker_ready",
                    json!({ "worker": id, "pid": w.pid, "binary": spec.binary.display().to_string(),
                            "dry_run": spec.dry_run, "version": w.version, "ready_us": t0.elapsed().as_micros() as u64 }),
                ),
                Err(e) => front.emit(
                    "worker_start_failed",
                    json!({ "worker": id, "binary": spec.binary.display().to_string(), "reason": e }),
                ),
            }
            r
        }
    }

    /// Starts a worker of `binary` and makes it active, retrying with backoff
    /// until one is ready. One restart runs at a time.
    pub async fn ensure_active(self: Arc<Self>, binary: PathBuf) {
        {
            let mut r = self.routes();
            if r.restarting || r.active.as_ref().is_some_and(|a| a.healthy()) {
                return;
            }
            r.restarting = true;
        }
        let mut delay = Duration::ZERO;
        loop {
            let spec = Spec {
                binary: binary.clone(),
                ..self.base.clone()
            };
            match self.spawn_worker(spec).await {
                Ok(w) => {
                    w.set_role(Role::Active);
                    {
                        let mut r = self.routes();
                        r.active = Some(w.clone());
                        r.restarting = false;
                    }
                    self.active_tx.send_replace(Some(w));
                    self.tools_maybe_changed().await;
                    return;
                }
                Err(e) => {
                    tracing::error!(target: "vane::front", "worker did not start: {e}");
                    delay = (delay * 2).clamp(ms(50), Duration::from_secs(5));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// The active worker once it is healthy, waiting for a replacement up to
    /// `deadline`.
    async fn wait_active(&self, deadline: Instant) -> Option<Arc<Worker>> {
        let mut rx = self.active_tx.subscribe();
        loop {
            if let Some(w) = rx.borrow_and_update().as_ref() {
                if w.healthy() {
                    return Some(w.clone());
                }
            }
            let wait = tokio::time::timeout_at(deadline.into(), rx.changed());
            match wait.await {
                Ok(Ok(())) => continue,
                // the sender lives as long as the front; a timeout ends the wait
                _ => {
                    // a broken active replaced without a new value: look once more
                    if let Some(w) = rx.borrow().as_ref().filter(|w| w.healthy()) {
                        return Some(w.clone());
                    }
                    return None;
                }
            }
        }
    }

    fn timeout_for(&self, tool: &str) -> Duration {
        if let Some(t) = self.cfg.tool_timeouts_ms.get(tool) {
            return ms(*t);
        }
        if LONG_TOOLS.contains(&tool) {
            ms(self.cfg.long_call_timeout_ms)
        } else {
            ms(self.cfg.call_timeout_ms)
        }
    }

    /// Another healthy worker to retry on after `w` faulted: the active one
    /// if traffic moved away from `w` meanwhile, else the standby.
    fn fallback(&self, w: &Worker) -> Option<Arc<Worker>> {
        let r = self.routes();
        match &r.active {
            Some(a) if a.id != w.id => Some(a.clone()).filter(|a| a.healthy()),
            Some(_) => r
                .standby
                .as_ref()
                .map(|s| s.0.clone())
                .filter(|s| s.healthy()),
            None => None,
        }
    }

    fn new_key(&self) -> String {
        format!(
            "{}:{}",
            self.key_prefix,
            self.key_seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// One client `tools/call` as a task (from rmcp or [`Front::spawn_call`]): the front's
    /// own tools, or forwarded (the client's request id, protocol version
    /// and the front's session go along in `_meta["vane/client"]`, so the
    /// worker logs and traces the client's request, not ours).
    pub async fn handle_call(
        self: &Arc<Self>,
        request: CallToolRequestParams,
        ct: CancellationToken,
        request_id: String,
    ) -> CallToolResult {
        let (r, done) = self.handle_call_deferred(request, ct, request_id).await;
        if let Some(done) = done {
            self.finish_call(done, &r);
        }
        r
    }

    /// Records a finished call's metrics (see [`Front::handle_call_deferred`]).
    pub fn finish_call(&self, done: CallDone, r: &CallToolResult) {
        self.ctx.telemetry.metrics.call_finished(
            &done.name,
            r.is_error != Some(true),
            error_code(r),
            done.started.elapsed(),
        );
    }

    /// [`Front::handle_call`] without its metrics, which the caller records
    /// with [`Front::finish_call`] once the answer is written.
    pub async fn handle_call_deferred(
        self: &Arc<Self>,
        mut request: CallToolRequestParams,
        ct: CancellationToken,
        request_id: String,
    ) -> (CallToolResult, Option<CallDone>) {
        self.annotate(&mut request, request_id);
        if FRONT_TOOLS.contains(&request.name.as_ref()) {
            let name = request.name.to_string();
            return (self.front_tool(&name, request.arguments).await, None);
        }
        self.ctx.telemetry.metrics.call_started();
        let started = Instant::now();
        let name = request.name.to_string();
        let r = self.forward_call(request, ct).await;
        (r, Some(CallDone { name, started }))
    }

    /// The client's request id, protocol version and the front's session go
    /// along in `_meta["vane/client"]`; a progress token does not (progress
    /// is not relayed).
    fn annotate(&self, request: &mut CallToolRequestParams, request_id: String) {
        let protocol = self
            .client_protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let meta = request.meta.get_or_insert_with(Default::default);
        meta.0.remove("progressToken");
        meta.0.insert(
            "vane/client".into(),
            json!({ "request_id": request_id, "protocol_version": protocol, "session_id": self.ctx.telemetry.session_id }),
        );
    }

    /// Forwards one tool call: never a failed call while a healthy worker
    /// can answer it. Read-only calls are retried freely; mutating ones carry
    /// an idempotency key so a retry replays instead of running twice.
    pub async fn forward_call(
        self: &Arc<Self>,
        params: CallToolRequestParams,
        ct: CancellationToken,
    ) -> CallToolResult {
        self.forward_call_with(params, ct, None, 0).await
    }

    /// [`Front::forward_call`] resumed after a first attempt elsewhere:
    /// `prefer` is tried first, `faults` retries are already spent.
    async fn forward_call_with(
        self: &Arc<Self>,
        mut params: CallToolRequestParams,
        ct: CancellationToken,
        mut prefer: Option<Arc<Worker>>,
        mut faults: u32,
    ) -> CallToolResult {
        let name = params.name.to_string();
        let timeout = self.timeout_for(&name);
        let deadline = Instant::now() + timeout;
        let mut keyed = params
            .meta
            .as_ref()
            .is_some_and(|m| m.0.contains_key("vane/idempotency_key"));
        let timed = !LONG_TOOLS.contains(&name.as_str());
        let mut closed = 0u32;
        let mut pause = crate::retry::backoff();
        loop {
            let w = match prefer.take() {
                Some(w) => w,
                None => match self.wait_active(deadline).await {
                    Some(w) => w,
                    None => {
                        return error_result(&err(
                            ErrorCode::Timeout,
                            format!(
                                "`{name}`: no worker was available within {} ms",
                                timeout.as_millis()
                            ),
                        ))
                    }
                },
            };
            let read_only = w.tools().is_read_only(&name, params.arguments.as_ref());
            if !read_only && !keyed {
                let meta = params.meta.get_or_insert_with(Default::default);
                meta.0
                    .insert("vane/idempotency_key".into(), Value::String(self.new_key()));
                keyed = true;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let t0 = Instant::now();
            let r = w.call_tool(&params, remaining, Some(&ct)).await;
            let elapsed = t0.elapsed();
            match r {
                Ok(res) => {
                    let code = error_code(&res);
                    let failed = code == Some("internal");
                    w.stats
                        .record(elapsed, res.is_error == Some(true), failed, timed);
                    if code == Some("idempotency_key_in_progress") && Instant::now() < deadline {
                        crate::transport::discard(&res);
                        let d = pause.next().unwrap_or(ms(20));
                        tokio::time::sleep(
                            d.min(deadline.saturating_duration_since(Instant::now())),
                        )
                        .await;
                        continue;
                    }
                    if failed && faults < self.cfg.max_retries {
                        if let Some(alt) = self.fallback(&w) {
                            crate::transport::discard(&res);
                            faults += 1;
                            self.emit(
                                "call_retried",
                                json!({ "tool": name, "from": w.id, "to": alt.id, "why": "internal error" }),
                            );
                            prefer = Some(alt);
                            continue;
                        }
                    }
                    if read_only && !failed {
                        self.shadow(&params, &res);
                    }
                    return res;
                }
                Err(CallError::Closed) => {
                    w.stats.record(elapsed, true, true, false);
                    w.mark_broken();
                    w.kill();
                    closed += 1;
                    if closed > self.cfg.max_retries.max(10) {
                        return error_result(&err(
                            ErrorCode::Internal,
                            format!("`{name}`: workers kept failing ({closed} in a row)"),
                        ));
                    }
                }
                Err(CallError::Timeout(t)) => {
                    w.stats.record(elapsed, true, true, timed);
                    return error_result(&err(
                        ErrorCode::Timeout,
                        format!("`{name}` did not finish within {} ms; the worker was told to cancel it", t.as_millis()),
                    ).with_details(json!({ "timeout_ms": t.as_millis() as u64 })));
                }
                Err(CallError::Cancelled) => {
                    return error_result(&err(ErrorCode::Internal, "cancelled by the client"));
                }
                Err(CallError::Protocol(m)) => {
                    w.stats.record(elapsed, true, true, timed);
                    return error_result(&err(ErrorCode::Internal, m));
                }
            }
        }
    }

    /// Copies a read-only call to the canary and compares the answers in the
    /// background; the client never waits for it.
    fn shadow(self: &Arc<Self>, params: &CallToolRequestParams, res: &CallToolResult) {
        if !self.cfg.shadow.enabled {
            return;
        }
        let Some(canary) = self
            .routes()
            .canary
            .clone()
            .filter(|c| c.healthy() && c.role() == Role::Canary)
        else {
            return;
        };
        let Ok(permit) = self.shadow_slots.clone().try_acquire_owned() else {
            canary.stats.shadow.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let params = params.clone();
        // the client's copy stays as bytes; this one is decoded for comparing
        let full = crate::transport::peek(res);
        let active = (
            full.as_ref().unwrap_or(res).structured_content.clone(),
            res.is_error == Some(true),
        );
        let front = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tool = params.name.to_string();
            let t0 = Instant::now();
            let r = canary
                .call_tool(&params, ms(front.cfg.shadow.timeout_ms), None)
                .await;
            let s = &canary.stats.shadow;
            match r.map(crate::transport::materialize) {
                Ok(cr) => {
                    let failed = error_code(&cr) == Some("internal");
                    canary
                        .stats
                        .record(t0.elapsed(), cr.is_error == Some(true), failed, true);
                    s.compared.fetch_add(1, Ordering::Relaxed);
                    match compare(
                        &front.ignore,
                        (&active.0, active.1),
                        (&cr.structured_content, cr.is_error == Some(true)),
                    ) {
                        None => {
                            s.matched.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(d) => {
                            s.differed.fetch_add(1, Ordering::Relaxed);
                            let entry =
                                json!({ "at": now_rfc3339(), "tool": tool, "difference": d });
                            {
                                let mut q = s.last_diffs.lock().unwrap_or_else(|e| e.into_inner());
                                if q.len() >= 20 {
                                    q.pop_front();
                                }
                                q.push_back(entry);
                            }
                            front.emit(
                                "shadow_diff",
                                json!({ "worker": canary.id, "tool": tool, "difference": d }),
                            );
                        }
                    }
                }
                Err(CallError::Timeout(_)) => {
                    canary.stats.record(t0.elapsed(), true, true, true);
                    s.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    canary.stats.record(t0.elapsed(), true, true, false);
                    s.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Forwards a non-tool request (lists, resource reads) to the active
    /// worker; these are all read-only and retried across worker deaths.
    async fn forward(
        &self,
        req: impl Fn() -> ClientRequest,
        ct: &CancellationToken,
    ) -> Result<ServerResult, McpError> {
        let timeout = ms(self.cfg.call_timeout_ms);
        let deadline = Instant::now() + timeout;
        for _ in 0..=self.cfg.max_retries.max(10) {
            let Some(w) = self.wait_active(deadline).await else {
                break;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            match w.request(req(), remaining, Some(ct)).await {
                Ok(r) => return Ok(r),
                Err(CallError::Closed) => {
                    w.mark_broken();
                    w.kill();
                }
                Err(CallError::Protocol(m)) => {
                    // the worker's own JSON-RPC error, passed through as is
                    return Err(serde_json::from_str::<McpError>(&m)
                        .unwrap_or_else(|_| McpError::internal_error(m, None)));
                }
                Err(CallError::Timeout(t)) => {
                    return Err(McpError::internal_error(
                        format!("no answer within {} ms", t.as_millis()),
                        None,
                    ))
                }
                Err(CallError::Cancelled) => {
                    return Err(McpError::internal_error("cancelled", None))
                }
            }
        }
        Err(McpError::internal_error(
            "no worker was available to answer",
            None,
        ))
    }

    // ----- the tool list the client sees -----

    fn admin(&self) -> bool {
        self.ctx.flags().admin_tools
    }

    fn front_tools() -> Vec<Tool> {
        let schema = |v: Value| match v {
            Value::Object(mut m) => {
                vane_tools::schema::portable(&mut m);
                Arc::new(m)
            }
            _ => Arc::new(Map::new()),
        };
        vec![
            Tool::new(
                "worker_health",
                "The front's workers: role (active, standby, canary, failed), version, binary, pid, uptime, memory, calls, errors, failures, in-flight calls, circuit state, shadow comparison counts; the rollback watch and the latest routing decisions. Admin tool (ADMIN_TOOLS=1).",
                schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
            )
            .with_title("Worker health")
            .with_annotations(ToolAnnotations::with_title("Worker health").read_only(true).destructive(false).idempotent(true).open_world(false)),
            Tool::new(
                "route_switch",
                "Move traffic between workers: `promote` starts a live worker from the canary's binary and sends new calls to it (the current worker drains and stays as hot standby); `rollback` routes back to the standby at once. Admin tool (ADMIN_TOOLS=1). Errors: invalid_input (no canary / no standby), admin_disabled.",
                schema(json!({"type": "object", "properties": {"action": {"type": "string", "enum": ["promote", "rollback"]}}, "required": ["action"], "additionalProperties": false})),
            )
            .with_title("Switch route")
            .with_annotations(ToolAnnotations::with_title("Switch route").read_only(false).destructive(false).idempotent(false).open_world(false)),
            Tool::new(
                "upgrade_start",
                "Start `vane upgrade` in the background for this workspace: exactly one of `binary` (an executable), `git` (a revision to build and test in a worktree) or `patch` (a file applied to HEAD); optional `shadow` and `observe` windows (e.g. \"60s\", \"10m\"), `min_samples`, `flips` (\"KEY=VALUE\"). Poll `upgrade_status`. Admin tool (ADMIN_TOOLS=1). Errors: invalid_input, admin_disabled.",
                schema(json!({"type": "object", "properties": {
                    "binary": {"type": "string"}, "git": {"type": "string"}, "patch": {"type": "string"},
                    "shadow": {"type": "string"}, "observe": {"type": "string"},
                    "min_samples": {"type": "integer", "minimum": 0},
                    "flips": {"type": "array", "items": {"type": "string"}}
                }, "additionalProperties": false})),
            )
            .with_title("Start an upgrade")
            .with_annotations(ToolAnnotations::with_title("Start an upgrade").read_only(false).destructive(false).idempotent(false).open_world(false)),
            Tool::new(
                "upgrade_status",
                "The running upgrade's progress (steps, gates, shadow samples), or the newest upgrade's report: decision and reason. Admin tool (ADMIN_TOOLS=1).",
                schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
            )
            .with_title("Upgrade status")
            .with_annotations(ToolAnnotations::with_title("Upgrade status").read_only(true).destructive(false).idempotent(true).open_world(false)),
        ]
    }

    fn visible_tools(&self, worker_tools: &[Tool]) -> Vec<Tool> {
        let mut tools = worker_tools.to_vec();
        if self.admin() {
            let offered = &self.ctx.config.tools;
            tools.extend(
                Front::front_tools()
                    .into_iter()
                    .filter(|t| offered.enabled(&t.name)),
            );
        }
        tools
    }

    /// Tells the client when the tool set it sees changed (a switch, or the
    /// active worker's own `list_changed`).
    async fn tools_maybe_changed(&self) {
        let Some(w) = self.active_tx.borrow().clone() else {
            return;
        };
        let mut names: Vec<String> = self
            .visible_tools(&w.tools().tools)
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        let changed = {
            let mut l = self.listed.lock().unwrap_or_else(|e| e.into_inner());
            let changed = !l.is_empty() && *l != names;
            *l = names;
            changed
        };
        if changed {
            let peer = self
                .client
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(p) = peer {
                let _ = p.notify_tool_list_changed().await;
            }
        }
    }

    async fn front_tool(
        self: &Arc<Self>,
        name: &str,
        args: Option<Map<String, Value>>,
    ) -> CallToolResult {
        if !self.ctx.config.tools.enabled(name) {
            return error_result(&err(
                ErrorCode::ToolDisabled,
                format!("`{name}` is not offered in this workspace ([tools] in vane.toml: preset, enable, disable)"),
            ));
        }
        if !self.admin() {
            return error_result(&err(
                ErrorCode::AdminDisabled,
                format!("`{name}` is an admin tool; admin tools are off (set ADMIN_TOOLS=1 with `vane flags set ADMIN_TOOLS 1`)"),
            ));
        }
        let args = args.unwrap_or_default();
        let r = match name {
            "worker_health" => {
                if let Some(k) = args.keys().next() {
                    Err(VaneError::invalid_input(format!(
                        "worker_health: unknown field `{k}`; allowed: none"
                    )))
                } else {
                    Ok(self.health())
                }
            }
            "upgrade_status" => {
                if let Some(k) = args.keys().next() {
                    Err(VaneError::invalid_input(format!(
                        "upgrade_status: unknown field `{k}`; allowed: none"
                    )))
                } else {
                    crate::upgrades::status(&self.ctx.paths.state_dir)
                }
            }
            "upgrade_start" => self.upgrade_start(&args),
            _ => {
                let extra: Vec<&String> = args.keys().filter(|k| *k != "action").collect();
                match (args.get("action").and_then(Value::as_str), extra.first()) {
                    (_, Some(k)) => Err(VaneError::invalid_input(format!(
                        "route_switch: unknown field `{k}`; allowed: action"
                    ))),
                    (Some("promote"), None) => self.promote("admin-tool").await,
                    (Some("rollback"), None) => self.rollback(None, "admin-tool").await,
                    _ => Err(VaneError::invalid_input(
                        "route_switch: `action` must be `promote` or `rollback`",
                    )
                    .with_details(json!({ "allowed": ["promote", "rollback"] }))),
                }
            }
        };
        match r {
            Ok(v) => {
                let mut res = CallToolResult::structured(v.clone());
                res.content = vec![ContentBlock::text(v.to_string())];
                res
            }
            Err(e) => error_result(&e),
        }
    }

    /// `upgrade_start`: runs `vane upgrade` (this executable) detached; the
    /// run reports through `upgrade_status`.
    fn upgrade_start(self: &Arc<Self>, args: &Map<String, Value>) -> Result<Value, VaneError> {
        const ALLOWED: [&str; 7] = [
            "binary",
            "git",
            "patch",
            "shadow",
            "observe",
            "min_samples",
            "flips",
        ];
        if let Some(k) = args.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
            return Err(VaneError::invalid_input(format!(
                "upgrade_start: unknown field `{k}`; allowed: {}",
                ALLOWED.join(", ")
            )));
        }
        let sources: Vec<(&str, &str)> = ["binary", "git", "patch"]
            .iter()
            .filter_map(|k| args.get(*k).and_then(Value::as_str).map(|v| (*k, v)))
            .collect();
        let [(kind, value)] = sources.as_slice() else {
            return Err(VaneError::invalid_input(
                "upgrade_start: give exactly one of `binary`, `git`, `patch`",
            ));
        };
        if let Some(lock) = crate::upgrades::locked_run(&self.ctx.paths.state_dir) {
            return Err(VaneError::invalid_input(format!(
                "an upgrade is already running ({})",
                lock.display()
            )));
        }
        let mut cmd = tokio::process::Command::new(&self.base.binary);
        cmd.arg("--workspace").arg(&self.base.workspace);
        if let Some(sd) = &self.base.state_dir {
            cmd.arg("--state-dir").arg(sd);
        }
        cmd.args(["upgrade", "--json", &format!("--{kind}"), value]);
        for k in ["shadow", "observe"] {
            if let Some(v) = args.get(k).and_then(Value::as_str) {
                cmd.arg(format!("--{k}")).arg(v);
            }
        }
        if let Some(n) = args.get("min_samples").and_then(Value::as_u64) {
            cmd.arg("--min-samples").arg(n.to_string());
        }
        for f in args
            .get("flips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(f) = f.as_str() {
                cmd.arg("--flip").arg(f);
            }
        }
        cmd.env_remove("VANE_DRY_RUN")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            err(
                ErrorCode::IoError,
                format!("cannot start vane upgrade: {e}"),
            )
        })?;
        let pid = child.id();
        // reap it when it ends
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let v = json!({ "started": true, "pid": pid, "source": { kind.to_string(): value }, "next": "poll upgrade_status" });
        self.decide("upgrade_started", v.clone());
        Ok(v)
    }

    // ----- operating: health, promote, rollback, canary -----

    fn worker_view(w: &Worker) -> Value {
        let s = &w.stats;
        let sh = &s.shadow;
        let exited = w.exited();
        json!({
            "id": w.id,
            "role": w.role(),
            "pid": w.pid,
            "version": w.version,
            "binary": w.spec.binary.display().to_string(),
            "dry_run": w.spec.dry_run,
            "started_at": w.started_at,
            "uptime_s": w.started.elapsed().as_secs_f64(),
            "rss_bytes": w.rss(),
            "calls": s.calls.load(Ordering::Relaxed),
            "errors": s.errors.load(Ordering::Relaxed),
            "failures": s.failures.load(Ordering::Relaxed),
            "in_flight": s.in_flight.load(Ordering::Relaxed),
            "circuit": if s.circuit_open.load(Ordering::Relaxed) { "open" } else { "closed" },
            "ping_failures": s.ping_failures.load(Ordering::Relaxed),
            "last_ping_us": s.last_ping_us.load(Ordering::Relaxed),
            "alive": exited.is_none(),
            "exit": exited,
            "note": w.note(),
            "shadow": if w.spec.dry_run { json!({
                "compared": sh.compared.load(Ordering::Relaxed),
                "matched": sh.matched.load(Ordering::Relaxed),
                "differed": sh.differed.load(Ordering::Relaxed),
                "errors": sh.errors.load(Ordering::Relaxed),
                "timeouts": sh.timeouts.load(Ordering::Relaxed),
                "skipped": sh.skipped.load(Ordering::Relaxed),
                "last_differences": sh.last_diffs.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>(),
            }) } else { Value::Null },
        })
    }

    /// What `worker_health` and `vane workers` show.
    pub fn health(&self) -> Value {
        let r = self.routes();
        let mut workers = Vec::new();
        if let Some(a) = &r.active {
            workers.push(Front::worker_view(a));
        }
        if let Some((s, until)) = &r.standby {
            let mut v = Front::worker_view(s);
            v["standby_expires_in_s"] =
                json!(until.saturating_duration_since(Instant::now()).as_secs());
            workers.push(v);
        }
        if let Some(c) = &r.canary {
            workers.push(Front::worker_view(c));
        }
        for f in &r.failed {
            workers.push(Front::worker_view(f));
        }
        let watch = r.watch.as_ref().map(|w| {
            let ws = r
                .active
                .as_ref()
                .filter(|a| a.id == w.worker)
                .map(|a| a.stats.window(Duration::from_secs(self.cfg.rollback.error_window_s)));
            json!({
                "worker": w.worker,
                "for_s": w.since.elapsed().as_secs(),
                "remaining_s": Duration::from_secs(self.cfg.rollback.watch_s).saturating_sub(w.since.elapsed()).as_secs(),
                "baseline_rss_bytes": w.baseline_rss,
                "window": ws,
                "limits": {
                    "error_budget": self.cfg.rollback.error_budget,
                    "p95_slo_ms": self.cfg.rollback.p95_slo_ms,
                    "rss_factor": self.cfg.rollback.rss_factor,
                }
            })
        });
        drop(r);
        json!({
            "front": {
                "pid": std::process::id(),
                "version": vane_tools::ctx::VERSION,
                "uptime_s": self.started.elapsed().as_secs_f64(),
                "rss_bytes": rss_of(std::process::id()),
                "restarts": self.restarts.load(Ordering::Relaxed),
                "socket": self.socket.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|p| p.display().to_string()),
                "disable_new": self.ctx.flags().disable_new,
            },
            "workers": workers,
            "watch": watch,
            "decisions": self.decisions(),
        })
    }

    fn retire(self: &Arc<Self>, w: Arc<Worker>) {
        let (drain, grace) = (ms(self.cfg.drain_timeout_ms), ms(self.cfg.term_grace_ms));
        tokio::spawn(async move { w.retire(drain, grace).await });
    }

    /// Contracting store migrations wait until no older worker can use the
    /// store. They run with the active worker's binary
    /// (`vane migrate --contract`) once it is this front's only worker — the
    /// retired one (`after`) has exited, no standby or canary is left — and
    /// no other front serves the workspace. Anything else defers them to the
    /// next retirement or front start.
    pub fn contract_when_alone(self: &Arc<Self>, after: Option<Arc<Worker>>, why: &'static str) {
        let front = self.clone();
        tokio::spawn(async move {
            if let Some(w) = after {
                let deadline = Instant::now()
                    + ms(front.cfg.drain_timeout_ms + front.cfg.term_grace_ms)
                    + Duration::from_secs(2);
                while w.exited().is_none() && Instant::now() < deadline {
                    tokio::time::sleep(ms(50)).await;
                }
                if w.exited().is_none() {
                    front.emit("contract_deferred", json!({ "why": why, "reason": format!("retired worker {} has not exited", w.id) }));
                    return;
                }
            }
            let (active, busy) = {
                let r = front.routes();
                let busy = if r.standby.is_some() {
                    Some("a standby is kept")
                } else if r.canary.is_some() {
                    Some("a canary runs")
                } else {
                    None
                };
                (r.active.clone(), busy)
            };
            let Some(active) = active else { return };
            if let Some(busy) = busy {
                front.emit("contract_deferred", json!({ "why": why, "reason": busy }));
                return;
            }
            let me = std::process::id();
            let others: Vec<u32> = crate::control::fronts(&front.ctx.paths.state_dir)
                .await
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| *p != me)
                .collect();
            if !others.is_empty() {
                front.emit("contract_deferred", json!({ "why": why, "reason": format!("other fronts serve this workspace: {others:?}") }));
                return;
            }
            let mut cmd = tokio::process::Command::new(&active.spec.binary);
            cmd.arg("--workspace")
                .arg(&front.ctx.ws.root)
                .arg("--state-dir")
                .arg(&front.ctx.paths.state_dir)
                .args(["migrate", "--contract", "--json", "--front-pid"])
                .arg(me.to_string())
                .env_remove("VANE_DRY_RUN")
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let out = tokio::time::timeout(Duration::from_secs(600), cmd.output()).await;
            let out = match out {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    front.decide(
                        "contract_failed",
                        json!({ "why": why, "error": e.to_string() }),
                    );
                    return;
                }
                Err(_) => {
                    front.decide(
                        "contract_failed",
                        json!({ "why": why, "error": "vane migrate --contract took over 600 s" }),
                    );
                    return;
                }
            };
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if !out.status.success() || report.is_null() {
                let err = String::from_utf8_lossy(&out.stderr);
                let tail: String = err
                    .chars()
                    .rev()
                    .take(600)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                front.decide("contract_failed", json!({ "why": why, "binary": active.spec.binary.display().to_string(), "exit": out.status.code(), "error": tail }));
                return;
            }
            let applied = report["applied"].clone();
            if applied.as_array().is_some_and(|a| !a.is_empty()) {
                front.decide(
                    "contract_applied",
                    json!({ "why": why, "worker": active.id, "binary": active.spec.binary.display().to_string(),
                            "applied": applied, "schema": report["after"]["store_version"], "floor": report["after"]["floor"] }),
                );
            }
        });
    }

    /// Starts a live worker from the canary's binary and sends new calls to
    /// it; the current worker finishes its calls and stays as hot standby.
    pub async fn promote(self: &Arc<Self>, actor: &str) -> Result<Value, VaneError> {
        let canary = self.routes().canary.clone();
        let Some(canary) = canary else {
            let last = self
                .routes()
                .failed
                .iter()
                .rev()
                .find(|f| f.spec.dry_run)
                .and_then(|f| f.note());
            return Err(VaneError::invalid_input(match last {
                Some(n) => format!("no canary to promote (the last one failed: {n})"),
                None => {
                    "no canary to promote; start one with `vane canary start --binary PATH`".into()
                }
            }));
        };
        if !canary.healthy() {
            return Err(VaneError::invalid_input(format!(
                "the canary (worker {}) is not healthy; not promoting",
                canary.id
            )));
        }
        let spec = Spec {
            dry_run: false,
            ..canary.spec.clone()
        };
        let t0 = Instant::now();
        let w = self.spawn_worker(spec).await.map_err(|e| {
            err(
                ErrorCode::Internal,
                format!("promote: the new worker did not start: {e}"),
            )
        })?;
        let switch_start = Instant::now();
        let (old, old_standby, old_canary) = {
            let mut r = self.routes();
            let old = r.active.replace(w.clone());
            let old_standby = r.standby.take().map(|s| s.0);
            if let Some(o) = &old {
                o.set_role(Role::Standby);
                r.standby = Some((
                    o.clone(),
                    Instant::now() + Duration::from_secs(self.cfg.standby_ttl_s),
                ));
            }
            r.watch = Some(WatchState {
                worker: w.id,
                since: Instant::now(),
                baseline_rss: old.as_ref().map(|o| o.rss()).unwrap_or(0),
                rss_over_since: None,
            });
            (old, old_standby, r.canary.take())
        };
        w.set_role(Role::Active);
        self.active_tx.send_replace(Some(w.clone()));
        let switch_us = switch_start.elapsed().as_micros() as u64;
        for x in [old_standby, old_canary].into_iter().flatten() {
            self.retire(x);
        }
        self.tools_maybe_changed().await;
        let v = json!({
            "from": old.as_ref().map(|o| o.id), "to": w.id, "pid": w.pid,
            "binary": w.spec.binary.display().to_string(), "version": w.version,
            "actor": actor, "start_us": t0.elapsed().as_micros() as u64, "switch_us": switch_us,
        });
        self.decide("promote", v.clone());
        crate::upgrades::record_current(
            &self.ctx.paths.state_dir,
            &w.spec.binary,
            &w.version,
            "promote",
        );
        Ok(v)
    }

    /// Routes back to the standby. `auto`: the front's own decision — the
    /// worker rolled back from is kept (Failed) for inspection and
    /// DISABLE_NEW is set; by hand, the two workers simply trade places.
    pub async fn rollback(
        self: &Arc<Self>,
        auto: Option<Reason>,
        actor: &str,
    ) -> Result<Value, VaneError> {
        let (from, to) = {
            let mut r = self.routes();
            let Some((sb, _)) = r.standby.take() else {
                return Err(VaneError::invalid_input(
                    "no standby worker to roll back to",
                ));
            };
            if !sb.healthy() {
                return Err(VaneError::invalid_input(format!(
                    "the standby (worker {}) is not healthy; cannot roll back",
                    sb.id
                )));
            }
            let cur = r.active.replace(sb.clone());
            r.watch = None;
            if let Some(cur) = &cur {
                if let Some(reason) = &auto {
                    cur.set_role(Role::Failed);
                    cur.set_note(format!(
                        "rolled back: {} = {} (limit {}) {}",
                        reason.metric, reason.value, reason.threshold, reason.detail
                    ));
                    r.failed.push(cur.clone());
                } else {
                    cur.set_role(Role::Standby);
                    r.standby = Some((
                        cur.clone(),
                        Instant::now() + Duration::from_secs(self.cfg.standby_ttl_s),
                    ));
                }
            }
            sb.set_role(Role::Active);
            (cur, sb)
        };
        self.active_tx.send_replace(Some(to.clone()));
        // keep one failed worker for inspection; stop older ones
        let older: Vec<Arc<Worker>> = {
            let mut r = self.routes();
            let n = r.failed.len();
            if n > 1 {
                r.failed.drain(..n - 1).collect()
            } else {
                Vec::new()
            }
        };
        for o in older {
            self.retire(o);
        }
        let mut v = json!({
            "from": from.as_ref().map(|f| f.id), "to": to.id, "pid": to.pid, "version": to.version,
            "actor": actor, "automatic": auto.is_some(),
        });
        if let Some(reason) = &auto {
            v["metric"] = json!(reason.metric);
            v["value"] = reason.value.clone();
            v["threshold"] = reason.threshold.clone();
            v["reason"] = json!(reason.detail);
            if self.cfg.rollback.set_disable_new {
                match vane_tools::handlers::set_flag(
                    &self.ctx,
                    "DISABLE_NEW",
                    Some("1"),
                    "front:auto-rollback",
                ) {
                    Ok(_) => v["disable_new"] = json!(true),
                    Err(e) => {
                        tracing::error!(target: "vane::front", "could not set DISABLE_NEW: {}", e.message)
                    }
                }
            }
        }
        self.decide("rollback", v.clone());
        crate::upgrades::record_current(
            &self.ctx.paths.state_dir,
            &to.spec.binary,
            &to.version,
            if auto.is_some() {
                "automatic rollback"
            } else {
                "rollback"
            },
        );
        self.tools_maybe_changed().await;
        Ok(v)
    }

    /// Starts a dry-run canary from `binary` (replacing any canary).
    pub async fn canary_start(self: &Arc<Self>, binary: &Path) -> Result<Value, VaneError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(binary).map_err(|e| {
            VaneError::invalid_input(format!("canary binary {}: {e}", binary.display()))
        })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(VaneError::invalid_input(format!(
                "canary binary {} is not an executable file",
                binary.display()
            )));
        }
        let binary = binary
            .canonicalize()
            .unwrap_or_else(|_| binary.to_path_buf());
        if let Some(old) = self.routes().canary.take() {
            self.retire(old);
        }
        let spec = Spec {
            binary: binary.clone(),
            dry_run: true,
            ..self.base.clone()
        };
        match self.spawn_worker(spec).await {
            Ok(w) => {
                w.set_role(Role::Canary);
                if let Some(old) = self.routes().canary.replace(w.clone()) {
                    self.retire(old);
                }
                let v = json!({ "worker": w.id, "pid": w.pid, "binary": binary.display().to_string(), "version": w.version });
                self.decide("canary_started", v.clone());
                Ok(v)
            }
            Err(e) => {
                self.decide(
                    "canary_failed",
                    json!({ "binary": binary.display().to_string(), "metric": "ready", "reason": e }),
                );
                Err(err(
                    ErrorCode::Internal,
                    format!("the canary did not become ready: {e}"),
                ))
            }
        }
    }

    /// Calls one read-only tool on the active worker and on the canary and
    /// compares the answers (normalised as in shadowing). The answers count
    /// as shadow samples of the canary. Used by self-checks and by upgrade
    /// probes when clients are idle.
    pub async fn probe(self: &Arc<Self>, tool: &str, args: Value) -> Result<Value, VaneError> {
        let (active, canary) = {
            let r = self.routes();
            (r.active.clone(), r.canary.clone())
        };
        let active = active
            .filter(|a| a.healthy())
            .ok_or_else(|| err(ErrorCode::Internal, "no healthy active worker"))?;
        let canary = canary
            .filter(|c| c.healthy())
            .ok_or_else(|| VaneError::invalid_input("no healthy canary to probe"))?;
        let Value::Object(args) = args else {
            return Err(VaneError::invalid_input(
                "probe arguments must be an object",
            ));
        };
        if !active.tools().is_read_only(tool, Some(&args)) {
            return Err(VaneError::invalid_input(format!(
                "probe: `{tool}` with these arguments is not read-only"
            )));
        }
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let timeout = ms(self.cfg.shadow.timeout_ms);
        let (a, c) = tokio::join!(
            active.call_tool(&params, timeout, None),
            canary.call_tool(&params, timeout, None)
        );
        let (a, c) = (
            a.map(crate::transport::materialize),
            c.map(crate::transport::materialize),
        );
        let a = a.map_err(|e| {
            err(
                ErrorCode::Internal,
                format!("probe `{tool}` on the active worker: {e:?}"),
            )
        })?;
        let s = &canary.stats.shadow;
        let c = match c {
            Ok(c) => c,
            Err(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                return Err(err(
                    ErrorCode::Internal,
                    format!("probe `{tool}` on the canary: {e:?}"),
                ));
            }
        };
        s.compared.fetch_add(1, Ordering::Relaxed);
        let diff = compare(
            &self.ignore,
            (&a.structured_content, a.is_error == Some(true)),
            (&c.structured_content, c.is_error == Some(true)),
        );
        match &diff {
            None => {
                s.matched.fetch_add(1, Ordering::Relaxed);
            }
            Some(d) => {
                s.differed.fetch_add(1, Ordering::Relaxed);
                let entry =
                    json!({ "at": now_rfc3339(), "tool": tool, "difference": d, "probe": true });
                let mut q = s.last_diffs.lock().unwrap_or_else(|e| e.into_inner());
                if q.len() >= 20 {
                    q.pop_front();
                }
                q.push_back(entry);
            }
        }
        Ok(json!({
            "tool": tool,
            "active": { "worker": active.id, "is_error": a.is_error == Some(true) },
            "canary": { "worker": canary.id, "is_error": c.is_error == Some(true) },
            "same": diff.is_none(),
            "difference": diff,
        }))
    }

    /// One read-only call on the active worker (upgrade checks); the
    /// structured answer.
    pub async fn call_active(
        self: &Arc<Self>,
        tool: &str,
        args: Value,
    ) -> Result<Value, VaneError> {
        let active = self
            .routes()
            .active
            .clone()
            .filter(|a| a.healthy())
            .ok_or_else(|| err(ErrorCode::Internal, "no healthy active worker"))?;
        let Value::Object(args) = args else {
            return Err(VaneError::invalid_input("call arguments must be an object"));
        };
        if !active.tools().is_read_only(tool, Some(&args)) {
            return Err(VaneError::invalid_input(format!(
                "call: `{tool}` with these arguments is not read-only"
            )));
        }
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let r = active
            .call_tool(&params, ms(self.cfg.call_timeout_ms), None)
            .await
            .map(crate::transport::materialize)
            .map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("`{tool}` on the active worker: {e:?}"),
                )
            })?;
        Ok(json!({ "is_error": r.is_error == Some(true), "result": r.structured_content }))
    }

    /// One call on the canary alone (a dry run: it cannot change anything);
    /// the structured answer.
    pub async fn call_canary(
        self: &Arc<Self>,
        tool: &str,
        args: Value,
    ) -> Result<Value, VaneError> {
        let canary = self
            .routes()
            .canary
            .clone()
            .filter(|c| c.healthy())
            .ok_or_else(|| VaneError::invalid_input("no healthy canary"))?;
        let Value::Object(args) = args else {
            return Err(VaneError::invalid_input("call arguments must be an object"));
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let r = canary
            .call_tool(&params, ms(self.cfg.long_call_timeout_ms), None)
            .await
            .map(crate::transport::materialize)
            .map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("`{tool}` on the canary: {e:?}"),
                )
            })?;
        Ok(json!({ "is_error": r.is_error == Some(true), "result": r.structured_content }))
    }

    pub async fn canary_stop(self: &Arc<Self>) -> Result<Value, VaneError> {
        let Some(c) = self.routes().canary.take() else {
            return Err(VaneError::invalid_input("no canary is running"));
        };
        let v = json!({ "worker": c.id, "pid": c.pid });
        self.retire(c);
        self.decide("canary_stopped", v.clone());
        Ok(v)
    }

    // ----- supervision -----

    /// Reacts to worker events and checks the rollback watch and standby
    /// expiry four times a second.
    pub async fn supervise(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<WorkerEvent>) {
        let mut tick = tokio::time::interval(ms(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => return,
                },
                _ = tick.tick() => self.check().await,
            }
        }
    }

    fn find(&self, id: u64) -> Option<Arc<Worker>> {
        let r = self.routes();
        r.active
            .iter()
            .chain(r.standby.as_ref().map(|s| &s.0))
            .chain(r.canary.iter())
            .chain(r.failed.iter())
            .find(|w| w.id == id)
            .cloned()
    }

    async fn on_event(self: &Arc<Self>, ev: WorkerEvent) {
        match ev {
            WorkerEvent::Exited {
                id,
                status,
                crashed,
            } => {
                let w = self.find(id);
                let role = w.as_ref().map(|w| w.role());
                if crashed || role == Some(Role::Active) {
                    let t = &self.ctx.telemetry;
                    t.emit(
                        t.event("process")
                            .with("event", "crash")
                            .with("worker", id)
                            .with("pid", w.as_ref().map(|w| w.pid).unwrap_or(0))
                            .with("role", serde_json::to_value(role).unwrap_or_default())
                            .with("detail", status.clone()),
                    );
                }
                self.emit(
                    "worker_exit",
                    json!({ "worker": id, "status": status, "role": role }),
                );
                match role {
                    Some(Role::Active) => {
                        let w = w.expect("found");
                        w.mark_broken();
                        let watched = self.routes().watch.as_ref().is_some_and(|x| x.worker == id);
                        let standby_ok = self
                            .routes()
                            .standby
                            .as_ref()
                            .is_some_and(|s| s.0.healthy());
                        if watched && standby_ok && self.cfg.rollback.enabled {
                            let reason = Reason {
                                metric: "exit",
                                value: json!(status),
                                threshold: json!("no exit"),
                                detail: "the new worker died".into(),
                            };
                            let _ = self.rollback(Some(reason), "front").await;
                        } else {
                            self.restarts.fetch_add(1, Ordering::Relaxed);
                            self.decide("restart", json!({ "worker": id, "reason": status }));
                            tokio::spawn(self.clone().ensure_active(w.spec.binary.clone()));
                        }
                    }
                    Some(Role::Canary) => {
                        let w = w.expect("found");
                        w.set_role(Role::Failed);
                        w.set_note(format!("canary {status}"));
                        {
                            let mut r = self.routes();
                            if r.canary.as_ref().is_some_and(|c| c.id == id) {
                                r.canary = None;
                            }
                            r.failed.push(w.clone());
                            // dead canaries: the last few stay listed
                            let dead = r.failed.iter().filter(|f| f.exited().is_some()).count();
                            if dead > 3 {
                                if let Some(i) = r.failed.iter().position(|f| f.exited().is_some())
                                {
                                    r.failed.remove(i);
                                }
                            }
                        }
                        self.decide("canary_failed", json!({ "worker": id, "metric": "exit", "value": status, "threshold": "no exit" }));
                    }
                    Some(Role::Standby) => {
                        let mut r = self.routes();
                        if r.standby.as_ref().is_some_and(|s| s.0.id == id) {
                            r.standby = None;
                        }
                    }
                    // a failed worker stays listed, exit status included, until replaced
                    Some(Role::Failed) => {}
                    _ => {
                        self.routes()
                            .failed
                            .retain(|f| f.id != id || f.exited().is_none());
                    }
                }
            }
            WorkerEvent::CircuitOpen { id, failures } => {
                let Some(w) = self.find(id) else { return };
                self.emit(
                    "circuit_open",
                    json!({ "worker": id, "ping_failures": failures, "role": w.role() }),
                );
                match w.role() {
                    Role::Active => {
                        let watched = self.routes().watch.as_ref().is_some_and(|x| x.worker == id);
                        if watched && self.cfg.rollback.enabled {
                            let reason = Reason {
                                metric: "circuit",
                                value: json!("open"),
                                threshold: json!(format!(
                                    "{} failed pings",
                                    self.cfg.ping_failures_to_open
                                )),
                                detail: "the new worker stopped answering pings".into(),
                            };
                            if self.rollback(Some(reason), "front").await.is_ok() {
                                // unresponsive: its in-flight calls (and the
                                // idempotency keys they hold) are only freed by
                                // its death; the record of why stays
                                w.kill();
                                return;
                            }
                        }
                        // unresponsive and nothing to route to: replace it
                        w.set_note("circuit open: killed and replaced");
                        w.kill();
                    }
                    Role::Canary => {
                        w.set_note("circuit open");
                        w.kill();
                    }
                    _ => {}
                }
            }
            WorkerEvent::ToolsChanged { id } => {
                let active = self.active_tx.borrow().clone();
                if let Some(w) = active.filter(|w| w.id == id) {
                    let _ = w.refresh_tools(ms(self.cfg.call_timeout_ms)).await;
                    self.tools_maybe_changed().await;
                }
            }
            WorkerEvent::ResourcesChanged { id } => {
                let active = self.active_tx.borrow().clone();
                if active.is_some_and(|w| w.id == id) {
                    let peer = self
                        .client
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    if let Some(p) = peer {
                        let _ = p.notify_resource_list_changed().await;
                    }
                }
            }
        }
    }

    /// The rollback watch and standby expiry.
    async fn check(self: &Arc<Self>) {
        let rb = &self.cfg.rollback;
        let mut reason = None;
        {
            let mut r = self.routes();
            if let Some((s, until)) = &r.standby {
                if Instant::now() >= *until {
                    let s = s.clone();
                    r.standby = None;
                    drop(r);
                    self.decide("standby_expired", json!({ "worker": s.id }));
                    self.retire(s.clone());
                    self.contract_when_alone(Some(s), "standby_retired");
                    r = self.routes();
                }
            }
            let active = r.active.clone();
            if let (Some(watch), Some(a)) = (r.watch.as_mut(), active) {
                if watch.worker != a.id {
                    r.watch = None;
                } else if watch.since.elapsed() >= Duration::from_secs(rb.watch_s) {
                    let id = watch.worker;
                    r.watch = None;
                    drop(r);
                    self.decide(
                        "watch_passed",
                        json!({ "worker": id, "watched_s": rb.watch_s }),
                    );
                    return;
                } else if rb.enabled {
                    let ws = a.stats.window(Duration::from_secs(rb.error_window_s));
                    let rss = rss_of(a.pid);
                    a.stats.rss_bytes.store(rss, Ordering::Relaxed);
                    let limit = (watch.baseline_rss as f64 * rb.rss_factor) as u64;
                    if ws.calls >= rb.min_calls && ws.error_rate > rb.error_budget {
                        reason = Some(Reason {
                            metric: "error_rate",
                            value: json!(ws.error_rate),
                            threshold: json!(rb.error_budget),
                            detail: format!(
                                "{} of {} calls failed in the last {} s",
                                ws.failures, ws.calls, rb.error_window_s
                            ),
                        });
                    } else if ws.latency_samples >= rb.min_latency_samples
                        && ws.p95_ms > rb.p95_slo_ms as f64
                    {
                        reason = Some(Reason {
                            metric: "p95_ms",
                            value: json!(ws.p95_ms),
                            threshold: json!(rb.p95_slo_ms),
                            detail: format!(
                                "p95 over {} calls in the last {} s",
                                ws.latency_samples, rb.error_window_s
                            ),
                        });
                    } else if watch.baseline_rss > 0 && rss > limit {
                        let since = *watch.rss_over_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_secs(rb.rss_window_s) {
                            reason = Some(Reason {
                                metric: "rss_bytes",
                                value: json!(rss),
                                threshold: json!(limit),
                                detail: format!(
                                    "above {}x the old worker's {} bytes for {} s",
                                    rb.rss_factor, watch.baseline_rss, rb.rss_window_s
                                ),
                            });
                        }
                    } else {
                        watch.rss_over_since = None;
                    }
                }
            }
        }
        if let Some(reason) = reason {
            if let Err(e) = self.rollback(Some(reason.clone()), "front").await {
                self.decide("rollback_impossible", json!({ "metric": reason.metric, "value": reason.value, "threshold": reason.threshold, "reason": e.message }));
                self.routes().watch = None;
            }
        }
    }

    /// Stops every worker (drain first) when the client goes away.
    pub async fn shutdown(self: &Arc<Self>) {
        let all: Vec<Arc<Worker>> = {
            let mut r = self.routes();
            let mut v: Vec<Arc<Worker>> = Vec::new();
            v.extend(r.active.take());
            v.extend(r.standby.take().map(|s| s.0));
            v.extend(r.canary.take());
            v.append(&mut r.failed);
            v
        };
        self.active_tx.send_replace(None);
        let (drain, grace) = (
            ms(self.cfg.drain_timeout_ms.min(5_000)),
            ms(self.cfg.term_grace_ms),
        );
        let mut set = tokio::task::JoinSet::new();
        for w in all {
            set.spawn(async move { w.retire(drain, grace).await });
        }
        while set.join_next().await.is_some() {}
    }
}

/// The rmcp server the client talks to.
#[derive(Clone)]
pub struct FrontServer(pub Arc<Front>);

fn meta_from_context(
    params: &mut CallToolRequestParams,
    ctx_meta: &rmcp::model::RequestMetaObject,
) {
    let Ok(Value::Object(m)) = serde_json::to_value(ctx_meta) else {
        return;
    };
    for (k, v) in m {
        if k == "progressToken" {
            continue;
        }
        let meta = params.meta.get_or_insert_with(Default::default);
        meta.0.entry(k).or_insert(v);
    }
}

impl ServerHandler for FrontServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .build(),
        )
        .with_server_info(
            Implementation::new("vane", vane_tools::ctx::VERSION).with_title("vane orchestrator"),
        )
        .with_instructions(INSTRUCTIONS)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let protocol = context
            .peer
            .peer_info()
            .and_then(|p| serde_json::to_value(&p.protocol_version).ok())
            .unwrap_or(Value::Null);
        *self.0.client_meta.lock().unwrap_or_else(|e| e.into_inner()) =
            client_meta(&protocol, &self.0.ctx.telemetry.session_id);
        *self
            .0
            .client_protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = protocol;
        *self.0.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(context.peer.clone());
        self.0
            .initialized
            .store(true, std::sync::atomic::Ordering::Release);
    }

    async fn ping(&self, _context: RequestContext<RoleServer>) -> Result<(), McpError> {
        Ok(())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let r = self
            .0
            .forward(
                || {
                    ClientRequest::ListToolsRequest(rmcp::model::ListToolsRequest {
                        method: Default::default(),
                        params: request.clone(),
                        extensions: Default::default(),
                    })
                },
                &context.ct,
            )
            .await?;
        let ServerResult::ListToolsResult(list) = r else {
            return Err(McpError::internal_error(
                "unexpected answer to tools/list",
                None,
            ));
        };
        let mut tools = self.0.visible_tools(&list.tools);
        tools.dedup_by(|a, b| a.name == b.name);
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        *self.0.listed.lock().unwrap_or_else(|e| e.into_inner()) = names;
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        meta_from_context(&mut request, &context.meta);
        let id = match serde_json::to_value(&context.id) {
            Ok(Value::String(s)) => s,
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        };
        Ok(self
            .0
            .handle_call(request, context.ct.clone(), id)
            .await
            .into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        match self
            .0
            .forward(
                || {
                    ClientRequest::ListResourcesRequest(ListResourcesRequest {
                        method: Default::default(),
                        params: request.clone(),
                        extensions: Default::default(),
                    })
                },
                &context.ct,
            )
            .await?
        {
            ServerResult::ListResourcesResult(r) => Ok(r),
            _ => Err(McpError::internal_error(
                "unexpected answer to resources/list",
                None,
            )),
        }
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        match self
            .0
            .forward(
                || {
                    ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest {
                        method: Default::default(),
                        params: request.clone(),
                        extensions: Default::default(),
                    })
                },
                &context.ct,
            )
            .await?
        {
            ServerResult::ListResourceTemplatesResult(r) => Ok(r),
            _ => Err(McpError::internal_error(
                "unexpected answer to resources/templates/list",
                None,
            )),
        }
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match self
            .0
            .forward(
                || ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request.clone())),
                &context.ct,
            )
            .await?
        {
            ServerResult::ReadResourceResult(r) => Ok(r.into()),
            _ => Err(McpError::internal_error(
                "unexpected answer to resources/read",
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    /// `[tools]` is checked against `vane_tools::ctx::FRONT_TOOLS`: it must
    /// name exactly the front's tools.
    #[test]
    fn front_tool_names_are_the_ones_tools_config_knows() {
        let names: Vec<String> = super::Front::front_tools()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names, vane_tools::ctx::FRONT_TOOLS);
    }
}
