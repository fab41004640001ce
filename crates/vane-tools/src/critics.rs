//! Critics: configured quality checks (`[critics.NAME]` in vane.toml) whose
//! passing runs gate `done`. Selection by name, by changed paths (explicit or
//! from git), or all; each run is recorded in the store and exported to
//! `.vane/critics/<name>.json`; a failing run opens a remediation task.

use std::path::Path;
use std::time::Duration;

use globset::{Glob, GlobSetBuilder};
use serde_json::json;
use vane_core::config::CriticConfig;
use vane_core::{ErrorCode, VaneError};
use vane_store::{now_ms, CriticRun, CriticStatus, NewCriticRun};

use crate::ctx::ToolCtx;
use crate::exec;

/// Paths changed in the git working tree (staged, unstaged, untracked).
pub async fn git_changed_paths(
    root: &Path,
    sandbox: Option<&crate::exec::Sandbox>,
) -> Result<Vec<String>, VaneError> {
    let out = crate::git::read(
        root,
        sandbox,
        &["status", "--porcelain", "--untracked-files=all"],
    )
    .await
    .map_err(|e| VaneError::new(ErrorCode::IoError, format!("git status: {e}")))?;
    if !out.status.success() {
        return Err(VaneError::invalid_input(
            "the workspace is not a git repository: name the critics, pass paths, or use all",
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.len() > 3)
        .map(|l| {
            let p = &l[3..];
            p.rsplit(" -> ")
                .next()
                .unwrap_or(p)
                .trim_matches('"')
                .to_string()
        })
        .collect())
}

/// Which configured critics apply to any of `paths`.
pub fn critics_for_paths(ctx: &ToolCtx, paths: &[String]) -> Result<Vec<String>, VaneError> {
    let mut out = Vec::new();
    for (name, c) in &ctx.config.critics {
        if c.paths.is_empty() {
            // a critic without globs cares about every change
            if !paths.is_empty() {
                out.push(name.clone());
            }
            continue;
        }
        let mut b = GlobSetBuilder::new();
        for g in &c.paths {
            b.add(Glob::new(g).map_err(|e| {
                VaneError::new(
                    ErrorCode::ConfigInvalid,
                    format!("critic `{name}`: bad glob `{g}`: {e}"),
                )
            })?);
        }
        let set = b
            .build()
            .map_err(|e| VaneError::new(ErrorCode::ConfigInvalid, e.to_string()))?;
        if paths
            .iter()
            .any(|p| set.is_match(p.trim_start_matches("./")))
        {
            out.push(name.clone());
        }
    }
    Ok(out)
}

/// The built-in critic: `vane audit` in process (a `[critics.security]`
/// table in vane.toml replaces it). It fails on findings at or above
/// `[audit] fail_on`; its output is the audit's report, secrets masked.
pub const SECURITY: &str = "security";

/// Runs the built-in `security` critic and records the result.
pub async fn run_security(
    ctx: &ToolCtx,
    trigger: serde_json::Value,
) -> Result<CriticRun, VaneError> {
    let started = now_ms();
    let report = {
        // the audit reads files and runs git: off the event loop
        let (ws, config) = (ctx.ws.clone(), ctx.config.clone());
        tokio::task::spawn_blocking(move || {
            crate::audit::run(&ws, &config, &crate::audit::Options::default())
        })
        .await
        .map_err(|e| VaneError::internal(e.to_string()))?
    };
    let (status, exit_code, tail) = match report {
        Ok(v) => {
            let failed = v["failed"] == true;
            let text = crate::audit::render(&v);
            let tail = vane_core::text::tail(&text, 4000);
            if failed {
                (CriticStatus::Fail, Some(3), tail)
            } else {
                (CriticStatus::Pass, Some(0), tail)
            }
        }
        Err(e) => (CriticStatus::Error, None, e.message),
    };
    record(
        ctx,
        SECURITY,
        "vane audit (built-in)",
        started,
        status,
        exit_code,
        tail,
        trigger,
    )
}

/// Runs one critic and records the result.
pub async fn run_one(
    ctx: &ToolCtx,
    name: &str,
    c: &CriticConfig,
    trigger: serde_json::Value,
) -> Result<CriticRun, VaneError> {
    let started = now_ms();
    let sandbox = ctx.sandbox();
    let checked = ctx.policy.check(&c.command, &ctx.ws.root);
    let unsandboxed_dry_run =
        ctx.dry_run() && sandbox.wrapper(&ctx.ws.root).ok().flatten().is_none();
    let (status, exit_code, tail) = match checked {
        _ if unsandboxed_dry_run => (
            CriticStatus::Error,
            None,
            "a dry run runs critics only in a read-only sandbox, and bubblewrap is not available"
                .to_string(),
        ),
        Err(d) => (
            CriticStatus::Error,
            None,
            format!("command refused by policy ({}): {}", d.rule, d.reason),
        ),
        Ok(()) => {
            let _turn = ctx.cmd_slots.clone().acquire_owned().await.ok();
            let res = exec::run(
                &c.command,
                &ctx.ws.root,
                &[],
                Duration::from_secs(c.timeout_s),
                ctx.config.limits.cmd_output_max_bytes,
                &sandbox,
            )
            .await;
            match res {
                Err(e) => (CriticStatus::Error, None, e.message),
                Ok(o) => {
                    let mut combined = o.stdout;
                    if !o.stderr.is_empty() {
                        combined.push_str("\n--- stderr ---\n");
                        combined.push_str(&o.stderr);
                    }
                    let tail = vane_core::text::tail(&combined, 4000);
                    let status = if o.timed_out {
                        CriticStatus::Timeout
                    } else if o.exit_code == Some(0) {
                        CriticStatus::Pass
                    } else {
                        CriticStatus::Fail
                    };
                    (status, o.exit_code, tail)
                }
            }
        }
    };
    record(
        ctx, name, &c.command, started, status, exit_code, tail, trigger,
    )
}

/// Records a critic's run (a dry run only reports it).
#[allow(clippy::too_many_arguments)]
fn record(
    ctx: &ToolCtx,
    name: &str,
    command: &str,
    started: i64,
    status: CriticStatus,
    exit_code: Option<i32>,
    tail: String,
    trigger: serde_json::Value,
) -> Result<CriticRun, VaneError> {
    if ctx.dry_run() {
        // a dry run reports what the critic says and records nothing
        let finished = now_ms();
        return Ok(CriticRun {
            id: 0,
            name: name.to_string(),
            status,
            exit_code,
            command: command.to_string(),
            started_at: vane_store::iso(started),
            finished_at: vane_store::iso(finished),
            duration_ms: finished - started,
            output_tail: tail,
            trigger,
            remediation_task: None,
            finished_at_ms: finished,
        });
    }
    let run = ctx.store.record_critic_run(&NewCriticRun {
        name: name.to_string(),
        status,
        exit_code,
        command: command.to_string(),
        started_at_ms: started,
        finished_at_ms: now_ms(),
        output_tail: tail,
        trigger,
    })?;
    ctx.telemetry.emit(
        ctx.telemetry
            .event("critic")
            .with("critic", name)
            .with("status", run.status.as_str())
            .with("exit_code", run.exit_code)
            .with("duration_ms", run.duration_ms)
            .with("remediation_task", run.remediation_task.clone()),
    );
    Ok(run)
}

/// Selects critics and runs them one after another.
pub async fn run(
    ctx: &ToolCtx,
    names: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    all: bool,
) -> Result<(Vec<CriticRun>, serde_json::Value), VaneError> {
    let configured: Vec<String> = ctx.config.critics.keys().cloned().collect();
    let (selected, how) = if all {
        (configured.clone(), json!({ "mode": "all" }))
    } else if let Some(names) = names.filter(|n| !n.is_empty()) {
        for n in &names {
            if !ctx.config.critics.contains_key(n) && n != SECURITY {
                return Err(VaneError::new(
                    ErrorCode::CriticNotFound,
                    format!("no critic `{n}` in vane.toml (built in: `{SECURITY}`)"),
                )
                .with_details(json!({ "critic": n, "configured": configured })));
            }
        }
        (names, json!({ "mode": "names" }))
    } else if let Some(paths) = paths.filter(|p| !p.is_empty()) {
        (
            critics_for_paths(ctx, &paths)?,
            json!({ "mode": "paths", "paths": paths }),
        )
    } else {
        let changed = git_changed_paths(&ctx.ws.root, Some(&ctx.sandbox())).await?;
        (
            critics_for_paths(ctx, &changed)?,
            json!({ "mode": "git_changes", "paths": changed }),
        )
    };
    let mut runs = Vec::new();
    for name in &selected {
        if let Some(c) = ctx.config.critics.get(name) {
            runs.push(run_one(ctx, name, c, how.clone()).await?);
        } else if name == SECURITY {
            runs.push(run_security(ctx, how.clone()).await?);
        }
    }
    Ok((runs, how))
}
