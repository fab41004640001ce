//! Tasks: the roadmap, claims, updates and the plan graph.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{json, Value};
use vane_core::model::{ExitCriterion, Group, GroupKind, Priority, Roadmap, Status, Task};
use vane_core::planner::{PlanGraph, PlanItem, PlanQuery};
use vane_core::{rules, ErrorCode, VaneError};

use super::{iso, json_err, now_ms, GraphCache, Result, Store};
use super::{
    Claim, ImportSummary, NewCriticRun, StoreStatus, TaskRecord, TaskUpdate, UpdateOutcome,
};
use crate::exports::ExportKind;
use crate::schema;
use crate::sql::{one, p, Row, Sql, Val};

const TASK_COLS: &str = "id, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, \
     epic_id, milestone_id, version, claimed_by, lease_expires_ms, started_at_ms, updated_at_ms, notes";

fn priority_of(rank: Option<i64>) -> Option<Priority> {
    rank.and_then(|p| u8::try_from(p).ok())
        .and_then(Priority::from_rank)
}

fn task_from_row(r: &Row) -> Result<TaskRecord> {
    let lease: Option<i64> = r.get(13)?;
    let started: Option<i64> = r.get(14)?;
    let deps: String = r.get(7)?;
    let ec: Vec<Value> = serde_json::from_str(r.str(8)).map_err(json_err)?;
    Ok(TaskRecord {
        id: r.get(0)?,
        title: r.get(1)?,
        description: r.get(2)?,
        status: Status::parse(r.str(3)).unwrap_or(Status::Pending),
        priority: priority_of(r.get(4)?).unwrap_or(Priority::MEDIUM),
        owner: r.get(5)?,
        estimate_hours: r.get(6)?,
        dependencies: serde_json::from_str(&deps).map_err(json_err)?,
        exit_criteria: ec.iter().map(ExitCriterion::from_value).collect(),
        epic: r.get(9)?,
        milestone: r.get(10)?,
        version: r.get(11)?,
        claimed_by: r.get(12)?,
        lease_expires_at: lease.map(iso),
        started_at: started.map(iso),
        updated_at: iso(r.get(15)?),
        notes: r.get(16)?,
        started_at_ms: started,
    })
}

impl Store {
    /// Imports a roadmap: tasks in the file are created or updated (status,
    /// fields and position from the file); tasks not in the file are kept,
    /// or removed with `prune`. One transaction: all or nothing.
    pub fn import_roadmap(
        &self,
        roadmap: &Roadmap,
        prune: bool,
        actor: &str,
    ) -> Result<ImportSummary> {
        let dups = vane_core::roadmap::duplicate_ids(&roadmap.tasks);
        if !dups.is_empty() {
            return Err(VaneError::new(
                ErrorCode::RoadmapInvalid,
                format!("duplicate task ids: {}", dups.join(", ")),
            ));
        }
        let now = now_ms();
        self.write(&[ExportKind::Roadmap], |db| {
            db.exec("DELETE FROM groups", p![])?;
            for (i, g) in roadmap.groups.iter().enumerate() {
                db.exec(
                    "INSERT INTO groups(idx, kind, id, title, description, status, parent, extra) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                    p![
                        i,
                        g.kind.as_str(),
                        g.id,
                        g.title,
                        g.description,
                        g.status,
                        g.parent,
                        serde_json::to_string(&g.extra).map_err(json_err)?
                    ],
                )?;
            }
            db.exec(
                "UPDATE roadmap_meta SET extra = ?1 WHERE id = 1",
                p![serde_json::to_string(&roadmap.extra).map_err(json_err)?],
            )?;
            let mut existing: HashMap<String, (String, i64)> = HashMap::new();
            for r in db.query("SELECT id, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, extra, parent, ord, version FROM tasks", p![])? {
                let description: Option<String> = r.get(2)?;
                let owner: Option<String> = r.get(5)?;
                let sig = signature(&SigParts {
                    title: r.str(1),
                    description: description.as_deref(),
                    status: r.str(3),
                    priority: r.get(4)?,
                    owner: owner.as_deref(),
                    estimate_hours: r.get(6)?,
                    dependencies: r.str(7),
                    exit_criteria: r.str(8),
                    extra: r.str(9),
                    parent: r.get(10)?,
                    ord: r.get(11)?,
                });
                existing.insert(r.get(0)?, (sig, r.get(12)?));
            }
            let mut summary = ImportSummary { created: 0, updated: 0, unchanged: 0, removed: 0, kept_not_in_file: 0 };
            let mut in_file = HashSet::new();
            // written in multi-row statements: on a database across a
            // network, one round trip per task would dominate an import
            let mut upserts: Vec<Val> = Vec::new();
            let mut events: Vec<Val> = Vec::new();
            for (i, t) in roadmap.tasks.iter().enumerate() {
                in_file.insert(t.id.as_str());
                let (epic, milestone) = roadmap.lineage(t);
                let deps = serde_json::to_string(&t.dependencies).map_err(json_err)?;
                let ec = serde_json::to_string(&t.exit_criteria).map_err(json_err)?;
                let extra = serde_json::to_string(&t.extra).map_err(json_err)?;
                let ord = i as i64;
                let prio = t.priority.map(|p| p.rank() as i64);
                let sig = signature(&SigParts {
                    title: &t.title,
                    description: t.description.as_deref(),
                    status: t.status.as_str(),
                    priority: prio,
                    owner: t.owner.as_deref(),
                    estimate_hours: t.estimate_hours,
                    dependencies: &deps,
                    exit_criteria: &ec,
                    extra: &extra,
                    parent: t.parent.map(|p| p as i64),
                    ord,
                });
                let prev = existing.get(&t.id);
                match prev {
                    Some((s, _)) if *s == sig => {
                        summary.unchanged += 1;
                        continue;
                    }
                    Some(_) => summary.updated += 1,
                    None => summary.created += 1,
                }
                upserts.extend_from_slice(p![
                        t.id,
                        ord,
                        t.title,
                        t.description,
                        t.status.as_str(),
                        prio,
                        t.owner,
                        t.estimate_hours,
                        deps,
                        ec,
                        extra,
                        t.parent,
                        epic,
                        milestone,
                        now
                    ]);
                let version = prev.map(|p| p.1 + 1).unwrap_or(1);
                events.extend_from_slice(p![t.id, now, actor, t.status.as_str(), version]);
            }
            for chunk in upserts.chunks(UPSERT_COLS * IMPORT_CHUNK) {
                db.exec(&upsert_sql(chunk.len() / UPSERT_COLS), chunk)?;
            }
            for chunk in events.chunks(EVENT_COLS * IMPORT_CHUNK) {
                db.exec(&import_events_sql(chunk.len() / EVENT_COLS), chunk)?;
            }
            let leftover: Vec<&String> = existing.keys().filter(|id| !in_file.contains(id.as_str())).collect();
            if prune {
                for id in &leftover {
                    db.exec("DELETE FROM tasks WHERE id = ?1", p![id])?;
                }
                summary.removed = leftover.len();
            } else {
                // keep them after the file's tasks, in their previous order
                let shift = roadmap.tasks.len() as i64 + 1_000_000_000;
                for id in &leftover {
                    db.exec("UPDATE tasks SET ord = ord + ?2 WHERE id = ?1", p![id, shift])?;
                }
                summary.kept_not_in_file = leftover.len();
            }
            Ok(summary)
        })
    }

    /// The whole roadmap as stored (for export and `roadmap show`).
    pub fn load_roadmap(&self) -> Result<Roadmap> {
        self.read_snapshot(load_roadmap)
    }

    /// The dependency graph at the current revision (cached per revision).
    pub fn plan_graph(&self) -> Result<Arc<PlanGraph>> {
        self.read(|db| graph_at(db, &self.graph))
    }

    pub fn get_task(&self, id: &str) -> Result<TaskRecord> {
        self.read(|db| get_task(db, id))
    }

    /// Atomically claims the first ready task in plan order; returns it with
    /// the status it had before (pending, or in_progress for an expired lease).
    pub fn claim_next(
        &self,
        q: &PlanQuery,
        agent: &str,
        ttl_s: u64,
        now: i64,
    ) -> Result<Option<(TaskRecord, Status)>> {
        let graph_cache = &self.graph;
        self.write(&[ExportKind::Roadmap], |db| {
            let graph = graph_at(db, graph_cache)?;
            let Some(item) = graph.first_ready(q, now) else { return Ok(None) };
            let id = item.id.clone();
            let prev = get_task(db, &id)?;
            let plan = rules::plan_claim(&facts(&prev), ttl_s, now);
            db.exec(
                "UPDATE tasks SET status='in_progress', claimed_by=?2, lease_expires_ms=?3, started_at_ms=?4, version=version+1, updated_at_ms=?5,
                   owner = coalesce(owner, ?2) WHERE id=?1",
                p![id, agent, plan.lease_expires_ms, plan.started_at_ms, now],
            )?;
            let task = get_task(db, &id)?;
            db.exec(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, data) VALUES (?1,?2,?3,'claim',?4,'in_progress',?5,?6)",
                p![id, now, agent, prev.status.as_str(), task.version, json!({"ttl_s": ttl_s, "lease_expired_takeover": plan.takeover}).to_string()],
            )?;
            Ok(Some((task, prev.status)))
        })
    }

    /// Applies a validated change to one task.
    pub fn update_task(&self, u: &TaskUpdate, now: i64) -> Result<UpdateOutcome> {
        self.write(&[ExportKind::Roadmap], |db| {
            let prev = get_task(db, &u.task_id)?;
            let request = rules::UpdateRequest {
                expected_version: u.expected_version,
                status: u.status,
                notes: u.notes.is_some(),
                owner: u.owner.is_some(),
                priority: u.priority.is_some(),
                force: u.force,
                reason: u.reason.as_deref(),
            };
            let since = prev.started_at_ms.unwrap_or(0);
            let plan = rules::plan_update(&facts(&prev), &request, now, |name| critic_history(db, name, since), iso)?;
            let rules::UpdatePlan { status, changed, forced, started_at_ms: started, release_claim } = plan;
            db.exec(
                "UPDATE tasks SET status=?2, notes=coalesce(?3, notes), owner=coalesce(?4, owner), priority=coalesce(?5, priority),
                   started_at_ms=?6, version=version+1, updated_at_ms=?7,
                   claimed_by = CASE WHEN ?8 <> 0 THEN NULL ELSE claimed_by END,
                   lease_expires_ms = CASE WHEN ?8 <> 0 THEN NULL ELSE lease_expires_ms END
                 WHERE id=?1",
                p![
                    prev.id,
                    status.as_str(),
                    u.notes,
                    u.owner,
                    u.priority.map(|p| p.rank() as i64),
                    started,
                    now,
                    release_claim
                ],
            )?;
            let task = get_task(db, &prev.id)?;
            db.exec(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, forced, reason, data) VALUES (?1,?2,?3,'update',?4,?5,?6,?7,?8,?9)",
                p![
                    prev.id,
                    now,
                    u.actor,
                    prev.status.as_str(),
                    status.as_str(),
                    task.version,
                    forced,
                    u.reason,
                    json!({ "changed": changed, "notes": u.notes }).to_string()
                ],
            )?;
            Ok(UpdateOutcome { task, previous_status: prev.status, changed, forced })
        })
    }

    /// Task events, newest last.
    pub fn task_events(&self, task_id: &str, limit: usize) -> Result<Vec<Value>> {
        let rows = self.read(|db| {
            db.query(
                "SELECT at_ms, actor, kind, from_status, to_status, version, forced, reason FROM task_events WHERE task_id=?1 ORDER BY seq DESC LIMIT ?2",
                p![task_id, limit],
            )
        })?;
        let mut v = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            v.push(json!({
                "at": iso(r.get(0)?), "actor": r.get::<Option<String>>(1)?, "kind": r.get::<String>(2)?,
                "from": r.get::<Option<String>>(3)?, "to": r.get::<Option<String>>(4)?,
                "version": r.get::<i64>(5)?, "forced": r.get::<bool>(6)?, "reason": r.get::<Option<String>>(7)?
            }));
        }
        Ok(v)
    }

    pub fn status(&self, now: i64) -> Result<StoreStatus> {
        // counts and claims from the plan graph, cached per roadmap revision
        // (`status` is the call every session starts with)
        let (graph, revision, schema_version) = self.read(|db| {
            let graph = graph_at(db, &self.graph)?;
            let revision: i64 = one(db, "SELECT value FROM meta WHERE key = 'revision'", p![])?;
            Ok((graph, revision, schema::store_version(db)?))
        })?;
        let mut by_status = IndexMap::new();
        for s in Status::ALL {
            by_status.insert(s.as_str().to_string(), 0usize);
        }
        let mut claims = Vec::new();
        for t in graph.items() {
            if let Some(n) = by_status.get_mut(t.status.as_str()) {
                *n += 1;
            }
            if let Some(agent) = &t.claimed_by {
                claims.push(Claim {
                    task_id: t.id.clone(),
                    agent: agent.clone(),
                    lease_expires_at: t.lease_expires_ms.map(iso),
                    expired: t.lease_expires_ms.is_some_and(|l| l <= now),
                });
            }
        }
        let total = graph.items().len();
        let done = by_status.get("done").copied().unwrap_or(0);
        Ok(StoreStatus {
            tasks: total,
            done_ratio: if total == 0 {
                0.0
            } else {
                (done as f64 / total as f64 * 1000.0).round() / 1000.0
            },
            by_status,
            claims,
            revision,
            schema_version,
        })
    }
}

pub(crate) fn get_task(db: &mut dyn Sql, id: &str) -> Result<TaskRecord> {
    match db.query_opt(
        &format!("SELECT {TASK_COLS} FROM tasks WHERE id=?1"),
        p![id],
    )? {
        Some(r) => task_from_row(&r),
        None => Err(VaneError::task_not_found(id)),
    }
}

pub(crate) fn graph_at(db: &mut dyn Sql, cache: &GraphCache) -> Result<Arc<PlanGraph>> {
    let rev: i64 = one(db, "SELECT value FROM meta WHERE key = 'rev_roadmap'", p![])?;
    {
        let c = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((r, g)) = c.as_ref() {
            if *r == rev {
                return Ok(g.clone());
            }
        }
    }
    let mut items = Vec::new();
    db.query_each("SELECT id, title, status, priority, epic_id, milestone_id, owner, dependencies, claimed_by, lease_expires_ms, estimate_hours, version FROM tasks ORDER BY ord", p![], &mut |r| {
        items.push(PlanItem {
            id: r.get(0)?,
            title: r.get(1)?,
            status: Status::parse(r.str(2)).unwrap_or(Status::Pending),
            priority: priority_of(r.get(3)?).unwrap_or(Priority::MEDIUM),
            epic: r.get(4)?,
            milestone: r.get(5)?,
            owner: r.get(6)?,
            dependencies: serde_json::from_str(r.str(7)).unwrap_or_default(),
            claimed_by: r.get(8)?,
            lease_expires_ms: r.get(9)?,
            estimate_hours: r.get(10)?,
            version: r.get(11)?,
        });
        Ok(())
    })?;
    let g = Arc::new(PlanGraph::new(items));
    *cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((rev, g.clone()));
    Ok(g)
}

/// The facts of a task the domain rules read.
fn facts(t: &TaskRecord) -> rules::TaskFacts<'_> {
    rules::TaskFacts {
        id: &t.id,
        status: t.status,
        version: t.version,
        started_at_ms: t.started_at_ms,
        exit_criteria: &t.exit_criteria,
        claimed_by: t.claimed_by.as_deref(),
    }
}

/// What the store knows of critic `name`'s runs since `since` (the gate's facts).
fn critic_history(db: &mut dyn Sql, name: &str, since: i64) -> Result<rules::CriticHistory> {
    let passed: bool = one(
        db,
        "SELECT CASE WHEN EXISTS(SELECT 1 FROM critic_runs WHERE name=?1 AND status='pass' AND started_at_ms >= ?2) THEN 1 ELSE 0 END",
        p![name, since],
    )?;
    let last = if passed {
        None
    } else {
        match db.query_opt(
            "SELECT status, finished_at_ms FROM critic_runs WHERE name=?1 ORDER BY id DESC LIMIT 1",
            p![name],
        )? {
            Some(r) => Some((r.get(0)?, r.get(1)?)),
            None => None,
        }
    };
    Ok(rules::CriticHistory {
        passed_since_start: passed,
        last,
    })
}

/// Opens or refreshes the remediation task of a failed critic run.
pub(crate) fn remediate(db: &mut dyn Sql, run: &NewCriticRun) -> Result<String> {
    let now = run.finished_at_ms;
    let outcome = rules::CriticOutcome {
        name: &run.name,
        status: run.status.as_str(),
        exit_code: run.exit_code,
        command: &run.command,
        output_tail: &run.output_tail,
        finished_at_ms: now,
    };
    let existing = get_task(db, &rules::remediation_id(&run.name)).ok();
    match rules::remediation(&outcome, existing.as_ref().map(|t| t.status), iso) {
        rules::Remediation::Create {
            id,
            title,
            description,
            exit_criteria,
            extra,
            reason,
        } => {
            let ord: i64 = one(db, "SELECT coalesce(max(ord), 0) + 1 FROM tasks", p![])?;
            let ec = serde_json::to_string(&exit_criteria).map_err(json_err)?;
            db.exec(
                "INSERT INTO tasks(id, ord, title, description, status, priority, dependencies, exit_criteria, extra, version, updated_at_ms)
                 VALUES (?1,?2,?3,?4,'pending',1,'[]',?5,?6,1,?7)",
                p![id, ord, title, description, ec, extra.to_string(), now],
            )?;
            db.exec(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, to_status, version, reason) VALUES (?1,?2,'vane','remediation','pending',1,?3)",
                p![id, now, reason],
            )?;
            Ok(id)
        }
        rules::Remediation::Refresh {
            id,
            description,
            reopen,
            from,
            to,
            reason,
        } => {
            let version = existing.map(|t| t.version).unwrap_or(0) + 1;
            db.exec(
                "UPDATE tasks SET description=?2, status = CASE WHEN ?3 <> 0 THEN 'pending' ELSE status END, version=version+1, updated_at_ms=?4 WHERE id=?1",
                p![id, description, reopen, now],
            )?;
            db.exec(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, reason) VALUES (?1,?2,'vane','remediation',?3,?4,?5,?6)",
                p![id, now, from.as_str(), to.as_str(), version, reason],
            )?;
            Ok(id)
        }
    }
}

pub(crate) fn load_roadmap(db: &mut dyn Sql) -> Result<Roadmap> {
    let mut r = Roadmap::default();
    let extra: String = one(db, "SELECT extra FROM roadmap_meta WHERE id=1", p![])?;
    r.extra = serde_json::from_str(&extra).map_err(json_err)?;
    for row in db.query(
        "SELECT idx, kind, id, title, description, status, parent, extra FROM groups ORDER BY idx",
        p![],
    )? {
        let parent: Option<i64> = row.get(6)?;
        r.groups.push(Group {
            kind: GroupKind::parse(row.str(1)).unwrap_or(GroupKind::Milestone),
            id: row.get(2)?,
            title: row.get(3)?,
            description: row.get(4)?,
            status: row.get(5)?,
            parent: parent.map(|p| p as usize),
            extra: serde_json::from_str(row.str(7)).map_err(json_err)?,
        });
    }
    let groups = r.groups.len();
    let mut tasks = Vec::new();
    db.query_each("SELECT id, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, extra, parent FROM tasks ORDER BY ord", p![], &mut |row| {
        let ec: Vec<Value> = serde_json::from_str(row.str(8)).map_err(json_err)?;
        let parent: Option<i64> = row.get(10)?;
        tasks.push(Task {
            id: row.get(0)?,
            title: row.get(1)?,
            description: row.get(2)?,
            status: Status::parse(row.str(3)).unwrap_or(Status::Pending),
            priority: priority_of(row.get(4)?),
            owner: row.get(5)?,
            estimate_hours: row.get(6)?,
            dependencies: serde_json::from_str(row.str(7)).map_err(json_err)?,
            exit_criteria: ec.iter().map(ExitCriterion::from_value).collect(),
            parent: parent.map(|p| p as usize).filter(|&p| p < groups),
            extra: serde_json::from_str(row.str(9)).map_err(json_err)?,
        });
        Ok(())
    })?;
    r.tasks = tasks;
    Ok(r)
}

/// Rows per multi-row statement of an import (well under both engines'
/// limits on parameters: SQLite 32,766, PostgreSQL 65,535).
const IMPORT_CHUNK: usize = 500;
const UPSERT_COLS: usize = 15;
const EVENT_COLS: usize = 5;

/// `rows` rows of a `VALUES` list, `cols` parameters each: `shape` writes
/// one row from the offset of its first parameter.
fn values_rows(rows: usize, cols: usize, shape: impl Fn(usize) -> String) -> String {
    (0..rows)
        .map(|r| shape(r * cols))
        .collect::<Vec<_>>()
        .join(",")
}

/// The import's upsert of `rows` tasks.
fn upsert_sql(rows: usize) -> String {
    let values = values_rows(rows, UPSERT_COLS, |b| {
        let ps: Vec<String> = (1..=14).map(|i| format!("?{}", b + i)).collect();
        format!("({},1,?{})", ps.join(","), b + 15)
    });
    format!(
        "INSERT INTO tasks(id, ord, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, extra, parent, epic_id, milestone_id, version, updated_at_ms)
         VALUES {values}
         ON CONFLICT(id) DO UPDATE SET ord=excluded.ord, title=excluded.title, description=excluded.description,
           status=excluded.status, priority=excluded.priority, owner=excluded.owner, estimate_hours=excluded.estimate_hours,
           dependencies=excluded.dependencies, exit_criteria=excluded.exit_criteria, extra=excluded.extra, parent=excluded.parent,
           epic_id=excluded.epic_id, milestone_id=excluded.milestone_id, version=tasks.version + 1, updated_at_ms=excluded.updated_at_ms,
           claimed_by = CASE WHEN excluded.status = tasks.status THEN tasks.claimed_by ELSE NULL END,
           lease_expires_ms = CASE WHEN excluded.status = tasks.status THEN tasks.lease_expires_ms ELSE NULL END"
    )
}

/// The import's events of `rows` tasks.
fn import_events_sql(rows: usize) -> String {
    let values = values_rows(rows, EVENT_COLS, |b| {
        format!(
            "(?{},?{},?{},'import',NULL,?{},?{},'roadmap import')",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5
        )
    });
    format!("INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, reason) VALUES {values}")
}

struct SigParts<'a> {
    title: &'a str,
    description: Option<&'a str>,
    status: &'a str,
    priority: Option<i64>,
    owner: Option<&'a str>,
    estimate_hours: Option<f64>,
    dependencies: &'a str,
    exit_criteria: &'a str,
    extra: &'a str,
    parent: Option<i64>,
    ord: i64,
}

/// Everything an import may change, as one comparable string: a re-import of
/// an unchanged task must not bump its version.
fn signature(p: &SigParts<'_>) -> String {
    format!(
        "{}\u{1f}{:?}\u{1f}{}\u{1f}{:?}\u{1f}{:?}\u{1f}{:?}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{:?}\u{1f}{}",
        p.title, p.description, p.status, p.priority, p.owner, p.estimate_hours, p.dependencies, p.exit_criteria, p.extra, p.parent, p.ord
    )
}
