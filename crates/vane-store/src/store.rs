//! The store: tasks, claims, context, checkpoints, critic runs, artifacts,
//! decisions, flags, idempotency keys and the dispatch ledger.
//!
//! One [`Store`] in front of one database engine ([`Backend`]). Every method
//! is written once against [`Sql`] and runs through one of four doors:
//!
//! - [`Store::read`]: statements on a connection, no transaction;
//! - [`Store::read_snapshot`]: several reads that must agree (exports);
//! - [`Store::write`]: one transaction that changes what agents see — it
//!   first takes the next store revision (the single point every writer
//!   passes in turn, on either engine), runs the change, records the export
//!   revisions it touched, journals its result for a keyed call, commits,
//!   then refreshes the exports;
//! - [`Store::write_bookkeeping`]: a transaction that does not (idempotency
//!   records): the revision and exports stay as they are.
//!
//! The domain decisions (the state machine, the critic gate, claims,
//! remediation) are pure functions in `vane_core::rules`; the methods here
//! read their facts and write their answers.

mod keys;
mod notes;
mod tasks;
mod types;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde::Serialize;
use serde_json::{json, Value};
use vane_core::planner::PlanGraph;
use vane_core::{ErrorCode, VaneError};

use crate::exports::{self, ExportKind};
use crate::pg::{Pg, PgTarget};
use crate::schema::{self, Applied, Reach, SchemaInfo, MIGRATIONS, SCHEMA_VERSION};
use crate::sql::{one, p, Engine, Sql};
use crate::sqlite::{db_err, Lite};
use crate::StatePaths;

pub(crate) use notes::{context_sections, decisions, latest_checkpoint, latest_critic_runs};
pub(crate) use tasks::load_roadmap;
pub use types::*;

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

pub(crate) fn migration_actor() -> String {
    format!(
        "vane {} pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

pub(crate) fn json_err(e: serde_json::Error) -> VaneError {
    VaneError::new(
        ErrorCode::StoreError,
        format!("store holds malformed JSON: {e}"),
    )
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

/// The database engine behind a [`Store`]: a closed set, so every place
/// that differs by engine is a `match` the compiler keeps complete.
pub(crate) enum Backend {
    /// One connection per process, WAL, `BEGIN IMMEDIATE` writes.
    Sqlite(Mutex<Connection>),
    /// A pool of connections to a database fronts on several hosts share.
    Postgres(Box<Pg>),
}

/// The advisory lock bookkeeping writes (idempotency keys) take on
/// PostgreSQL: they do not take a revision, so this is what serializes them.
const PG_BOOKKEEPING_LOCK: i64 = 0x7661_6e65_6b65_7973; // "vanekeys"

/// The plan graph of one roadmap revision, shared by the calls that read it.
pub(crate) type GraphCache = Mutex<Option<(i64, Arc<PlanGraph>)>>;

/// One workspace's store. Cheap to share behind an `Arc`.
pub struct Store {
    backend: Backend,
    paths: StatePaths,
    read_only: bool,
    graph: GraphCache,
    /// set when this store is dropped: stops its exporter thread
    exporter_stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(stop) = &self.exporter_stop {
            stop.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// How often a checkout's exporter looks whether another host changed the
/// shared store.
const EXPORT_POLL: Duration = Duration::from_millis(200);

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
        let backend = match &paths.store {
            None => Backend::Sqlite(Mutex::new(open_sqlite(&paths.db(), mode)?)),
            Some(target) => Backend::Postgres(Box::new(open_pg(target, mode)?)),
        };
        let mut store = Store {
            backend,
            paths: paths.clone(),
            read_only,
            graph: Mutex::new(None),
            exporter_stop: None,
        };
        if let (Backend::Postgres(pg), OpenMode::Write) = (&store.backend, mode) {
            store.exporter_stop = Some(start_exporter(Pg::clone(pg), paths.clone()));
        }
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

    /// Which engine holds the store.
    pub fn engine(&self) -> Engine {
        match &self.backend {
            Backend::Sqlite(_) => Engine::Sqlite,
            Backend::Postgres(_) => Engine::Postgres,
        }
    }

    /// Where the store is, for people: the SQLite file, or the PostgreSQL
    /// database without its password.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Sqlite(_) => self.paths.db().display().to_string(),
            Backend::Postgres(pg) => pg.target().shown().to_string(),
        }
    }

    fn lite(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; the
        // connection itself is still consistent (SQLite rolled back).
        m.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Statements outside a transaction (each sees the latest commit).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(m) => {
                let conn = Self::lite(m);
                f(&mut Lite(&conn))
            }
            Backend::Postgres(pg) => f(&mut *pg.conn()?),
        }
    }

    /// Reads that must see one state of the store (a read transaction).
    pub(crate) fn read_snapshot<T>(&self, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(m) => {
                let conn = Self::lite(m);
                let tx = conn.unchecked_transaction().map_err(db_err)?;
                let out = f(&mut Lite(&tx))?;
                tx.commit().map_err(db_err)?;
                Ok(out)
            }
            Backend::Postgres(pg) => {
                pg.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", f)
            }
        }
    }

    /// One write transaction: committed when `f` succeeds, rolled back
    /// when it fails. Writers are serialized (SQLite: `BEGIN IMMEDIATE`).
    fn transaction<T>(&self, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        self.guard_writable()?;
        match &self.backend {
            Backend::Sqlite(m) => {
                let mut conn = Self::lite(m);
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let out = f(&mut Lite(&tx))?;
                tx.commit().map_err(db_err)?;
                Ok(out)
            }
            Backend::Postgres(pg) => pg.transaction("BEGIN", f),
        }
    }

    /// One transaction that is not a change of the roadmap/context
    /// (bookkeeping such as idempotency records): the store revision, and
    /// so the exports, stay as they are.
    fn write_bookkeeping<T>(&self, f: impl FnOnce(&mut dyn Sql) -> Result<T>) -> Result<T> {
        self.transaction(|db| {
            if db.engine() == Engine::Postgres {
                db.exec("SELECT pg_advisory_xact_lock(?1)", p![PG_BOOKKEEPING_LOCK])?;
            }
            f(db)
        })
    }

    /// Runs `f` in one transaction that takes the next store revision and
    /// records it as the revision of the given exports, then refreshes
    /// those exports.
    pub(crate) fn write<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        kinds: &[ExportKind],
        f: impl FnOnce(&mut dyn Sql) -> Result<T>,
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
        let out = self.transaction(|db| {
            // the revision first: on an engine with row locks this row is
            // where concurrent writers line up, so each one's reads see
            // every write committed before it (see ARCHITECTURE.md)
            let rev: i64 = one(
                db,
                "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
                p![],
            )?;
            let out = f(db)?;
            for k in kinds {
                db.exec(
                    "UPDATE meta SET value = ?1 WHERE key = ?2",
                    p![rev, k.meta_key()],
                )?;
            }
            if !kinds.is_empty() && db.engine() == Engine::Postgres {
                // every checkout's exporter hears of it when this commits
                db.exec(
                    "SELECT pg_notify(?1, ?2)",
                    p![crate::pg::STORE_CHANNEL, rev.to_string()],
                )?;
            }
            if let Some(j) = &journal {
                let mut st = j.lock().unwrap_or_else(|e| e.into_inner());
                st.recorded
                    .push(serde_json::to_value(&out).map_err(json_err)?);
                db.exec(
                    "UPDATE idempotency SET journal = ?2 WHERE key = ?1",
                    p![st.key, Value::Array(st.recorded.clone()).to_string()],
                )?;
            }
            Ok(out)
        })?;
        for k in kinds {
            if let Err(e) = self.export(*k) {
                tracing::warn!(error = %e, export = ?k, "export failed; the store is still the source of truth");
            }
        }
        Ok(out)
    }

    pub fn revision(&self) -> Result<i64> {
        self.read(|db| one(db, "SELECT value FROM meta WHERE key = 'revision'", p![]))
    }

    /// The store's schema version (which may be ahead of this binary's by
    /// expand migrations of a newer vane).
    pub fn schema_version(&self) -> i64 {
        self.read(schema::store_version).unwrap_or(SCHEMA_VERSION)
    }

    /// Where the store stands against this binary's migrations.
    pub fn schema_info(&self) -> Result<SchemaInfo> {
        self.read(|db| schema::inspect(db, MIGRATIONS))
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
        match &self.backend {
            Backend::Sqlite(m) => Lite(&Self::lite(m))
                .exec("VACUUM INTO ?1", p![dest.to_string_lossy().as_ref()])
                .map(drop),
            Backend::Postgres(pg) => Err(VaneError::new(
                ErrorCode::StoreError,
                format!(
                    "the store is the PostgreSQL database {}; copy it with pg_dump, not vane",
                    pg.target().shown()
                ),
            )),
        }
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

    /// The integrity check and a write round trip.
    pub fn health_check(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(m) => {
                let conn = Self::lite(m);
                let r: String = one(&mut Lite(&conn), "PRAGMA quick_check", p![])?;
                if r != "ok" {
                    return Err(VaneError::new(
                        ErrorCode::StoreError,
                        format!("store integrity check: {r}"),
                    ));
                }
                conn.execute_batch("BEGIN; ROLLBACK;").map_err(db_err)?;
                Ok(())
            }
            Backend::Postgres(pg) => {
                let mut c = pg.conn()?;
                c.batch("BEGIN; ROLLBACK;")?;
                one::<i64>(
                    &mut *c,
                    "SELECT value FROM meta WHERE key = 'revision'",
                    p![],
                )
                .map(drop)
            }
        }
    }

    /// The engine and its version (`SQLite 3.x`, `PostgreSQL 15.x`).
    pub fn server_version(&self) -> Result<String> {
        self.read(|db| match db.engine() {
            Engine::Sqlite => Ok(format!(
                "SQLite {}",
                one::<String>(db, "SELECT sqlite_version()", p![])?
            )),
            Engine::Postgres => Ok(format!(
                "PostgreSQL {}",
                one::<String>(db, "SELECT current_setting('server_version')", p![])?
            )),
        })
    }

    /// The flags revision the PostgreSQL listener last heard, when it is
    /// listening (`None` on SQLite, or while it reconnects).
    pub fn heard_flags_revision(&self) -> Option<i64> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(pg) => pg.heard_flags_revision(),
        }
    }

    fn heard_store_revision_pg(&self) -> Option<i64> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(pg) => pg.heard_store_revision(),
        }
    }

    /// Tells this process's listener about a flag change it made itself.
    pub(crate) fn saw_flags_revision(&self, rev: i64) {
        if let Backend::Postgres(pg) = &self.backend {
            pg.saw_flags_revision(rev);
        }
    }
}

/// Opens the PostgreSQL database of `target` for `mode` and brings its
/// schema to what this binary needs.
fn open_pg(target: &PgTarget, mode: OpenMode) -> Result<Pg> {
    let pg = if mode == OpenMode::ReadOnly {
        Pg::open(&target.read_only())
    } else {
        Pg::open(target)
    };
    let info = {
        let mut c = pg.conn()?;
        schema::inspect(&mut *c, MIGRATIONS)?
    };
    if prepare_schema(&info, mode)? {
        schema::apply_pg(&pg, MIGRATIONS, Reach::Expand, &migration_actor(), false)?;
    }
    pg.start_listener();
    Ok(pg)
}

/// Keeps this checkout's exports current with a shared store: when the
/// listener hears of a change (made on any host), the exports are refreshed
/// (each only if the store is newer than what is on disk). Runs until the
/// store that started it is dropped.
fn start_exporter(pg: Pg, paths: StatePaths) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("vane-exports".into())
        .spawn(move || {
            let store = Store {
                backend: Backend::Postgres(Box::new(pg)),
                paths,
                read_only: false,
                graph: Mutex::new(None),
                exporter_stop: None,
            };
            let mut done = -1;
            while !stopped.load(Ordering::Acquire) {
                std::thread::sleep(EXPORT_POLL);
                let heard = store.heard_store_revision_pg();
                if let Some(rev) = heard.filter(|r| *r > done) {
                    match store.export_all() {
                        Ok(()) => done = rev,
                        Err(e) => tracing::debug!(error = %e, "exports not refreshed yet"),
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no exporter thread: this checkout's exports follow its own changes only");
    }
    stop
}

/// Opens the SQLite database `db` for `mode` and brings its schema to
/// what this binary needs.
fn open_sqlite(db: &Path, mode: OpenMode) -> Result<Connection> {
    let read_only = mode == OpenMode::ReadOnly;
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let mut conn = Connection::open_with_flags(db, flags).map_err(|e| {
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
    let info = schema::inspect(&mut Lite(&conn), MIGRATIONS)?;
    if prepare_schema(&info, mode)? {
        schema::apply_sqlite(&mut conn, MIGRATIONS, Reach::Expand, &migration_actor())?;
    }
    Ok(conn)
}

/// What opening in `mode` does with a store at `info`: an error, nothing
/// (`false`), or apply the pending expand migrations (`true`).
pub(crate) fn prepare_schema(info: &SchemaInfo, mode: OpenMode) -> Result<bool> {
    let ahead = info.pending_before_contract();
    if let Some(e) = info.error() {
        if mode != OpenMode::Front {
            return Err(e);
        }
        tracing::warn!(
            "the store's schema is newer than this vane's ({}); a front only reads flags, opening it as is",
            e.message
        );
        return Ok(false);
    }
    if mode == OpenMode::ReadOnly {
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
        return Ok(false);
    }
    Ok(!ahead.is_empty() || info.store_version == 0)
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
    schema::inspect(&mut Lite(&conn), MIGRATIONS)
}

/// What [`migrate_db`] did to one database.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub db: String,
    pub before: SchemaInfo,
    pub applied: Vec<Applied>,
    pub after: SchemaInfo,
    /// the engine's integrity check after migrating: `ok` or the first problems.
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
    let before = schema::inspect(&mut Lite(&conn), MIGRATIONS)?;
    if let Some(e) = before.error() {
        return Err(e);
    }
    let applied = schema::apply_sqlite(&mut conn, MIGRATIONS, reach, &migration_actor())?;
    let mut db_ = Lite(&conn);
    let after = schema::inspect(&mut db_, MIGRATIONS)?;
    let problems: Vec<String> = db_
        .query("PRAGMA integrity_check(20)", p![])?
        .iter()
        .map(|r| r.str(0).to_string())
        .collect();
    let integrity = problems.join("; ");
    let foreign_key_violations: i64 = one(
        &mut db_,
        "SELECT count(*) FROM pragma_foreign_key_check",
        p![],
    )?;
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
