//! The runner behind `vane run`: claim, prompt, provider, critics, status.
//!
//! One runner loop per `--parallel` slot. Each claims the next ready task
//! under its own name (`host:pid:slot`) with a lease — the store's claim is
//! one transaction, so K runners never take the same task. A task then goes
//! through the providers in `[dispatch] providers` order:
//!
//! - every attempt first reserves its ceiling against the budgets in the
//!   transaction that records it (`attempt_start`); a budget that cannot
//!   cover it stops dispatch (`on_exceeded = "stop"`) or skips to cheaper
//!   providers (`"fallback"`);
//! - the attempt's class decides what happens next: `succeeded` → critics;
//!   `task_failed` → the task goes back to pending (or blocked after
//!   `max_task_failures`) with the failure in its notes, never a failover;
//!   `transient`/`timeout` → retried with jittered exponential backoff
//!   (backon), then the next provider; `rate_limited`/`quota_exhausted` →
//!   the provider cools until its reset, next provider; `auth` → the
//!   provider is disabled for this run, loudly, next provider;
//! - when no provider can take the task, it waits for the earliest reset
//!   if that is within `max_wait_s`, else it releases the task and stops.
//!
//! Stopping `vane run` (a signal) cancels every attempt: the agent's process
//! group is killed, the attempt recorded as interrupted, the task released.
//! A runner killed with -9 cannot do that; the next `vane run` marks its
//! attempts interrupted and frees its claims ([`Store::interrupt_orphans`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};
use vane_core::config::{OnExceeded, OnSuccess, ProviderConfig, ProviderKind};
use vane_core::dispatch::{usd, HealthState, Outcome, ProviderHealth};
use vane_core::planner::PlanQuery;
use vane_core::{ErrorCode, VaneError};
use vane_store::dispatch::{AttemptEnd, NewAttempt};
use vane_store::{Store, TaskRecord};
use vane_tools::{Registry, ToolCtx};

use crate::provider::{AttemptRequest, AttemptResult, Provider};
use crate::{budget, now_ms, process, prompt};

/// What `vane run` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// one task, then stop
    pub once: bool,
    pub max_tasks: Option<usize>,
    /// runners (0: `[dispatch] parallel`)
    pub parallel: usize,
    /// only this provider
    pub provider: Option<String>,
    pub epic: Option<String>,
    /// assemble prompts, choose providers, call nothing, change nothing
    pub dry_run: bool,
}

/// A line of progress for the terminal.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Claimed {
        runner: String,
        task: String,
        title: String,
    },
    AttemptStarted {
        runner: String,
        task: String,
        provider: String,
        attempt: i64,
    },
    Running {
        runner: String,
        task: String,
        provider: String,
        elapsed_s: u64,
    },
    AttemptEnded {
        runner: String,
        task: String,
        provider: String,
        outcome: Outcome,
        cost: String,
        spent_today: String,
        error: Option<String>,
    },
    Critics {
        runner: String,
        task: String,
        passed: usize,
        failed: usize,
    },
    TaskEnded {
        runner: String,
        task: String,
        status: String,
    },
    Alert {
        level: String,
        scope: String,
        window: String,
        spent: String,
        limit: String,
    },
    Notice {
        message: String,
    },
}

/// One attempt, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub id: i64,
    pub provider: String,
    pub model: Option<String>,
    pub outcome: Outcome,
    pub cost_usd: String,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// One task's dispatch.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub task_id: String,
    pub title: String,
    /// where the task ended: done, review, pending (to be tried again), blocked
    pub status: String,
    pub attempts: Vec<AttemptReport>,
    pub critics: Option<Value>,
    pub runner: String,
}

/// What a dry run would do for one ready task.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunTask {
    pub task_id: String,
    pub title: String,
    /// the first provider that would take it, and why others would not
    pub provider: Option<String>,
    pub skipped: Vec<Value>,
    pub prompt: String,
    pub prompt_words: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub env: String,
    pub dry_run: bool,
    pub tasks: Vec<TaskReport>,
    pub dry_run_tasks: Vec<DryRunTask>,
    /// why the run ended: nothing_ready, max_tasks, budget, no_provider, stopped
    pub stopped: String,
    pub spent_usd: String,
    pub interrupted_orphans: usize,
    pub alerts: Vec<Value>,
}

struct Prov {
    name: String,
    cfg: ProviderConfig,
    adapter: Box<dyn Provider>,
}

/// How a task's dispatch ended, for the loop.
enum TaskEnd {
    Finished(TaskReport),
    /// budget or providers: the runner stops, the task was released
    Stop(String, TaskReport),
}

pub struct Runner {
    ctx: Arc<ToolCtx>,
    registry: Arc<Registry>,
    vane_exe: PathBuf,
    env: String,
    host: String,
    opts: Options,
    providers: Vec<Prov>,
    taken: AtomicUsize,
    stop_reason: Mutex<Option<String>>,
    alerts: Mutex<Vec<Value>>,
    progress: Box<dyn Fn(Progress) + Send + Sync>,
    cancel: tokio::sync::watch::Receiver<bool>,
}

fn adapter(kind: ProviderKind) -> Box<dyn Provider> {
    match kind {
        ProviderKind::Claude => Box::new(crate::claude::Claude),
        ProviderKind::Codex => Box::new(crate::codex::Codex),
        ProviderKind::Command => Box::new(crate::command::Command),
        ProviderKind::Openai => Box::new(crate::openai::OpenAi::new()),
    }
}

/// The environment a run's budgets and ledger rows belong to.
pub fn env_name() -> String {
    std::env::var("VANE_ENV")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "dev".into())
}

/// The variable that marks an agent's processes with its attempt.
pub const ATTEMPT_ENV: &str = "VANE_ATTEMPT_ID";

/// Kills the process group an orphaned attempt's agent ran in — only when
/// its leader still carries that attempt's mark in its environment, so a
/// reused process group id is never hit.
fn stop_orphan_agent(pgid: i64, attempt: i64) {
    let Ok(env) = std::fs::read(format!("/proc/{pgid}/environ")) else {
        return;
    };
    let mark = format!("{ATTEMPT_ENV}={attempt}");
    if env.split(|b| *b == 0).any(|kv| kv == mark.as_bytes()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Runner {
    pub fn new(
        ctx: Arc<ToolCtx>,
        registry: Arc<Registry>,
        vane_exe: PathBuf,
        opts: Options,
        progress: Box<dyn Fn(Progress) + Send + Sync>,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Runner, VaneError> {
        let cfg = &ctx.config;
        let names: Vec<String> = if cfg.dispatch.providers.is_empty() {
            cfg.providers.keys().cloned().collect()
        } else {
            cfg.dispatch.providers.clone()
        };
        if let Some(p) = &opts.provider {
            if !cfg.providers.contains_key(p) {
                return Err(VaneError::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "no provider `{p}` in vane.toml; configured: {}",
                        cfg.providers.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let providers = names
            .into_iter()
            .filter(|n| opts.provider.as_ref().is_none_or(|p| p == n))
            .filter_map(|n| {
                let c = cfg.providers.get(&n)?.clone();
                (c.enabled || opts.provider.as_ref() == Some(&n)).then(|| Prov {
                    adapter: adapter(c.kind),
                    name: n,
                    cfg: c,
                })
            })
            .collect();
        Ok(Runner {
            env: env_name(),
            host: hostname(),
            ctx,
            registry,
            vane_exe,
            opts,
            providers,
            taken: AtomicUsize::new(0),
            stop_reason: Mutex::new(None),
            alerts: Mutex::new(Vec::new()),
            progress,
            cancel,
        })
    }

    fn store(&self) -> &Store {
        &self.ctx.store
    }

    fn say(&self, p: Progress) {
        (self.progress)(p)
    }

    fn stop(&self, why: &str) {
        let mut s = self.stop_reason.lock().expect("stop lock");
        if s.is_none() {
            *s = Some(why.to_string());
        }
    }

    fn stopped(&self) -> bool {
        *self.cancel.borrow() || self.stop_reason.lock().expect("stop lock").is_some()
    }

    /// Attempts of runners that died are marked interrupted and their claims
    /// freed. A runner on this host is dead when its pid is; one on another
    /// host is left to its lease.
    pub fn recover_orphans(&self) -> Result<usize, VaneError> {
        let host = self.host.clone();
        let me = std::process::id() as i64;
        let alive = move |runner: &str, pid: i64| -> bool {
            if runner.split(':').next() != Some(host.as_str()) {
                return true;
            }
            if pid == me || pid <= 0 {
                return false;
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        };
        let orphans = self.store().interrupt_orphans(&alive, now_ms())?;
        for a in &orphans {
            if a.runner.split(':').next() == Some(self.host.as_str()) {
                if let Some(pgid) = a.agent_pgid {
                    stop_orphan_agent(pgid, a.id);
                }
            }
            self.say(Progress::Notice {
                message: format!(
                    "attempt {} of task {} on {} (runner {}) was cut off: recorded as interrupted, the task is free again",
                    a.id, a.task_id, a.provider, a.runner
                ),
            });
        }
        Ok(orphans.len())
    }

    /// Runs until nothing is ready, `--max-tasks`/`--once`, a budget, no
    /// provider, or cancellation.
    pub async fn run(self: Arc<Self>) -> Result<Report, VaneError> {
        let mut report = Report {
            env: self.env.clone(),
            dry_run: self.opts.dry_run,
            ..Report::default()
        };
        if self.opts.dry_run {
            report.dry_run_tasks = self.dry_run()?;
            report.stopped = "dry_run".into();
            return Ok(report);
        }
        if self.providers.is_empty() {
            return Err(VaneError::new(
                ErrorCode::NoProvider,
                "no provider to dispatch to: add a [providers.NAME] table to vane.toml (see the README's \"Dispatch\")",
            ));
        }
        report.interrupted_orphans = self.recover_orphans()?;
        self.reenable_disabled();
        let started = now_ms();
        let k = if self.opts.once {
            1
        } else if self.opts.parallel > 0 {
            self.opts.parallel
        } else {
            self.ctx.config.dispatch.parallel.max(1)
        };
        let mut set = tokio::task::JoinSet::new();
        for slot in 0..k {
            let me = self.clone();
            set.spawn(async move { me.runner_loop(slot).await });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(mut tasks)) => report.tasks.append(&mut tasks),
                Ok(Err(e)) => {
                    self.stop("error");
                    return Err(e);
                }
                Err(e) => return Err(VaneError::internal(format!("a runner failed: {e}"))),
            }
        }
        report.stopped = self
            .stop_reason
            .lock()
            .expect("stop lock")
            .clone()
            .unwrap_or_else(|| "nothing_ready".into());
        if *self.cancel.borrow() {
            report.stopped = "stopped".into();
        }
        report.spent_usd = usd(self.store().spent(&self.env, None, started)?.spent_micros);
        report.alerts = self.alerts.lock().expect("alerts").clone();
        Ok(report)
    }

    /// A provider disabled by an auth or config failure in an earlier run is
    /// tried again once (the user may have logged in); it is said loudly.
    fn reenable_disabled(&self) {
        let now = now_ms();
        for p in &self.providers {
            let Ok(all) = self.store().provider_health() else {
                return;
            };
            if let Some(h) = all
                .iter()
                .find(|h| h.provider == p.name && h.state == HealthState::Disabled)
            {
                self.say(Progress::Notice {
                    message: format!(
                        "provider {} was disabled ({}); trying it again",
                        p.name,
                        h.last_error
                            .as_deref()
                            .unwrap_or("auth or configuration failure")
                    ),
                });
                let _ = self.store().update_provider_health(&p.name, now, |mut h| {
                    h.state = HealthState::Ok;
                    h.cooling_until_ms = None;
                    h.consecutive_failures = 0;
                    h
                });
            }
        }
    }

    fn query(&self) -> PlanQuery {
        PlanQuery {
            limit: 1,
            epic: self.opts.epic.clone(),
            mode: Some(self.ctx.flags().scheduler_mode),
            ..PlanQuery::default()
        }
    }

    fn lease_s(&self) -> u64 {
        let d = &self.ctx.config.dispatch;
        let per: u64 = self.providers.iter().map(|p| p.cfg.timeout_s).sum();
        (per * (d.retries as u64 + 1) + 900).min(604_800)
    }

    fn budget_allows(&self) -> bool {
        let limit = self
            .opts
            .max_tasks
            .unwrap_or(if self.opts.once { 1 } else { usize::MAX });
        self.taken.fetch_add(1, Ordering::SeqCst) < limit
    }

    async fn runner_loop(self: Arc<Self>, slot: usize) -> Result<Vec<TaskReport>, VaneError> {
        let runner = format!("{}:{}:{slot}", self.host, std::process::id());
        let mut done = Vec::new();
        loop {
            if self.stopped() {
                break;
            }
            if !self.budget_allows() {
                self.stop("max_tasks");
                break;
            }
            let claimed =
                self.store()
                    .claim_next(&self.query(), &runner, self.lease_s(), now_ms())?;
            let Some((task, _prev)) = claimed else {
                self.taken.fetch_sub(1, Ordering::SeqCst);
                break;
            };
            self.say(Progress::Claimed {
                runner: runner.clone(),
                task: task.id.clone(),
                title: task.title.clone(),
            });
            match self.dispatch(&runner, &task).await? {
                TaskEnd::Finished(r) => {
                    self.say(Progress::TaskEnded {
                        runner: runner.clone(),
                        task: r.task_id.clone(),
                        status: r.status.clone(),
                    });
                    done.push(r);
                }
                TaskEnd::Stop(why, r) => {
                    self.say(Progress::TaskEnded {
                        runner: runner.clone(),
                        task: r.task_id.clone(),
                        status: r.status.clone(),
                    });
                    done.push(r);
                    self.stop(&why);
                    break;
                }
            }
        }
        Ok(done)
    }

    fn health(&self, name: &str, now: i64) -> ProviderHealth {
        self.store()
            .provider_health()
            .ok()
            .and_then(|all| all.into_iter().find(|h| h.provider == name))
            .unwrap_or_else(|| ProviderHealth::new(name, now))
    }

    fn price_rate(&self, p: &Prov) -> f64 {
        vane_core::config::dispatch::price_of(
            &self.ctx.config.prices,
            &p.name,
            Some(&p.cfg),
            p.cfg.model.as_deref(),
        )
        .map_or(f64::MAX, |pr| pr.input + pr.output)
    }

    /// One task through the providers.
    async fn dispatch(&self, runner: &str, task: &TaskRecord) -> Result<TaskEnd, VaneError> {
        let verbose = self.ctx.flags().verbose_prompt;
        let prompt = prompt::assemble(self.store(), task, verbose)?;
        let mut report = TaskReport {
            task_id: task.id.clone(),
            title: task.title.clone(),
            status: "in_progress".into(),
            attempts: Vec::new(),
            critics: None,
            runner: runner.to_string(),
        };
        let d = self.ctx.config.dispatch.clone();
        let deadline_wait = Duration::from_secs(d.max_wait_s);
        let mut waited = Duration::ZERO;
        loop {
            // the cheapest price a `fallback` budget still allows
            let mut fallback_below: Option<f64> = None;
            let mut why_not: Vec<String> = Vec::new();
            for p in &self.providers {
                if self.stopped() {
                    return self
                        .release(task, report, "stopped", "vane run was stopped")
                        .await;
                }
                let now = now_ms();
                let h = self.health(&p.name, now);
                if !h.available(now) {
                    why_not.push(format!(
                        "{}: {}{}",
                        p.name,
                        h.state.as_str(),
                        h.cooling_until_ms
                            .map(|t| format!(" for {} s more", (t - now).max(0) / 1000))
                            .unwrap_or_default()
                    ));
                    continue;
                }
                if let Some(max) = fallback_below {
                    if self.price_rate(p) >= max {
                        why_not.push(format!(
                            "{}: not cheaper than the provider over budget",
                            p.name
                        ));
                        continue;
                    }
                }
                let mut delays = backon::BackoffBuilder::build(
                    backon::ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(d.backoff_min_ms))
                        .with_max_delay(Duration::from_millis(d.backoff_max_ms))
                        .with_jitter()
                        .with_max_times(d.retries as usize),
                );
                loop {
                    let now = now_ms();
                    let checks = budget::checks(&self.ctx.config, &self.env, &p.name, now);
                    self.raise_alerts(&p.name, now);
                    let left = budget::remaining(self.store(), &self.env, &checks)?;
                    let ceiling = p.cfg.ceiling_micros();
                    let start = self.store().attempt_start(&NewAttempt {
                        task_id: task.id.clone(),
                        runner: runner.to_string(),
                        runner_pid: std::process::id() as i64,
                        env: self.env.clone(),
                        provider: p.name.clone(),
                        model: p.cfg.model.clone(),
                        started_at_ms: now,
                        ceiling_micros: ceiling,
                        budgets: checks,
                    });
                    let id = match start {
                        Ok(id) => id,
                        Err(e) if e.code == ErrorCode::BudgetExceeded => {
                            let on = budget::budget(&self.ctx.config, &self.env)
                                .map_or(OnExceeded::Stop, |b| b.on_exceeded);
                            self.say(Progress::Notice {
                                message: e.message.clone(),
                            });
                            if on == OnExceeded::Fallback {
                                fallback_below = Some(self.price_rate(p));
                                why_not.push(format!("{}: over budget", p.name));
                                break;
                            }
                            return self.release(task, report, "budget", &e.message).await;
                        }
                        Err(e) => return Err(e),
                    };
                    let max_budget_usd = (left.map_or(ceiling, |l| l.min(ceiling)).max(0) as f64)
                        / vane_core::dispatch::MICROS as f64;
                    let n = report.attempts.len() as i64 + 1;
                    self.say(Progress::AttemptStarted {
                        runner: runner.to_string(),
                        task: task.id.clone(),
                        provider: p.name.clone(),
                        attempt: n,
                    });
                    let before = crate::changes::snapshot(&self.ctx.ws.root);
                    let (res, ended_ms) = self
                        .attempt(runner, task, p, &prompt, max_budget_usd, id)
                        .await;
                    let outcome = res.outcome();
                    // critics decide whether a finished agent finished the task
                    let mut outcome_final = outcome;
                    let mut critic_error = None;
                    if outcome == Outcome::Succeeded && !self.stopped() {
                        let changed = crate::changes::changed_since(&self.ctx.ws.root, &before);
                        match self.critics(task, changed).await {
                            Ok((v, failed)) => {
                                self.say(Progress::Critics {
                                    runner: runner.to_string(),
                                    task: task.id.clone(),
                                    passed: v["passed"].as_u64().unwrap_or(0) as usize,
                                    failed: failed.len(),
                                });
                                if !failed.is_empty() {
                                    outcome_final = Outcome::TaskFailed;
                                    critic_error =
                                        Some(format!("critics failed: {}", failed.join(", ")));
                                }
                                report.critics = Some(v);
                            }
                            Err(e) => {
                                outcome_final = Outcome::TaskFailed;
                                critic_error =
                                    Some(format!("critics could not run: {}", e.message));
                            }
                        }
                    }
                    let attempt =
                        self.finish(id, p, &res, outcome_final, critic_error.clone(), ended_ms)?;
                    self.record(runner, task, p, &attempt);
                    report.attempts.push(AttemptReport {
                        id,
                        provider: p.name.clone(),
                        model: attempt.model.clone(),
                        outcome: attempt.outcome,
                        cost_usd: usd(attempt.cost_micros),
                        duration_ms: attempt.duration_ms.unwrap_or(0),
                        error: attempt.error.clone(),
                    });
                    let h = self
                        .store()
                        .update_provider_health(&p.name, now_ms(), |h| {
                            h.after(
                                outcome,
                                res.error.as_deref(),
                                res.resets_at_ms,
                                now_ms(),
                                &d.breaker,
                            )
                        })?;
                    if outcome == Outcome::Auth {
                        self.say(Progress::Notice {
                            message: format!(
                                "provider {} is disabled for this run: {} — fix its login or configuration",
                                p.name,
                                res.error.as_deref().unwrap_or("authentication or configuration failure")
                            ),
                        });
                    }
                    match outcome_final {
                        Outcome::Succeeded => return self.succeed(task, report, &res).await,
                        Outcome::TaskFailed => {
                            let why = critic_error
                                .or(res.error.clone())
                                .unwrap_or_else(|| "the task is not done".into());
                            return self.task_failed(task, report, &p.name, &why).await;
                        }
                        Outcome::Interrupted | Outcome::Running => {
                            return self
                                .release(task, report, "stopped", "vane run was stopped")
                                .await;
                        }
                        Outcome::Transient | Outcome::Timeout if h.available(now_ms()) => {
                            match delays.next() {
                                Some(mut delay) => {
                                    if let Some(r) = res.resets_at_ms {
                                        let ra =
                                            Duration::from_millis((r - now_ms()).max(0) as u64);
                                        delay = delay.max(ra.min(deadline_wait));
                                    }
                                    self.say(Progress::Notice {
                                        message: format!(
                                            "{} on {}: {}; retrying in {:.1} s",
                                            outcome.as_str(),
                                            p.name,
                                            res.error.as_deref().unwrap_or(""),
                                            delay.as_secs_f64()
                                        ),
                                    });
                                    if self.sleep(delay).await {
                                        return self
                                            .release(
                                                task,
                                                report,
                                                "stopped",
                                                "vane run was stopped",
                                            )
                                            .await;
                                    }
                                    continue;
                                }
                                None => {
                                    why_not.push(format!(
                                        "{}: {} after {} retries",
                                        p.name,
                                        outcome.as_str(),
                                        d.retries
                                    ));
                                    break;
                                }
                            }
                        }
                        _ => {
                            why_not.push(format!(
                                "{}: {}{}",
                                p.name,
                                outcome.as_str(),
                                res.error
                                    .as_deref()
                                    .map(|e| format!(" ({e})"))
                                    .unwrap_or_default()
                            ));
                            break;
                        }
                    }
                }
            }
            // no provider took it: wait for the earliest reset, or give up
            let now = now_ms();
            let earliest = self
                .providers
                .iter()
                .map(|p| self.health(&p.name, now))
                .filter(|h| h.state != HealthState::Disabled)
                .filter_map(|h| h.cooling_until_ms)
                .min();
            match earliest {
                Some(t) if fallback_below.is_none() => {
                    let wait = Duration::from_millis((t - now).max(0) as u64 + 50);
                    if waited + wait <= deadline_wait {
                        self.say(Progress::Notice {
                            message: format!(
                                "no provider can take {} now ({}); waiting {:.1} s for the earliest reset",
                                task.id,
                                why_not.join("; "),
                                wait.as_secs_f64()
                            ),
                        });
                        waited += wait;
                        if self.sleep(wait).await {
                            return self
                                .release(task, report, "stopped", "vane run was stopped")
                                .await;
                        }
                        continue;
                    }
                }
                _ => {}
            }
            let why = if fallback_below.is_some() {
                "budget"
            } else {
                "no_provider"
            };
            let msg = format!(
                "no provider could take task {}: {}",
                task.id,
                why_not.join("; ")
            );
            return self.release(task, report, why, &msg).await;
        }
    }

    /// Sleeps unless cancelled first (true: cancelled).
    async fn sleep(&self, d: Duration) -> bool {
        let mut c = self.cancel.clone();
        if *c.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = c.changed() => true,
        }
    }

    /// Runs one attempt, cancelled with `vane run`; progress every 30 s.
    async fn attempt(
        &self,
        runner: &str,
        task: &TaskRecord,
        p: &Prov,
        prompt: &str,
        max_budget_usd: f64,
        attempt_id: i64,
    ) -> (AttemptResult, i64) {
        let mut pass: Vec<String> = p.cfg.env_pass.clone();
        if let Some(k) = &p.cfg.api_key_env {
            pass.push(k.clone());
        }
        let req = AttemptRequest {
            task_id: task.id.clone(),
            prompt: prompt.to_string(),
            workspace: self.ctx.ws.root.clone(),
            vane_exe: self.vane_exe.clone(),
            state_dir: Some(self.ctx.paths.state_dir.clone()),
            model: p.cfg.model.clone(),
            max_turns: p.cfg.max_turns,
            timeout: Duration::from_secs(p.cfg.timeout_s),
            max_budget_usd,
            // marks the agent's processes as this attempt's (see stop_orphan_agent)
            env: process::agent_env(&pass, &[(ATTEMPT_ENV.to_string(), attempt_id.to_string())]),
            program: p
                .cfg
                .command
                .clone()
                .unwrap_or_else(|| p.cfg.kind.as_str().to_string()),
            extra_args: p.cfg.args.clone(),
            base_url: p.cfg.base_url.clone(),
            api_key_env: p.cfg.api_key_env.clone(),
            ctx: Some(self.ctx.clone()),
            registry: Some(self.registry.clone()),
            on_spawn: {
                let ctx = self.ctx.clone();
                Arc::new(move |pgid| {
                    let _ = ctx.store.attempt_agent_started(attempt_id, pgid as i64);
                })
            },
        };
        let t0 = Instant::now();
        let mut cancel = self.cancel.clone();
        let run = p.adapter.run(&req);
        tokio::pin!(run);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(30),
            Duration::from_secs(30),
        );
        let res = loop {
            if *cancel.borrow() {
                break AttemptResult {
                    outcome: Some(Outcome::Interrupted),
                    error: Some("vane run was stopped".into()),
                    ..AttemptResult::default()
                };
            }
            tokio::select! {
                r = &mut run => break r,
                _ = tick.tick() => self.say(Progress::Running {
                    runner: runner.to_string(),
                    task: task.id.clone(),
                    provider: p.name.clone(),
                    elapsed_s: t0.elapsed().as_secs(),
                }),
                _ = cancel.changed() => {}
            }
        };
        (res, now_ms())
    }

    fn finish(
        &self,
        id: i64,
        p: &Prov,
        res: &AttemptResult,
        outcome: Outcome,
        critic_error: Option<String>,
        ended_ms: i64,
    ) -> Result<vane_store::dispatch::Attempt, VaneError> {
        let model = res.model.clone().or(p.cfg.model.clone());
        let price = vane_core::config::dispatch::price_of(
            &self.ctx.config.prices,
            &p.name,
            Some(&p.cfg),
            model.as_deref(),
        );
        let estimate = price.map_or(0, |pr| pr.cost_micros(&res.usage));
        let transcript = if res.transcript.is_empty() {
            None
        } else {
            let text =
                vane_core::redact::redact(&String::from_utf8_lossy(&res.transcript)).into_owned();
            self.store()
                .record_artifact(
                    "transcript",
                    None,
                    &json!({"attempt": id, "provider": p.name, "kind": p.cfg.kind.as_str()}),
                    None,
                    Some(text.as_bytes()),
                )
                .ok()
                .map(|a| a.id)
        };
        let error = match (&critic_error, &res.error) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(e)) if outcome != Outcome::Succeeded => Some(e.clone()),
            _ => None,
        }
        .map(|e| vane_core::redact::redact(&e).into_owned());
        let mut detail = res.detail.clone();
        if let (Value::Object(m), Some(s)) = (&mut detail, &res.summary) {
            m.insert(
                "summary".into(),
                json!(vane_core::text::tail(&vane_core::redact::redact(s), 2000)),
            );
        }
        if let (Value::Object(m), Some(r)) = (&mut detail, res.resets_at_ms) {
            m.insert("resets_at_ms".into(), json!(r));
        }
        if let Value::Object(m) = &mut detail {
            m.insert("agent_outcome".into(), json!(res.outcome().as_str()));
        }
        self.store().attempt_finish(&AttemptEnd {
            id,
            outcome: Some(outcome),
            finished_at_ms: ended_ms,
            exit_status: res.exit_status,
            model,
            session_id: res.session_id.clone(),
            usage: res.usage,
            estimate_micros: estimate,
            reported_micros: res.reported_micros,
            priced: price.is_some() || res.reported_micros.is_some(),
            num_turns: res.num_turns,
            transcript_artifact: transcript,
            error,
            detail,
        })
    }

    /// The `dispatch` event of the operations log, and the terminal line.
    fn record(&self, runner: &str, task: &TaskRecord, p: &Prov, a: &vane_store::dispatch::Attempt) {
        let t = &self.ctx.telemetry;
        t.emit(
            t.event("dispatch")
                .with("attempt", a.id)
                .with("task", task.id.clone())
                .with("runner", runner.to_string())
                .with("env", self.env.clone())
                .with("provider", p.name.clone())
                .with("kind", p.cfg.kind.as_str())
                .with("model", json!(a.model))
                .with("outcome", a.outcome.as_str())
                .with("duration_ms", json!(a.duration_ms))
                .with("input_tokens", a.usage.input_tokens)
                .with("cached_input_tokens", a.usage.cached_input_tokens)
                .with("output_tokens", a.usage.output_tokens)
                .with("cost_micros", a.cost_micros)
                .with("reported_micros", json!(a.reported_micros))
                .with("error", json!(a.error)),
        );
        let today = budget::window_start("day", now_ms());
        let spent = self
            .store()
            .spent(&self.env, None, today)
            .map(|s| s.spent_micros)
            .unwrap_or(0);
        self.say(Progress::AttemptEnded {
            runner: runner.to_string(),
            task: task.id.clone(),
            provider: p.name.clone(),
            outcome: a.outcome,
            cost: usd(a.cost_micros),
            spent_today: usd(spent),
            error: a.error.clone(),
        });
        self.raise_alerts(&p.name, now_ms());
    }

    fn raise_alerts(&self, provider: &str, now: i64) {
        let Ok(raised) =
            budget::raise_alerts(self.store(), &self.ctx.config, &self.env, provider, now)
        else {
            return;
        };
        for a in raised {
            let (spent, limit) = (usd(a.spent_micros), usd(a.limit_micros));
            let t = &self.ctx.telemetry;
            t.emit(
                t.event("alert")
                    .with("alert", "budget")
                    .with("level", a.level.clone())
                    .with("env", a.env.clone())
                    .with("scope", a.scope.clone())
                    .with("window", a.window.clone())
                    .with("spent_micros", a.spent_micros)
                    .with("limit_micros", a.limit_micros),
            );
            let note = format!(
                "- {} budget alert ({}): env {} {} per {}: spent {spent} of {limit}\n",
                a.level,
                chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
                a.env,
                a.scope,
                a.window
            );
            let _ = self.store().context_write(
                "budget alerts",
                &note,
                true,
                self.ctx.config.limits.context_word_budget,
            );
            self.say(Progress::Alert {
                level: a.level.clone(),
                scope: a.scope.clone(),
                window: a.window.clone(),
                spent: spent.clone(),
                limit: limit.clone(),
            });
            self.alerts.lock().expect("alerts").push(json!({
                "level": a.level, "env": a.env, "scope": a.scope, "window": a.window,
                "spent_usd": spent, "limit_usd": limit,
            }));
        }
    }

    /// The task's critics: those its exit criteria name; else, with
    /// `SELECTIVE_TESTS=1`, those matching the files the run changed; else
    /// every configured critic. Returns the tool's answer and the failures.
    async fn critics(
        &self,
        task: &TaskRecord,
        changed: Option<Vec<String>>,
    ) -> Result<(Value, Vec<String>), VaneError> {
        let named: Vec<String> = task
            .exit_criteria
            .iter()
            .filter_map(|c| match c {
                vane_core::model::ExitCriterion::Critic(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        let mut args = Map::new();
        if !named.is_empty() {
            args.insert("critics".into(), json!(named));
        } else if self.ctx.config.critics.is_empty() {
            return Ok((
                json!({"runs": [], "passed": 0, "failed": 0, "selection": "none configured"}),
                Vec::new(),
            ));
        } else if let (true, Some(paths)) = (self.ctx.flags().selective_tests, changed) {
            if paths.is_empty() {
                return Ok((
                    json!({"runs": [], "passed": 0, "failed": 0, "selection": "no files changed"}),
                    Vec::new(),
                ));
            }
            args.insert("paths".into(), json!(paths));
        } else {
            args.insert("all".into(), json!(true));
        }
        let v = self
            .registry
            .call(&self.ctx, "critics_run", Some(args))
            .await
            .result?;
        let failed = v["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["status"] != "pass")
            .filter_map(|r| {
                r["critic"]
                    .as_str()
                    .or(r["name"].as_str())
                    .map(String::from)
            })
            .collect();
        Ok((v, failed))
    }

    async fn plan_update(&self, args: Value) -> Result<Value, VaneError> {
        let Value::Object(m) = args else {
            return Err(VaneError::internal(
                "plan_update arguments must be an object",
            ));
        };
        self.registry
            .call(&self.ctx, "plan_update", Some(m))
            .await
            .result
    }

    fn notes_with(&self, task: &TaskRecord, line: &str) -> String {
        let fresh = self.store().get_task(&task.id).ok();
        let old = fresh.and_then(|t| t.notes).unwrap_or_default();
        let mut n = if old.trim().is_empty() {
            String::new()
        } else {
            format!("{}\n", old.trim_end())
        };
        n.push_str(line);
        // the newest notes matter most: keep the tail within the tool's limit
        if n.chars().count() > 7500 {
            let skip = n.chars().count() - 7500;
            n = format!("…{}", n.chars().skip(skip).collect::<String>());
        }
        n
    }

    async fn succeed(
        &self,
        task: &TaskRecord,
        mut report: TaskReport,
        res: &AttemptResult,
    ) -> Result<TaskEnd, VaneError> {
        let status = match self.ctx.config.dispatch.on_success {
            OnSuccess::Done => "done",
            OnSuccess::Review => "review",
        };
        let summary = res
            .summary
            .as_deref()
            .map(|s| vane_core::text::tail(&vane_core::redact::redact(s), 1500));
        let line = format!(
            "[vane run {}] finished by {}{}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            report
                .attempts
                .last()
                .map(|a| a.provider.as_str())
                .unwrap_or("?"),
            summary.map(|s| format!(": {s}")).unwrap_or_default()
        );
        let notes = self.notes_with(task, &line);
        let r = self
            .plan_update(json!({"task_id": task.id, "status": status, "notes": notes, "agent": report.runner}))
            .await;
        report.status = match r {
            Ok(_) => status.to_string(),
            Err(e) if e.code == ErrorCode::ExitCriteriaUnmet && status == "done" => {
                // criteria vane cannot check itself (docs, artifacts): a human decides
                let notes =
                    self.notes_with(task, &format!("{line}\n[vane run] not done: {}", e.message));
                self.plan_update(json!({"task_id": task.id, "status": "review", "notes": notes, "agent": report.runner}))
                    .await?;
                "review".into()
            }
            Err(e) => return Err(e),
        };
        Ok(TaskEnd::Finished(report))
    }

    async fn task_failed(
        &self,
        task: &TaskRecord,
        mut report: TaskReport,
        provider: &str,
        why: &str,
    ) -> Result<TaskEnd, VaneError> {
        let failures = self.store().task_failures(&task.id)?;
        let max = self.ctx.config.dispatch.max_task_failures as i64;
        let status = if failures >= max {
            "blocked"
        } else {
            "pending"
        };
        let line = format!(
            "[vane run {}] attempt by {provider} did not finish the task ({failures}/{max}): {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            vane_core::redact::redact(why)
        );
        let notes = self.notes_with(task, &line);
        self.plan_update(
            json!({"task_id": task.id, "status": status, "notes": notes, "agent": report.runner}),
        )
        .await?;
        report.status = status.into();
        Ok(TaskEnd::Finished(report))
    }

    /// The task goes back to pending, no failure counted (nobody worked on it,
    /// or the run was stopped).
    async fn release(
        &self,
        task: &TaskRecord,
        mut report: TaskReport,
        why: &str,
        msg: &str,
    ) -> Result<TaskEnd, VaneError> {
        self.say(Progress::Notice {
            message: msg.to_string(),
        });
        let line = format!(
            "[vane run {}] released: {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            vane_core::redact::redact(msg)
        );
        let notes = self.notes_with(task, &line);
        self.plan_update(json!({"task_id": task.id, "status": "pending", "notes": notes, "agent": report.runner}))
            .await?;
        report.status = "pending".into();
        Ok(TaskEnd::Stop(why.to_string(), report))
    }

    /// `--dry-run`: the ready tasks' prompts and the provider each would go
    /// to now; nothing is claimed, called or written.
    fn dry_run(&self) -> Result<Vec<DryRunTask>, VaneError> {
        let now = now_ms();
        let n = self
            .opts
            .max_tasks
            .unwrap_or(if self.opts.once { 1 } else { 5 });
        let graph = self.store().plan_graph()?;
        let q = PlanQuery {
            limit: n,
            ..self.query()
        };
        let ids = graph.ready_ids(&q, now, n);
        let verbose = self.ctx.flags().verbose_prompt;
        let mut out = Vec::new();
        for id in ids {
            let task = self.store().get_task(&id)?;
            let prompt = prompt::assemble(self.store(), &task, verbose)?;
            let mut skipped = Vec::new();
            let mut chosen = None;
            for p in &self.providers {
                let h = self.health(&p.name, now);
                if !h.available(now) {
                    skipped.push(json!({"provider": p.name, "why": h.state.as_str(), "cooling_until_ms": h.cooling_until_ms}));
                    continue;
                }
                let checks = budget::checks(&self.ctx.config, &self.env, &p.name, now);
                let left = budget::remaining(self.store(), &self.env, &checks)?;
                if left.is_some_and(|l| l < p.cfg.ceiling_micros()) {
                    skipped.push(json!({"provider": p.name, "why": "budget", "left_usd": usd(left.unwrap_or(0)), "ceiling_usd": usd(p.cfg.ceiling_micros())}));
                    continue;
                }
                chosen = Some(p.name.clone());
                break;
            }
            out.push(DryRunTask {
                task_id: task.id.clone(),
                title: task.title.clone(),
                provider: chosen,
                skipped,
                prompt_words: prompt.split_whitespace().count(),
                prompt,
            });
        }
        Ok(out)
    }
}
