//! One worker: a `vane worker` child process driven over its stdin/stdout
//! with the rmcp client. Owns the child's lifecycle (spawn, readiness,
//! liveness pings, stderr draining, drain → EOF → SIGTERM → SIGKILL) and the
//! numbers the front routes and rolls back by.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CancelledNotification, CancelledNotificationParam, ClientConfig,
    ClientNotification, ClientRequest, Implementation, ListToolsRequest, PingRequest, ServerResult,
    Tool,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService, ServiceError};
use rmcp::{Peer, RoleClient, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::answer::WorkerAnswer;
use vane_core::contract::meta;

/// What the front asks of a worker process.
#[derive(Debug, Clone)]
pub struct Spec {
    pub binary: PathBuf,
    pub dry_run: bool,
    pub workspace: PathBuf,
    pub state_dir: Option<PathBuf>,
}

pub use vane_core::contract::health::{Role, WindowStats};

/// Something a worker tells the front's supervisor.
#[derive(Debug)]
pub enum WorkerEvent {
    Exited {
        id: u64,
        status: String,
        crashed: bool,
    },
    ToolsChanged {
        id: u64,
    },
    ResourcesChanged {
        id: u64,
    },
    CircuitOpen {
        id: u64,
        failures: u32,
    },
}

/// The rmcp client handler of one worker connection: relays list changes.
#[derive(Clone)]
struct WorkerClient {
    id: u64,
    events: mpsc::UnboundedSender<WorkerEvent>,
}

impl rmcp::ClientHandler for WorkerClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            Default::default(),
            Implementation::new("vane-front", vane_tools::ctx::VERSION),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.events.send(WorkerEvent::ToolsChanged { id: self.id });
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self
            .events
            .send(WorkerEvent::ResourcesChanged { id: self.id });
    }
}

/// Why a forwarded request did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// the worker's connection is gone (it died or is being replaced)
    Closed,
    Timeout(Duration),
    /// the client cancelled the request
    Cancelled,
    Protocol(String),
}

/// Tools the worker lists, and which of them are read-only.
#[derive(Debug, Default)]
pub struct ToolSet {
    pub tools: Vec<Tool>,
    read_only: HashSet<String>,
    /// tools that mutate only when an argument is present (`plan_next` + `claim`)
    mutates_when: Vec<(String, String)>,
    /// admin tools (`_meta["vane/admin"]`)
    admin: HashSet<String>,
}

impl ToolSet {
    pub fn new(tools: Vec<Tool>) -> ToolSet {
        let read_only = tools
            .iter()
            .filter(|t| {
                t.annotations
                    .as_ref()
                    .and_then(|a| a.read_only_hint)
                    .unwrap_or(false)
            })
            .map(|t| t.name.to_string())
            .collect();
        let mutates_when = tools
            .iter()
            .filter_map(|t| {
                let f = t.meta.as_ref()?.0.get(meta::MUTATES_WHEN)?.as_str()?;
                Some((t.name.to_string(), f.to_string()))
            })
            .collect();
        let admin = tools
            .iter()
            .filter(|t| {
                t.meta
                    .as_ref()
                    .and_then(|m| m.0.get(meta::ADMIN))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false)
            })
            .map(|t| t.name.to_string())
            .collect();
        ToolSet {
            tools,
            read_only,
            mutates_when,
            admin,
        }
    }

    /// Is this one of the worker's admin tools?
    pub fn is_admin(&self, name: &str) -> bool {
        self.admin.contains(name)
    }

    /// Does this call only read? Unknown tools count as mutating: a key on
    /// them costs nothing.
    pub fn is_read_only(
        &self,
        name: &str,
        args: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> bool {
        if self.read_only.contains(name) {
            return true;
        }
        self.mutates_when.iter().any(|(tool, field)| {
            tool == name && args.is_none_or(|a| a.get(field).is_none_or(|v| v.is_null()))
        })
    }

    /// Whether [`ToolSet::is_read_only`] needs this call's arguments.
    pub fn depends_on_arguments(&self, name: &str) -> bool {
        !self.read_only.contains(name) && self.mutates_when.iter().any(|(t, _)| t == name)
    }

    pub fn fingerprint(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tools.iter().map(|t| t.name.to_string()).collect();
        v.sort();
        v
    }
}

/// One call's outcome as the rollback watch counts it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    latency_us: u32,
    failed: bool,
    timed: bool,
}

const MAX_SAMPLES: usize = 100_000;

#[derive(Debug, Default)]
pub struct ShadowStats {
    pub compared: AtomicU64,
    pub matched: AtomicU64,
    pub differed: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub skipped: AtomicU64,
    pub last_diffs: Mutex<VecDeque<serde_json::Value>>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    /// `isError` results (all codes)
    pub errors: AtomicU64,
    /// transport failures, timeouts and `internal` errors: the worker's fault
    pub failures: AtomicU64,
    pub in_flight: AtomicI64,
    pub ping_failures: AtomicU32,
    pub circuit_open: AtomicBool,
    pub rss_bytes: AtomicU64,
    pub last_ping_us: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
    pub shadow: ShadowStats,
}

impl Stats {
    /// Records one finished call. `timed`: counts toward the latency SLO.
    pub fn record(&self, latency: Duration, is_error: bool, failed: bool, timed: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if is_error || failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= MAX_SAMPLES {
            s.pop_front();
        }
        s.push_back(Sample {
            at: Instant::now(),
            latency_us: latency.as_micros().min(u32::MAX as u128) as u32,
            failed,
            timed,
        });
    }

    pub fn window(&self, window: Duration) -> WindowStats {
        let now = Instant::now();
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        while s.front().is_some_and(|x| now.duration_since(x.at) > window) {
            s.pop_front();
        }
        let calls = s.len() as u64;
        let failures = s.iter().filter(|x| x.failed).count() as u64;
        let mut lat: Vec<u32> = s.iter().filter(|x| x.timed).map(|x| x.latency_us).collect();
        drop(s);
        let p95 = if lat.is_empty() {
            0
        } else {
            vane_telemetry::metrics::percentile_u32(&mut lat, 0.95)
        };
        WindowStats {
            calls,
            failures,
            error_rate: if calls == 0 {
                0.0
            } else {
                failures as f64 / calls as f64
            },
            latency_samples: lat.len() as u64,
            p95_ms: p95 as f64 / 1000.0,
        }
    }
}

pub struct Worker {
    /// front-local number, also `VANE_WORKER_ID` in the child's environment
    pub id: u64,
    pub spec: Spec,
    pub pid: u32,
    pub started: Instant,
    pub started_at: String,
    pub version: String,
    role: Mutex<Role>,
    /// why it is Failed, or other notes for people
    note: Mutex<Option<String>>,
    pub peer: Peer<RoleClient>,
    /// `tools/call` goes here, past rmcp's request machinery
    lane: Arc<crate::transport::Lane>,
    service: Mutex<Option<RunningService<RoleClient, WorkerClient>>>,
    tools: RwLock<Arc<ToolSet>>,
    pub stats: Stats,
    /// set when the connection failed; the process may still be exiting
    broken: AtomicBool,
    exit: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("role", &self.role())
            .finish()
    }
}

/// Knobs of a worker's start and liveness.
#[derive(Debug, Clone)]
pub struct Timing {
    pub ready_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub ping_failures_to_open: u32,
}

pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> (String, bool) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(0), _) => ("exited with code 0".into(), false),
            (Some(c), _) => (format!("exited with code {c}"), true),
            (None, Some(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| sig.to_string());
                (format!("killed by {name}"), true)
            }
            _ => ("exited".into(), true),
        },
        Err(e) => (format!("wait failed: {e}"), true),
    }
}

impl Worker {
    /// Starts the process, completes the MCP handshake and a self-check
    /// (tools/list and a `status` call) within `ready_timeout`; on failure the
    /// process is killed and the reason returned.
    pub async fn spawn(
        id: u64,
        spec: Spec,
        timing: &Timing,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) -> Result<Arc<Worker>, String> {
        let mut cmd = tokio::process::Command::new(&spec.binary);
        cmd.arg("worker").arg("--workspace").arg(&spec.workspace);
        if let Some(sd) = &spec.state_dir {
            cmd.arg("--state-dir").arg(sd);
        }
        cmd.env("VANE_WORKER_ID", id.to_string());
        cmd.env(vane_tools::server::SELF_CHECK_ENV, self_check_token());
        if spec.dry_run {
            cmd.env("VANE_DRY_RUN", "1");
        } else {
            cmd.env_remove("VANE_DRY_RUN");
        }
        // stdin and stdout are plain pipes: threads of the front's direct
        // path read and write them (see `pipes`)
        let pipes = std::io::pipe().and_then(|a| std::io::pipe().map(|b| (a, b)));
        let ((child_in, stdin), (stdout, child_out)) =
            pipes.map_err(|e| format!("cannot make pipes for a worker: {e}"))?;
        cmd.stdin(Stdio::from(child_in))
            .stdout(Stdio::from(child_out))
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        // the child's ends must close here, or its death would go unseen
        drop(cmd);
        let mut child =
            spawned.map_err(|e| format!("cannot start {}: {e}", spec.binary.display()))?;
        let pid = child.id().unwrap_or(0);
        let stderr = child.stderr.take();
        // Drain stderr into our log: an unread pipe would stall the worker.
        if let Some(stderr) = stderr {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(target: "vane::worker", worker = id, pid, "{line}");
                }
            });
        }
        // Reap the child and report its exit.
        let (exit_tx, exit_rx) = watch::channel(None);
        let ev = events.clone();
        tokio::spawn(async move {
            let (status, crashed) = describe(child.wait().await);
            let _ = exit_tx.send(Some(status.clone()));
            let _ = ev.send(WorkerEvent::Exited {
                id,
                status,
                crashed,
            });
        });
        let handler = WorkerClient {
            id,
            events: events.clone(),
        };
        let kill = || {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        let ready = async {
            let transport = crate::transport::WorkerTransport::new(
                stdout.into(),
                stdin.into(),
                format!("vane-worker-{id}"),
            )
            .map_err(|e| format!("cannot start the worker's reader: {e}"))?;
            let lane = transport.lane();
            let service = handler
                .serve(transport)
                .await
                .map_err(|e| format!("MCP handshake failed: {e}"))?;
            let version = service
                .peer_info()
                .and_then(|i| i.server_info.as_ref().map(|s| s.version.clone()))
                .unwrap_or_default();
            let tools = service
                .list_all_tools()
                .await
                .map_err(|e| format!("self-check tools/list failed: {e}"))?;
            if !tools.iter().any(|t| t.name == "status") {
                return Err("self-check: the worker lists no `status` tool".to_string());
            }
            let mut probe = CallToolRequestParams::new("status");
            let mut meta = serde_json::Map::new();
            meta.insert(
                vane_core::contract::meta::SELF_CHECK.into(),
                serde_json::Value::String(self_check_token().to_string()),
            );
            probe.meta = Some(rmcp::model::RequestMetaObject(rmcp::model::MetaObject(
                meta,
            )));
            let st = lane
                .call(&probe, timing.ready_timeout, None)
                .await
                .map_err(|e| format!("self-check status call failed: {e:?}"))?;
            if st.is_error() {
                let r = st.decode().unwrap_or_default();
                return Err(format!(
                    "self-check: status returned an error: {}",
                    r.structured_content.unwrap_or_default()
                ));
            }
            Ok((service, version, tools, lane))
        };
        let (service, version, tools, lane) =
            match tokio::time::timeout(timing.ready_timeout, ready).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    kill();
                    return Err(e);
                }
                Err(_) => {
                    kill();
                    return Err(format!(
                        "not ready within {} ms",
                        timing.ready_timeout.as_millis()
                    ));
                }
            };
        let w = Arc::new(Worker {
            id,
            pid,
            started: Instant::now(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            version,
            role: Mutex::new(if spec.dry_run {
                Role::Canary
            } else {
                Role::Standby
            }),
            note: Mutex::new(None),
            peer: service.peer().clone(),
            lane,
            service: Mutex::new(Some(service)),
            tools: RwLock::new(Arc::new(ToolSet::new(tools))),
            stats: Stats::default(),
            broken: AtomicBool::new(false),
            exit: exit_rx,
            spec,
        });
        w.stats.rss_bytes.store(rss_of(pid), Ordering::Relaxed);
        tokio::spawn(Worker::liveness(Arc::downgrade(&w), timing.clone(), events));
        Ok(w)
    }

    /// MCP `ping` every interval; N failures in a row open the circuit, a
    /// success closes it. Samples resident memory on the same beat.
    async fn liveness(
        w: std::sync::Weak<Worker>,
        timing: Timing,
        events: mpsc::UnboundedSender<WorkerEvent>,
    ) {
        let mut tick = tokio::time::interval(timing.ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(w) = w.upgrade() else { return };
            if w.exited().is_some() {
                return;
            }
            w.stats.rss_bytes.store(rss_of(w.pid), Ordering::Relaxed);
            let t0 = Instant::now();
            let ok = w
                .request(
                    ClientRequest::PingRequest(PingRequest::default()),
                    timing.ping_timeout,
                    None,
                )
                .await
                .is_ok();
            if ok {
                w.stats
                    .last_ping_us
                    .store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                w.stats.ping_failures.store(0, Ordering::Relaxed);
                w.stats.circuit_open.store(false, Ordering::Relaxed);
            } else {
                let n = w.stats.ping_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= timing.ping_failures_to_open
                    && !w.stats.circuit_open.swap(true, Ordering::Relaxed)
                {
                    let _ = events.send(WorkerEvent::CircuitOpen {
                        id: w.id,
                        failures: n,
                    });
                }
            }
        }
    }

    pub fn role(&self) -> Role {
        *self.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_role(&self, r: Role) {
        *self.role.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    pub fn note(&self) -> Option<String> {
        self.note.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_note(&self, n: impl Into<String>) {
        *self.note.lock().unwrap_or_else(|e| e.into_inner()) = Some(n.into());
    }

    pub fn exited(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Alive, connected and with a closed circuit: fit to take calls.
    pub fn healthy(&self) -> bool {
        !self.broken.load(Ordering::Relaxed)
            && self.exit.borrow().is_none()
            && !self.stats.circuit_open.load(Ordering::Relaxed)
    }

    pub fn mark_broken(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    pub fn tools(&self) -> Arc<ToolSet> {
        self.tools.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The fast lane to this worker.
    pub fn lane(&self) -> &Arc<crate::transport::Lane> {
        &self.lane
    }

    pub fn rss(&self) -> u64 {
        self.stats.rss_bytes.load(Ordering::Relaxed)
    }

    /// Asks the worker for its tool list again (after `list_changed`).
    pub async fn refresh_tools(&self, timeout: Duration) -> Result<Arc<ToolSet>, CallError> {
        let r = self
            .request(
                ClientRequest::ListToolsRequest(ListToolsRequest {
                    method: Default::default(),
                    params: None,
                    extensions: Default::default(),
                }),
                timeout,
                None,
            )
            .await?;
        let ServerResult::ListToolsResult(list) = r else {
            return Err(CallError::Protocol(
                "unexpected answer to tools/list".into(),
            ));
        };
        let set = Arc::new(ToolSet::new(list.tools));
        *self.tools.write().unwrap_or_else(|e| e.into_inner()) = set.clone();
        Ok(set)
    }

    /// Sends one request and waits for its answer, at most `timeout`; on a
    /// timeout or a cancellation by the client the worker is sent
    /// `notifications/cancelled` for it.
    pub async fn request(
        &self,
        req: ClientRequest,
        timeout: Duration,
        ct: Option<&CancellationToken>,
    ) -> Result<ServerResult, CallError> {
        let handle = self
            .peer
            .send_request_with_option(req, PeerRequestOptions::no_options())
            .await
            .map_err(|_| CallError::Closed)?;
        let id = handle.id.clone();
        let cancelled = async {
            match ct {
                Some(ct) => ct.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, handle.await_response()) => match r {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(ServiceError::TransportClosed)) | Ok(Err(ServiceError::TransportSend(_))) => return Err(CallError::Closed),
                Ok(Err(ServiceError::Cancelled { .. })) => return Err(CallError::Closed),
                Ok(Err(ServiceError::McpError(e))) => return Err(CallError::Protocol(serde_json::to_string(&e).unwrap_or_default())),
                Ok(Err(e)) => return Err(CallError::Protocol(e.to_string())),
                Err(_) => (CallError::Timeout(timeout), "timeout"),
            },
            _ = cancelled => (CallError::Cancelled, "cancelled by the client"),
        };
        let note = CancelledNotification::new(CancelledNotificationParam::new(
            Some(id),
            Some(outcome.1.into()),
        ));
        let _ = self
            .peer
            .send_notification(ClientNotification::CancelledNotification(note))
            .await;
        Err(outcome.0)
    }

    /// Forwards a tool call over the fast lane, counting it in flight. The
    /// answer is a stub whose bytes wait for the client (see `transport`).
    pub async fn call_tool(
        &self,
        params: &CallToolRequestParams,
        timeout: Duration,
        ct: Option<&CancellationToken>,
    ) -> Result<WorkerAnswer, CallError> {
        use crate::transport::LaneError;
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let r = self.lane.call(params, timeout, ct).await;
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        r.map_err(|e| match e {
            LaneError::Closed => CallError::Closed,
            LaneError::Timeout => CallError::Timeout(timeout),
            LaneError::Cancelled => CallError::Cancelled,
            LaneError::Protocol(m) => CallError::Protocol(m),
        })
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        if self.exited().is_none() && self.pid > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig);
        }
    }

    pub fn kill(&self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    async fn wait_exit(&self, within: Duration) -> bool {
        let mut rx = self.exit.clone();
        let r = tokio::time::timeout(within, rx.wait_for(|e| e.is_some())).await;
        r.is_ok()
    }

    /// Lets in-flight calls finish (up to `drain`), then closes the worker's
    /// stdin (a clean exit), then SIGTERM, then SIGKILL, `grace` apart.
    pub async fn retire(&self, drain: Duration, grace: Duration) {
        self.set_role(Role::Retiring);
        let deadline = Instant::now() + drain;
        while self.stats.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let service = self
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = service {
            let _ = tokio::time::timeout(grace, s.cancel()).await;
        }
        self.lane.close_writer();
        if self.wait_exit(grace).await {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if self.wait_exit(grace).await {
            return;
        }
        self.kill();
        self.wait_exit(grace).await;
    }
}

/// This front's secret for marking its readiness probes: a worker counts and
/// logs every call except one whose `_meta["vane/self_check"]` equals the
/// token its front gave it — a client cannot hide its calls by claiming to be
/// a self-check.
pub fn self_check_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        use std::io::Read;
        let mut b = [0u8; 16];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
        hex::encode(b)
    })
}
