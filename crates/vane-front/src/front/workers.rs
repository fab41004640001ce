//! Worker lifecycle: starting workers (and restarting the active one with
//! backoff), retiring them, reacting to their exits and open circuits, and
//! the contracting migrations that wait until no older worker can use the
//! store. The supervisor is the one task that owns these reactions, so a
//! worker's end is handled once, in one place.

use super::*;

impl Front {
    pub(crate) fn spawn_worker(
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

    pub(crate) fn retire(self: &Arc<Self>, w: Arc<Worker>) {
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

    pub(crate) fn find(&self, id: u64) -> Option<Arc<Worker>> {
        let r = self.routes();
        r.active
            .iter()
            .chain(r.standby.as_ref().map(|s| &s.0))
            .chain(r.canary.iter())
            .chain(r.failed.iter())
            .find(|w| w.id == id)
            .cloned()
    }

    pub(crate) async fn on_event(self: &Arc<Self>, ev: WorkerEvent) {
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
                    self.resources_changed().await;
                }
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
