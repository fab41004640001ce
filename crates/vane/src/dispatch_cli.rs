//! `vane run`, `vane providers`, `vane cost summary`: the CLI of dispatch.
//!
//! Kept apart from `cli.rs` (argument parsing and the other commands): this
//! is where a signal becomes the runner's cancellation and where the
//! runner's progress becomes terminal lines.

use std::process::ExitCode;
use std::sync::Arc;

use serde_json::{json, Value};
use vane_core::dispatch::{usd, HealthState};
use vane_core::{ErrorCode, VaneError};
use vane_dispatch::runner::{Options, Progress, Report, Runner};
use vane_store::dispatch::CostBy;
use vane_tools::ToolCtx;

/// Exit codes of `vane run` (documented in the README).
pub const EXIT_BUDGET: u8 = 2;
pub const EXIT_NO_PROVIDER: u8 = 3;
pub const EXIT_STOPPED: u8 = 130;

fn progress_line(p: &Progress) -> String {
    match p {
        Progress::Claimed {
            runner,
            task,
            title,
        } => format!("[{runner}] {task} claimed: {title}"),
        Progress::AttemptStarted {
            runner,
            task,
            provider,
            attempt,
        } => {
            format!("[{runner}] {task} → {provider} (attempt {attempt})")
        }
        Progress::Running {
            runner,
            task,
            provider,
            elapsed_s,
        } => {
            format!("[{runner}] {task} on {provider}: {elapsed_s} s")
        }
        Progress::AttemptEnded {
            runner,
            task,
            provider,
            outcome,
            cost,
            spent_today,
            error,
        } => format!(
            "[{runner}] {task} on {provider}: {}, {cost} (today {spent_today}){}",
            outcome.as_str(),
            error
                .as_deref()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        ),
        Progress::Critics {
            runner,
            task,
            passed,
            failed,
        } => {
            format!("[{runner}] {task} critics: {passed} passed, {failed} failed")
        }
        Progress::TaskEnded {
            runner,
            task,
            status,
        } => format!("[{runner}] {task} → {status}"),
        Progress::Alert {
            level,
            scope,
            window,
            spent,
            limit,
        } => {
            format!("BUDGET {level}: {scope} per {window}: spent {spent} of {limit}")
        }
        Progress::Notice { message } => format!("note: {message}"),
    }
}

/// `vane run`.
pub async fn run(ctx: Arc<ToolCtx>, opts: Options, json_out: bool) -> Result<ExitCode, VaneError> {
    let exe = std::env::current_exe()
        .map_err(|e| VaneError::internal(format!("cannot find vane's own executable: {e}")))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let progress: Box<dyn Fn(Progress) + Send + Sync> = if json_out {
        Box::new(|p| eprintln!("{}", serde_json::to_string(&p).unwrap_or_default()))
    } else {
        Box::new(|p| eprintln!("{}", progress_line(&p)))
    };
    let registry = Arc::new(vane_tools::handlers::registry());
    let runner = Arc::new(Runner::new(ctx.clone(), registry, exe, opts, progress, rx)?);
    // SIGINT / SIGTERM: every attempt is cancelled (agents killed with their
    // process group), recorded as interrupted, its task released
    let signals = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("stopping: cancelling running attempts");
        let _ = tx.send(true);
    });
    let report = runner.run().await;
    signals.abort();
    let report = report?;
    let v = serde_json::to_value(&report).unwrap_or(Value::Null);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render_report(&report));
    }
    Ok(match report.stopped.as_str() {
        "budget" => ExitCode::from(EXIT_BUDGET),
        "no_provider" => ExitCode::from(EXIT_NO_PROVIDER),
        "stopped" => ExitCode::from(EXIT_STOPPED),
        _ => ExitCode::SUCCESS,
    })
}

fn render_report(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if r.dry_run {
        let _ = writeln!(
            s,
            "dry run (env {}): nothing claimed, no provider called",
            r.env
        );
        if r.dry_run_tasks.is_empty() {
            let _ = writeln!(s, "no ready task");
        }
        for t in &r.dry_run_tasks {
            let _ = writeln!(
                s,
                "\n== {} {} → {} ({} words)",
                t.task_id,
                t.title,
                t.provider.as_deref().unwrap_or("no provider available"),
                t.prompt_words
            );
            for k in &t.skipped {
                let _ = writeln!(s, "   skipped {}", k);
            }
            let _ = writeln!(s, "{}", t.prompt.trim_end());
        }
        return s;
    }
    let _ = writeln!(
        s,
        "env {}: {} task(s), spent {}, stopped: {}",
        r.env,
        r.tasks.len(),
        r.spent_usd,
        r.stopped
    );
    for t in &r.tasks {
        let _ = writeln!(s, "  {} {} → {}", t.task_id, t.title, t.status);
        for a in &t.attempts {
            let _ = writeln!(
                s,
                "    #{} {} {} {} {:.1} s{}",
                a.id,
                a.provider,
                a.outcome.as_str(),
                a.cost_usd,
                a.duration_ms as f64 / 1000.0,
                a.error
                    .as_deref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            );
        }
    }
    for a in &r.alerts {
        let _ = writeln!(s, "  alert: {a}");
    }
    s
}

/// `vane providers`: configuration and health.
pub fn providers(ctx: &ToolCtx) -> Result<Value, VaneError> {
    let now = vane_dispatch::now_ms();
    let health = ctx.store.provider_health()?;
    let order = &ctx.config.dispatch.providers;
    let env = vane_dispatch::runner::env_name();
    let mut out = Vec::new();
    for (name, p) in &ctx.config.providers {
        let h = health.iter().find(|h| &h.provider == name);
        let checks = vane_dispatch::budget::checks(&ctx.config, &env, name, now);
        let left = vane_dispatch::budget::remaining(&ctx.store, &env, &checks)?;
        out.push(json!({
            "name": name,
            "kind": p.kind.as_str(),
            "model": p.model,
            "enabled": p.enabled,
            "order": order.iter().position(|o| o == name),
            "max_cost_usd": p.max_cost_usd,
            "timeout_s": p.timeout_s,
            "state": h.map_or("ok", |h| if h.available(now) && h.state != HealthState::Disabled { "ok" } else { h.state.as_str() }),
            "cooling_until_ms": h.and_then(|h| h.cooling_until_ms).filter(|t| *t > now),
            "last_outcome": h.and_then(|h| h.last_outcome).map(|o| o.as_str()),
            "last_error": h.and_then(|h| h.last_error.clone()),
            "budget_left_usd": left.map(usd),
        }));
    }
    Ok(json!({"env": env, "providers": out}))
}

pub fn render_providers(v: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let list = v["providers"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no providers configured: add [providers.NAME] to vane.toml (see the README's \"Dispatch\")\n".into();
    }
    let _ = writeln!(s, "env {}", v["env"].as_str().unwrap_or(""));
    for p in list {
        let cooling = p["cooling_until_ms"]
            .as_i64()
            .map(|t| format!(" for {} s", (t - vane_dispatch::now_ms()).max(0) / 1000));
        let _ = writeln!(
            s,
            "  {:<12} {:<8} {:<24} {}{}{}{}",
            p["name"].as_str().unwrap_or(""),
            p["kind"].as_str().unwrap_or(""),
            p["model"].as_str().unwrap_or("(default model)"),
            p["state"].as_str().unwrap_or(""),
            cooling.unwrap_or_default(),
            if p["enabled"] == false {
                " (disabled in vane.toml)"
            } else {
                ""
            },
            p["last_error"]
                .as_str()
                .map(|e| format!(" — last error: {e}"))
                .unwrap_or_default(),
        );
    }
    s
}

/// `vane providers reset NAME`: back in rotation now.
pub fn reset_provider(ctx: &ToolCtx, name: &str) -> Result<Value, VaneError> {
    if !ctx.config.providers.contains_key(name) {
        return Err(VaneError::new(
            ErrorCode::NotFound,
            format!("no provider `{name}` in vane.toml"),
        ));
    }
    let h = ctx
        .store
        .update_provider_health(name, vane_dispatch::now_ms(), |mut h| {
            h.state = HealthState::Ok;
            h.cooling_until_ms = None;
            h.consecutive_failures = 0;
            h
        })?;
    Ok(json!({"provider": name, "state": h.state.as_str()}))
}

/// `vane cost summary`.
pub fn cost_summary(
    ctx: &ToolCtx,
    since: Option<&str>,
    by: &str,
    all_envs: bool,
) -> Result<Value, VaneError> {
    let by_v = CostBy::parse(by).ok_or_else(|| {
        VaneError::invalid_input(format!(
            "--by {by}: use provider, model, task, day or outcome"
        ))
    })?;
    let since_ms = since
        .map(vane_telemetry::summary::parse_since)
        .transpose()
        .map_err(VaneError::invalid_input)?
        .map(|d| vane_dispatch::now_ms() - d.as_millis() as i64);
    let env = vane_dispatch::runner::env_name();
    let rows = ctx
        .store
        .cost_summary((!all_envs).then_some(env.as_str()), since_ms, by_v)?;
    let total: i64 = rows.iter().map(|r| r.cost_micros).sum();
    let attempts: i64 = rows.iter().map(|r| r.attempts).sum();
    let alerts = ctx.store.budget_alerts(since_ms.unwrap_or(0))?;
    Ok(json!({
        "env": if all_envs { Value::Null } else { json!(env) },
        "since_ms": since_ms,
        "by": by,
        "attempts": attempts,
        "cost_micros": total,
        "cost_usd": usd(total),
        "rows": rows,
        "alerts": alerts,
    }))
}

pub fn render_cost(v: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "cost{}: {} over {} attempt(s)",
        v["env"]
            .as_str()
            .map(|e| format!(" (env {e})"))
            .unwrap_or_default(),
        v["cost_usd"].as_str().unwrap_or("$0"),
        v["attempts"]
    );
    let _ = writeln!(
        s,
        "  {:<28} {:>8} {:>12} {:>12} {:>12} {:>12}",
        v["by"].as_str().unwrap_or("key"),
        "attempts",
        "input",
        "cached",
        "output",
        "cost"
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  {:<28} {:>8} {:>12} {:>12} {:>12} {:>12}{}",
            r["key"].as_str().unwrap_or(""),
            r["attempts"].to_string(),
            r["input_tokens"].to_string(),
            r["cached_input_tokens"].to_string(),
            r["output_tokens"].to_string(),
            usd(r["cost_micros"].as_i64().unwrap_or(0)),
            if r["unpriced"].as_i64().unwrap_or(0) > 0 {
                "  (some unpriced)"
            } else {
                ""
            }
        );
    }
    for a in v["alerts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  alert {}: {} per {} spent {} of {}",
            a["level"].as_str().unwrap_or(""),
            a["scope"].as_str().unwrap_or(""),
            a["window"].as_str().unwrap_or(""),
            usd(a["spent_micros"].as_i64().unwrap_or(0)),
            usd(a["limit_micros"].as_i64().unwrap_or(0))
        );
    }
    s
}

/// The ledger's part of `vane telemetry summary`: spend by provider over the
/// same window, every environment.
pub fn cost_fold(
    store: &vane_store::Store,
    since: Option<std::time::Duration>,
) -> Result<Value, VaneError> {
    let since_ms = since.map(|d| vane_dispatch::now_ms() - d.as_millis() as i64);
    let rows = store.cost_summary(None, since_ms, CostBy::Provider)?;
    let total: i64 = rows.iter().map(|r| r.cost_micros).sum();
    Ok(json!({
        "attempts": rows.iter().map(|r| r.attempts).sum::<i64>(),
        "cost_micros": total,
        "cost_usd": usd(total),
        "by_provider": rows,
    }))
}

pub fn render_cost_fold(v: &Value) -> String {
    let attempts = v["attempts"].as_i64().unwrap_or(0);
    if attempts == 0 {
        return String::new();
    }
    let mut s = format!(
        "dispatch: {} attempt(s), {}\n",
        attempts,
        v["cost_usd"].as_str().unwrap_or("")
    );
    for r in v["by_provider"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "  {:<20} {:>5} attempt(s) {:>12}\n",
            r["key"].as_str().unwrap_or(""),
            r["attempts"],
            usd(r["cost_micros"].as_i64().unwrap_or(0))
        ));
    }
    s
}
