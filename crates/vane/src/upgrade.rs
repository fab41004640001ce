//! `vane preflight` and `vane upgrade`: prove a new version safe on the
//! running front — canary, self-checks, shadow, promote, flag flips,
//! observation — or refuse it and say why. Every run writes
//! `STATE_DIR/upgrades/<timestamp>/preflight.json`, `progress.json` and
//! `report.json`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use vane_core::config::Config;
use vane_core::contract::control::ControlRequest;
use vane_core::contract::health::{Circuit, HealthView, Role};
use vane_core::{ErrorCode, VaneError};
use vane_store::StatePaths;

/// One preflight check.
fn check(name: &str, f: impl FnOnce() -> Result<String, String>) -> Value {
    let t0 = Instant::now();
    let (ok, detail) = match f() {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    json!({ "name": name, "ok": ok, "detail": detail, "duration_ms": t0.elapsed().as_secs_f64() * 1000.0 })
}

fn now_stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn pid_alive(pid: u32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    // a zombie is dead too
    !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `.vane/upgrade.lock`, taken with create-exclusive, holding pid, host and
/// start time; released (removed) on drop when still ours.
pub struct UpgradeLock {
    path: PathBuf,
    pub recovered_from: Option<Value>,
}

impl UpgradeLock {
    pub fn take(state_dir: &Path) -> Result<UpgradeLock, String> {
        let path = state_dir.join("upgrade.lock");
        let me = json!({ "pid": std::process::id(), "host": hostname(), "started_at": chrono::Utc::now().to_rfc3339() });
        let mut recovered = None;
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(me.to_string().as_bytes())
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    return Ok(UpgradeLock {
                        path,
                        recovered_from: recovered,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held: Value = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok())
                        .unwrap_or(Value::Null);
                    let pid = held["pid"].as_u64().unwrap_or(0) as u32;
                    let same_host = held["host"].as_str().is_none_or(|h| h == hostname());
                    if pid > 0 && (!same_host || pid_alive(pid)) {
                        return Err(format!(
                            "another upgrade is in progress: pid {pid} on {} since {}",
                            held["host"].as_str().unwrap_or("?"),
                            held["started_at"].as_str().unwrap_or("?")
                        ));
                    }
                    // stale: its owner is gone
                    let _ = std::fs::remove_file(&path);
                    recovered = Some(held);
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Err("could not take the upgrade lock".into())
    }
}

impl UpgradeLock {
    /// Records the run's directory in the lock (for `vane upgrade abort|status`).
    pub fn set_dir(&self, dir: &Path) {
        if let Ok(t) = std::fs::read_to_string(&self.path) {
            if let Ok(mut v) = serde_json::from_str::<Value>(&t) {
                v["dir"] = json!(dir.display().to_string());
                let _ = std::fs::write(&self.path, v.to_string());
            }
        }
    }
}

fn locked_run(paths: &StatePaths) -> Option<PathBuf> {
    vane_front::upgrades::locked_run(&paths.state_dir)
}

impl Drop for UpgradeLock {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["pid"] == std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn git_clean(ws: &Path, state_dir: &Path) -> Result<String, String> {
    let out = vane_tools::git::command(ws)
        .args(["status", "--porcelain", "--untracked-files=all"])
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "not a git working tree: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let state_rel = state_dir
        .strip_prefix(ws)
        .ok()
        .map(|p| format!("{}/", p.display()));
    let dirty: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.get(3..).unwrap_or("").trim_matches('"').to_string())
        .filter(|p| {
            state_rel
                .as_ref()
                .is_none_or(|s| !p.starts_with(s.as_str()))
        })
        .collect();
    if dirty.is_empty() {
        Ok("clean (the state directory excluded)".into())
    } else {
        Err(format!(
            "{} changed or untracked path(s): {}",
            dirty.len(),
            dirty.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}

fn toolchain(ws: &Path) -> Result<String, String> {
    let pin = ["rust-toolchain.toml", "rust-toolchain"]
        .iter()
        .find_map(|f| std::fs::read_to_string(ws.join(f)).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| {
                    let l = l.trim();
                    l.strip_prefix("channel")
                        .map(|r| {
                            r.trim_start_matches([' ', '='])
                                .trim()
                                .trim_matches('"')
                                .to_string()
                        })
                        .or_else(|| {
                            (!l.is_empty() && !l.starts_with('[') && !l.contains('='))
                                .then(|| l.to_string())
                        })
                })
                .map(|c| ("rust-toolchain", c))
        })
        .or_else(|| {
            let t = std::fs::read_to_string(ws.join("Cargo.toml")).ok()?;
            let v: toml::Value = toml::from_str(&t).ok()?;
            let rv = v
                .get("package")
                .and_then(|p| p.get("rust-version"))
                .or_else(|| v.get("workspace")?.get("package")?.get("rust-version"))?;
            Some(("rust-version", rv.as_str()?.to_string()))
        });
    let Some((kind, want)) = pin else {
        return Ok("the project pins no toolchain".into());
    };
    let out = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map_err(|e| format!("{kind} {want} is pinned but rustc cannot run: {e}"))?;
    let have = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let parse = |s: &str| -> Vec<u64> { s.split('.').filter_map(|x| x.parse().ok()).collect() };
    let ok = match kind {
        // rust-version is a minimum
        "rust-version" => parse(&have) >= parse(&want),
        _ => {
            want == have
                || want == "stable"
                || (parse(&want).len() == 2 && have.starts_with(&format!("{want}.")))
        }
    };
    if ok {
        Ok(format!("rustc {have} satisfies {kind} {want}"))
    } else {
        Err(format!("rustc {have} does not satisfy {kind} {want}"))
    }
}

fn disk(state_dir: &Path, min_mb: u64) -> Result<String, String> {
    let st = nix::sys::statvfs::statvfs(state_dir).map_err(|e| format!("statvfs: {e}"))?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64 / (1024 * 1024);
    if free >= min_mb {
        Ok(format!("{free} MB free (need {min_mb})"))
    } else {
        Err(format!(
            "only {free} MB free on the state volume (need {min_mb})"
        ))
    }
}

/// Runs every preflight check; with `lock`, the upgrade lock is taken and
/// returned (held by the caller for the whole upgrade).
pub async fn preflight(
    ws: &Path,
    paths: &StatePaths,
    config: &Config,
) -> (Vec<Value>, Option<UpgradeLock>) {
    let mut checks = Vec::new();
    checks.push(check("git_clean", || git_clean(ws, &paths.state_dir)));
    checks.push(check("toolchain", || toolchain(ws)));
    checks.push(check("disk_free", || {
        disk(&paths.state_dir, config.upgrade.min_free_mb)
    }));
    checks.push(check("store", || {
        if paths.store.is_none() {
            let s = vane_store::Store::open(paths).map_err(|e| e.message)?;
            s.health_check().map_err(|e| e.message)?;
            return Ok("BEGIN; ROLLBACK; and quick_check ok".into());
        }
        // PostgreSQL: reachable, its version, where the migrations stand
        let info = vane_store::schema_info_at(paths).map_err(|e| e.message)?;
        if let Some(e) = info.error() {
            return Err(e.message);
        }
        let s = vane_store::Store::open_mode(paths, vane_store::OpenMode::Front)
            .map_err(|e| e.message)?;
        s.health_check().map_err(|e| e.message)?;
        Ok(format!(
            "{} at {}: reachable, BEGIN; ROLLBACK; ok, schema {} (floor {}, this vane knows {}, {} migration(s) pending)",
            s.server_version().map_err(|e| e.message)?,
            s.location(),
            info.store_version,
            info.floor,
            info.supported,
            info.pending.len()
        ))
    }));
    checks.push(check("sandbox", || {
        use vane_core::config::SandboxMode;
        let needed = config.commands.sandbox == SandboxMode::Bwrap;
        match (needed, vane_tools::exec::detect_bwrap()) {
            _ if config.commands.sandbox == SandboxMode::Off => Ok(
                "OFF ([commands] sandbox = \"off\"): agents' commands run UNCONFINED, with this user's rights"
                    .into(),
            ),
            (_, Some(p)) => Ok(format!("bubblewrap at {}", p.display())),
            (false, None) => Ok(
                "bubblewrap not installed: agents' commands run UNCONFINED (apt-get install bubblewrap)"
                    .into(),
            ),
            (true, None) => {
                Err("[commands] sandbox = \"bwrap\" but bubblewrap is not installed".into())
            }
        }
    }));
    checks.push(check("audit", || {
        // `vane audit`: fails closed on findings at or above [audit] fail_on
        let w =
            vane_tools::confine::Workspace::new(ws, &paths.state_dir).map_err(|e| e.to_string())?;
        let v = vane_tools::audit::run(&w, config, &vane_tools::audit::Options::default())
            .map_err(|e| e.message)?;
        let c = &v["counts"];
        let summary = format!(
            "{} critical, {} high, {} medium, {} low (fails at {})",
            c["critical"],
            c["high"],
            c["medium"],
            c["low"],
            v["fail_on"].as_str().unwrap_or("high")
        );
        if v["failed"] == true {
            let first: Vec<String> = v["findings"]
                .as_array()
                .into_iter()
                .flatten()
                .take(3)
                .map(|f| {
                    format!(
                        "{} at {}",
                        f["rule"].as_str().unwrap_or(""),
                        f["location"].as_str().unwrap_or("")
                    )
                })
                .collect();
            Err(format!("{summary}: {}; run `vane audit`", first.join(", ")))
        } else {
            Ok(summary)
        }
    }));
    checks.push(check("secrets", || {
        let missing: Vec<&String> = config
            .upgrade
            .required_secrets
            .iter()
            .filter(|n| std::env::var(n).map_or(true, |v| v.trim().is_empty()))
            .collect();
        if missing.is_empty() {
            Ok(format!(
                "{} required secret(s) set",
                config.upgrade.required_secrets.len()
            ))
        } else {
            Err(format!(
                "not set or empty: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }));
    let t0 = Instant::now();
    let fronts = vane_front::control::fronts(&paths.state_dir).await;
    let front = match fronts.first() {
        None => Err("no running front (vane serve) for this workspace".to_string()),
        Some((pid, sock)) => vane_front::control::health(sock, Duration::from_secs(10))
            .await
            .map(|_| format!("front pid {pid} answers on {}", sock.display()))
            .map_err(|e| e.message),
    };
    checks.push(json!({ "name": "front_reachable", "ok": front.is_ok(), "detail": front.clone().unwrap_or_else(|e| e), "duration_ms": t0.elapsed().as_secs_f64() * 1000.0 }));
    let t0 = Instant::now();
    let lock = UpgradeLock::take(&paths.state_dir);
    let detail = match &lock {
        Ok(l) => match &l.recovered_from {
            Some(old) => format!("taken; recovered a stale lock left by pid {}", old["pid"]),
            None => "taken".into(),
        },
        Err(e) => e.clone(),
    };
    checks.push(json!({ "name": "upgrade_lock", "ok": lock.is_ok(), "detail": detail, "duration_ms": t0.elapsed().as_secs_f64() * 1000.0 }));
    (checks, lock.ok())
}

pub fn upgrades_dir(paths: &StatePaths) -> PathBuf {
    paths.state_dir.join("upgrades")
}

fn write_json(path: &Path, v: &Value) {
    if let Some(p) = path.parent() {
        let _ = std::fs::create_dir_all(p);
    }
    let _ = vane_store::write_atomic(
        path,
        serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .as_bytes(),
    );
}

/// `vane preflight`: checks, then releases the lock.
pub async fn run_preflight(ws: &Path, paths: &StatePaths, config: &Config) -> (Value, bool) {
    let (checks, lock) = preflight(ws, paths, config).await;
    drop(lock);
    let ok = checks.iter().all(|c| c["ok"] == true);
    let dir = upgrades_dir(paths).join(now_stamp());
    let v = json!({
        "ok": ok,
        "checks": checks,
        "gates": gates_not_run("preflight only"),
        "dir": dir.display().to_string(),
    });
    write_json(&dir.join("preflight.json"), &v);
    (v, ok)
}

fn gates_not_run(why: &str) -> Value {
    json!({
        "build": { "status": "not_run", "detail": why },
        "unit": { "status": "not_run", "detail": why },
        "selfchecks": { "status": "not_run", "detail": why },
        "canary_ready": { "status": "not_run", "detail": why },
    })
}

/// What to upgrade to.
pub enum Source {
    Binary(PathBuf),
    /// a git revision of the workspace's repository, built in a worktree
    Git(String),
    /// a patch applied to HEAD in a worktree, then built
    Patch(PathBuf),
}

pub struct UpgradeArgs {
    pub source: Source,
    pub shadow: Duration,
    pub observe: Duration,
    pub min_samples: u64,
    pub flips: Vec<(String, String)>,
}

/// A window's progress bar on stderr: redrawn in place on a terminal, one
/// line per tenth of the window otherwise (logs, CI).
struct Bar {
    name: &'static str,
    total: Duration,
    tty: bool,
    shown: u32,
}

impl Bar {
    fn new(name: &'static str, total: Duration) -> Bar {
        use std::io::IsTerminal;
        Bar {
            name,
            total,
            tty: std::io::stderr().is_terminal(),
            shown: 0,
        }
    }

    fn line(&self, elapsed: Duration, detail: &str) -> String {
        const WIDTH: usize = 30;
        let frac = (elapsed.as_secs_f64() / self.total.as_secs_f64().max(1e-9)).min(1.0);
        let filled = (frac * WIDTH as f64).round() as usize;
        format!(
            "[{:<7}] [{}{}] {:>3.0} % {:>6.1}/{:.0} s  {detail}",
            self.name,
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            frac * 100.0,
            elapsed.as_secs_f64().min(self.total.as_secs_f64()),
            self.total.as_secs_f64()
        )
    }

    fn draw(&mut self, elapsed: Duration, detail: &str) {
        let line = self.line(elapsed, detail);
        if self.tty {
            eprint!("\r{line}\x1b[K");
        } else {
            let tenth = (elapsed.as_secs_f64() * 10.0 / self.total.as_secs_f64().max(1e-9)) as u32;
            if tenth > self.shown {
                self.shown = tenth;
                eprintln!("{line}");
            }
        }
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// The state of one upgrade run, written as progress.json as it goes and
/// as report.json at the end.
struct Run {
    dir: PathBuf,
    report: Value,
    socket: PathBuf,
    started: Instant,
    quiet: bool,
}

impl Run {
    fn step(&mut self, name: &str, status: &str, detail: Value) {
        let at = self.started.elapsed().as_secs_f64();
        if !self.quiet {
            eprintln!(
                "[{at:7.1} s] {name}: {status} {}",
                if detail.is_null() {
                    String::new()
                } else {
                    detail.to_string()
                }
            );
        }
        if let Some(steps) = self.report["steps"].as_array_mut() {
            steps.push(json!({ "step": name, "status": status, "at_s": at, "detail": detail }));
        }
        write_json(&self.dir.join("progress.json"), &self.report);
    }

    fn gate(&mut self, gate: &str, status: &str, detail: Value, t0: Instant) {
        self.report["gates"][gate] = json!({ "status": status, "detail": detail, "duration_ms": t0.elapsed().as_secs_f64() * 1000.0 });
        self.step(&format!("gate {gate}"), status, detail);
    }

    async fn ctl(&self, req: ControlRequest) -> Result<Value, VaneError> {
        vane_front::control::request(&self.socket, &req, Duration::from_secs(60)).await
    }

    async fn health(&self) -> Result<HealthView, VaneError> {
        vane_front::control::health(&self.socket, Duration::from_secs(60)).await
    }

    fn aborted(&self) -> bool {
        self.dir.join("abort").exists()
    }

    fn finish(&mut self, decision: &str, reason: impl Into<String>) {
        self.report["decision"] = json!(decision);
        self.report["reason"] = json!(reason.into());
        self.report["finished_at"] = json!(chrono::Utc::now().to_rfc3339());
        self.report["duration_s"] = json!(self.started.elapsed().as_secs_f64());
        self.step("decision", decision, self.report["reason"].clone());
        write_json(&self.dir.join("report.json"), &self.report);
    }
}

/// A JSON object's fields (tool arguments written with `json!`).
fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `vane upgrade --binary PATH`: returns the report and whether the new
/// version is now stable.
pub async fn run_upgrade(
    ws: &Path,
    paths: &StatePaths,
    config: &Config,
    ctx: &std::sync::Arc<vane_tools::ToolCtx>,
    args: UpgradeArgs,
    quiet: bool,
) -> Result<(Value, bool), VaneError> {
    let dir = upgrades_dir(paths).join(now_stamp());
    std::fs::create_dir_all(&dir)
        .map_err(|e| VaneError::new(ErrorCode::IoError, format!("{}: {e}", dir.display())))?;
    let source = match &args.source {
        Source::Binary(b) => json!({ "kind": "binary", "binary": b.display().to_string() }),
        Source::Git(r) => json!({ "kind": "git", "ref": r }),
        Source::Patch(p) => json!({ "kind": "patch", "patch": p.display().to_string() }),
    };
    let mut run = Run {
        report: json!({
            "id": dir.file_name().map(|n| n.to_string_lossy().to_string()),
            "dir": dir.display().to_string(),
            "started_at": chrono::Utc::now().to_rfc3339(),
            "source": source,
            "old": Value::Null, "new": Value::Null,
            "gates": {
                "build": { "status": "pending" }, "unit": { "status": "pending" },
                "canary_ready": { "status": "pending" }, "selfchecks": { "status": "pending" },
            },
            "steps": [], "shadow": Value::Null, "flips": [], "observation": Value::Null,
            "decision": "in_progress", "reason": Value::Null, "rollback": Value::Null,
        }),
        dir: dir.clone(),
        socket: PathBuf::new(),
        started: Instant::now(),
        quiet,
    };
    // 1. preflight, lock held to the end
    let (checks, lock) = preflight(ws, paths, config).await;
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    write_json(
        &dir.join("preflight.json"),
        &json!({ "ok": failed.is_empty(), "checks": checks }),
    );
    run.report["preflight"] = json!(checks);
    if !failed.is_empty() || lock.is_none() {
        for g in ["build", "unit", "canary_ready", "selfchecks"] {
            run.report["gates"][g] = json!({ "status": "not_run", "detail": "preflight failed" });
        }
        run.finish(
            "refused",
            format!("preflight failed: {}", failed.join("; ")),
        );
        return Ok((run.report, false));
    }
    let _lock = lock;
    if let Some(l) = &_lock {
        l.set_dir(&dir);
    }
    run.step("preflight", "ok", Value::Null);
    let (_, sock) = vane_front::control::fronts(&paths.state_dir)
        .await
        .into_iter()
        .next()
        .ok_or_else(|| VaneError::new(ErrorCode::NotFound, "no running front"))?;
    run.socket = sock;
    let before = run.health().await?;
    let old = before.worker(Role::Active);
    run.report["old"] = json!({ "version": old.map(|o| &o.version), "binary": old.map(|o| &o.binary), "worker": old.map(|o| o.id) });

    // 2. build and unit gates: a given binary skips both; a revision or a
    // patch is built and tested in a worktree of its own
    let binary = match &args.source {
        Source::Binary(b) => {
            let t0 = Instant::now();
            run.gate(
                "build",
                "skipped",
                json!("--binary given: nothing to build"),
                t0,
            );
            run.gate(
                "unit",
                "skipped",
                json!("--binary given: its tests are the builder's"),
                t0,
            );
            match b.canonicalize() {
                Ok(b) => b,
                Err(e) => {
                    run.finish("refused", format!("--binary {}: {e}", b.display()));
                    return Ok((run.report, false));
                }
            }
        }
        src => match build_gates(&mut run, ws, config, src).await {
            Ok(b) => b,
            Err(why) => {
                for g in ["canary_ready", "selfchecks"] {
                    if run.report["gates"][g]["status"] == "pending" {
                        run.report["gates"][g] =
                            json!({ "status": "not_run", "detail": "an earlier gate failed" });
                    }
                }
                run.finish("refused", why);
                return Ok((run.report, false));
            }
        },
    };

    // 3. canary gate: the new version's schema on a private copy first
    let t0 = Instant::now();
    if let Err(why) = schema_gate(&mut run, ws, paths, ctx, &binary, config).await {
        run.gate("canary_ready", "failed", json!(why), t0);
        run.report["gates"]["selfchecks"] =
            json!({ "status": "not_run", "detail": "the canary gate failed" });
        run.finish("refused", format!("canary gate: {why}"));
        return Ok((run.report, false));
    }
    match run
        .ctl(ControlRequest::CanaryStart {
            binary: binary.display().to_string(),
        })
        .await
    {
        Ok(v) => {
            run.report["new"] = json!({ "version": v["version"], "binary": v["binary"], "canary_worker": v["worker"] });
            run.gate("canary_ready", "passed", v, t0);
        }
        Err(e) => {
            run.gate("canary_ready", "failed", json!(e.message), t0);
            run.report["gates"]["selfchecks"] =
                json!({ "status": "not_run", "detail": "the canary did not become ready" });
            run.finish("refused", format!("canary gate: {}", e.message));
            return Ok((run.report, false));
        }
    }

    // 4. self-checks on both workers, compared
    let t0 = Instant::now();
    let mut results = Vec::new();
    let mut bad = Vec::new();
    let read_probe = if ws.join("vane.toml").exists() {
        "vane.toml"
    } else {
        ".vane/roadmap.yaml"
    };
    for (tool, a) in [
        ("status", json!({})),
        ("plan_next", json!({})),
        ("plan_next", json!({ "limit": 50, "explain_blocked": 10 })),
        ("fs_read", json!({ "path": read_probe })),
        ("tool_manifest", json!({})),
    ] {
        match run
            .ctl(ControlRequest::Probe {
                tool: tool.to_string(),
                arguments: fields(a),
            })
            .await
        {
            Ok(v) => {
                if v["same"] != true
                    || v["active"]["is_error"] == true
                    || v["canary"]["is_error"] == true
                {
                    bad.push(format!("{tool}: {}", v["difference"]));
                }
                results.push(v);
            }
            Err(e) => {
                bad.push(format!("{tool}: {}", e.message));
                results.push(json!({ "tool": tool, "error": e.message }));
            }
        }
    }
    // the critics, run by the canary as a dry run (a read-only sandbox; not recorded)
    if !config.critics.is_empty() {
        match run
            .ctl(ControlRequest::CanaryCall {
                tool: "critics_run".into(),
                arguments: fields(json!({"all": true})),
            })
            .await
        {
            Ok(v) if v["is_error"] != true => {
                let runs: Vec<Value> = v["result"]["runs"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|x| json!({ "critic": x["name"], "status": x["status"] }))
                            .collect()
                    })
                    .unwrap_or_default();
                results.push(json!({ "tool": "critics_run", "dry_run": true, "runs": runs }));
            }
            Ok(v) => {
                bad.push(format!("critics_run (dry run): {}", v["result"]["error"]));
                results.push(json!({ "tool": "critics_run", "dry_run": true, "error": v["result"]["error"] }));
            }
            Err(e) => {
                bad.push(format!("critics_run (dry run): {}", e.message));
                results.push(json!({ "tool": "critics_run", "dry_run": true, "error": e.message }));
            }
        }
    }
    // dispatch: the new build assembles the ready tasks' prompts and picks
    // their providers (`vane run --dry-run`: read-only, no provider called)
    match dispatch_dry_run(&binary, ws, paths).await {
        Ok(v) => results.push(v),
        Err(e) => {
            bad.push(format!("dispatch (dry run): {e}"));
            results.push(json!({ "tool": "dispatch", "dry_run": true, "error": e }));
        }
    }
    if bad.is_empty() {
        run.gate("selfchecks", "passed", json!(results), t0);
    } else {
        run.gate(
            "selfchecks",
            "failed",
            json!({ "failures": bad, "results": results }),
            t0,
        );
        let _ = run.ctl(ControlRequest::CanaryStop).await;
        run.finish(
            "refused",
            format!("self-checks differ or fail: {}", bad.join("; ")),
        );
        return Ok((run.report, false));
    }

    // 5. shadow window: live reads mirrored; probes when clients are idle
    let t0 = Instant::now();
    let start = run.health().await?;
    let base = start
        .worker(Role::Canary)
        .and_then(|c| c.shadow.as_ref())
        .map_or(0, |s| s.compared);
    let mut last = base;
    let mut last_growth = Instant::now();
    let mut probes = 0u64;
    let mut shadow = json!({});
    let mut diverged = None;
    let mut window_bar = Bar::new("shadow", args.shadow);
    while t0.elapsed() < args.shadow {
        if run.aborted() {
            let _ = run.ctl(ControlRequest::CanaryStop).await;
            run.finish(
                "aborted",
                "aborted by the operator during the shadow window",
            );
            return Ok((run.report, false));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let h = run.health().await?;
        let Some(c) = h.worker(Role::Canary) else {
            diverged = Some("the canary is gone (it crashed)".to_string());
            break;
        };
        let sh = c.shadow.clone().unwrap_or_default();
        let compared = sh.compared;
        shadow = json!({
            "samples": compared.saturating_sub(base), "probes": probes,
            "differed": sh.differed, "errors": sh.errors, "timeouts": sh.timeouts,
            "last_differences": sh.last_differences,
        });
        if sh.differed > 0 {
            diverged = Some(format!(
                "the canary diverged: {}",
                sh.last_differences.first().cloned().unwrap_or_default()
            ));
            break;
        }
        if compared > last {
            last = compared;
            last_growth = Instant::now();
        } else if last_growth.elapsed() >= Duration::from_millis(90) {
            // clients are idle: send a probe
            let (tool, a) = if probes.is_multiple_of(2) {
                ("status", json!({}))
            } else {
                ("plan_next", json!({}))
            };
            let _ = run
                .ctl(ControlRequest::Probe {
                    tool: tool.to_string(),
                    arguments: fields(a),
                })
                .await;
            probes += 1;
        }
        if !quiet {
            window_bar.draw(
                t0.elapsed(),
                &format!(
                    "{} samples ({} probes), {} differences",
                    compared.saturating_sub(base),
                    probes,
                    sh.differed
                ),
            );
        }
    }
    if !quiet {
        window_bar.done();
    }
    run.report["shadow"] = shadow.clone();
    run.report["shadow"]["window_s"] = json!(args.shadow.as_secs_f64());
    if let Some(why) = diverged {
        let _ = run.ctl(ControlRequest::CanaryStop).await;
        run.step("shadow", "diverged", shadow);
        run.finish("aborted", why);
        return Ok((run.report, false));
    }
    let samples = shadow["samples"].as_u64().unwrap_or(0);
    if samples < args.min_samples {
        let _ = run.ctl(ControlRequest::CanaryStop).await;
        run.step("shadow", "hold", shadow);
        run.finish(
            "hold",
            format!(
                "only {samples} shadow samples (need {}): not promoting",
                args.min_samples
            ),
        );
        return Ok((run.report, false));
    }
    run.step("shadow", "passed", shadow);

    // 6. promote
    let promoted_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let p = match run.ctl(ControlRequest::Promote).await {
        Ok(p) => p,
        Err(e) => {
            run.finish("aborted", format!("promote failed: {}", e.message));
            return Ok((run.report, false));
        }
    };
    run.report["new"]["worker"] = p["to"].clone();
    run.step("promote", "done", p.clone());

    // 7. flag flips, one at a time, each checked for determinism
    let mut flipped: Vec<(String, Option<String>)> = Vec::new();
    for (k, v) in &args.flips {
        let prev = ctx
            .store
            .flags()
            .ok()
            .and_then(|f| f.into_iter().find(|r| &r.key == k).map(|r| r.value));
        if let Err(e) = vane_tools::handlers::set_flag(ctx, k, Some(v), "upgrade") {
            restore(ctx, &flipped);
            let _ = run.ctl(ControlRequest::Rollback).await;
            run.finish(
                "rolled_back",
                format!("flag flip {k}={v} refused: {}", e.message),
            );
            return Ok((run.report, false));
        }
        flipped.push((k.clone(), prev));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let check = determinism(&run).await;
        if let Some(a) = run.report["flips"].as_array_mut() {
            a.push(json!({ "flag": k, "value": v, "deterministic": check.is_ok(), "detail": check.clone().err() }));
        }
        if let Err(why) = check {
            restore(ctx, &flipped);
            let rb = run.ctl(ControlRequest::Rollback).await.ok();
            run.report["rollback"] = json!(rb);
            run.finish("rolled_back", format!("after flipping {k}={v}: {why}"));
            return Ok((run.report, false));
        }
        run.step("flip", "ok", json!({ "flag": k, "value": v }));
    }

    // 8. observe: the front's monitors decide; a rollback ends the run
    let t0 = Instant::now();
    let mut last_window = Value::Null;
    let mut window_bar = Bar::new("observe", args.observe);
    while t0.elapsed() < args.observe {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let h = run.health().await?;
        if let Some(w) = &h.watch {
            last_window = json!(w.window);
        }
        let rb = h
            .decisions
            .iter()
            .rev()
            .find(|d| d.action == "rollback" && d.at.as_str() >= promoted_at.as_str())
            .map(|d| json!(d));
        if run.aborted() {
            let rb = run.ctl(ControlRequest::Rollback).await.ok();
            restore(ctx, &flipped);
            run.report["rollback"] = json!(rb);
            run.finish("rolled_back", "aborted by the operator during observation");
            return Ok((run.report, false));
        }
        if let Some(rb) = rb {
            restore(ctx, &flipped);
            run.report["observation"] =
                json!({ "observed_s": t0.elapsed().as_secs_f64(), "window": last_window });
            run.report["rollback"] = rb.clone();
            run.finish(
                "rolled_back",
                format!(
                    "the new version breached {} = {} (limit {}); routed back, DISABLE_NEW=1, flags restored",
                    rb["metric"], rb["value"], rb["threshold"]
                ),
            );
            return Ok((run.report, false));
        }
        if !quiet {
            let w = &last_window;
            window_bar.draw(
                t0.elapsed(),
                &format!(
                    "{} calls, error rate {}, p95 {} ms",
                    w["calls"], w["error_rate"], w["p95_ms"]
                ),
            );
        }
    }
    if !quiet {
        window_bar.done();
    }
    run.report["observation"] =
        json!({ "observed_s": t0.elapsed().as_secs_f64(), "window": last_window });
    run.finish(
        "stable",
        "every gate passed, the shadow matched, and the observation window was clean",
    );
    Ok((run.report, true))
}

/// Runs `binary --workspace WS --state-dir DIR args…` within `timeout` and
/// parses its JSON output; the error carries the reason (stderr tail,
/// exit code, or the timeout).
async fn vane_json(
    binary: &Path,
    ws: &Path,
    paths: &StatePaths,
    args: &[&str],
    timeout: Duration,
) -> Result<Value, String> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--workspace")
        .arg(ws)
        .arg("--state-dir")
        .arg(&paths.state_dir)
        .args(args)
        .env_remove("VANE_DRY_RUN")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("`{} {}`", binary.display(), args.join(" "));
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("{what} did not start: {e}")),
        Err(_) => {
            return Err(format!(
                "{what} did not answer within {} s",
                timeout.as_secs()
            ))
        }
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if out.status.success() && !v.is_null() {
        return Ok(v);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<char> = err.trim().chars().collect();
    let tail: String = err[err.len().saturating_sub(800)..].iter().collect();
    Err(format!(
        "{what} failed (exit {}): {}",
        out.status
            .code()
            .map_or("by signal".to_string(), |c| c.to_string()),
        if tail.is_empty() && !v.is_null() {
            v.to_string()
        } else {
            tail
        }
    ))
}

/// Expand → cut over → contract, the first step. Before the canary starts,
/// the new binary migrates a private copy of the store (every pending
/// migration, contract included), checks it (integrity, foreign keys) and
/// reads it back through its own store. Only then does it apply its expand
/// migrations to the live store: they are additive, so the running worker —
/// the standby after promotion — keeps working, and the dry-run canary can
/// read live data through the schema its code expects. Contracting
/// migrations wait until the front has retired the standby.
async fn schema_gate(
    run: &mut Run,
    ws: &Path,
    paths: &StatePaths,
    ctx: &std::sync::Arc<vane_tools::ToolCtx>,
    binary: &Path,
    config: &Config,
) -> Result<(), String> {
    let timeout = Duration::from_secs(config.upgrade.migration_timeout_s);
    let dir = run.dir.join("schema-check");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let copy = dir.join("vane.db");
    let t = Instant::now();
    // SQLite: the new version migrates a private copy. PostgreSQL (a shared
    // database a file copy cannot stand for): it migrates the live database
    // in one transaction that it rolls back.
    let shared = ctx.store.engine() == vane_store::Engine::Postgres;
    if !shared {
        ctx.store
            .snapshot(&copy)
            .map_err(|e| format!("cannot copy the store: {}", e.message))?;
    }
    let copy_ms = t.elapsed().as_secs_f64() * 1000.0;
    let copy_s = if shared {
        format!(
            "{} (rehearsed in a rolled-back transaction)",
            ctx.store.location()
        )
    } else {
        copy.display().to_string()
    };
    let t = Instant::now();
    let args: Vec<&str> = if shared {
        vec!["migrate", "--rehearse", "--json"]
    } else {
        vec!["migrate", "--check", &copy_s, "--json"]
    };
    let checked = vane_json(binary, ws, paths, &args, timeout).await;
    let check_ms = t.elapsed().as_secs_f64() * 1000.0;
    let check = match checked {
        Ok(v) => v,
        Err(why) => {
            run.report["migrations"] = json!({ "copy": copy_s, "copy_ms": copy_ms, "check_ms": check_ms, "ok": false, "error": why });
            return Err(format!(
                "the new version's migration check on a private copy failed: {why}"
            ));
        }
    };
    let pending = check["before"]["pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let expand: Vec<Value> = pending
        .iter()
        .take_while(|m| m["phase"] == "expand")
        .cloned()
        .collect();
    let deferred: Vec<Value> = pending[expand.len()..].to_vec();
    let mut m = json!({
        "copy": copy_s,
        "check": if shared { "rehearsed on the live database, rolled back" } else { "migrated a private copy" },
        "copy_ms": copy_ms,
        "check_ms": check_ms,
        "store_version": check["before"]["store_version"],
        "new_version_knows": check["before"]["supported"],
        "applied_on_copy": check["applied"],
        "copy_integrity": check["integrity"],
        "copy_foreign_key_violations": check["foreign_key_violations"],
        "copy_read_back": check["smoke"],
        "expand_live": [],
        "contract_deferred": deferred,
        "ok": true,
    });
    if !expand.is_empty() {
        run.step("migrations", "expand", json!(expand));
        let t = Instant::now();
        match vane_json(binary, ws, paths, &["migrate", "--json"], timeout).await {
            Ok(v) => {
                m["expand_live"] = v["applied"].clone();
                m["expand_live_ms"] = json!(t.elapsed().as_secs_f64() * 1000.0);
            }
            Err(why) => {
                m["ok"] = json!(false);
                m["error"] = json!(why);
                run.report["migrations"] = m;
                return Err(format!(
                    "the expand migrations failed on the live store (left unchanged): {why}"
                ));
            }
        }
    }
    run.report["migrations"] = m;
    for f in ["vane.db", "vane.db-wal", "vane.db-shm", ".gitignore"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir(&dir);
    run.step("migrations", "checked", run.report["migrations"].clone());
    Ok(())
}

/// Runs `sh -c command` in `dir` within `timeout`; (ok, exit code, output tail).
async fn sh(command: &str, dir: &Path, timeout: Duration) -> (bool, Option<i32>, String) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return (false, None, format!("cannot start sh: {e}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let tail = vane_core::redact::redact(&vane_core::text::tail(&text, 4000)).into_owned();
            (out.status.success(), out.status.code(), tail)
        }
        Ok(Err(e)) => (false, None, format!("wait failed: {e}")),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            (
                false,
                None,
                format!("timed out after {} s", timeout.as_secs()),
            )
        }
    }
}

fn git_out(ws: &Path, args: &[&str]) -> Result<String, String> {
    let out = vane_tools::git::command(ws)
        .args(args)
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The build and unit gates for `--git` / `--patch`: a detached worktree at
/// the revision (or HEAD with the patch applied), `build_command`, then
/// `test_command`; the built executable at `[upgrade] binary`. A failed
/// gate removes the worktree; a passed one keeps it (the new worker runs
/// from it).
async fn build_gates(
    run: &mut Run,
    ws: &Path,
    config: &Config,
    src: &Source,
) -> Result<PathBuf, String> {
    let t0 = Instant::now();
    let wt = run.dir.join("worktree");
    let wts = wt.display().to_string();
    let rev = match src {
        Source::Git(r) => r.clone(),
        _ => "HEAD".into(),
    };
    let prepared = (|| -> Result<String, String> {
        let commit = git_out(ws, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")])?;
        git_out(ws, &["worktree", "add", "--detach", &wts, &commit])?;
        if let Source::Patch(p) = src {
            let p = p
                .canonicalize()
                .map_err(|e| format!("--patch {}: {e}", p.display()))?;
            git_out(
                &wt,
                &["apply", "--whitespace=nowarn", &p.display().to_string()],
            )?;
        }
        Ok(commit)
    })();
    let cleanup = || {
        let _ = git_out(ws, &["worktree", "remove", "--force", &wts]);
    };
    let commit = match prepared {
        Ok(c) => c,
        Err(e) => {
            cleanup();
            run.gate(
                "build",
                "failed",
                json!({ "stage": "checkout", "error": e }),
                t0,
            );
            run.report["gates"]["unit"] =
                json!({ "status": "not_run", "detail": "the build gate failed" });
            return Err(format!("build gate: {e}"));
        }
    };
    run.report["source"]["commit"] = json!(commit);
    run.report["source"]["worktree"] = json!(wts);
    let timeout = Duration::from_secs(config.upgrade.gate_timeout_s);
    let (ok, code, tail) = sh(&config.upgrade.build_command, &wt, timeout).await;
    let detail = json!({ "command": config.upgrade.build_command, "exit_code": code, "output_tail": tail, "commit": commit });
    if !ok {
        run.gate("build", "failed", detail, t0);
        run.report["gates"]["unit"] =
            json!({ "status": "not_run", "detail": "the build gate failed" });
        cleanup();
        return Err(format!(
            "build gate: `{}` failed (exit {code:?})",
            config.upgrade.build_command
        ));
    }
    run.gate("build", "passed", detail, t0);
    let t1 = Instant::now();
    let (ok, code, tail) = sh(&config.upgrade.test_command, &wt, timeout).await;
    let detail =
        json!({ "command": config.upgrade.test_command, "exit_code": code, "output_tail": tail });
    if !ok {
        run.gate("unit", "failed", detail, t1);
        cleanup();
        return Err(format!(
            "unit gate: `{}` failed (exit {code:?})",
            config.upgrade.test_command
        ));
    }
    run.gate("unit", "passed", detail, t1);
    let bin = wt.join(&config.upgrade.binary);
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&bin) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
            // pin what passed the gates: a later build into the same target
            // directory cannot change what runs, and the worktree (with any
            // build output inside it) can go
            let pinned = run.dir.join("vane");
            let copied = std::fs::copy(&bin, &pinned);
            cleanup();
            match copied {
                Ok(_) => {
                    run.report["source"]["built"] = json!(bin.display().to_string());
                    Ok(pinned)
                }
                Err(e) => Err(format!(
                    "cannot copy the built executable {} to {}: {e}",
                    bin.display(),
                    pinned.display()
                )),
            }
        }
        _ => {
            cleanup();
            Err(format!(
                "the build left no executable at {} ([upgrade] binary)",
                bin.display()
            ))
        }
    }
}

fn restore(ctx: &std::sync::Arc<vane_tools::ToolCtx>, flipped: &[(String, Option<String>)]) {
    for (k, prev) in flipped.iter().rev() {
        let _ = vane_tools::handlers::set_flag(ctx, k, prev.as_deref(), "upgrade:restore");
    }
}

/// The same read twice on the active worker answers the same (two
/// successful answers that differ fail the check).
async fn determinism(run: &Run) -> Result<(), String> {
    let h = run.health().await.map_err(|e| e.message)?;
    let active = h.worker(Role::Active).ok_or("no active worker")?;
    if !active.alive || active.circuit != Circuit::Closed {
        return Err(format!("the active worker is unhealthy: {}", json!(active)));
    }
    let a = run
        .ctl(ControlRequest::Call {
            tool: "plan_next".into(),
            arguments: fields(json!({"limit": 20})),
        })
        .await
        .map_err(|e| e.message)?;
    let b = run
        .ctl(ControlRequest::Call {
            tool: "plan_next".into(),
            arguments: fields(json!({"limit": 20})),
        })
        .await
        .map_err(|e| e.message)?;
    if a == b || a["is_error"] == true || b["is_error"] == true {
        // an error is not a verdict on determinism: failures are the
        // rollback watch's to count, and the observation window follows
        Ok(())
    } else {
        Err("plan_next answered differently twice in a row".into())
    }
}

/// `vane upgrade status`: the running upgrade's progress, or the newest report.
pub fn status(paths: &StatePaths) -> Result<Value, VaneError> {
    vane_front::upgrades::status(&paths.state_dir)
}

/// `vane upgrade abort`: asks the running upgrade to stop (it rolls back if
/// it already promoted).
pub fn abort(paths: &StatePaths) -> Result<Value, VaneError> {
    let Some(dir) = locked_run(paths) else {
        return Err(VaneError::invalid_input("no upgrade is in progress"));
    };
    std::fs::write(dir.join("abort"), b"abort\n")
        .map_err(|e| VaneError::new(ErrorCode::IoError, e.to_string()))?;
    Ok(json!({ "abort_requested": dir.display().to_string() }))
}

/// The self-check cycle's dispatch step: `NEW run --dry-run --json` on the
/// workspace must succeed and say what it would dispatch.
async fn dispatch_dry_run(binary: &Path, ws: &Path, paths: &StatePaths) -> Result<Value, String> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--workspace")
        .arg(ws)
        .arg("--state-dir")
        .arg(&paths.state_dir)
        .args(["run", "--dry-run", "--json"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| "did not finish within 60 s".to_string())?
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "exit {}: {}",
            out.status.code().unwrap_or(-1),
            vane_core::text::tail(&String::from_utf8_lossy(&out.stderr), 500)
        ));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("not a report ({e})"))?;
    if v["dry_run"] != true {
        return Err("the report is not a dry run's".into());
    }
    let tasks: Vec<Value> = v["dry_run_tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!({ "task": t["task_id"], "provider": t["provider"], "prompt_words": t["prompt_words"] }))
        .collect();
    Ok(json!({ "tool": "dispatch", "dry_run": true, "tasks": tasks }))
}
