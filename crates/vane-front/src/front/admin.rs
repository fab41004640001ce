//! The front's own admin tools (`worker_health`, `route_switch`,
//! `upgrade_start`, `upgrade_status`) and the health view they and
//! `vane workers` show. They exist only in the front: they act on the
//! workers, so no worker can answer them.

use super::*;
use vane_core::contract::health::{
    Circuit, FrontView, HealthView, ShadowView, WatchLimits, WatchView, WorkerView,
};
use vane_tools::front_tools::{BoxFuture, FrontOps, SwitchAction, UpgradeStartIn, UpgradeStarted};

impl Front {
    pub(crate) fn admin(&self) -> bool {
        self.ctx.flags().admin_tools
    }

    /// The front's tools as `tools/list` shows them (the same rendering as
    /// the workers' tools).
    pub(crate) fn front_tools(&self) -> Vec<Tool> {
        self.tools
            .tools()
            .iter()
            .map(vane_tools::server::to_tool)
            .collect()
    }

    /// One of the front's tools, through the registry's pipeline (admin
    /// flag, unknown fields, schemas, output check), after `[tools]`.
    pub(crate) async fn front_tool(
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
        match self.tools.call(&self.ctx, name, args).await.result {
            Ok(v) => {
                let text = v.to_string();
                let mut res = CallToolResult::structured(v);
                res.content = vec![ContentBlock::text(text)];
                res
            }
            Err(e) => error_result(&e),
        }
    }

    /// `upgrade_start`: runs `vane upgrade` (this executable) detached; the
    /// run reports through `upgrade_status`.
    pub(crate) fn upgrade_start(&self, args: &UpgradeStartIn) -> Result<UpgradeStarted, VaneError> {
        let sources: Vec<(&str, &str)> = [
            ("binary", &args.binary),
            ("git", &args.git),
            ("patch", &args.patch),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
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
        for (k, v) in [("shadow", &args.shadow), ("observe", &args.observe)] {
            if let Some(v) = v {
                cmd.arg(format!("--{k}")).arg(v);
            }
        }
        if let Some(n) = args.min_samples {
            cmd.arg("--min-samples").arg(n.to_string());
        }
        for f in args.flips.iter().flatten() {
            cmd.arg("--flip").arg(f);
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
        let mut source = Map::new();
        source.insert(kind.to_string(), json!(value));
        let v = UpgradeStarted {
            started: true,
            pid,
            source,
            next: "poll upgrade_status".into(),
        };
        self.decide("upgrade_started", json!(v));
        Ok(v)
    }

    pub(crate) fn worker_view(w: &Worker) -> WorkerView {
        let s = &w.stats;
        let sh = &s.shadow;
        let exited = w.exited();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        WorkerView {
            id: w.id,
            role: w.role(),
            pid: w.pid,
            version: w.version.clone(),
            binary: w.spec.binary.display().to_string(),
            dry_run: w.spec.dry_run,
            started_at: w.started_at.clone(),
            uptime_s: w.started.elapsed().as_secs_f64(),
            rss_bytes: w.rss(),
            calls: n(&s.calls),
            errors: n(&s.errors),
            failures: n(&s.failures),
            in_flight: s.in_flight.load(Ordering::Relaxed),
            circuit: if s.circuit_open.load(Ordering::Relaxed) {
                Circuit::Open
            } else {
                Circuit::Closed
            },
            ping_failures: s.ping_failures.load(Ordering::Relaxed),
            last_ping_us: n(&s.last_ping_us),
            alive: exited.is_none(),
            exit: exited,
            note: w.note(),
            shadow: w.spec.dry_run.then(|| ShadowView {
                compared: n(&sh.compared),
                matched: n(&sh.matched),
                differed: n(&sh.differed),
                errors: n(&sh.errors),
                timeouts: n(&sh.timeouts),
                skipped: n(&sh.skipped),
                last_differences: sh
                    .last_diffs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned()
                    .collect(),
            }),
            standby_expires_in_s: None,
        }
    }

    /// What `worker_health`, `vane workers` and `vane upgrade` read.
    pub fn health(&self) -> HealthView {
        let r = self.routes();
        let mut workers = Vec::new();
        if let Some(a) = &r.active {
            workers.push(Front::worker_view(a));
        }
        if let Some((s, until)) = &r.standby {
            let mut v = Front::worker_view(s);
            v.standby_expires_in_s =
                Some(until.saturating_duration_since(Instant::now()).as_secs());
            workers.push(v);
        }
        if let Some(c) = &r.canary {
            workers.push(Front::worker_view(c));
        }
        for f in &r.failed {
            workers.push(Front::worker_view(f));
        }
        let rb = &self.cfg.rollback;
        let watch = r.watch.as_ref().map(|w| WatchView {
            worker: w.worker,
            for_s: w.since.elapsed().as_secs(),
            remaining_s: Duration::from_secs(rb.watch_s)
                .saturating_sub(w.since.elapsed())
                .as_secs(),
            baseline_rss_bytes: w.baseline_rss,
            window: r
                .active
                .as_ref()
                .filter(|a| a.id == w.worker)
                .map(|a| a.stats.window(Duration::from_secs(rb.error_window_s))),
            limits: WatchLimits {
                error_budget: rb.error_budget,
                p95_slo_ms: rb.p95_slo_ms,
                rss_factor: rb.rss_factor,
            },
        });
        drop(r);
        HealthView {
            front: FrontView {
                pid: std::process::id(),
                version: vane_tools::ctx::VERSION.to_string(),
                uptime_s: self.started.elapsed().as_secs_f64(),
                rss_bytes: rss_of(std::process::id()),
                restarts: self.restarts.load(Ordering::Relaxed),
                socket: self
                    .socket
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|p| p.display().to_string()),
                disable_new: self.ctx.flags().disable_new,
            },
            workers,
            watch,
            decisions: self.decisions(),
        }
    }
}

/// What the front's tools (declared in `vane_tools::front_tools`) ask of it.
impl FrontOps for Front {
    fn health(&self) -> HealthView {
        Front::health(self)
    }

    fn route_switch(&self, action: SwitchAction) -> BoxFuture<Result<Value, VaneError>> {
        let me = self.me.upgrade();
        Box::pin(async move {
            let front = me.ok_or_else(|| VaneError::internal("the front is stopping"))?;
            match action {
                SwitchAction::Promote => front.promote("admin-tool").await,
                SwitchAction::Rollback => front.rollback(None, "admin-tool").await,
            }
        })
    }

    fn upgrade_start(&self, req: UpgradeStartIn) -> Result<UpgradeStarted, VaneError> {
        Front::upgrade_start(self, &req)
    }

    fn upgrade_status(&self) -> Result<Value, VaneError> {
        crate::upgrades::status(&self.ctx.paths.state_dir)
    }
}
