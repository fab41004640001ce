//! Every tool: typed input, typed output, one async function each.
//! Tool names are kept from the original server so existing prompts work.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use vane_core::planner::{BlockedEntry, PlanEntry, PlanQuery};
use vane_core::{transitions, ErrorCode, Priority, Status, VaneError};
use vane_store::{
    now_ms, Artifact, Checkpoint, ContextSection, CriticRun, Decision, StoreStatus, TaskRecord,
    TaskUpdate,
};

use crate::ctx::{ToolCtx, VERSION};
use crate::registry::{tool, Hints, Registry, READ, WRITE};
use crate::{critics, exec};

type R<T> = Result<T, VaneError>;

/// Store and file work is short (well under a millisecond): it runs in place.
/// A thread hop per call (spawn_blocking) measured slower than the work itself;
/// slow work (commands, critics) is async and never goes through here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> R<T> + Send + 'static) -> R<T> {
    f()
}

// ---------- plan_next ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimIn {
    /// your agent or session name
    #[schemars(length(min = 1, max = 200))]
    pub agent: String,
    /// lease seconds (default 1800)
    #[schemars(range(min = 1, max = 604800))]
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNextIn {
    /// default 5
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<usize>,
    pub epic: Option<String>,
    pub milestone: Option<String>,
    pub owner: Option<String>,
    /// list tasks in this status instead
    pub status: Option<Status>,
    /// take the first ready task (in_progress, leased)
    pub claim: Option<ClaimIn>,
    /// why up to N tasks wait (default 0, or 5 when none is ready)
    #[schemars(range(min = 0, max = 100))]
    pub explain_blocked: Option<usize>,
    /// every field of each task
    pub detail: Option<bool>,
}

/// One listed task. By default what an agent acts on (id, title, priority,
/// epic, how many tasks it unblocks); `detail: true` adds the rest.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NextTask {
    pub id: String,
    pub title: String,
    pub priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epic: Option<String>,
    /// open tasks that wait on this one (omitted when 0)
    #[serde(skip_serializing_if = "is_zero")]
    #[serde(default)]
    pub unblocks: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// claimed, but the lease ran out
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[serde(default)]
    pub lease_expired: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl NextTask {
    fn of(e: PlanEntry, detail: bool, show_status: bool) -> NextTask {
        NextTask {
            id: e.id,
            title: e.title,
            priority: e.priority,
            epic: e.epic,
            unblocks: e.unblocks,
            status: (detail || show_status).then_some(e.status),
            milestone: e.milestone.filter(|_| detail),
            owner: e.owner,
            version: detail.then_some(e.version),
            ready: detail.then_some(e.ready),
            lease_expired: e.lease_expired,
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanNextOut {
    pub tasks: Vec<NextTask>,
    /// how many tasks matched before `limit`
    pub total: usize,
    /// why waiting tasks wait: when asked, or when nothing is ready
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(default)]
    pub blocked: Vec<BlockedEntry>,
    /// the task claimed, when `claim` was given and a task was ready
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed: Option<TaskRecord>,
}

async fn plan_next(ctx: Arc<ToolCtx>, i: PlanNextIn) -> R<PlanNextOut> {
    let q = PlanQuery {
        limit: i.limit.unwrap_or(5),
        epic: i.epic,
        milestone: i.milestone,
        owner: i.owner,
        status: i.status,
        explain_blocked: i.explain_blocked.unwrap_or(5),
        mode: Some(ctx.flags().scheduler_mode),
    };
    let mut claimed = None;
    if i.claim.is_some() && ctx.dry_run() {
        return Err(crate::registry::dry_run_refusal("plan_next with claim"));
    }
    if let Some(c) = &i.claim {
        if c.agent.trim().is_empty() {
            return Err(VaneError::invalid_input("claim.agent must not be empty"));
        }
        let ttl = c.ttl_s.unwrap_or(ctx.config.limits.claim_ttl_s);
        let (ctx2, q2, agent) = (ctx.clone(), q.clone(), c.agent.clone());
        let got = blocking(move || ctx2.store.claim_next(&q2, &agent, ttl, now_ms())).await?;
        if let Some((t, prev)) = &got {
            ctx.telemetry.emit(
                ctx.telemetry
                    .event("task")
                    .with("task_id", t.id.clone())
                    .with("from", prev.as_str())
                    .with("to", "in_progress")
                    .with("actor", c.agent.clone())
                    .with("claim", true)
                    .with("version", t.version),
            );
        }
        claimed = got.map(|g| g.0);
    }
    let graph = ctx.store.plan_graph()?;
    let plan = graph.plan(&q, now_ms());
    let detail = i.detail.unwrap_or(false);
    // why others wait: when asked, or when there is nothing to do instead
    let explain = i.explain_blocked.is_some() || detail || plan.tasks.is_empty();
    let show_status = i.status.is_some();
    Ok(PlanNextOut {
        tasks: plan
            .tasks
            .into_iter()
            .map(|e| NextTask::of(e, detail, show_status))
            .collect(),
        total: plan.total,
        blocked: if explain { plan.blocked } else { Vec::new() },
        claimed,
    })
}

/// The text block of a `plan_next` answer: one line per task, the form a
/// model reads best. It carries what the structured answer carries.
pub fn plan_next_text(v: &Value) -> String {
    use std::fmt::Write;
    let tasks = v["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut o = String::new();
    if let Some(c) = v.get("claimed").filter(|c| c.is_object()) {
        let _ = writeln!(
            o,
            "claimed {} \"{}\" (version {}, lease until {})",
            str_of(&c["id"]),
            str_of(&c["title"]),
            c["version"],
            str_of(&c["lease_expires_at"])
        );
    }
    let _ = writeln!(o, "{} of {} listed:", tasks.len(), v["total"]);
    for t in tasks {
        let _ = write!(
            o,
            "{} [{}] {}",
            str_of(&t["id"]),
            priority_text(&t["priority"]),
            str_of(&t["title"])
        );
        let mut extra = Vec::new();
        for k in ["epic", "milestone", "owner", "status"] {
            if let Some(x) = t[k].as_str() {
                extra.push(format!("{k} {x}"));
            }
        }
        if let Some(n) = t["unblocks"].as_u64() {
            extra.push(format!("unblocks {n}"));
        }
        if let Some(n) = t["version"].as_i64() {
            extra.push(format!("version {n}"));
        }
        if t["lease_expired"] == true {
            extra.push("lease expired".into());
        }
        if !extra.is_empty() {
            let _ = write!(o, " ({})", extra.join(", "));
        }
        o.push('\n');
    }
    for b in v["blocked"].as_array().into_iter().flatten() {
        let why: Vec<String> = b["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| match r["kind"].as_str().unwrap_or("") {
                "dependency" => format!("waits on {} ({})", str_of(&r["id"]), str_of(&r["status"])),
                "missing_dependency" => format!("depends on unknown {}", str_of(&r["id"])),
                "claimed" => format!("claimed by {}", str_of(&r["agent"])),
                "marked_blocked" => "marked blocked".into(),
                k => k.to_string(),
            })
            .collect();
        let _ = writeln!(
            o,
            "waiting: {} [{}] {}: {}",
            str_of(&b["id"]),
            priority_text(&b["priority"]),
            str_of(&b["title"]),
            why.join("; ")
        );
    }
    o.truncate(o.trim_end().len());
    o
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn priority_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------- plan_update ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanUpdateIn {
    #[schemars(length(min = 1, max = 200))]
    pub task_id: String,
    pub status: Option<Status>,
    #[schemars(length(max = 8000))]
    pub notes: Option<String>,
    #[schemars(length(max = 200))]
    pub owner: Option<String>,
    pub priority: Option<Priority>,
    /// refuse unless the task is at this version
    pub expected_version: Option<i64>,
    /// done despite unmet critics (needs `reason`)
    pub force: Option<bool>,
    #[schemars(length(max = 2000))]
    pub reason: Option<String>,
    /// who makes the change (recorded)
    #[schemars(length(max = 200))]
    pub agent: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PlanUpdateOut {
    pub task: TaskRecord,
    pub previous_status: Status,
    pub changed: Vec<String>,
    pub forced: bool,
    /// states the task may move to next
    pub allowed_next: Vec<Status>,
}

async fn plan_update(ctx: Arc<ToolCtx>, i: PlanUpdateIn) -> R<PlanUpdateOut> {
    if i.status.is_none() && i.notes.is_none() && i.owner.is_none() && i.priority.is_none() {
        return Err(VaneError::invalid_input(
            "nothing to change: give status, notes, owner or priority",
        ));
    }
    let u = TaskUpdate {
        task_id: i.task_id,
        status: i.status,
        notes: i.notes,
        owner: i.owner,
        priority: i.priority,
        expected_version: i.expected_version,
        force: i.force.unwrap_or(false),
        reason: i.reason,
        actor: i.agent,
    };
    let ctx2 = ctx.clone();
    let actor = u.actor.clone();
    let out = blocking(move || ctx2.store.update_task(&u, now_ms())).await?;
    if out.changed.iter().any(|c| c == "status") {
        ctx.telemetry.emit(
            ctx.telemetry
                .event("task")
                .with("task_id", out.task.id.clone())
                .with("from", out.previous_status.as_str())
                .with("to", out.task.status.as_str())
                .with("actor", actor.unwrap_or_default())
                .with("forced", out.forced)
                .with("version", out.task.version),
        );
    }
    let allowed_next = transitions::allowed_next(out.task.status).to_vec();
    Ok(PlanUpdateOut {
        task: out.task,
        previous_status: out.previous_status,
        changed: out.changed,
        forced: out.forced,
        allowed_next,
    })
}

// ---------- context ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextWriteIn {
    /// section name, e.g. `goal`, `findings`, `next_steps`
    #[schemars(length(min = 1, max = 80))]
    pub section: String,
    pub content: String,
    /// add instead of replacing
    pub append: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ContextWriteOut {
    pub section: ContextSection,
    pub word_budget: usize,
}

async fn context_write(ctx: Arc<ToolCtx>, i: ContextWriteIn) -> R<ContextWriteOut> {
    let name = i.section.trim().to_string();
    if name.is_empty() || name.contains('\n') {
        return Err(VaneError::invalid_input(
            "section must be a non-empty single line",
        ));
    }
    let budget = ctx.config.limits.context_word_budget;
    let section = blocking(move || {
        ctx.store
            .context_write(&name, &i.content, i.append.unwrap_or(false), budget)
    })
    .await?;
    Ok(ContextWriteOut {
        section,
        word_budget: budget,
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSnapshotIn {
    /// e.g. "end of session"
    #[schemars(length(min = 1, max = 2000))]
    pub reason: String,
    /// the whole checkpoint in the answer
    pub detail: Option<bool>,
}

/// What a `context_snapshot` answer keeps of the checkpoint by default: its
/// id, time and reason, the git state, the open task count, failing critics
/// and the context sections — the lists of tasks and claims are in the
/// checkpoint itself (`detail`, `status {detail}`, vane://checkpoint/latest).
const SNAPSHOT_BRIEF: &[&str] = &["git", "open_tasks", "failing_critics", "context_sections"];

async fn git(ctx: &ToolCtx, args: &[&str]) -> Option<String> {
    let out = crate::git::read(&ctx.ws.root, Some(&ctx.sandbox()), args)
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn context_snapshot(ctx: Arc<ToolCtx>, i: ContextSnapshotIn) -> R<Checkpoint> {
    let git_info = match git(&ctx, &["rev-parse", "--is-inside-work-tree"]).await {
        Some(_) => json!({
            "branch": git(&ctx, &["symbolic-ref", "--short", "-q", "HEAD"]).await,
            "commit": git(&ctx, &["rev-parse", "HEAD"]).await,
            "dirty": git(&ctx, &["status", "--porcelain"]).await.is_some_and(|s| !s.is_empty()),
        }),
        None => Value::Null,
    };
    let graph = ctx.store.plan_graph()?;
    let now = now_ms();
    let active = graph.plan(
        &PlanQuery {
            limit: 50,
            status: Some(Status::InProgress),
            ..Default::default()
        },
        now,
    );
    let review = graph.plan(
        &PlanQuery {
            limit: 50,
            status: Some(Status::Review),
            ..Default::default()
        },
        now,
    );
    let ready = graph.plan(
        &PlanQuery {
            limit: 10,
            ..Default::default()
        },
        now,
    );
    let status = ctx.store.status(now)?;
    let failing: Vec<Value> = ctx
        .store
        .latest_critic_runs()?
        .into_iter()
        .filter(|r| r.status != vane_store::CriticStatus::Pass)
        .map(|r| json!({ "name": r.name, "status": r.status, "finished_at": r.finished_at }))
        .collect();
    let sections: Vec<String> = ctx
        .store
        .context_sections()?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let data = json!({
        "git": git_info,
        "active_tasks": active.tasks.iter().map(|t| json!({"id": t.id, "title": t.title})).collect::<Vec<_>>(),
        "review_tasks": review.tasks.iter().map(|t| json!({"id": t.id, "title": t.title})).collect::<Vec<_>>(),
        "next_ready": ready.tasks.iter().map(|t| json!({"id": t.id, "title": t.title, "priority": t.priority})).collect::<Vec<_>>(),
        "claims": status.claims,
        "open_tasks": status.by_status.iter().filter(|(k, _)| !matches!(k.as_str(), "done" | "cancelled")).map(|(_, n)| n).sum::<usize>(),
        "by_status": status.by_status,
        "failing_critics": failing,
        "context_sections": sections,
    });
    let reason = i.reason;
    let mut cp = blocking(move || ctx.store.write_checkpoint(&reason, data)).await?;
    if !i.detail.unwrap_or(false) {
        if let Value::Object(m) = &mut cp.data {
            m.retain(|k, _| SNAPSHOT_BRIEF.contains(&k.as_str()));
        }
    }
    Ok(cp)
}

// ---------- fs ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FsReadIn {
    /// relative to the workspace
    pub path: String,
    /// first line to return, 1-based
    #[schemars(range(min = 1))]
    pub start_line: Option<u64>,
    /// last line to return, inclusive
    #[schemars(range(min = 1))]
    pub end_line: Option<u64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FsReadOut {
    pub path: String,
    pub content: String,
    pub size: u64,
    /// sha256 of the whole file (use as expected_sha256 when writing)
    pub sha256: Option<String>,
    pub start_line: u64,
    pub end_line: u64,
    pub total_lines: Option<u64>,
    /// the range stopped early at the byte cap
    pub truncated: bool,
}

/// The text block of an `fs_read` answer: one header line, then the
/// content as it is (not escaped inside JSON).
pub fn fs_read_text(v: &Value) -> String {
    let total = v["total_lines"]
        .as_u64()
        .map(|n| format!(" of {n}"))
        .unwrap_or_default();
    let sha = v["sha256"]
        .as_str()
        .map(|h| format!(", sha256 {h}"))
        .unwrap_or_default();
    let cut = if v["truncated"] == true {
        ", truncated at the byte cap"
    } else {
        ""
    };
    format!(
        "{} lines {}-{}{total}, {} bytes{sha}{cut}:\n{}",
        str_of(&v["path"]),
        v["start_line"],
        v["end_line"],
        v["size"],
        str_of(&v["content"])
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn io_err(path: &str, e: std::io::Error) -> VaneError {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            VaneError::new(ErrorCode::NotFound, format!("`{path}` does not exist"))
                .with_details(json!({ "path": path }))
        }
        _ => VaneError::new(ErrorCode::IoError, format!("`{path}`: {e}"))
            .with_details(json!({ "path": path })),
    }
}

fn fs_read_sync(ctx: &ToolCtx, i: FsReadIn) -> R<FsReadOut> {
    use std::io::Seek;
    let p = ctx.ws.resolve(&i.path)?;
    // one descriptor for the whole call, opened beneath the workspace root
    // without following symlinks: what was checked is what is read
    let mut f = ctx.ws.open_read(&p, &i.path)?;
    let meta = f.metadata().map_err(|e| io_err(&i.path, e))?;
    let cap = ctx.config.limits.fs_read_max_bytes;
    let size = meta.len();
    let rel = ctx.ws.relative(&p);
    if let (Some(s), Some(e)) = (i.start_line, i.end_line) {
        if e < s {
            return Err(VaneError::invalid_input("end_line is before start_line"));
        }
    }
    let ranged = i.start_line.is_some() || i.end_line.is_some();
    if !ranged && size > cap {
        return Err(VaneError::new(
            ErrorCode::FileTooLarge,
            format!("`{}` has {size} bytes, more than the {cap}-byte cap; read it by line range (start_line/end_line)", i.path),
        )
        .with_details(json!({ "path": rel, "size": size, "cap": cap })));
    }
    let mut sniff = Vec::with_capacity(8192.min(size as usize));
    (&mut f)
        .take(8192)
        .read_to_end(&mut sniff)
        .map_err(|e| io_err(&i.path, e))?;
    let binary = |bytes: &[u8]| {
        bytes.contains(&0) || std::str::from_utf8(bytes).is_err_and(|e| e.error_len().is_some())
    };
    if binary(&sniff) {
        return Err(VaneError::new(
            ErrorCode::BinaryFile,
            format!(
                "`{}` looks binary ({size} bytes); fs_read returns text only",
                i.path
            ),
        )
        .with_details(json!({ "path": rel, "size": size })));
    }
    let rewind = |f: &mut std::fs::File| f.rewind().map_err(|e| io_err(&i.path, e));
    if !ranged {
        rewind(&mut f)?;
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut f)
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(&i.path, e))?;
        if bytes.len() as u64 > cap {
            return Err(VaneError::new(
                ErrorCode::FileTooLarge,
                format!("`{}` grew past the {cap}-byte cap while being read", i.path),
            )
            .with_details(json!({ "path": rel, "cap": cap })));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            VaneError::new(
                ErrorCode::BinaryFile,
                format!("`{}` is not valid UTF-8 text", i.path),
            )
            .with_details(json!({ "path": rel }))
        })?;
        let lines = text.lines().count() as u64;
        return Ok(FsReadOut {
            path: rel,
            sha256: Some(sha256_hex(text.as_bytes())),
            size,
            start_line: 1,
            end_line: lines,
            total_lines: Some(lines),
            content: text,
            truncated: false,
        });
    }
    let start = i.start_line.unwrap_or(1);
    let end = i.end_line.unwrap_or(u64::MAX);
    rewind(&mut f)?;
    let reader = std::io::BufReader::new(&f);
    let mut content = String::new();
    let mut n = 0u64;
    let mut last = start.saturating_sub(1);
    let mut truncated = false;
    let mut hasher = Sha256::new();
    let mut complete = true;
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| io_err(&i.path, e))?;
        n += 1;
        if size <= cap * 16 {
            hasher.update(&line);
            hasher.update(b"\n");
        } else {
            complete = false;
        }
        if n < start || n > end || truncated {
            if n > end && !complete {
                break;
            }
            continue;
        }
        let text = String::from_utf8(line).map_err(|_| {
            VaneError::new(
                ErrorCode::BinaryFile,
                format!("`{}` line {n} is not valid UTF-8", i.path),
            )
            .with_details(json!({ "path": rel }))
        })?;
        if content.len() + text.len() + 1 > cap as usize {
            truncated = true;
            continue;
        }
        content.push_str(&text);
        content.push('\n');
        last = n;
    }
    // the hash must be of the real bytes: recompute exactly when small enough
    let sha = if complete {
        rewind(&mut f)?;
        let mut all = Vec::new();
        (&mut f)
            .take(cap.saturating_mul(16) + 1)
            .read_to_end(&mut all)
            .map_err(|e| io_err(&i.path, e))?;
        Some(sha256_hex(&all))
    } else {
        None
    };
    let _ = hasher;
    Ok(FsReadOut {
        path: rel,
        content,
        size,
        sha256: sha,
        start_line: start,
        end_line: last,
        total_lines: complete.then_some(n),
        truncated,
    })
}

async fn fs_read(ctx: Arc<ToolCtx>, i: FsReadIn) -> R<FsReadOut> {
    blocking(move || fs_read_sync(&ctx, i)).await
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// replace or create (default)
    Overwrite,
    /// only a new file
    Create,
    /// add to the end
    Append,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FsWriteIn {
    pub path: String,
    pub content: String,
    pub mode: Option<WriteMode>,
    /// only if the file still has this sha256 (from fs_read)
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffSummary {
    pub lines_added: usize,
    pub lines_removed: usize,
    /// unified diff, cut after 60 lines
    pub unified: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FsWriteOut {
    pub path: String,
    pub sha256: String,
    pub previous_sha256: Option<String>,
    pub bytes: u64,
    pub created: bool,
    pub diff: DiffSummary,
}

fn fs_write_sync(ctx: &ToolCtx, i: FsWriteIn) -> R<FsWriteOut> {
    let p = ctx.ws.resolve_for_write(&i.path)?;
    let max = ctx.config.limits.fs_write_max_bytes;
    if i.content.len() as u64 > max {
        return Err(VaneError::new(
            ErrorCode::FileTooLarge,
            format!("content has {} bytes; the cap is {max}", i.content.len()),
        ));
    }
    let mode = i.mode.unwrap_or(WriteMode::Overwrite);
    // the directory held open beneath the root (created when missing):
    // the file is read, replaced and renamed in it, never by path again
    let (dir, name) = ctx.ws.parent_dir(&p, &i.path)?;
    let old_cap = max.max(ctx.config.limits.fs_read_max_bytes).max(64 << 20);
    let old = dir.read(name, old_cap)?;
    if old.as_ref().is_some_and(|o| o.len() as u64 > old_cap) {
        return Err(VaneError::new(
            ErrorCode::FileTooLarge,
            format!(
                "`{}` is larger than {old_cap} bytes; fs_write does not replace it",
                i.path
            ),
        ));
    }
    let prev_sha = old.as_deref().map(sha256_hex);
    if let Some(exp) = &i.expected_sha256 {
        if prev_sha.as_deref() != Some(exp.to_ascii_lowercase().as_str()) {
            return Err(VaneError::new(
                ErrorCode::HashMismatch,
                format!(
                    "`{}` changed since it was read (expected sha256 {exp})",
                    i.path
                ),
            )
            .with_details(
                json!({ "path": i.path, "expected_sha256": exp, "current_sha256": prev_sha }),
            ));
        }
    }
    if mode == WriteMode::Create && old.is_some() {
        return Err(VaneError::new(
            ErrorCode::AlreadyExists,
            format!("`{}` already exists (mode create)", i.path),
        )
        .with_details(json!({ "path": i.path, "current_sha256": prev_sha })));
    }
    let new: Vec<u8> = match (mode, &old) {
        (WriteMode::Append, Some(o)) => {
            let mut v = o.clone();
            v.extend_from_slice(i.content.as_bytes());
            v
        }
        _ => i.content.as_bytes().to_vec(),
    };
    if mode == WriteMode::Append && new.len() as u64 > max {
        return Err(VaneError::new(
            ErrorCode::FileTooLarge,
            format!(
                "`{}` would have {} bytes; the cap is {max}",
                i.path,
                new.len()
            ),
        ));
    }
    let perms = dir.mode_of(name).unwrap_or(0o644);
    dir.write_atomic(name, &new, perms)?;
    let old_text = old
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let new_text = String::from_utf8_lossy(&new);
    let diff = similar::TextDiff::from_lines(old_text.as_ref(), new_text.as_ref());
    let (mut added, mut removed) = (0, 0);
    for c in diff.iter_all_changes() {
        match c.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let rel = ctx.ws.relative(&p);
    let unified_full = diff
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{rel}"), &format!("b/{rel}"))
        .to_string();
    let mut unified: String = unified_full.lines().take(60).collect::<Vec<_>>().join("\n");
    if unified_full.lines().count() > 60 {
        unified.push_str("\n… (diff cut)");
    }
    Ok(FsWriteOut {
        path: rel,
        sha256: sha256_hex(&new),
        previous_sha256: prev_sha,
        bytes: new.len() as u64,
        created: old.is_none(),
        diff: DiffSummary {
            lines_added: added,
            lines_removed: removed,
            unified,
        },
    })
}

async fn fs_write(ctx: Arc<ToolCtx>, i: FsWriteIn) -> R<FsWriteOut> {
    blocking(move || fs_write_sync(&ctx, i)).await
}

// ---------- cmd_run ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CmdRunIn {
    /// run with bash -c
    #[schemars(length(min = 1, max = 100000))]
    pub cmd: String,
    /// default: the workspace root
    pub cwd: Option<String>,
    /// default 120
    #[schemars(range(min = 1))]
    pub timeout_s: Option<u64>,
    /// extra environment variables
    pub env: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CmdRunOut {
    pub cmd: String,
    pub cwd: String,
    #[serde(flatten)]
    pub output: exec::CmdOutput,
}

/// The text block of a `cmd_run` answer: one line of facts, then stdout
/// and stderr as they are (not escaped inside JSON).
pub fn cmd_run_text(v: &Value) -> String {
    let end = if v["timed_out"] == true {
        "timed out".to_string()
    } else if let Some(c) = v["exit_code"].as_i64() {
        format!("exit {c}")
    } else if let Some(sig) = v["signal"].as_i64() {
        format!("killed by signal {sig}")
    } else {
        "no exit code".to_string()
    };
    let cut = if v["truncated"] == true {
        format!(
            ", output cut (stdout {} bytes, stderr {} bytes in all)",
            v["stdout_bytes"], v["stderr_bytes"]
        )
    } else {
        String::new()
    };
    let mut o = format!(
        "$ {}\n{end} in {} ms (cwd {}, sandbox {}){cut}",
        str_of(&v["cmd"]),
        v["duration_ms"],
        str_of(&v["cwd"]),
        str_of(&v["sandbox"])
    );
    for k in ["stdout", "stderr"] {
        let t = str_of(&v[k]);
        if !t.is_empty() {
            o.push_str(&format!("\n--- {k}\n{}", t.trim_end_matches('\n')));
        }
    }
    o
}

const ENV_DENY: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "IFS",
    "BASH_FUNC",
    "GCONV_PATH",
];

async fn cmd_run(ctx: Arc<ToolCtx>, i: CmdRunIn) -> R<CmdRunOut> {
    let cwd = match &i.cwd {
        Some(c) => ctx.ws.resolve(c)?,
        None => ctx.ws.root.clone(),
    };
    if !cwd.is_dir() {
        return Err(VaneError::invalid_input(format!(
            "cwd `{}` is not a directory",
            i.cwd.clone().unwrap_or_default()
        )));
    }
    ctx.policy.check(&i.cmd, &cwd).map_err(|d| {
        VaneError::new(
            ErrorCode::CommandDenied,
            format!("command refused ({}): {}", d.rule, d.reason),
        )
        .with_details(json!({ "rule": d.rule, "command": d.command }))
    })?;
    let mut env = Vec::new();
    for (k, v) in i.env.unwrap_or_default() {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(VaneError::invalid_input(format!(
                "bad environment variable name `{k}`"
            )));
        }
        if ENV_DENY
            .iter()
            .any(|d| k == *d || k.starts_with("BASH_FUNC"))
        {
            return Err(VaneError::new(
                ErrorCode::CommandDenied,
                format!("environment variable `{k}` can inject code and is not allowed"),
            )
            .with_details(json!({ "rule": "env_injection", "variable": k })));
        }
        env.push((k, v));
    }
    let sandbox = ctx.sandbox();
    if ctx.dry_run() && sandbox.wrapper(&cwd).ok().flatten().is_none() {
        return Err(crate::registry::dry_run_refusal(
            "cmd_run without a read-only sandbox (bubblewrap)",
        ));
    }
    let limits = &ctx.config.limits;
    let timeout = i
        .timeout_s
        .unwrap_or(limits.cmd_default_timeout_s)
        .min(limits.cmd_max_timeout_s);
    // at most [limits] cmd_max_concurrent commands per worker; more wait
    let _turn = ctx
        .cmd_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| VaneError::internal(e.to_string()))?;
    let out = exec::run(
        &i.cmd,
        &cwd,
        &env,
        Duration::from_secs(timeout),
        limits.cmd_output_max_bytes,
        &sandbox,
    )
    .await?;
    if out.timed_out {
        return Err(VaneError::new(
            ErrorCode::Timeout,
            format!("command timed out after {timeout} s; its process group was killed"),
        )
        .with_details(json!({ "timeout_s": timeout, "stdout_tail": vane_core::text::tail(&out.stdout, 2000), "stderr_tail": vane_core::text::tail(&out.stderr, 2000), "duration_ms": out.duration_ms })));
    }
    Ok(CmdRunOut {
        cmd: i.cmd,
        cwd: ctx.ws.relative(&cwd),
        output: out,
    })
}

// ---------- critics_run ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CriticsRunIn {
    /// critic names from vane.toml
    pub critics: Option<Vec<String>>,
    /// critics whose globs match these paths
    pub paths: Option<Vec<String>>,
    /// every critic
    pub all: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CriticsRunOut {
    pub runs: Vec<CriticRun>,
    pub passed: usize,
    pub failed: usize,
    pub selection: Value,
}

async fn critics_run(ctx: Arc<ToolCtx>, i: CriticsRunIn) -> R<CriticsRunOut> {
    let (runs, selection) = critics::run(&ctx, i.critics, i.paths, i.all.unwrap_or(false)).await?;
    let passed = runs
        .iter()
        .filter(|r| r.status == vane_store::CriticStatus::Pass)
        .count();
    Ok(CriticsRunOut {
        failed: runs.len() - passed,
        passed,
        runs,
        selection,
    })
}

// ---------- artifacts, decisions ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRecordIn {
    /// e.g. report, benchmark, screenshot, log
    #[schemars(length(min = 1, max = 100))]
    pub kind: String,
    /// a workspace file (its hash and size are kept)
    pub path: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub task_id: Option<String>,
}

async fn artifact_record(ctx: Arc<ToolCtx>, i: ArtifactRecordIn) -> R<Artifact> {
    blocking(move || {
        let mut meta = i.metadata.unwrap_or_default();
        let meta_bytes = serde_json::to_vec(&meta).map(|v| v.len()).unwrap_or(0);
        if meta_bytes > 16 * 1024 {
            return Err(VaneError::invalid_input(format!(
                "metadata is {meta_bytes} bytes; at most 16384 (keep large content in a file and record its path)"
            )));
        }
        let rel = match &i.path {
            Some(p) => {
                let real = ctx.ws.resolve(p)?;
                match ctx.ws.open_read(&real, p) {
                    Ok(mut f) => {
                        // streamed: any size, read once through the checked descriptor
                        let mut h = Sha256::new();
                        let n = std::io::copy(&mut f, &mut h).map_err(|e| io_err(p, e))?;
                        meta.insert("sha256".into(), json!(hex::encode(h.finalize())));
                        meta.insert("bytes".into(), json!(n));
                    }
                    Err(e) if e.code == ErrorCode::NotFound => {
                        meta.insert("exists".into(), json!(false));
                    }
                    Err(e) => return Err(e),
                }
                Some(ctx.ws.relative(&real))
            }
            None => None,
        };
        ctx.store.record_artifact(
            &i.kind,
            rel.as_deref(),
            &Value::Object(meta),
            i.task_id.as_deref(),
            None,
        )
    })
    .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecordIn {
    #[schemars(length(min = 1, max = 300))]
    pub title: String,
    #[schemars(length(min = 1, max = 8000))]
    pub summary: String,
    #[schemars(length(max = 8000))]
    pub impact: Option<String>,
    pub task_id: Option<String>,
}

async fn decision_record(ctx: Arc<ToolCtx>, i: DecisionRecordIn) -> R<Decision> {
    blocking(move || {
        ctx.store.record_decision(
            &i.title,
            &i.summary,
            i.impact.as_deref(),
            i.task_id.as_deref(),
        )
    })
    .await
}

// ---------- status, manifest ----------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusIn {
    /// the operator's view too
    pub detail: Option<bool>,
}

/// The workspace at a glance. By default what an agent's next step needs;
/// `detail: true` (what `vane status` and `vane://status` show) adds the
/// operator's view.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusOut {
    pub workspace: String,
    pub version: String,
    pub roadmap: StoreStatus,
    pub ready: usize,
    pub next: Vec<NextTask>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<Checkpoint>,
    /// latest run of each critic that did not pass (output cut to its last
    /// 300 characters unless `detail`)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(default)]
    pub failing_critics: Vec<CriticRun>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(default)]
    pub critics_configured: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// mode, bubblewrap, network, resource limits
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// this server's calls over the last minutes (rate, error rate, p95)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_calls: Option<vane_telemetry::metrics::RecentCalls>,
    /// `vane run`: provider health, budget alerts, spent in 24 h (by
    /// default only when there is any)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub dispatch: Option<DispatchStatus>,
}

/// Dispatch at a glance.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DispatchStatus {
    /// every configured provider: ok, cooling (until), open, disabled; last error
    pub providers: Vec<vane_core::dispatch::ProviderHealth>,
    /// budget alerts of the last 31 days, newest first
    pub budget_alerts: Vec<vane_store::dispatch::BudgetAlert>,
    /// spent in the last 24 hours, every environment, micro-dollars
    pub spent_24h_micros: i64,
}

/// Dispatch at a glance; `None` when there is nothing to say and the caller
/// did not ask for detail (then the ledger is not even read).
fn dispatch_status(ctx: &ToolCtx, now: i64, detail: bool) -> R<Option<DispatchStatus>> {
    let recorded = ctx.store.provider_health()?;
    let providers = ctx
        .config
        .providers
        .keys()
        .map(|n| {
            recorded
                .iter()
                .find(|h| &h.provider == n)
                .cloned()
                .unwrap_or_else(|| vane_core::dispatch::ProviderHealth::new(n, now))
        })
        .collect();
    let mut budget_alerts = ctx.store.budget_alerts(now - 31 * 86_400_000)?;
    if !detail && ctx.config.providers.is_empty() && budget_alerts.is_empty() {
        return Ok(None);
    }
    budget_alerts.sort_by_key(|a| std::cmp::Reverse(a.at_ms));
    let spent_24h_micros = ctx
        .store
        .cost_summary(
            None,
            Some(now - 86_400_000),
            vane_store::dispatch::CostBy::Provider,
        )?
        .iter()
        .map(|r| r.cost_micros)
        .sum();
    Ok(Some(DispatchStatus {
        providers,
        budget_alerts,
        spent_24h_micros,
    }))
}

pub fn status_sync(ctx: &ToolCtx, detail: bool) -> R<StatusOut> {
    let now = now_ms();
    let roadmap = ctx.store.status(now)?;
    let plan = ctx.store.plan_graph()?.plan(
        &PlanQuery {
            limit: 3,
            ..Default::default()
        },
        now,
    );
    let failing_critics = ctx
        .store
        .latest_critic_runs()?
        .into_iter()
        .filter(|r| r.status != vane_store::CriticStatus::Pass)
        .map(|mut r| {
            if !detail {
                r.output_tail = vane_core::text::tail(r.output_tail.trim_end(), 300);
            }
            r
        })
        .collect();
    let dispatch = dispatch_status(ctx, now, detail)?;
    let sb = ctx.sandbox();
    Ok(StatusOut {
        workspace: ctx.ws.root.display().to_string(),
        version: VERSION.to_string(),
        roadmap,
        ready: plan.total,
        next: plan
            .tasks
            .into_iter()
            .map(|e| NextTask::of(e, detail, false))
            .collect(),
        // the checkpoint's id, time and reason; its body (tasks, git,
        // context) with `detail` or from vane://checkpoint/latest
        last_checkpoint: ctx.store.latest_checkpoint()?.map(|mut c| {
            if !detail {
                c.data = json!({});
            }
            c
        }),
        failing_critics,
        critics_configured: ctx.config.critics.keys().cloned().collect(),
        state_dir: detail.then(|| ctx.paths.state_dir.display().to_string()),
        sandbox: detail.then(|| {
            json!({
                "mode": sb.mode,
                "bwrap_available": sb.bwrap.is_some(),
                "network": sb.network,
                "confined": sb.active().unwrap_or(false),
                "limits": {
                    "enforced_by": crate::limits::enforcer().name(),
                    "memory_mb": ctx.config.limits.cmd_max_memory_mb,
                    "processes": ctx.config.limits.cmd_max_processes,
                    "concurrent": ctx.config.limits.cmd_max_concurrent,
                },
            })
        }),
        uptime_s: detail.then(|| ctx.started.elapsed().as_secs()),
        recent_calls: detail.then(|| ctx.telemetry.metrics.recent()),
        dispatch,
    })
}

async fn status(ctx: Arc<ToolCtx>, i: StatusIn) -> R<StatusOut> {
    blocking(move || status_sync(&ctx, i.detail.unwrap_or(false))).await
}

/// The text block of a `status` answer: a few lines a model reads at a
/// glance, carrying what the structured answer carries (details as JSON
/// after the summary when asked for).
pub fn status_text(v: &Value) -> String {
    use std::fmt::Write;
    let r = &v["roadmap"];
    let mut o = String::new();
    let _ = writeln!(
        o,
        "vane {} · {}",
        str_of(&v["version"]),
        str_of(&v["workspace"])
    );
    let counts: Vec<String> = r["by_status"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let _ = writeln!(
        o,
        "roadmap: {} tasks ({}), {:.0}% done, {} ready",
        r["tasks"],
        counts.join(", "),
        r["done_ratio"].as_f64().unwrap_or(0.0) * 100.0,
        v["ready"]
    );
    for t in v["next"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "next: {} [{}] {}",
            str_of(&t["id"]),
            priority_text(&t["priority"]),
            str_of(&t["title"])
        );
    }
    for c in r["claims"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "claim: {} by {}{}",
            str_of(&c["task_id"]),
            str_of(&c["agent"]),
            if c["expired"] == true {
                " (expired)"
            } else {
                ""
            }
        );
    }
    if let Some(cp) = v.get("last_checkpoint").filter(|c| c.is_object()) {
        let _ = writeln!(
            o,
            "checkpoint {} at {}: {}",
            cp["id"],
            str_of(&cp["created_at"]),
            str_of(&cp["reason"])
        );
    }
    for f in v["failing_critics"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "critic {} {}{}: {}",
            str_of(&f["name"]),
            str_of(&f["status"]),
            f["remediation_task"]
                .as_str()
                .map(|t| format!(" (task {t})"))
                .unwrap_or_default(),
            str_of(&f["output_tail"]).trim()
        );
    }
    if let Some(c) = v["critics_configured"].as_array() {
        let names: Vec<&str> = c.iter().filter_map(Value::as_str).collect();
        let _ = writeln!(o, "critics: {}", names.join(", "));
    }
    let mut rest: Map<String, Value> = [
        "state_dir",
        "sandbox",
        "uptime_s",
        "recent_calls",
        "dispatch",
    ]
    .iter()
    .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
    .collect();
    // with detail, the checkpoint's whole body too
    let brief = ["id", "created_at", "reason"];
    if let Some(cp) = v.get("last_checkpoint").filter(|c| {
        c.as_object()
            .is_some_and(|m| m.keys().any(|k| !brief.contains(&k.as_str())))
    }) {
        rest.insert("last_checkpoint".into(), cp.clone());
    }
    if !rest.is_empty() {
        let _ = writeln!(o, "{}", Value::Object(rest));
    }
    o.truncate(o.trim_end().len());
    o
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ManifestOut {
    pub count: usize,
    pub tools: Vec<Value>,
}

// ---------- admin tools (listed and callable only with ADMIN_TOOLS=1) ----------

#[derive(Debug, Serialize, JsonSchema)]
pub struct FlagView {
    pub key: String,
    /// the value in effect (the safe value while the kill switch is on)
    pub effective: String,
    /// the stored value, if any
    pub stored: Option<String>,
    pub default: String,
    pub safe: String,
    pub allowed: Vec<String>,
    pub doc: String,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FlagsOut {
    pub kill_switch: bool,
    pub flags: Vec<FlagView>,
    /// latest changes, newest first
    pub history: Vec<Value>,
}

/// Every flag with its effective and stored value (shared by the CLI and the tools).
pub fn flags_view(ctx: &ToolCtx) -> R<FlagsOut> {
    let stored = ctx.store.flags()?;
    let effective = ctx.flags();
    let mut flags = Vec::new();
    for d in vane_core::flags::FLAGS {
        let rec = stored.iter().find(|f| f.key == d.key);
        let eff = match d.key {
            "SCHEDULER_MODE" => {
                if effective.scheduler_mode == vane_core::flags::SchedulerMode::Wsjf {
                    "wsjf"
                } else {
                    "priority"
                }
                .to_string()
            }
            "SANDBOX_MODE" => effective.sandbox_mode.clone().unwrap_or_else(|| {
                format!("{:?}", ctx.config.commands.sandbox).to_ascii_lowercase()
            }),
            "OUTPUT_MODE" => if effective.verbose_output {
                "verbose"
            } else {
                "compact"
            }
            .to_string(),
            "ADMIN_TOOLS" => if effective.admin_tools { "1" } else { "0" }.to_string(),
            _ => if effective.disable_new { "1" } else { "0" }.to_string(),
        };
        flags.push(FlagView {
            key: d.key.into(),
            effective: eff,
            stored: rec.map(|r| r.value.clone()),
            default: d.default.into(),
            safe: d.safe.into(),
            allowed: d.allowed.iter().map(|s| s.to_string()).collect(),
            doc: d.doc.into(),
            updated_at: rec.map(|r| r.updated_at.clone()),
            updated_by: rec.and_then(|r| r.updated_by.clone()),
        });
    }
    Ok(FlagsOut {
        kill_switch: effective.disable_new,
        flags,
        history: ctx.store.flag_history(20)?,
    })
}

/// Sets (or with `None` unsets) a flag after validating it; records a `flag` event.
pub fn set_flag(ctx: &ToolCtx, key: &str, value: Option<&str>, actor: &str) -> R<Value> {
    let value = match value {
        Some(v) => Some(vane_core::flags::validate(key, v)?.1),
        None => {
            vane_core::flags::def(key)
                .ok_or_else(|| vane_core::flags::validate(key, "").unwrap_err())?;
            None
        }
    };
    let previous = ctx.store.set_flag(key, value.as_deref(), actor)?;
    ctx.telemetry.emit(
        ctx.telemetry
            .event("flag")
            .with("key", key)
            .with("value", value.clone())
            .with("previous", previous.clone())
            .with("actor", actor),
    );
    Ok(json!({ "key": key, "value": value, "previous": previous }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagsSetIn {
    pub key: String,
    /// the new value; omit to unset (back to the default)
    pub value: Option<String>,
    /// who changes it (recorded)
    pub agent: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FlagsSetOut {
    pub key: String,
    pub value: Option<String>,
    pub previous: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PanicIn {
    /// why the kill switch is thrown (recorded)
    #[schemars(length(min = 1))]
    pub reason: String,
}

/// The registry of every worker tool.
pub fn registry() -> Registry {
    let manifest_source: Arc<std::sync::OnceLock<Vec<Value>>> =
        Arc::new(std::sync::OnceLock::new());
    let m2 = manifest_source.clone();
    let mut tools = vec![
        tool("plan_next", "Next ready tasks", "Ready tasks, most urgent first. `claim: {agent}` atomically takes the first under a lease: no two agents get the same task.",
            "Ready: pending, dependencies done, unclaimed. Ordered by priority, then how many tasks each transitively unblocks, then roadmap order. `explain_blocked: N` says why tasks wait; `detail` gives every field. Filters: epic, milestone, owner; `status` lists tasks in that status instead. Claims take a lease (ttl_s, default claim_ttl_s); an expired lease returns the task.",
            WRITE, plan_next).dry_run_aware().mutates_when("claim").text(plan_next_text),
        tool("plan_update", "Update a task", "Change a task's status, notes, owner or priority. A refused move lists the allowed ones; `done` needs its critics passed.",
            "`done` needs every `critic:` exit criterion passed since the task started. Transitions: pending → in_progress|blocked|cancelled; in_progress → review|done|blocked|pending|cancelled; blocked → pending|in_progress|cancelled; review → done|in_progress|blocked; done → in_progress; cancelled → pending. Errors: task_not_found, invalid_transition (details.allowed), version_conflict (with expected_version), exit_criteria_unmet (force + reason overrides, recorded).",
            Hints { idempotent: true, ..WRITE }, plan_update).stores_text(),
        tool("context_write", "Write running context", "Replace or append to a section of the running context (goal, findings, next steps …) the next session reads.",
            "Word budget per section: default 1000. Errors: context_budget_exceeded (details: words, budget). Exported to .vane/context.md.",
            Hints { destructive: true, idempotent: true, ..WRITE }, context_write).stores_text(),
        tool("context_snapshot", "Write a checkpoint", "Record a checkpoint (git state, tasks, claims, critics, context) the next session resumes from.",
            "Holds git branch/commit, active and open tasks, claims, failing critics, context sections, reason. Exported to .vane/checkpoint.json; read back in status and vane://checkpoint/latest.", WRITE, context_snapshot).stores_text(),
        tool("fs_read", "Read a file", "Read a workspace text file, whole or by line range, with its sha256 for a conditional write.",
            "Errors: path_outside_workspace, not_found, file_too_large (use a line range), binary_file.", READ, fs_read).text(fs_read_text),
        tool("fs_write", "Write a file", "Atomically write a workspace file; with expected_sha256 only if it is unchanged. Returns the new sha256 and a diff summary.",
            "Temp file + rename. Modes: overwrite (default), create (fails if it exists), append. Errors: path_outside_workspace, path_protected (.vane state, .git), hash_mismatch, already_exists, file_too_large.",
            Hints { destructive: true, ..WRITE }, fs_write),
        tool("cmd_run", "Run a command", "Run a shell command in the workspace: policy-checked, sandboxed, killed on timeout. Returns exit code, stdout and stderr (capped), duration.",
            "Checked against the deny policy (nested sh -c / eval / substitutions included), sandboxed with bubblewrap when available, in its own process group; output keeps head and tail (`truncated`). Errors: command_denied (details.rule), timeout (details: output tails), path_outside_workspace (cwd), sandbox_unavailable. A non-zero exit code is a result, not an error.",
            Hints { destructive: true, open_world: true, ..WRITE }, cmd_run).dry_run_aware().text(cmd_run_text),
        tool("critics_run", "Run critics", "Run vane.toml's critics (by name, for paths, all; default: those matching changed files). A failure opens task CRITIC-<name>.",
            "Records pass/fail/error/timeout with the output tail; a failing critic opens or updates the remediation task CRITIC-<name>. Errors: critic_not_found (details.configured). Results exported to .vane/critics/<name>.json.",
            Hints { open_world: true, ..WRITE }, critics_run).dry_run_aware(),
        tool("artifact_record", "Record an artifact", "Record an artifact (kind, workspace path, metadata) for a task; its sha256 and size are kept.",
            "Listed as resource vane://artifacts/{id}. Errors: path_outside_workspace, task_not_found.", WRITE, artifact_record).stores_text(),
        tool("decision_record", "Record a decision", "Record a decision (title, summary, impact) for a task.",
            "Decisions appear in the running context export. Errors: task_not_found.", WRITE, decision_record).stores_text(),
        tool("status", "Workspace status", "Roadmap progress, next tasks, claims, last checkpoint, failing critics.",
            "", READ, status).text(status_text),
    ];
    tools.push(tool(
        "tool_manifest",
        "Tool manifest",
        "Every tool's full schemas, annotations and notes (error codes).",
        "",
        READ,
        move |ctx: Arc<ToolCtx>, _: Empty| {
            let m = m2.clone();
            async move {
                // what this workspace offers (`[tools]`); admin tools are
                // listed with `admin: true` whatever the flag
                let tools: Vec<Value> = m
                    .get()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| ctx.config.tools.enabled(t["name"].as_str().unwrap_or("")))
                    .collect();
                Ok(ManifestOut {
                    count: tools.len(),
                    tools,
                })
            }
        },
    ));
    tools.push(
        tool("flags_list", "List live flags", "Every live flag: effective value, stored value, default, safe value, allowed values, last change; and the recent change history.",
            "Admin tool: listed and callable only with ADMIN_TOOLS=1.", READ,
            |ctx: Arc<ToolCtx>, _: Empty| async move { flags_view(&ctx) })
        .admin(),
    );
    tools.push(
        tool("flags_set", "Set a live flag", "Set (or, without value, unset) a live flag; every vane process sees it on its next call. Unknown keys and bad values are errors listing what is allowed.",
            "Admin tool: listed and callable only with ADMIN_TOOLS=1.", Hints { idempotent: true, ..WRITE },
            |ctx: Arc<ToolCtx>, i: FlagsSetIn| async move {
                let actor = i.agent.unwrap_or_else(|| "mcp".into());
                let v = set_flag(&ctx, &i.key, i.value.as_deref(), &actor)?;
                Ok(FlagsSetOut {
                    key: i.key,
                    value: v["value"].as_str().map(str::to_string),
                    previous: v["previous"].as_str().map(str::to_string),
                })
            })
        .admin(),
    );
    tools.push(
        tool("panic_disable_new", "Throw the kill switch", "Set DISABLE_NEW=1: every flag falls back to its safe value at once (this also hides the admin tools).",
            "Admin tool. Undo with `vane flags kill-switch off`.", Hints { destructive: true, idempotent: true, ..WRITE },
            |ctx: Arc<ToolCtx>, i: PanicIn| async move {
                set_flag(&ctx, "DISABLE_NEW", Some("1"), &format!("panic_disable_new: {}", i.reason))?;
                Ok(FlagsSetOut { key: "DISABLE_NEW".into(), value: Some("1".into()), previous: None })
            })
        .admin(),
    );
    let reg = Registry::new(tools);
    // the front's tools are listed too (admin tools, answered by the front)
    let mut manifest = reg.manifest();
    manifest.extend(Registry::new(crate::front_tools::front_tools(None)).manifest());
    let _ = manifest_source.set(manifest);
    reg
}
