//! The front's own admin tools (`worker_health`, `route_switch`,
//! `upgrade_start`, `upgrade_status`) and the health view they and
//! `vane workers` show. They exist only in the front: they act on the
//! workers, so no worker can answer them.

use super::*;
use vane_core::contract::health::{
    Circuit, FrontView, HealthView, ShadowView, WatchLimits, WatchView, WorkerView,
};

impl Front {
    pub(crate) fn admin(&self) -> bool {
        self.ctx.flags().admin_tools
    }

    pub(crate) fn front_tools() -> Vec<Tool> {
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
                    serde_json::to_value(self.health())
                        .map_err(|e| VaneError::internal(format!("health view: {e}")))
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
    pub(crate) fn upgrade_start(
        self: &Arc<Self>,
        args: &Map<String, Value>,
    ) -> Result<Value, VaneError> {
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

#[cfg(test)]
mod tests {
    /// `[tools]` is checked against `vane_tools::ctx::FRONT_TOOLS`: it must
    /// name exactly the front's tools.
    #[test]
    fn front_tool_names_are_the_ones_tools_config_knows() {
        let names: Vec<String> = crate::front::Front::front_tools()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names, vane_tools::ctx::FRONT_TOOLS);
    }
}
