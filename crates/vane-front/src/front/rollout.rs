//! Rollout: the dry-run canary and shadowing of read-only calls, probes,
//! promote and rollback (with the previous worker as hot standby), and the
//! rollback watch over a newly promoted worker.

use super::*;
use crate::answer::WorkerAnswer;
use crate::compare::{judge, Judged};
pub use crate::verdict::Reason;
use crate::verdict::{verdict, Verdict, Watched};
use vane_core::contract::control::{CallAnswer, ProbeAnswer, ProbeSide};

fn answer_value(v: impl serde::Serialize) -> Result<Value, VaneError> {
    serde_json::to_value(v).map_err(|e| VaneError::internal(format!("control answer: {e}")))
}

pub(crate) struct WatchState {
    pub(crate) worker: u64,
    pub(crate) since: Instant,
    pub(crate) baseline_rss: u64,
    pub(crate) rss_over_since: Option<Instant>,
}

impl Front {
    /// Copies a read-only call to the canary and compares the answers in the
    /// background; the client never waits for it.
    pub(crate) fn shadow(self: &Arc<Self>, params: &CallToolRequestParams, res: &WorkerAnswer) {
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
        let active = (
            res.decode().ok().and_then(|r| r.structured_content),
            res.is_error(),
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
            match r.and_then(|a| a.decode().map_err(CallError::Protocol)) {
                Ok(cr) => {
                    let failed = error_code(&cr) == Some("internal");
                    canary
                        .stats
                        .record(t0.elapsed(), cr.is_error == Some(true), failed, true);
                    match judge(
                        &front.ignore,
                        (&active.0, active.1),
                        (&cr.structured_content, cr.is_error == Some(true)),
                    ) {
                        // the store moved between the two reads: no sample
                        Judged::Moved => {
                            s.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                        Judged::Same => {
                            s.compared.fetch_add(1, Ordering::Relaxed);
                            s.matched.fetch_add(1, Ordering::Relaxed);
                        }
                        Judged::Differ(d) => {
                            s.compared.fetch_add(1, Ordering::Relaxed);
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
    pub async fn probe(
        self: &Arc<Self>,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<Value, VaneError> {
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
        if !active.tools().is_read_only(tool, Some(&args)) {
            return Err(VaneError::invalid_input(format!(
                "probe: `{tool}` with these arguments is not read-only"
            )));
        }
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let timeout = ms(self.cfg.shadow.timeout_ms);
        let s = &canary.stats.shadow;
        // The two reads run side by side, but a write can land between them
        // (clients work while an upgrade probes): answers that read
        // different store revisions and differ beyond them are read again
        // (up to five times), and a difference at the same revision counts
        // once it is seen twice in a row.
        let mut attempt = 0;
        let (a, c, verdict) = loop {
            attempt += 1;
            let (a, c) = tokio::join!(
                active.call_tool(&params, timeout, None),
                canary.call_tool(&params, timeout, None)
            );
            let a = a
                .and_then(|a| a.decode().map_err(CallError::Protocol))
                .map_err(|e| {
                    err(
                        ErrorCode::Internal,
                        format!("probe `{tool}` on the active worker: {e:?}"),
                    )
                })?;
            let c = match c.and_then(|c| c.decode().map_err(CallError::Protocol)) {
                Ok(c) => c,
                Err(e) => {
                    s.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(err(
                        ErrorCode::Internal,
                        format!("probe `{tool}` on the canary: {e:?}"),
                    ));
                }
            };
            let verdict = judge(
                &self.ignore,
                (&a.structured_content, a.is_error == Some(true)),
                (&c.structured_content, c.is_error == Some(true)),
            );
            let done = match verdict {
                Judged::Same => true,
                Judged::Differ(_) => attempt >= 2,
                Judged::Moved => attempt >= 5,
            };
            if done {
                break (a, c, verdict);
            }
            tokio::time::sleep(ms(10)).await;
        };
        let (diff, moved) = match verdict {
            Judged::Same => (None, false),
            Judged::Differ(d) => (Some(d), false),
            Judged::Moved => (None, true),
        };
        if moved {
            s.skipped.fetch_add(1, Ordering::Relaxed);
        } else {
            s.compared.fetch_add(1, Ordering::Relaxed);
        }
        match &diff {
            None if moved => {}
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
        answer_value(ProbeAnswer {
            tool: tool.to_string(),
            active: ProbeSide {
                worker: active.id,
                is_error: a.is_error == Some(true),
            },
            canary: ProbeSide {
                worker: canary.id,
                is_error: c.is_error == Some(true),
            },
            same: diff.is_none(),
            difference: diff,
            moved,
        })
    }

    /// One read-only call on the active worker (upgrade checks); the
    /// structured answer.
    pub async fn call_active(
        self: &Arc<Self>,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<Value, VaneError> {
        let active = self
            .routes()
            .active
            .clone()
            .filter(|a| a.healthy())
            .ok_or_else(|| err(ErrorCode::Internal, "no healthy active worker"))?;
        if !active.tools().is_read_only(tool, Some(&args)) {
            return Err(VaneError::invalid_input(format!(
                "call: `{tool}` with these arguments is not read-only"
            )));
        }
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let r = active
            .call_tool(&params, ms(self.cfg.call_timeout_ms), None)
            .await
            .and_then(|a| a.decode().map_err(CallError::Protocol))
            .map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("`{tool}` on the active worker: {e:?}"),
                )
            })?;
        answer_value(CallAnswer {
            is_error: r.is_error == Some(true),
            result: r.structured_content,
        })
    }

    /// One call on the canary alone (a dry run: it cannot change anything);
    /// the structured answer.
    pub async fn call_canary(
        self: &Arc<Self>,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<Value, VaneError> {
        let canary = self
            .routes()
            .canary
            .clone()
            .filter(|c| c.healthy())
            .ok_or_else(|| VaneError::invalid_input("no healthy canary"))?;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let r = canary
            .call_tool(&params, ms(self.cfg.long_call_timeout_ms), None)
            .await
            .and_then(|a| a.decode().map_err(CallError::Protocol))
            .map_err(|e| {
                err(
                    ErrorCode::Internal,
                    format!("`{tool}` on the canary: {e:?}"),
                )
            })?;
        answer_value(CallAnswer {
            is_error: r.is_error == Some(true),
            result: r.structured_content,
        })
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

    /// The rollback watch and standby expiry.
    pub(crate) async fn check(self: &Arc<Self>) {
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
                } else {
                    let mut watched = Watched {
                        for_: watch.since.elapsed(),
                        baseline_rss: watch.baseline_rss,
                        rss_over_for: watch.rss_over_since.map(|t| t.elapsed()),
                        ..Watched::default()
                    };
                    if rb.enabled && watched.for_ < Duration::from_secs(rb.watch_s) {
                        watched.window = a.stats.window(Duration::from_secs(rb.error_window_s));
                        watched.rss = rss_of(a.pid);
                        a.stats.rss_bytes.store(watched.rss, Ordering::Relaxed);
                    }
                    match verdict(&watched, rb) {
                        Verdict::Passed => {
                            let id = watch.worker;
                            r.watch = None;
                            drop(r);
                            self.decide(
                                "watch_passed",
                                json!({ "worker": id, "watched_s": rb.watch_s }),
                            );
                            return;
                        }
                        Verdict::Watching { rss_over: true } => {
                            watch.rss_over_since.get_or_insert_with(Instant::now);
                        }
                        Verdict::Watching { rss_over: false } => watch.rss_over_since = None,
                        Verdict::RollBack(why) => reason = Some(why),
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
}
