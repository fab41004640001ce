//! The store: tasks, claims, context, checkpoints, critic runs, artifacts and
//! decisions in one SQLite database.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indexmap::IndexMap;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vane_core::model::{ExitCriterion, Group, GroupKind, Priority, Roadmap, Status, Task};
use vane_core::planner::{PlanGraph, PlanItem, PlanQuery};
use vane_core::{rules, ErrorCode, VaneError};

use crate::exports::{self, ExportKind};
use crate::schema::{self, Applied, Reach, SchemaInfo, MIGRATIONS, SCHEMA_VERSION};
use crate::StatePaths;

pub type Result<T> = std::result::Result<T, VaneError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 text for a millisecond timestamp.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn migration_actor() -> String {
    format!(
        "vane {} pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

pub(crate) fn db_err(e: rusqlite::Error) -> VaneError {
    let busy = matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked);
    if busy {
        VaneError::new(
            ErrorCode::StoreError,
            "the store stayed locked by another process; retry",
        )
        .with_details(json!({ "retryable": true }))
    } else {
        VaneError::new(ErrorCode::StoreError, format!("store: {e}"))
    }
}

fn json_err(e: serde_json::Error) -> VaneError {
    VaneError::new(
        ErrorCode::StoreError,
        format!("store holds malformed JSON: {e}"),
    )
}

/// How long idempotency keys are kept.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// tool, args hash, state, owner pid, result, is_error, journal
type IdempotencyRow = (
    String,
    String,
    String,
    i64,
    Option<String>,
    bool,
    Option<String>,
);

/// What to do with a call that carries an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Idempotency {
    /// run it; the key is reserved for this process
    Run,
    /// return the recorded result instead of running again
    Replay { result: Value, is_error: bool },
    /// the owner died after some of the call's writes committed: run the
    /// call again with these journaled write results replayed
    /// (see [`crate::journal`])
    Resume { journal: Vec<Value> },
}

/// A task with its runtime state, as tools return it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct TaskRecord {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Status,
    pub priority: Priority,
    pub owner: Option<String>,
    pub estimate_hours: Option<f64>,
    pub dependencies: Vec<String>,
    pub exit_criteria: Vec<ExitCriterion>,
    pub epic: Option<String>,
    pub milestone: Option<String>,
    pub version: i64,
    pub claimed_by: Option<String>,
    pub lease_expires_at: Option<String>,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub notes: Option<String>,
    #[serde(skip)]
    pub started_at_ms: Option<i64>,
}

/// A change to one task (`plan_update`).
#[derive(Debug, Clone, Default)]
pub struct TaskUpdate {
    pub task_id: String,
    pub status: Option<Status>,
    pub notes: Option<String>,
    pub owner: Option<String>,
    pub priority: Option<Priority>,
    pub expected_version: Option<i64>,
    pub force: bool,
    pub reason: Option<String>,
    pub actor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct UpdateOutcome {
    pub task: TaskRecord,
    pub previous_status: Status,
    pub changed: Vec<String>,
    pub forced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub kept_not_in_file: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct ContextSection {
    pub name: String,
    pub content: String,
    pub words: usize,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Checkpoint {
    pub id: i64,
    pub created_at: String,
    pub reason: String,
    #[serde(flatten)]
    pub data: Value,
}

/// Outcome of one critic run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CriticStatus {
    Pass,
    Fail,
    Error,
    Timeout,
}

impl CriticStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CriticStatus::Pass => "pass",
            CriticStatus::Fail => "fail",
            CriticStatus::Error => "error",
            CriticStatus::Timeout => "timeout",
        }
    }
    fn parse(s: &str) -> CriticStatus {
        match s {
            "pass" => CriticStatus::Pass,
            "fail" => CriticStatus::Fail,
            "timeout" => CriticStatus::Timeout,
            _ => CriticStatus::Error,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct CriticRun {
    pub id: i64,
    pub name: String,
    pub status: CriticStatus,
    pub exit_code: Option<i32>,
    pub command: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: i64,
    pub output_tail: String,
    pub trigger: Value,
    /// task opened or updated because this run failed
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation_task: Option<String>,
    #[serde(skip)]
    pub finished_at_ms: i64,
}

/// What a finished critic run reports, before it is recorded.
#[derive(Debug, Clone)]
pub struct NewCriticRun {
    pub name: String,
    pub status: CriticStatus,
    pub exit_code: Option<i32>,
    pub command: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub output_tail: String,
    pub trigger: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Artifact {
    pub id: i64,
    pub uri: String,
    pub kind: String,
    pub path: Option<String>,
    pub metadata: Value,
    pub task_id: Option<String>,
    pub created_at: String,
    pub size: Option<i64>,
    #[serde(skip)]
    pub content_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Decision {
    pub id: i64,
    pub title: String,
    pub summary: String,
    pub impact: Option<String>,
    pub task_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct FlagRecord {
    pub key: String,
    pub value: String,
    pub updated_at: String,
    pub updated_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct Claim {
    pub task_id: String,
    pub agent: String,
    pub lease_expires_at: Option<String>,
    pub expired: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, JsonSchema)]
pub struct StoreStatus {
    pub tasks: usize,
    pub by_status: IndexMap<String, usize>,
    pub done_ratio: f64,
    pub claims: Vec<Claim>,
    pub revision: i64,
    pub schema_version: i64,
}

/// How a process opens the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Created if missing; this vane's expand migrations applied.
    Write,
    /// Nothing created, migrated or exported (a dry-run canary).
    ReadOnly,
    /// A front: it runs no tool code and only reads and sets flags, so a
    /// schema it does not know (a promoted newer vane contracted the store)
    /// is opened as is, never migrated — an older `vane serve` keeps
    /// serving the promoted version's workers.
    Front,
}

/// One workspace's store. Cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
    paths: StatePaths,
    read_only: bool,
    graph: Mutex<Option<(i64, Arc<PlanGraph>)>>,
}

const TASK_COLS: &str = "id, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, \
     epic_id, milestone_id, version, claimed_by, lease_expires_ms, started_at_ms, updated_at_ms, notes";

fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TaskRecord, String, String)> {
    let status: String = r.get(3)?;
    let prio: Option<i64> = r.get(4)?;
    let lease: Option<i64> = r.get(13)?;
    let started: Option<i64> = r.get(14)?;
    Ok((
        TaskRecord {
            id: r.get(0)?,
            title: r.get(1)?,
            description: r.get(2)?,
            status: Status::parse(&status).unwrap_or(Status::Pending),
            priority: prio
                .and_then(|p| u8::try_from(p).ok())
                .and_then(Priority::from_rank)
                .unwrap_or(Priority::MEDIUM),
            owner: r.get(5)?,
            estimate_hours: r.get(6)?,
            dependencies: Vec::new(),
            exit_criteria: Vec::new(),
            epic: r.get(9)?,
            milestone: r.get(10)?,
            version: r.get(11)?,
            claimed_by: r.get(12)?,
            lease_expires_at: lease.map(iso),
            started_at: started.map(iso),
            updated_at: iso(r.get(15)?),
            notes: r.get(16)?,
            started_at_ms: started,
        },
        r.get(7)?,
        r.get(8)?,
    ))
}

fn finish_task(row: (TaskRecord, String, String)) -> Result<TaskRecord> {
    let (mut t, deps, ec) = row;
    t.dependencies = serde_json::from_str(&deps).map_err(json_err)?;
    let ec: Vec<Value> = serde_json::from_str(&ec).map_err(json_err)?;
    t.exit_criteria = ec.iter().map(ExitCriterion::from_value).collect();
    Ok(t)
}

fn bump(tx: &Transaction<'_>, kinds: &[ExportKind]) -> Result<i64> {
    tx.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
        [],
    )
    .map_err(db_err)?;
    let rev: i64 = tx
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })
        .map_err(db_err)?;
    for k in kinds {
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = ?2",
            params![rev, k.meta_key()],
        )
        .map_err(db_err)?;
    }
    Ok(rev)
}

impl Store {
    /// Opens (creating and migrating when writable) the store of `paths`.
    pub fn open(paths: &StatePaths) -> Result<Store> {
        Self::open_mode(paths, OpenMode::Write)
    }

    /// Opens the store read-only: nothing is created, migrated or exported.
    pub fn open_read_only(paths: &StatePaths) -> Result<Store> {
        Self::open_mode(paths, OpenMode::ReadOnly)
    }

    pub fn open_mode(paths: &StatePaths, mode: OpenMode) -> Result<Store> {
        let read_only = mode == OpenMode::ReadOnly;
        let db = paths.db();
        if !read_only && !paths.state_dir.is_dir() {
            // vane's state (store, logs, the control socket's token) is its
            // owner's only: a new state directory is made 0700
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&paths.state_dir)
                .map_err(|e| {
                    VaneError::new(
                        ErrorCode::IoError,
                        format!("cannot create {}: {e}", paths.state_dir.display()),
                    )
                })?;
        }
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let mut conn = Connection::open_with_flags(&db, flags).map_err(|e| {
            VaneError::new(
                ErrorCode::StoreError,
                format!("cannot open store {}: {e}", db.display()),
            )
        })?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        if !read_only {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(db_err)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(db_err)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        // 2 MiB page cache: the working set of a roadmap is small
        conn.pragma_update(None, "cache_size", -2048)
            .map_err(db_err)?;
        let info = schema::inspect(&conn, MIGRATIONS)?;
        let ahead = info.pending_before_contract();
        if let Some(e) = info.error() {
            if mode != OpenMode::Front {
                return Err(e);
            }
            tracing::warn!(
                "the store's schema is newer than this vane's ({}); a front only reads flags, opening it as is",
                e.message
            );
        } else if read_only {
            if let Some(first) = ahead.first() {
                return Err(VaneError::new(
                    ErrorCode::SchemaIncompatible,
                    format!(
                        "store schema {} lacks migration {} '{}' (expand) that this vane needs; a read-only store cannot take it: open it writable first (`vane migrate`)",
                        info.store_version, first.version, first.name
                    ),
                )
                .with_details(json!({ "store_schema": info.store_version, "supported": SCHEMA_VERSION })));
            }
        } else if !ahead.is_empty() || info.store_version == 0 {
            schema::apply(&mut conn, MIGRATIONS, Reach::Expand, &migration_actor())?;
        }
        let store = Store {
            conn: Mutex::new(conn),
            paths: paths.clone(),
            read_only,
            graph: Mutex::new(None),
        };
        if !read_only {
            let gi = paths.gitignore();
            if !gi.exists() {
                let _ = exports::write_atomic(&gi, b"# vane state: the database is local, exports may be committed\n*.db\n*.db-wal\n*.db-shm\n*.lock\nexport-revs.json\nartifacts/\n");
            }
        }
        Ok(store)
    }

    pub fn paths(&self) -> &StatePaths {
        &self.paths
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; the
        // connection itself is still consistent (SQLite rolled back).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn guard_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(VaneError::new(
                ErrorCode::StoreError,
                "the store is open read-only",
            ));
        }
        Ok(())
    }

    /// One `BEGIN IMMEDIATE` transaction that is not a change of the
    /// roadmap/context (bookkeeping such as idempotency records): the store
    /// revision, and so the exports, stay as they are.
    fn write_bookkeeping<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.guard_writable()?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and bumps the revision of
    /// the given exports, then refreshes those exports.
    pub(crate) fn write<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        kinds: &[ExportKind],
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.guard_writable()?;
        // a resumed keyed call: this write already committed before its
        // process died; hand back what it returned, apply nothing
        let journal = crate::journal::current();
        if let Some(j) = &journal {
            let mut st = j.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = st.replay.pop_front() {
                st.recorded.push(v.clone());
                return serde_json::from_value(v).map_err(json_err);
            }
        }
        let out = {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx)?;
            bump(&tx, kinds)?;
            if let Some(j) = &journal {
                let mut st = j.lock().unwrap_or_else(|e| e.into_inner());
                st.recorded
                    .push(serde_json::to_value(&out).map_err(json_err)?);
                tx.execute(
                    "UPDATE idempotency SET journal = ?2 WHERE key = ?1",
                    params![st.key, Value::Array(st.recorded.clone()).to_string()],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
            out
        };
        for k in kinds {
            if let Err(e) = self.export(*k) {
                tracing::warn!(error = %e, export = ?k, "export failed; the store is still the source of truth");
            }
        }
        Ok(out)
    }

    pub fn revision(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                r.get(0)
            })
            .map_err(db_err)
    }

    /// The store's schema version (which may be ahead of this binary's by
    /// expand migrations of a newer vane).
    pub fn schema_version(&self) -> i64 {
        self.conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap_or(SCHEMA_VERSION)
    }

    /// Where the store stands against this binary's migrations.
    pub fn schema_info(&self) -> Result<SchemaInfo> {
        schema::inspect(&self.conn(), MIGRATIONS)
    }

    /// A consistent copy of the database at `dest` (`VACUUM INTO`), taken
    /// without blocking writers for longer than one read transaction.
    pub fn snapshot(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            return Err(VaneError::new(
                ErrorCode::AlreadyExists,
                format!("{} exists", dest.display()),
            ));
        }
        self.conn()
            .execute("VACUUM INTO ?1", [dest.to_string_lossy()])
            .map_err(db_err)?;
        Ok(())
    }

    /// Refreshes one export if the store is newer than what is on disk.
    pub fn export(&self, kind: ExportKind) -> Result<bool> {
        if self.read_only {
            return Ok(false);
        }
        exports::refresh(self, kind)
    }

    /// Refreshes every export.
    pub fn export_all(&self) -> Result<()> {
        for k in ExportKind::ALL {
            self.export(k)?;
        }
        Ok(())
    }

    // ----- roadmap -----

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
        self.write(&[ExportKind::Roadmap], |tx| {
            tx.execute("DELETE FROM groups", []).map_err(db_err)?;
            {
                let mut ins = tx
                    .prepare_cached("INSERT INTO groups(idx, kind, id, title, description, status, parent, extra) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")
                    .map_err(db_err)?;
                for (i, g) in roadmap.groups.iter().enumerate() {
                    ins.execute(params![
                        i as i64,
                        g.kind.as_str(),
                        g.id,
                        g.title,
                        g.description,
                        g.status,
                        g.parent.map(|p| p as i64),
                        serde_json::to_string(&g.extra).map_err(json_err)?
                    ])
                    .map_err(db_err)?;
                }
            }
            tx.execute(
                "UPDATE roadmap_meta SET extra = ?1 WHERE id = 1",
                [serde_json::to_string(&roadmap.extra).map_err(json_err)?],
            )
            .map_err(db_err)?;
            let mut existing: HashMap<String, (String, i64)> = HashMap::new();
            {
                let mut q = tx
                    .prepare_cached("SELECT id, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, extra, parent, ord, version FROM tasks")
                    .map_err(db_err)?;
                let rows = q
                    .query_map([], |r| {
                        let sig = signature(&SigParts {
                            title: r.get_ref(1)?.as_str().unwrap_or_default(),
                            description: r.get::<_, Option<String>>(2)?.as_deref(),
                            status: r.get_ref(3)?.as_str().unwrap_or_default(),
                            priority: r.get(4)?,
                            owner: r.get::<_, Option<String>>(5)?.as_deref(),
                            estimate_hours: r.get(6)?,
                            dependencies: r.get_ref(7)?.as_str().unwrap_or_default(),
                            exit_criteria: r.get_ref(8)?.as_str().unwrap_or_default(),
                            extra: r.get_ref(9)?.as_str().unwrap_or_default(),
                            parent: r.get(10)?,
                            ord: r.get(11)?,
                        });
                        Ok((r.get::<_, String>(0)?, (sig, r.get::<_, i64>(12)?)))
                    })
                    .map_err(db_err)?;
                for row in rows {
                    let (id, v) = row.map_err(db_err)?;
                    existing.insert(id, v);
                }
            }
            let mut summary = ImportSummary { created: 0, updated: 0, unchanged: 0, removed: 0, kept_not_in_file: 0 };
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO tasks(id, ord, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, extra, parent, epic_id, milestone_id, version, updated_at_ms)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,1,?15)
                     ON CONFLICT(id) DO UPDATE SET ord=excluded.ord, title=excluded.title, description=excluded.description,
                       status=excluded.status, priority=excluded.priority, owner=excluded.owner, estimate_hours=excluded.estimate_hours,
                       dependencies=excluded.dependencies, exit_criteria=excluded.exit_criteria, extra=excluded.extra, parent=excluded.parent,
                       epic_id=excluded.epic_id, milestone_id=excluded.milestone_id, version=tasks.version + 1, updated_at_ms=excluded.updated_at_ms,
                       claimed_by = CASE WHEN excluded.status = tasks.status THEN tasks.claimed_by ELSE NULL END,
                       lease_expires_ms = CASE WHEN excluded.status = tasks.status THEN tasks.lease_expires_ms ELSE NULL END",
                )
                .map_err(db_err)?;
            let mut event = tx
                .prepare_cached("INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, reason) VALUES (?1,?2,?3,'import',?4,?5,?6,'roadmap import')")
                .map_err(db_err)?;
            let mut in_file = std::collections::HashSet::new();
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
                upsert
                    .execute(params![
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
                        t.parent.map(|p| p as i64),
                        epic,
                        milestone,
                        now
                    ])
                    .map_err(db_err)?;
                let version = prev.map(|p| p.1 + 1).unwrap_or(1);
                event
                    .execute(params![t.id, now, actor, Option::<&str>::None, t.status.as_str(), version])
                    .map_err(db_err)?;
            }
            let mut leftover = Vec::new();
            for id in existing.keys() {
                if !in_file.contains(id.as_str()) {
                    leftover.push(id.clone());
                }
            }
            if prune {
                for id in &leftover {
                    tx.execute("DELETE FROM tasks WHERE id = ?1", [id]).map_err(db_err)?;
                }
                summary.removed = leftover.len();
            } else {
                // keep them after the file's tasks, in their previous order
                let n = roadmap.tasks.len() as i64;
                tx.execute(
                    &format!(
                        "UPDATE tasks SET ord = ord + {n} + 1000000000 WHERE id NOT IN (SELECT value FROM json_each(?1))"
                    ),
                    [serde_json::to_string(&roadmap.tasks.iter().map(|t| &t.id).collect::<Vec<_>>()).map_err(json_err)?],
                )
                .map_err(db_err)?;
                summary.kept_not_in_file = leftover.len();
            }
            Ok(summary)
        })
    }

    /// The whole roadmap as stored (for export and `roadmap show`).
    pub fn load_roadmap(&self) -> Result<Roadmap> {
        let conn = self.conn();
        load_roadmap(&conn)
    }

    /// The dependency graph at the current revision (cached per revision).
    pub fn plan_graph(&self) -> Result<Arc<PlanGraph>> {
        let conn = self.conn();
        graph_at(&conn, &self.graph)
    }

    pub fn get_task(&self, id: &str) -> Result<TaskRecord> {
        let conn = self.conn();
        get_task(&conn, id)
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
        self.write(&[ExportKind::Roadmap], |tx| {
            let graph = graph_at(tx, graph_cache)?;
            let Some(item) = graph.first_ready(q, now) else { return Ok(None) };
            let id = item.id.clone();
            let prev = get_task(tx, &id)?;
            let plan = rules::plan_claim(&facts(&prev), ttl_s, now);
            let (lease, started) = (plan.lease_expires_ms, plan.started_at_ms);
            tx.execute(
                "UPDATE tasks SET status='in_progress', claimed_by=?2, lease_expires_ms=?3, started_at_ms=?4, version=version+1, updated_at_ms=?5,
                   owner = coalesce(owner, ?2) WHERE id=?1",
                params![id, agent, lease, started, now],
            )
            .map_err(db_err)?;
            let task = get_task(tx, &id)?;
            tx.execute(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, data) VALUES (?1,?2,?3,'claim',?4,'in_progress',?5,?6)",
                params![id, now, agent, prev.status.as_str(), task.version, json!({"ttl_s": ttl_s, "lease_expired_takeover": plan.takeover}).to_string()],
            )
            .map_err(db_err)?;
            Ok(Some((task, prev.status)))
        })
    }

    /// Applies a validated change to one task.
    pub fn update_task(&self, u: &TaskUpdate, now: i64) -> Result<UpdateOutcome> {
        self.write(&[ExportKind::Roadmap], |tx| {
            let prev = get_task(tx, &u.task_id)?;
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
            let plan = rules::plan_update(&facts(&prev), &request, now, |name| critic_history(tx, name, since), iso)?;
            let rules::UpdatePlan { status, changed, forced, started_at_ms: started, release_claim: leaving_progress } = plan;
            tx.execute(
                "UPDATE tasks SET status=?2, notes=coalesce(?3, notes), owner=coalesce(?4, owner), priority=coalesce(?5, priority),
                   started_at_ms=?6, version=version+1, updated_at_ms=?7,
                   claimed_by = CASE WHEN ?8 THEN NULL ELSE claimed_by END,
                   lease_expires_ms = CASE WHEN ?8 THEN NULL ELSE lease_expires_ms END
                 WHERE id=?1",
                params![
                    prev.id,
                    status.as_str(),
                    u.notes,
                    u.owner,
                    u.priority.map(|p| p.rank() as i64),
                    started,
                    now,
                    leaving_progress
                ],
            )
            .map_err(db_err)?;
            let task = get_task(tx, &prev.id)?;
            tx.execute(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, forced, reason, data) VALUES (?1,?2,?3,'update',?4,?5,?6,?7,?8,?9)",
                params![
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
            )
            .map_err(db_err)?;
            Ok(UpdateOutcome { task, previous_status: prev.status, changed, forced })
        })
    }

    /// Task events, newest last.
    pub fn task_events(&self, task_id: &str, limit: usize) -> Result<Vec<Value>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached("SELECT at_ms, actor, kind, from_status, to_status, version, forced, reason FROM task_events WHERE task_id=?1 ORDER BY seq DESC LIMIT ?2")
            .map_err(db_err)?;
        let rows = q
            .query_map(params![task_id, limit as i64], |r| {
                Ok(json!({
                    "at": iso(r.get(0)?), "actor": r.get::<_, Option<String>>(1)?, "kind": r.get::<_, String>(2)?,
                    "from": r.get::<_, Option<String>>(3)?, "to": r.get::<_, Option<String>>(4)?,
                    "version": r.get::<_, i64>(5)?, "forced": r.get::<_, bool>(6)?, "reason": r.get::<_, Option<String>>(7)?
                }))
            })
            .map_err(db_err)?;
        let mut v: Vec<Value> = rows.collect::<rusqlite::Result<_>>().map_err(db_err)?;
        v.reverse();
        Ok(v)
    }

    // ----- context and checkpoints -----

    /// Replaces (or appends to) one context section, within a word budget.
    pub fn context_write(
        &self,
        section: &str,
        content: &str,
        append: bool,
        word_budget: usize,
    ) -> Result<ContextSection> {
        let now = now_ms();
        self.write(&[ExportKind::Context], |tx| {
            let prev: Option<String> = tx
                .query_row("SELECT content FROM context_sections WHERE name=?1", [section], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let text = match (&prev, append) {
                (Some(p), true) if !p.is_empty() => format!("{p}\n{content}"),
                _ => content.to_string(),
            };
            let words = text.split_whitespace().count();
            // a budget of words is also one of bytes: one long "word" must
            // not carry a section past it (16 bytes a word is generous)
            let max_bytes = word_budget.saturating_mul(16);
            if text.len() > max_bytes {
                return Err(VaneError::new(
                    ErrorCode::ContextBudgetExceeded,
                    format!(
                        "section `{section}` would hold {} bytes; the budget is {max_bytes} ({word_budget} words × 16). Summarise it, or split it into sections",
                        text.len()
                    ),
                )
                .with_details(json!({ "section": section, "bytes": text.len(), "max_bytes": max_bytes, "budget": word_budget })));
            }
            if words > word_budget {
                return Err(VaneError::new(
                    ErrorCode::ContextBudgetExceeded,
                    format!(
                        "section `{section}` would hold {words} words; the budget is {word_budget}. Summarise it, or split it into sections"
                    ),
                )
                .with_details(json!({ "section": section, "words": words, "budget": word_budget, "existing_words": prev.as_deref().map(|p| p.split_whitespace().count()) })));
            }
            let ord: i64 = tx
                .query_row("SELECT coalesce((SELECT ord FROM context_sections WHERE name=?1), (SELECT coalesce(max(ord),0)+1 FROM context_sections))", [section], |r| r.get(0))
                .map_err(db_err)?;
            tx.execute(
                "INSERT INTO context_sections(name, content, words, updated_at_ms, ord) VALUES (?1,?2,?3,?4,?5)
                 ON CONFLICT(name) DO UPDATE SET content=excluded.content, words=excluded.words, updated_at_ms=excluded.updated_at_ms",
                params![section, text, words as i64, now, ord],
            )
            .map_err(db_err)?;
            Ok(ContextSection { name: section.to_string(), content: text, words, updated_at: iso(now) })
        })
    }

    pub fn context_sections(&self) -> Result<Vec<ContextSection>> {
        let conn = self.conn();
        context_sections(&conn)
    }

    pub fn write_checkpoint(&self, reason: &str, data: Value) -> Result<Checkpoint> {
        let now = now_ms();
        self.write(&[ExportKind::Checkpoint], |tx| {
            tx.execute(
                "INSERT INTO checkpoints(created_at_ms, reason, data) VALUES (?1,?2,?3)",
                params![now, reason, data.to_string()],
            )
            .map_err(db_err)?;
            Ok(Checkpoint {
                id: tx.last_insert_rowid(),
                created_at: iso(now),
                reason: reason.to_string(),
                data,
            })
        })
    }

    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let conn = self.conn();
        latest_checkpoint(&conn)
    }

    // ----- critics -----

    /// Records a critic run; a failing run opens or updates the remediation
    /// task `CRITIC-<name>` (reopening it when it was closed).
    pub fn record_critic_run(&self, run: &NewCriticRun) -> Result<CriticRun> {
        let failed = run.status != CriticStatus::Pass;
        let kinds: &[ExportKind] = if failed {
            &[ExportKind::Critics, ExportKind::Roadmap]
        } else {
            &[ExportKind::Critics]
        };
        self.write(kinds, |tx| {
            tx.execute(
                "INSERT INTO critic_runs(name, status, exit_code, command, started_at_ms, finished_at_ms, duration_ms, output_tail, trigger) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                params![
                    run.name,
                    run.status.as_str(),
                    run.exit_code,
                    run.command,
                    run.started_at_ms,
                    run.finished_at_ms,
                    run.finished_at_ms - run.started_at_ms,
                    run.output_tail,
                    run.trigger.to_string()
                ],
            )
            .map_err(db_err)?;
            let id = tx.last_insert_rowid();
            let remediation = if failed { Some(remediate(tx, run)?) } else { None };
            Ok(CriticRun {
                id,
                name: run.name.clone(),
                status: run.status,
                exit_code: run.exit_code,
                command: run.command.clone(),
                started_at: iso(run.started_at_ms),
                finished_at: iso(run.finished_at_ms),
                duration_ms: run.finished_at_ms - run.started_at_ms,
                output_tail: run.output_tail.clone(),
                trigger: run.trigger.clone(),
                remediation_task: remediation,
                finished_at_ms: run.finished_at_ms,
            })
        })
    }

    /// The latest run of every critic.
    pub fn latest_critic_runs(&self) -> Result<Vec<CriticRun>> {
        let conn = self.conn();
        latest_critic_runs(&conn)
    }

    // ----- artifacts and decisions -----

    /// Records an artifact. `content`, when given, is kept in the state
    /// directory and served as the resource `vane://artifacts/{id}`.
    pub fn record_artifact(
        &self,
        kind: &str,
        path: Option<&str>,
        metadata: &Value,
        task_id: Option<&str>,
        content: Option<&[u8]>,
    ) -> Result<Artifact> {
        let now = now_ms();
        if let Some(t) = task_id {
            self.get_task(t)?;
        }
        // Content goes to disk first (outside the transaction), under a unique name.
        let content_file = match content {
            Some(bytes) => {
                let dir = self.paths.artifacts_dir();
                std::fs::create_dir_all(&dir).map_err(|e| {
                    VaneError::new(ErrorCode::IoError, format!("create {}: {e}", dir.display()))
                })?;
                let name = format!("{}-{}.txt", now, std::process::id());
                let name = unique_name(&dir, &name);
                exports::write_atomic(&dir.join(&name), bytes)?;
                Some(name)
            }
            None => None,
        };
        let size = content.map(|c| c.len() as i64);
        self.write(&[], |tx| {
            tx.execute(
                "INSERT INTO artifacts(kind, path, metadata, task_id, created_at_ms, content_file, size) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                params![kind, path, metadata.to_string(), task_id, now, content_file, size],
            )
            .map_err(db_err)?;
            let id = tx.last_insert_rowid();
            Ok(Artifact {
                id,
                uri: format!("vane://artifacts/{id}"),
                kind: kind.to_string(),
                path: path.map(str::to_string),
                metadata: metadata.clone(),
                task_id: task_id.map(str::to_string),
                created_at: iso(now),
                size,
                content_file: content_file.clone(),
            })
        })
    }

    pub fn get_artifact(&self, id: i64) -> Result<Artifact> {
        let conn = self.conn();
        conn.query_row(
            "SELECT id, kind, path, metadata, task_id, created_at_ms, size, content_file FROM artifacts WHERE id=?1",
            [id],
            artifact_from_row,
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| VaneError::new(ErrorCode::NotFound, format!("no artifact {id}")))
    }

    /// The stored content of an artifact, if it has any.
    pub fn artifact_content(&self, a: &Artifact) -> Result<Option<Vec<u8>>> {
        match &a.content_file {
            Some(f) => std::fs::read(self.paths.artifacts_dir().join(f))
                .map(Some)
                .map_err(|e| {
                    VaneError::new(
                        ErrorCode::IoError,
                        format!("artifact {} content: {e}", a.id),
                    )
                }),
            None => Ok(None),
        }
    }

    pub fn list_artifacts(&self, limit: usize) -> Result<Vec<Artifact>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached("SELECT id, kind, path, metadata, task_id, created_at_ms, size, content_file FROM artifacts ORDER BY id DESC LIMIT ?1")
            .map_err(db_err)?;
        let rows = q
            .query_map([limit as i64], artifact_from_row)
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    pub fn record_decision(
        &self,
        title: &str,
        summary: &str,
        impact: Option<&str>,
        task_id: Option<&str>,
    ) -> Result<Decision> {
        let now = now_ms();
        self.write(&[ExportKind::Context], |tx| {
            if let Some(t) = task_id {
                get_task(tx, t)?;
            }
            tx.execute(
                "INSERT INTO decisions(title, summary, impact, task_id, created_at_ms) VALUES (?1,?2,?3,?4,?5)",
                params![title, summary, impact, task_id, now],
            )
            .map_err(db_err)?;
            Ok(Decision {
                id: tx.last_insert_rowid(),
                title: title.into(),
                summary: summary.into(),
                impact: impact.map(str::to_string),
                task_id: task_id.map(str::to_string),
                created_at: iso(now),
            })
        })
    }

    pub fn decisions(&self, limit: usize) -> Result<Vec<Decision>> {
        let conn = self.conn();
        decisions(&conn, limit)
    }

    // ----- idempotency -----

    /// Starts a call under an idempotency key. Returns what to do: run it
    /// (the key is now reserved by `pid`), replay a recorded result, or fail
    /// because the key was used for different arguments or is being run by a
    /// live process. A reservation whose owner died is taken over. Keys are
    /// kept for 24 hours.
    pub fn idempotency_begin(
        &self,
        key: &str,
        tool: &str,
        args_hash: &str,
        pid: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Idempotency> {
        let now = now_ms();
        self.write_bookkeeping(|tx| {
            tx.execute("DELETE FROM idempotency WHERE created_at_ms < ?1", [now - IDEMPOTENCY_RETENTION_MS]).map_err(db_err)?;
            let row: Option<IdempotencyRow> = tx
                .query_row(
                    "SELECT tool, args_hash, state, owner_pid, result, is_error, journal FROM idempotency WHERE key = ?1",
                    [key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                )
                .optional()
                .map_err(db_err)?;
            match row {
                None => {
                    tx.execute(
                        "INSERT INTO idempotency(key, tool, args_hash, state, owner_pid, created_at_ms) VALUES (?1,?2,?3,'pending',?4,?5)",
                        params![key, tool, args_hash, pid, now],
                    )
                    .map_err(db_err)?;
                    Ok(Idempotency::Run)
                }
                Some((t, h, _, _, _, _, _)) if t != tool || h != args_hash => Err(VaneError::new(
                    ErrorCode::IdempotencyKeyReused,
                    format!("idempotency key `{key}` was already used for a different call ({t}); use a new key"),
                )
                .with_details(json!({ "key": key, "tool": t }))),
                Some((_, _, state, _, Some(result), is_error, _)) if state == "done" => {
                    Ok(Idempotency::Replay { result: serde_json::from_str(&result).map_err(json_err)?, is_error })
                }
                Some((_, _, _, owner, _, _, journal)) => {
                    if owner as u32 != pid && alive(owner as u32) {
                        return Err(VaneError::new(
                            ErrorCode::IdempotencyKeyInProgress,
                            format!("a call with idempotency key `{key}` is still running in process {owner}; retry shortly"),
                        )
                        .with_details(json!({ "key": key, "owner_pid": owner, "retryable": true })));
                    }
                    // the owner died mid-call: take the key over
                    tx.execute("UPDATE idempotency SET owner_pid = ?2 WHERE key = ?1", params![key, pid]).map_err(db_err)?;
                    let journal: Vec<Value> = match journal {
                        Some(j) => serde_json::from_str(&j).map_err(json_err)?,
                        None => Vec::new(),
                    };
                    if journal.is_empty() {
                        Ok(Idempotency::Run)
                    } else {
                        Ok(Idempotency::Resume { journal })
                    }
                }
            }
        })
    }

    /// Frees a key reserved by [`Store::idempotency_begin`] whose call
    /// faulted (`internal`): nothing was applied, so a retry runs afresh.
    /// Returns false (and keeps the key) when some of the call's writes had
    /// already committed: then its result must be recorded instead.
    pub fn idempotency_release(&self, key: &str) -> Result<bool> {
        self.write_bookkeeping(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM idempotency WHERE key = ?1 AND state = 'pending' AND journal IS NULL",
                    [key],
                )
                .map_err(db_err)?;
            Ok(n > 0)
        })
    }

    /// Records the result of a call started with [`Store::idempotency_begin`].
    pub fn idempotency_finish(&self, key: &str, result: &Value, is_error: bool) -> Result<()> {
        let now = now_ms();
        self.write_bookkeeping(|tx| {
            tx.execute(
                "UPDATE idempotency SET state='done', result=?2, is_error=?3, finished_at_ms=?4 WHERE key=?1",
                params![key, result.to_string(), is_error, now],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    // ----- flags -----

    /// The flags revision: bumped by every flag change. One cached indexed
    /// read, cheap enough to check on every tool call.
    pub fn flags_revision(&self) -> Result<i64> {
        self.conn()
            .prepare_cached("SELECT value FROM meta WHERE key = 'rev_flags'")
            .and_then(|mut q| q.query_row([], |r| r.get(0)))
            .map_err(db_err)
    }

    /// Stored flags `(key, value, updated_at, updated_by)`.
    pub fn flags(&self) -> Result<Vec<FlagRecord>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached(
                "SELECT key, value, updated_at_ms, updated_by FROM settings ORDER BY key",
            )
            .map_err(db_err)?;
        let rows = q
            .query_map([], |r| {
                Ok(FlagRecord {
                    key: r.get(0)?,
                    value: r.get(1)?,
                    updated_at: iso(r.get(2)?),
                    updated_by: r.get(3)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    /// Sets (`Some`) or unsets (`None`) a flag; the value must already be
    /// validated. Returns the previous value.
    pub fn set_flag(&self, key: &str, value: Option<&str>, actor: &str) -> Result<Option<String>> {
        let now = now_ms();
        self.write(&[], |tx| {
            let old: Option<String> = tx
                .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            match value {
                Some(v) => tx
                    .execute(
                        "INSERT INTO settings(key, value, updated_at_ms, updated_by) VALUES (?1,?2,?3,?4)
                         ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at_ms=excluded.updated_at_ms, updated_by=excluded.updated_by",
                        params![key, v, now, actor],
                    )
                    .map_err(db_err)?,
                None => tx.execute("DELETE FROM settings WHERE key = ?1", [key]).map_err(db_err)?,
            };
            tx.execute(
                "INSERT INTO settings_history(key, old_value, new_value, at_ms, actor) VALUES (?1,?2,?3,?4,?5)",
                params![key, old, value, now, actor],
            )
            .map_err(db_err)?;
            tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'rev_flags'", []).map_err(db_err)?;
            Ok(old)
        })
    }

    /// The latest flag changes, newest first.
    pub fn flag_history(&self, limit: usize) -> Result<Vec<Value>> {
        let conn = self.conn();
        let mut q = conn
            .prepare_cached("SELECT key, old_value, new_value, at_ms, actor FROM settings_history ORDER BY seq DESC LIMIT ?1")
            .map_err(db_err)?;
        let rows = q
            .query_map([limit as i64], |r| {
                Ok(json!({ "key": r.get::<_, String>(0)?, "old": r.get::<_, Option<String>>(1)?, "new": r.get::<_, Option<String>>(2)?,
                           "at": iso(r.get(3)?), "actor": r.get::<_, Option<String>>(4)? }))
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)
    }

    // ----- status -----

    pub fn status(&self, now: i64) -> Result<StoreStatus> {
        let conn = self.conn();
        // counts and claims from the plan graph, cached per roadmap revision
        // (`status` is the call every session starts with)
        let graph = graph_at(&conn, &self.graph)?;
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
        let revision = conn
            .prepare_cached("SELECT value FROM meta WHERE key = 'revision'")
            .and_then(|mut q| q.query_row([], |r| r.get(0)))
            .map_err(db_err)?;
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
            schema_version: conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(db_err)?,
        })
    }

    /// `PRAGMA quick_check` and a `BEGIN; ROLLBACK;` round trip.
    pub fn health_check(&self) -> Result<()> {
        let conn = self.conn();
        let r: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(db_err)?;
        if r != "ok" {
            return Err(VaneError::new(
                ErrorCode::StoreError,
                format!("store integrity check: {r}"),
            ));
        }
        conn.execute_batch("BEGIN; ROLLBACK;").map_err(db_err)?;
        Ok(())
    }

    // internal accessors for exports
    pub(crate) fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn();
        f(&conn)
    }
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

fn unique_name(dir: &Path, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while dir.join(&candidate).exists() {
        candidate = format!("{n}-{name}");
        n += 1;
    }
    candidate
}

fn artifact_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Artifact> {
    let id: i64 = r.get(0)?;
    let meta: String = r.get(3)?;
    Ok(Artifact {
        id,
        uri: format!("vane://artifacts/{id}"),
        kind: r.get(1)?,
        path: r.get(2)?,
        metadata: serde_json::from_str(&meta).unwrap_or(Value::Null),
        task_id: r.get(4)?,
        created_at: iso(r.get(5)?),
        size: r.get(6)?,
        content_file: r.get(7)?,
    })
}

pub(crate) fn get_task(conn: &Connection, id: &str) -> Result<TaskRecord> {
    let row = conn
        .query_row(
            &format!("SELECT {TASK_COLS} FROM tasks WHERE id=?1"),
            [id],
            task_from_row,
        )
        .optional()
        .map_err(db_err)?;
    match row {
        Some(r) => finish_task(r),
        None => Err(VaneError::task_not_found(id)),
    }
}

fn graph_at(
    conn: &Connection,
    cache: &Mutex<Option<(i64, Arc<PlanGraph>)>>,
) -> Result<Arc<PlanGraph>> {
    let rev: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'rev_roadmap'",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    {
        let c = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((r, g)) = c.as_ref() {
            if *r == rev {
                return Ok(g.clone());
            }
        }
    }
    let mut q = conn
        .prepare_cached("SELECT id, title, status, priority, epic_id, milestone_id, owner, dependencies, claimed_by, lease_expires_ms, estimate_hours, version FROM tasks ORDER BY ord")
        .map_err(db_err)?;
    let rows = q
        .query_map([], |r| {
            let status: String = r.get(2)?;
            let prio: Option<i64> = r.get(3)?;
            let deps: String = r.get(7)?;
            Ok(PlanItem {
                id: r.get(0)?,
                title: r.get(1)?,
                status: Status::parse(&status).unwrap_or(Status::Pending),
                priority: prio
                    .and_then(|p| u8::try_from(p).ok())
                    .and_then(Priority::from_rank)
                    .unwrap_or(Priority::MEDIUM),
                epic: r.get(4)?,
                milestone: r.get(5)?,
                owner: r.get(6)?,
                dependencies: serde_json::from_str(&deps).unwrap_or_default(),
                claimed_by: r.get(8)?,
                lease_expires_ms: r.get(9)?,
                estimate_hours: r.get(10)?,
                version: r.get(11)?,
            })
        })
        .map_err(db_err)?;
    let items = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)?;
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
fn critic_history(conn: &Connection, name: &str, since: i64) -> Result<rules::CriticHistory> {
    let passed: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM critic_runs WHERE name=?1 AND status='pass' AND started_at_ms >= ?2)",
            params![name, since],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let last = if passed {
        None
    } else {
        conn.query_row(
            "SELECT status, finished_at_ms FROM critic_runs WHERE name=?1 ORDER BY id DESC LIMIT 1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_err)?
    };
    Ok(rules::CriticHistory {
        passed_since_start: passed,
        last,
    })
}

fn remediate(tx: &Transaction<'_>, run: &NewCriticRun) -> Result<String> {
    let now = run.finished_at_ms;
    let outcome = rules::CriticOutcome {
        name: &run.name,
        status: run.status.as_str(),
        exit_code: run.exit_code,
        command: &run.command,
        output_tail: &run.output_tail,
        finished_at_ms: now,
    };
    let existing = get_task(tx, &rules::remediation_id(&run.name)).ok();
    match rules::remediation(&outcome, existing.as_ref().map(|t| t.status), iso) {
        rules::Remediation::Create {
            id,
            title,
            description,
            exit_criteria,
            extra,
            reason,
        } => {
            let ord: i64 = tx
                .query_row("SELECT coalesce(max(ord), 0) + 1 FROM tasks", [], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            let ec = serde_json::to_string(&exit_criteria).map_err(json_err)?;
            tx.execute(
                "INSERT INTO tasks(id, ord, title, description, status, priority, dependencies, exit_criteria, extra, version, updated_at_ms)
                 VALUES (?1,?2,?3,?4,'pending',1,'[]',?5,?6,1,?7)",
                params![id, ord, title, description, ec, extra.to_string(), now],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, to_status, version, reason) VALUES (?1,?2,'vane','remediation','pending',1,?3)",
                params![id, now, reason],
            )
            .map_err(db_err)?;
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
            tx.execute(
                "UPDATE tasks SET description=?2, status = CASE WHEN ?3 THEN 'pending' ELSE status END, version=version+1, updated_at_ms=?4 WHERE id=?1",
                params![id, description, reopen, now],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO task_events(task_id, at_ms, actor, kind, from_status, to_status, version, reason) VALUES (?1,?2,'vane','remediation',?3,?4,?5,?6)",
                params![id, now, from.as_str(), to.as_str(), version, reason],
            )
            .map_err(db_err)?;
            Ok(id)
        }
    }
}

pub(crate) fn latest_critic_runs(conn: &Connection) -> Result<Vec<CriticRun>> {
    let mut q = conn
        .prepare_cached(
            "SELECT id, name, status, exit_code, command, started_at_ms, finished_at_ms, duration_ms, output_tail, trigger FROM critic_runs
             WHERE id IN (SELECT max(id) FROM critic_runs GROUP BY name) ORDER BY name",
        )
        .map_err(db_err)?;
    let rows = q
        .query_map([], |r| {
            let status: String = r.get(2)?;
            let trigger: String = r.get(9)?;
            Ok(CriticRun {
                id: r.get(0)?,
                name: r.get(1)?,
                status: CriticStatus::parse(&status),
                exit_code: r.get(3)?,
                command: r.get(4)?,
                started_at: iso(r.get(5)?),
                finished_at: iso(r.get(6)?),
                duration_ms: r.get(7)?,
                output_tail: r.get(8)?,
                trigger: serde_json::from_str(&trigger).unwrap_or(Value::Null),
                remediation_task: None,
                finished_at_ms: r.get(6)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub(crate) fn context_sections(conn: &Connection) -> Result<Vec<ContextSection>> {
    let mut q = conn
        .prepare_cached(
            "SELECT name, content, words, updated_at_ms FROM context_sections ORDER BY ord",
        )
        .map_err(db_err)?;
    let rows = q
        .query_map([], |r| {
            Ok(ContextSection {
                name: r.get(0)?,
                content: r.get(1)?,
                words: r.get::<_, i64>(2)? as usize,
                updated_at: iso(r.get(3)?),
            })
        })
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub(crate) fn decisions(conn: &Connection, limit: usize) -> Result<Vec<Decision>> {
    let mut q = conn
        .prepare_cached("SELECT id, title, summary, impact, task_id, created_at_ms FROM decisions ORDER BY id DESC LIMIT ?1")
        .map_err(db_err)?;
    let rows = q
        .query_map([limit as i64], |r| {
            Ok(Decision {
                id: r.get(0)?,
                title: r.get(1)?,
                summary: r.get(2)?,
                impact: r.get(3)?,
                task_id: r.get(4)?,
                created_at: iso(r.get(5)?),
            })
        })
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub(crate) fn latest_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>> {
    let mut q = conn
        .prepare_cached(
            "SELECT id, created_at_ms, reason, data FROM checkpoints ORDER BY id DESC LIMIT 1",
        )
        .map_err(db_err)?;
    q.query_row([], |r| {
        let data: String = r.get(3)?;
        Ok(Checkpoint {
            id: r.get(0)?,
            created_at: iso(r.get(1)?),
            reason: r.get(2)?,
            data: serde_json::from_str(&data).unwrap_or(Value::Null),
        })
    })
    .optional()
    .map_err(db_err)
}

pub(crate) fn load_roadmap(conn: &Connection) -> Result<Roadmap> {
    let mut r = Roadmap::default();
    let extra: String = conn
        .query_row("SELECT extra FROM roadmap_meta WHERE id=1", [], |r| {
            r.get(0)
        })
        .map_err(db_err)?;
    r.extra = serde_json::from_str(&extra).map_err(json_err)?;
    let mut q = conn
        .prepare_cached("SELECT idx, kind, id, title, description, status, parent, extra FROM groups ORDER BY idx")
        .map_err(db_err)?;
    let rows = q
        .query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<i64>>(6)?,
                row.get::<_, String>(7)?,
            ))
        })
        .map_err(db_err)?;
    for row in rows {
        let (_, kind, id, title, description, status, parent, extra) = row.map_err(db_err)?;
        r.groups.push(Group {
            kind: GroupKind::parse(&kind).unwrap_or(GroupKind::Milestone),
            id,
            title,
            description,
            status,
            parent: parent.map(|p| p as usize),
            extra: serde_json::from_str(&extra).map_err(json_err)?,
        });
    }
    let mut q = conn
        .prepare_cached("SELECT id, title, description, status, priority, owner, estimate_hours, dependencies, exit_criteria, extra, parent FROM tasks ORDER BY ord")
        .map_err(db_err)?;
    let rows = q
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<f64>>(6)?,
                row.get::<_, String>(7)?,
                row.get::<_, String>(8)?,
                row.get::<_, String>(9)?,
                row.get::<_, Option<i64>>(10)?,
            ))
        })
        .map_err(db_err)?;
    for row in rows {
        let (id, title, description, status, prio, owner, est, deps, ec, extra, parent) =
            row.map_err(db_err)?;
        let ec: Vec<Value> = serde_json::from_str(&ec).map_err(json_err)?;
        r.tasks.push(Task {
            id,
            title,
            description,
            status: Status::parse(&status).unwrap_or(Status::Pending),
            priority: prio
                .and_then(|p| u8::try_from(p).ok())
                .and_then(Priority::from_rank),
            owner,
            estimate_hours: est,
            dependencies: serde_json::from_str(&deps).map_err(json_err)?,
            exit_criteria: ec.iter().map(ExitCriterion::from_value).collect(),
            parent: parent.map(|p| p as usize).filter(|&p| p < r.groups.len()),
            extra: serde_json::from_str(&extra).map_err(json_err)?,
        });
    }
    Ok(r)
}

/// Where the database file `db` stands against this binary (read-only).
pub fn schema_info_of(db: &Path) -> Result<SchemaInfo> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        VaneError::new(
            ErrorCode::StoreError,
            format!("cannot open store {}: {e}", db.display()),
        )
    })?;
    schema::inspect(&conn, MIGRATIONS)
}

/// What [`migrate_db`] did to one database file.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub db: String,
    pub before: SchemaInfo,
    pub applied: Vec<Applied>,
    pub after: SchemaInfo,
    /// `PRAGMA integrity_check` after migrating: `ok` or the first problems.
    pub integrity: String,
    pub foreign_key_violations: i64,
    pub ok: bool,
}

/// Migrates the database file `db` (which must exist) up to `reach` and
/// checks it afterwards. Used on a private copy to validate a new version's
/// schema, and by `vane migrate` on the live store.
pub fn migrate_db(db: &Path, reach: Reach) -> Result<MigrateReport> {
    if !db.is_file() {
        return Err(VaneError::new(
            ErrorCode::NotFound,
            format!("no database at {}", db.display()),
        ));
    }
    let mut conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        VaneError::new(
            ErrorCode::StoreError,
            format!("cannot open store {}: {e}", db.display()),
        )
    })?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_err)?;
    let before = schema::inspect(&conn, MIGRATIONS)?;
    if let Some(e) = before.error() {
        return Err(e);
    }
    let applied = schema::apply(&mut conn, MIGRATIONS, reach, &migration_actor())?;
    let after = schema::inspect(&conn, MIGRATIONS)?;
    let problems: Vec<String> = {
        let mut q = conn.prepare("PRAGMA integrity_check(20)").map_err(db_err)?;
        let rows = q.query_map([], |r| r.get::<_, String>(0)).map_err(db_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err)?
    };
    let integrity = problems.join("; ");
    let foreign_key_violations: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(db_err)?;
    let ok = integrity == "ok" && foreign_key_violations == 0 && after.incompatible.is_none();
    Ok(MigrateReport {
        db: db.display().to_string(),
        before,
        applied,
        after,
        integrity,
        foreign_key_violations,
        ok,
    })
}
