//! The direct path of a `tools/call`: the client's reader thread writes the
//! call to the active worker, the worker's reader thread writes the answer
//! to the client — no event loop in between (see `pipes` for why). Anything
//! out of the ordinary goes back to the task path, which has the whole
//! retry logic: a worker that dies with the call (retried through its
//! idempotency key), an `internal` error with somewhere else to retry, a
//! reservation still in progress. Timeouts are swept on the event loop.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;
use vane_core::contract::meta;
use vane_core::ErrorCode;
use vane_tools::server::error_result;

use super::{err, CallDone, DirectEntry, Front, LONG_TOOLS};
use crate::answer::{raw_answer_line, skim, Answer, RawAnswer};
use crate::pipes::Out;
use crate::retry::CallPolicy;
use crate::transport::{DirectCall, Lane, Waiter};
use crate::worker::Worker;

/// How often the front looks for direct calls past their deadline.
const SWEEP: Duration = Duration::from_millis(50);

/// The request id as the worker logs it: a string id as it is, a number as
/// its digits.
fn request_id_of(id_raw: &str) -> String {
    match serde_json::from_str::<Value>(id_raw) {
        Ok(Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => id_raw.to_string(),
    }
}

/// A `tools/call`'s params, read without decoding the arguments; anything
/// beyond these fields takes the general path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LiteCall<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "_meta", borrow)]
    meta: Option<&'a RawValue>,
}

struct Direct {
    front: Arc<Front>,
    worker: Arc<Worker>,
    out: Arc<Out>,
    id_raw: String,
    /// the request line sent, and where its `params` lie (decoded only if
    /// the call must be resumed as a task)
    request: Vec<u8>,
    params_at: std::ops::Range<usize>,
    name: String,
    n: u64,
    started: Instant,
    timed: bool,
}

impl Direct {
    /// The call's parameters as sent (with the front's `_meta`).
    fn params(&self) -> Result<CallToolRequestParams, String> {
        serde_json::from_slice(&self.request[self.params_at.clone()])
            .map_err(|e| format!("cannot resume the call: {e}"))
    }

    /// Continues the call as a task (see [`Front::resume`]).
    fn resume(self, prefer: Option<Arc<Worker>>, policy: CallPolicy, delay: Option<Duration>) {
        let params = self.params();
        let Direct {
            front,
            id_raw,
            name,
            ..
        } = self;
        front.resume(id_raw, params, name, prefer, policy, delay);
    }

    /// Off the front's books (the waiter is already off the lane).
    fn settle(&self) {
        self.front
            .direct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id_raw);
        self.worker.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn finish(&self, r: &Answer) {
        self.front.finish_call(
            CallDone {
                name: self.name.clone(),
                started: self.started,
            },
            r,
        );
    }

    /// Tells the worker to stop the call (from any thread).
    fn cancel_on_worker(&self, why: &str) {
        let lane = self.worker.lane().clone();
        let line = Lane::cancel_line(self.n, why);
        self.front.rt.spawn(async move {
            lane.send(line).await;
        });
    }

    /// The front's own answer, written from whichever thread finished.
    fn answer_with(&self, r: CallToolResult) {
        let r = Answer::Front(r);
        if let Some(line) = r.line(&self.id_raw) {
            let out = self.out.clone();
            self.front.rt.spawn(async move {
                let _ = out.line_async(line, Arc::new(|| false)).await;
            });
        }
        self.finish(&r);
    }
}

impl DirectCall for Direct {
    fn answered(self: Box<Self>, answer: RawAnswer) {
        let elapsed = self.started.elapsed();
        let (is_error, code) = match skim(&answer) {
            Ok(skimmed) => skimmed,
            Err(why) => {
                self.settle();
                self.worker.stats.record(elapsed, true, true, self.timed);
                let r = Answer::Front(error_result(&err(ErrorCode::Internal, why)));
                if let Some(line) = r.line(&self.id_raw) {
                    let _ = self.out.line_queued(&line);
                }
                self.finish(&r);
                return;
            }
        };
        let failed = code.as_deref() == Some(ErrorCode::Internal.as_str());
        let busy = code.as_deref() == Some(ErrorCode::IdempotencyKeyInProgress.as_str());
        // the same policy the task path follows, from this attempt on
        let mut policy = self.front.policy_for(&self.name, self.started);
        let alt = if failed && policy.may_retry_fault() {
            self.front.fallback(&self.worker)
        } else {
            None
        };
        let delay = if busy {
            policy.wait_busy(Instant::now())
        } else {
            None
        };
        if delay.is_some() || alt.is_some() {
            self.settle();
            self.worker
                .stats
                .record(elapsed, is_error, failed, self.timed);
            if let Some(alt) = &alt {
                self.front.emit(
                    "call_retried",
                    json!({ "tool": self.name, "from": self.worker.id, "to": alt.id, "why": "internal error" }),
                );
            }
            if alt.is_some() {
                policy.retry_fault(true);
            }
            return (*self).resume(alt, policy, delay);
        }
        // the ordinary case: the worker's answer, as its bytes, at once;
        // the books after
        let line = raw_answer_line(&self.id_raw, &answer);
        let _ = self.out.line_queued(&line);
        self.settle();
        self.worker
            .stats
            .record(elapsed, is_error, failed, self.timed);
        self.front.ctx.telemetry.metrics.call_finished(
            &self.name,
            !is_error,
            code.as_deref(),
            self.started.elapsed(),
        );
    }

    fn closed(self: Box<Self>) {
        self.settle();
        let w = &self.worker;
        w.stats.record(self.started.elapsed(), true, true, false);
        w.mark_broken();
        w.kill();
        let mut policy = self.front.policy_for(&self.name, self.started);
        // the first death of this call: never more than the policy allows
        let _ = policy.after_closed();
        (*self).resume(None, policy, None);
    }

    fn timed_out(self: Box<Self>) {
        self.settle();
        let t = self.front.timeout_for(&self.name);
        self.worker
            .stats
            .record(self.started.elapsed(), true, true, self.timed);
        self.cancel_on_worker("timeout");
        self.answer_with(error_result(
            &err(
                ErrorCode::Timeout,
                format!(
                    "`{}` did not finish within {} ms; the worker was told to cancel it",
                    self.name,
                    t.as_millis()
                ),
            )
            .with_details(json!({ "timeout_ms": t.as_millis() as u64 })),
        ));
    }

    fn cancelled(self: Box<Self>) {
        self.settle();
        self.cancel_on_worker("cancelled by the client");
        // no answer is due; the metrics still see the call end
        self.finish(&super::calls::cancelled().into());
    }
}

impl Front {
    /// Where the answers to the client go (set once, by its transport).
    pub fn set_client_out(&self, out: Arc<Out>) {
        let _ = self.client_out.set(out);
    }

    /// Forwards a client's `tools/call` from the calling thread when the
    /// ordinary case holds: a healthy active worker, no canary to shadow to,
    /// not one of the front's own tools. `params` is the request's raw
    /// `params`; the request line to the worker is spliced from its bytes
    /// (name and arguments as the client wrote them, `_meta` the front's).
    /// Returns the call, decoded, when it is not taken (it then runs as a
    /// task, [`Front::spawn_call`]); `Err` when `params` is not a call.
    pub fn try_direct(
        self: &Arc<Self>,
        id_raw: &str,
        params: &RawValue,
    ) -> Result<Option<CallToolRequestParams>, serde_json::Error> {
        let decline = || serde_json::from_str::<CallToolRequestParams>(params.get()).map(Some);
        let Ok(call) = serde_json::from_str::<LiteCall>(params.get()) else {
            return decline();
        };
        if self.tools.get(&call.name).is_some() {
            return decline();
        }
        let Some(out) = self.client_out.get().cloned() else {
            return decline();
        };
        let active = self.active_tx.borrow().clone();
        let Some(w) = active.filter(|w| w.healthy()) else {
            return decline();
        };
        if self.cfg.shadow.enabled && self.routes().canary.is_some() {
            return decline();
        }
        let tools = w.tools();
        let read_only = if tools.depends_on_arguments(&call.name) {
            let args = call
                .arguments
                .and_then(|a| serde_json::from_str::<Map<String, Value>>(a.get()).ok());
            tools.is_read_only(&call.name, args.as_ref())
        } else {
            tools.is_read_only(&call.name, None)
        };
        drop(tools);
        // _meta: the client's (rarely any) without a progress token, plus
        // who the client is and, for a mutation, an idempotency key
        let mut meta = Vec::with_capacity(256);
        let mut keyed = false;
        if let Some(m) = call.meta {
            // values kept as the client wrote them, never decoded
            let Ok(m) =
                serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(m.get())
            else {
                return decline();
            };
            for (k, v) in &m {
                match k.as_ref() {
                    meta::PROGRESS_TOKEN | meta::CLIENT => {}
                    k => {
                        keyed |= k == meta::IDEMPOTENCY_KEY;
                        serde_json::to_writer(&mut meta, k)?;
                        meta.push(b':');
                        meta.extend_from_slice(v.get().as_bytes());
                        meta.push(b',');
                    }
                }
            }
        }
        if !read_only && !keyed {
            serde_json::to_writer(&mut meta, meta::IDEMPOTENCY_KEY)?;
            meta.push(b':');
            serde_json::to_writer(&mut meta, &self.new_key())?;
            meta.push(b',');
        }
        serde_json::to_writer(&mut meta, meta::CLIENT)?;
        meta.extend_from_slice(b":{\"request_id\":");
        if id_raw.starts_with('"') {
            meta.extend_from_slice(id_raw.as_bytes());
        } else {
            serde_json::to_writer(&mut meta, &request_id_of(id_raw))?;
        }
        let Some(session) = self.stdio_session() else {
            return decline();
        };
        meta.extend_from_slice(session.client_meta().as_bytes());
        let lane = w.lane().clone();
        let n = lane.next_call();
        let mut line = Vec::with_capacity(params.get().len() + meta.len() + 96);
        line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":\"f:");
        line.extend_from_slice(n.to_string().as_bytes());
        line.extend_from_slice(b"\",\"method\":\"tools/call\",\"params\":");
        let from = line.len();
        line.extend_from_slice(b"{\"name\":");
        serde_json::to_writer(&mut line, call.name.as_ref())?;
        if let Some(a) = call.arguments {
            line.extend_from_slice(b",\"arguments\":");
            line.extend_from_slice(a.get().as_bytes());
        }
        line.extend_from_slice(b",\"_meta\":{");
        line.extend_from_slice(&meta);
        line.extend_from_slice(b"}}");
        let params_at = from..line.len();
        line.extend_from_slice(b"}\n");
        let name = call.name.into_owned();
        let started = Instant::now();
        self.ctx.telemetry.metrics.call_started();
        w.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        self.direct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id_raw.to_string(),
                DirectEntry {
                    worker: w.clone(),
                    n,
                    deadline: started + self.timeout_for(&name),
                },
            );
        let call = Box::new(Direct {
            front: self.clone(),
            worker: w.clone(),
            out,
            id_raw: id_raw.to_string(),
            request: line.clone(),
            params_at,
            timed: !LONG_TOOLS.contains(&name.as_str()),
            name,
            n,
            started,
        });
        if let Err(Waiter::Direct(call)) = lane.register(n, Waiter::Direct(call)) {
            call.closed();
            return Ok(None);
        }
        if !lane.send_blocking(&line, &|| !w.healthy()) {
            if let Some(Waiter::Direct(call)) = lane.take(n) {
                call.closed();
            }
        }
        Ok(None)
    }

    /// The client withdrew a direct-path call: `false` if it is not one.
    pub fn cancel_direct(&self, id_raw: &str) -> bool {
        let entry = self
            .direct
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id_raw);
        let Some(e) = entry else { return false };
        if let Some(Waiter::Direct(call)) = e.worker.lane().take(e.n) {
            call.cancelled();
        }
        true
    }

    /// The client withdrew a call running as a task: `false` if it is not one.
    pub fn cancel_task(&self, id_raw: &str) -> bool {
        let t = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id_raw);
        t.map(|t| t.cancel()).is_some()
    }

    /// Answers direct-path calls past their deadline with `timeout`, for as
    /// long as the front lives.
    pub async fn sweep_direct(front: Weak<Front>) {
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(front) = front.upgrade() else { return };
            let now = Instant::now();
            let expired: Vec<DirectEntry> = {
                let mut d = front.direct.lock().unwrap_or_else(|e| e.into_inner());
                if d.is_empty() {
                    continue;
                }
                let ids: Vec<String> = d
                    .iter()
                    .filter(|(_, e)| e.deadline <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().filter_map(|id| d.remove(id)).collect()
            };
            for e in expired {
                if let Some(Waiter::Direct(call)) = e.worker.lane().take(e.n) {
                    call.timed_out();
                }
            }
        }
    }

    /// One client `tools/call` as a task: the front's own tools, calls the
    /// direct path declined, and every retry.
    pub fn spawn_call(self: &Arc<Self>, id_raw: String, params: CallToolRequestParams) {
        let ct = self.track(&id_raw);
        let front = self.clone();
        tokio::spawn(async move {
            let Some(session) = front.stdio_session().cloned() else {
                return;
            };
            let (r, done) = front
                .handle_call_deferred(
                    &session,
                    session.access,
                    params,
                    ct.clone(),
                    request_id_of(&id_raw),
                )
                .await;
            front.answer_task(&id_raw, &ct, r, done).await;
        });
    }

    fn track(&self, id_raw: &str) -> CancellationToken {
        let ct = CancellationToken::new();
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id_raw.to_string(), ct.clone());
        ct
    }

    /// Writes a task's answer (unless the client withdrew the call), then
    /// records its metrics.
    async fn answer_task(
        &self,
        id_raw: &str,
        ct: &CancellationToken,
        r: Answer,
        done: Option<CallDone>,
    ) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id_raw);
        // a withdrawn call is owed no answer
        if !ct.is_cancelled() {
            if let (Some(line), Some(out)) = (r.line(id_raw), self.client_out.get()) {
                let _ = out.line_async(line, Arc::new(|| false)).await;
            }
        }
        if let Some(done) = done {
            self.finish_call(done, &r);
        }
    }

    /// Continues a direct-path call as a task, from the retry policy's
    /// point after the first attempt: same deadline, retries already spent.
    #[allow(clippy::too_many_arguments)]
    fn resume(
        self: Arc<Self>,
        id_raw: String,
        params: Result<CallToolRequestParams, String>,
        name: String,
        prefer: Option<Arc<Worker>>,
        policy: CallPolicy,
        delay: Option<Duration>,
    ) {
        let started = policy.started();
        let ct = self.track(&id_raw);
        let front = self.clone();
        self.rt.spawn(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let r = match params {
                Ok(params) => {
                    front
                        .forward_call_with(params, ct.clone(), prefer, policy)
                        .await
                }
                Err(why) => error_result(&err(ErrorCode::Internal, why)).into(),
            };
            front
                .answer_task(&id_raw, &ct, r, Some(CallDone { name, started }))
                .await;
        });
    }
}
