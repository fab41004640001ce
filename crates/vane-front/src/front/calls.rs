//! The task path of a call: every `tools/call` the direct path declined or
//! handed back, and every non-tool request. One loop decides, per attempt,
//! whether to answer, retry elsewhere or wait — never a failed call while a
//! healthy worker can answer it.

use super::*;
use crate::answer::Answer;
use crate::retry::{AfterClosed, CallPolicy};

/// The JSON-RPC code of a request the client cancelled (as LSP numbers it;
/// MCP expects no answer at all, but rmcp writes one for a handler's end).
const REQUEST_CANCELLED: rmcp::model::ErrorCode = rmcp::model::ErrorCode(-32800);

/// The answer of a call the client cancelled: typed `cancelled`, never
/// `internal`. No answer is due to the client; this one is for the books.
pub(crate) fn cancelled() -> CallToolResult {
    error_result(&err(ErrorCode::Cancelled, "cancelled by the client"))
}

impl Front {
    /// The active worker once it is healthy, waiting for a replacement up to
    /// `deadline`.
    pub(crate) async fn wait_active(&self, deadline: Instant) -> Option<Arc<Worker>> {
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

    pub(crate) fn timeout_for(&self, tool: &str) -> Duration {
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
    pub(crate) fn fallback(&self, w: &Worker) -> Option<Arc<Worker>> {
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

    pub(crate) fn new_key(&self) -> String {
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
        session: &Session,
        access: Access,
        request: CallToolRequestParams,
        ct: CancellationToken,
        request_id: String,
    ) -> Answer {
        let (r, done) = self
            .handle_call_deferred(session, access, request, ct, request_id)
            .await;
        if let Some(done) = done {
            self.finish_call(done, &r);
        }
        r
    }

    /// Records a finished call's metrics (see [`Front::handle_call_deferred`]).
    pub fn finish_call(&self, done: CallDone, r: &Answer) {
        self.ctx.telemetry.metrics.call_finished(
            &done.name,
            !r.is_error(),
            r.code(),
            done.started.elapsed(),
        );
    }

    /// [`Front::handle_call`] without its metrics, which the caller records
    /// with [`Front::finish_call`] once the answer is written.
    pub async fn handle_call_deferred(
        self: &Arc<Self>,
        session: &Session,
        access: Access,
        mut request: CallToolRequestParams,
        ct: CancellationToken,
        request_id: String,
    ) -> (Answer, Option<CallDone>) {
        if !access.admin() && self.is_admin_tool(&request.name) {
            let e = err(
                ErrorCode::Unauthorized,
                format!(
                    "`{}` is an admin tool; this client's token lacks the admin scope",
                    request.name
                ),
            )
            .with_details(json!({ "needs_scope": "admin" }));
            return (error_result(&e).into(), None);
        }
        session.annotate(&mut request, request_id);
        if self.tools.get(&request.name).is_some() {
            let name = request.name.to_string();
            return (self.front_tool(&name, request.arguments).await.into(), None);
        }
        self.ctx.telemetry.metrics.call_started();
        let started = Instant::now();
        let name = request.name.to_string();
        let policy = self.policy_for(&name, started);
        let r = self.forward_call_with(request, ct, None, policy).await;
        (r, Some(CallDone { name, started }))
    }

    /// Forwards one tool call: never a failed call while a healthy worker
    /// can answer it. Read-only calls are retried freely; mutating ones carry
    /// an idempotency key so a retry replays instead of running twice.
    pub async fn forward_call(
        self: &Arc<Self>,
        params: CallToolRequestParams,
        ct: CancellationToken,
    ) -> Answer {
        let policy = self.policy_for(&params.name, Instant::now());
        self.forward_call_with(params, ct, None, policy).await
    }

    /// The front's admin tools and the workers' (this build's, and what the
    /// active worker marks — a newer one may have more).
    pub(crate) fn is_admin_tool(&self, name: &str) -> bool {
        self.tools.get(name).is_some_and(|d| d.admin)
            || self.worker_admin.contains(name)
            || self
                .active_tx
                .borrow()
                .as_ref()
                .is_some_and(|w| w.tools().is_admin(name))
    }

    /// The retry policy of a call to `tool` that started at `started`.
    pub(crate) fn policy_for(&self, tool: &str, started: Instant) -> CallPolicy {
        CallPolicy::new(started, self.timeout_for(tool), self.cfg.max_retries)
    }

    /// [`Front::forward_call`] from any point of a call's life: `prefer` is
    /// tried first; `policy` carries the call's deadline and the retries
    /// already spent (a call resumed from the direct path keeps both).
    pub(crate) async fn forward_call_with(
        self: &Arc<Self>,
        mut params: CallToolRequestParams,
        ct: CancellationToken,
        mut prefer: Option<Arc<Worker>>,
        mut policy: CallPolicy,
    ) -> Answer {
        let name = params.name.to_string();
        let mut keyed = params
            .meta
            .as_ref()
            .is_some_and(|m| m.0.contains_key(meta::IDEMPOTENCY_KEY));
        let timed = !LONG_TOOLS.contains(&name.as_str());
        loop {
            let w = match prefer.take() {
                Some(w) => w,
                None => match self.wait_active(policy.deadline()).await {
                    Some(w) => w,
                    None => {
                        return error_result(&err(
                            ErrorCode::Timeout,
                            format!(
                                "`{name}`: no worker was available within {} ms",
                                policy.timeout().as_millis()
                            ),
                        ))
                        .into()
                    }
                },
            };
            let read_only = w.tools().is_read_only(&name, params.arguments.as_ref());
            if !read_only && !keyed {
                let meta = params.meta.get_or_insert_with(Default::default);
                meta.0
                    .insert(meta::IDEMPOTENCY_KEY.into(), Value::String(self.new_key()));
                keyed = true;
            }
            let t0 = Instant::now();
            let r = w.call_tool(&params, policy.remaining(t0), Some(&ct)).await;
            let elapsed = t0.elapsed();
            match r {
                Ok(res) => {
                    let code = res.code();
                    let failed = code == Some(ErrorCode::Internal.as_str());
                    w.stats.record(elapsed, res.is_error(), failed, timed);
                    if code == Some(ErrorCode::IdempotencyKeyInProgress.as_str()) {
                        if let Some(d) = policy.wait_busy(Instant::now()) {
                            tokio::time::sleep(d).await;
                            continue;
                        }
                    }
                    if failed && policy.may_retry_fault() {
                        let alt = self.fallback(&w);
                        if policy.retry_fault(alt.is_some()) {
                            let alt = alt.expect("retry_fault checked it");
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
                    return Answer::Worker(res);
                }
                Err(CallError::Closed) => {
                    w.stats.record(elapsed, true, true, false);
                    w.mark_broken();
                    w.kill();
                    if let AfterClosed::GiveUp { closed } = policy.after_closed() {
                        return error_result(&err(
                            ErrorCode::Internal,
                            format!("`{name}`: workers kept failing ({closed} in a row)"),
                        ))
                        .into();
                    }
                }
                Err(CallError::Timeout(_)) => {
                    w.stats.record(elapsed, true, true, timed);
                    let t = policy.timeout();
                    return error_result(&err(
                        ErrorCode::Timeout,
                        format!("`{name}` did not finish within {} ms; the worker was told to cancel it", t.as_millis()),
                    ).with_details(json!({ "timeout_ms": t.as_millis() as u64 }))).into();
                }
                Err(CallError::Cancelled) => return cancelled().into(),
                Err(CallError::Protocol(m)) => {
                    w.stats.record(elapsed, true, true, timed);
                    return error_result(&err(ErrorCode::Internal, m)).into();
                }
            }
        }
    }

    /// Forwards a non-tool request (lists, resource reads) to the active
    /// worker; these are all read-only and retried across worker deaths.
    pub(crate) async fn forward(
        &self,
        req: impl Fn() -> ClientRequest,
        ct: &CancellationToken,
    ) -> Result<ServerResult, McpError> {
        let mut policy = CallPolicy::new(
            Instant::now(),
            ms(self.cfg.call_timeout_ms),
            self.cfg.max_retries,
        );
        while let Some(w) = self.wait_active(policy.deadline()).await {
            match w
                .request(req(), policy.remaining(Instant::now()), Some(ct))
                .await
            {
                Ok(r) => return Ok(r),
                Err(CallError::Closed) => {
                    w.mark_broken();
                    w.kill();
                    if let AfterClosed::GiveUp { .. } = policy.after_closed() {
                        break;
                    }
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
                    return Err(McpError::new(
                        REQUEST_CANCELLED,
                        "request cancelled by the client",
                        None,
                    ))
                }
            }
        }
        Err(McpError::internal_error(
            "no worker was available to answer",
            None,
        ))
    }
}
