//! Schema migrations, expand → cut over → contract.
//!
//! `PRAGMA user_version` is the schema version; each [`Migration`] moves it
//! up by one inside the same exclusive transaction that runs its SQL and
//! records it in `schema_migrations`. A migration is either
//!
//! - **expand**: additive (new tables, columns with defaults, indexes). Code
//!   that predates it keeps working, so it may be applied while older workers
//!   (a hot standby) still use the store;
//! - **contract**: removes or reshapes something older code relies on. It
//!   raises the store's *floor* (`meta.schema_floor`): a binary that does not
//!   know at least that version refuses the store with `schema_incompatible`.
//!   Contract migrations are applied only when no older reader can be left:
//!   on a brand-new store, by `vane migrate --contract`, or by the front once
//!   the standby has been retired.
//!
//! A binary may therefore open a store that is *newer* than it knows, as long
//! as everything it does not know is expand. Pending migrations apply in
//! order and stop at the first contract one, so the code of a version must
//! work on its schema before its contract migrations (which is the point of
//! the discipline).

use serde::Serialize;

/// Whether older code keeps working once a migration is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Expand,
    Contract,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Contract => "contract",
        }
    }
}

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub phase: Phase,
    /// the step on SQLite
    pub sql: &'static str,
    /// the same step on PostgreSQL (`BIGINT` for SQLite's integers and
    /// booleans, `DOUBLE PRECISION` for its reals, identity columns for its
    /// autoincrement keys, byte-order collation where rows are sorted by
    /// text); empty when it is the SQLite text unchanged
    pub pg: &'static str,
}

impl Migration {
    /// The step's SQL on `engine`.
    pub fn sql_for(&self, engine: Engine) -> &'static str {
        match engine {
            Engine::Postgres if !self.pg.is_empty() => self.pg,
            _ => self.sql,
        }
    }
}

pub const MIGRATIONS: &[Migration] = &[
    // 1: initial schema
    Migration {
        version: 1,
        name: "initial",
        phase: Phase::Expand,
        sql: r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta(key, value) VALUES ('revision', 0), ('rev_roadmap', 0), ('rev_context', 0),
  ('rev_checkpoint', 0), ('rev_critics', 0);
CREATE TABLE roadmap_meta (id INTEGER PRIMARY KEY CHECK (id = 1), extra TEXT NOT NULL DEFAULT '{}');
INSERT INTO roadmap_meta(id, extra) VALUES (1, '{}');
CREATE TABLE groups (
  idx INTEGER PRIMARY KEY,           -- position in document order
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  title TEXT, description TEXT, status TEXT,
  parent INTEGER,
  extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  ord INTEGER NOT NULL,
  title TEXT NOT NULL,
  description TEXT,
  status TEXT NOT NULL,
  priority INTEGER,
  owner TEXT,
  estimate_hours REAL,
  dependencies TEXT NOT NULL DEFAULT '[]',
  exit_criteria TEXT NOT NULL DEFAULT '[]',
  extra TEXT NOT NULL DEFAULT '{}',
  parent INTEGER,
  epic_id TEXT,
  milestone_id TEXT,
  version INTEGER NOT NULL DEFAULT 1,
  claimed_by TEXT,
  lease_expires_ms INTEGER,
  started_at_ms INTEGER,
  updated_at_ms INTEGER NOT NULL,
  notes TEXT
);
CREATE INDEX tasks_ord ON tasks(ord);
CREATE TABLE task_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  actor TEXT,
  kind TEXT NOT NULL,
  from_status TEXT, to_status TEXT,
  version INTEGER NOT NULL,
  forced INTEGER NOT NULL DEFAULT 0,
  reason TEXT,
  data TEXT
);
CREATE INDEX task_events_task ON task_events(task_id, seq);
CREATE TABLE context_sections (
  name TEXT PRIMARY KEY,
  content TEXT NOT NULL,
  words INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  ord INTEGER NOT NULL
);
CREATE TABLE checkpoints (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at_ms INTEGER NOT NULL,
  reason TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE TABLE critic_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  exit_code INTEGER,
  command TEXT NOT NULL,
  started_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  output_tail TEXT NOT NULL,
  trigger TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX critic_runs_name ON critic_runs(name, finished_at_ms);
CREATE TABLE artifacts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  path TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  task_id TEXT,
  created_at_ms INTEGER NOT NULL,
  content_file TEXT,
  size INTEGER
);
CREATE TABLE decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  title TEXT NOT NULL,
  summary TEXT NOT NULL,
  impact TEXT,
  task_id TEXT,
  created_at_ms INTEGER NOT NULL
);
"#,
        pg: r#"
CREATE TABLE meta (key TEXT COLLATE "C" PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta(key, value) VALUES ('revision', 0), ('rev_roadmap', 0), ('rev_context', 0),
  ('rev_checkpoint', 0), ('rev_critics', 0);
CREATE TABLE roadmap_meta (id BIGINT PRIMARY KEY CHECK (id = 1), extra TEXT NOT NULL DEFAULT '{}');
INSERT INTO roadmap_meta(id, extra) VALUES (1, '{}');
CREATE TABLE groups (
  idx BIGINT PRIMARY KEY,
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  title TEXT, description TEXT, status TEXT,
  parent BIGINT,
  extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE tasks (
  id TEXT COLLATE "C" PRIMARY KEY,
  ord BIGINT NOT NULL,
  title TEXT NOT NULL,
  description TEXT,
  status TEXT NOT NULL,
  priority BIGINT,
  owner TEXT,
  estimate_hours DOUBLE PRECISION,
  dependencies TEXT NOT NULL DEFAULT '[]',
  exit_criteria TEXT NOT NULL DEFAULT '[]',
  extra TEXT NOT NULL DEFAULT '{}',
  parent BIGINT,
  epic_id TEXT,
  milestone_id TEXT,
  version BIGINT NOT NULL DEFAULT 1,
  claimed_by TEXT,
  lease_expires_ms BIGINT,
  started_at_ms BIGINT,
  updated_at_ms BIGINT NOT NULL,
  notes TEXT
);
CREATE INDEX tasks_ord ON tasks(ord);
CREATE TABLE task_events (
  seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  task_id TEXT NOT NULL,
  at_ms BIGINT NOT NULL,
  actor TEXT,
  kind TEXT NOT NULL,
  from_status TEXT, to_status TEXT,
  version BIGINT NOT NULL,
  forced BIGINT NOT NULL DEFAULT 0,
  reason TEXT,
  data TEXT
);
CREATE INDEX task_events_task ON task_events(task_id, seq);
CREATE TABLE context_sections (
  name TEXT COLLATE "C" PRIMARY KEY,
  content TEXT NOT NULL,
  words BIGINT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  ord BIGINT NOT NULL
);
CREATE TABLE checkpoints (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  created_at_ms BIGINT NOT NULL,
  reason TEXT NOT NULL,
  data TEXT NOT NULL
);
CREATE TABLE critic_runs (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  status TEXT NOT NULL,
  exit_code BIGINT,
  command TEXT NOT NULL,
  started_at_ms BIGINT NOT NULL,
  finished_at_ms BIGINT NOT NULL,
  duration_ms BIGINT NOT NULL,
  output_tail TEXT NOT NULL,
  trigger TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX critic_runs_name ON critic_runs(name, finished_at_ms);
CREATE TABLE artifacts (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  path TEXT,
  metadata TEXT NOT NULL DEFAULT '{}',
  task_id TEXT,
  created_at_ms BIGINT NOT NULL,
  content_file TEXT,
  size BIGINT
);
CREATE TABLE decisions (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  title TEXT NOT NULL,
  summary TEXT NOT NULL,
  impact TEXT,
  task_id TEXT,
  created_at_ms BIGINT NOT NULL
);
"#,
    },
    // 2: live flags with a change history
    Migration {
        version: 2,
        name: "live_flags",
        phase: Phase::Expand,
        sql: r#"
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  updated_by TEXT
);
CREATE TABLE settings_history (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL,
  old_value TEXT,
  new_value TEXT,
  at_ms INTEGER NOT NULL,
  actor TEXT
);
INSERT INTO meta(key, value) VALUES ('rev_flags', 0);
"#,
        pg: r#"
CREATE TABLE settings (
  key TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at_ms BIGINT NOT NULL,
  updated_by TEXT
);
CREATE TABLE settings_history (
  seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  key TEXT NOT NULL,
  old_value TEXT,
  new_value TEXT,
  at_ms BIGINT NOT NULL,
  actor TEXT
);
INSERT INTO meta(key, value) VALUES ('rev_flags', 0);
"#,
    },
    // 3: idempotency keys: a retried mutation returns the recorded result
    Migration {
        version: 3,
        name: "idempotency_keys",
        phase: Phase::Expand,
        sql: r#"
CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  tool TEXT NOT NULL,
  args_hash TEXT NOT NULL,
  state TEXT NOT NULL,              -- pending | done
  owner_pid INTEGER NOT NULL,
  result TEXT,
  is_error INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER
);
CREATE INDEX idempotency_created ON idempotency(created_at_ms);
"#,
        pg: r#"
CREATE TABLE idempotency (
  key TEXT PRIMARY KEY,
  tool TEXT NOT NULL,
  args_hash TEXT NOT NULL,
  state TEXT NOT NULL,
  owner_pid BIGINT NOT NULL,
  result TEXT,
  is_error BIGINT NOT NULL DEFAULT 0,
  created_at_ms BIGINT NOT NULL,
  finished_at_ms BIGINT
);
CREATE INDEX idempotency_created ON idempotency(created_at_ms);
"#,
    },
    // 4: the journal of a keyed call: what each of its store writes returned,
    // committed in the same transaction as the write itself
    Migration {
        version: 4,
        name: "idempotency_journal",
        phase: Phase::Expand,
        sql: r#"
ALTER TABLE idempotency ADD COLUMN journal TEXT;
"#,
        pg: "",
    },
    // 5: the migration ledger and the compatibility floor
    Migration {
        version: 5,
        name: "migration_ledger",
        phase: Phase::Expand,
        sql: r#"
CREATE TABLE schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  phase TEXT NOT NULL,              -- expand | contract
  applied_at_ms INTEGER NOT NULL,
  applied_by TEXT NOT NULL
);
INSERT INTO schema_migrations(version, name, phase, applied_at_ms, applied_by) VALUES
  (1, 'initial', 'expand', 0, 'ledger backfill'),
  (2, 'live_flags', 'expand', 0, 'ledger backfill'),
  (3, 'idempotency_keys', 'expand', 0, 'ledger backfill'),
  (4, 'idempotency_journal', 'expand', 0, 'ledger backfill');
INSERT INTO meta(key, value) VALUES ('schema_floor', 0);
"#,
        pg: r#"
CREATE TABLE schema_migrations (
  version BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  phase TEXT NOT NULL,
  applied_at_ms BIGINT NOT NULL,
  applied_by TEXT NOT NULL
);
INSERT INTO schema_migrations(version, name, phase, applied_at_ms, applied_by) VALUES
  (1, 'initial', 'expand', 0, 'ledger backfill'),
  (2, 'live_flags', 'expand', 0, 'ledger backfill'),
  (3, 'idempotency_keys', 'expand', 0, 'ledger backfill'),
  (4, 'idempotency_journal', 'expand', 0, 'ledger backfill');
INSERT INTO meta(key, value) VALUES ('schema_floor', 0);
"#,
    },
    // 6: dispatch — attempts (the cost ledger), provider health, budget alerts
    Migration {
        version: 6,
        name: "dispatch",
        phase: Phase::Expand,
        sql: r#"
CREATE TABLE dispatch_attempts (
  id INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  runner TEXT NOT NULL,             -- host:pid:slot of the `vane run` that made it
  runner_pid INTEGER NOT NULL,
  agent_pgid INTEGER,               -- the agent's process group, once started
  env TEXT NOT NULL,                -- VANE_ENV
  provider TEXT NOT NULL,
  model TEXT,
  started_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER,
  outcome TEXT NOT NULL DEFAULT 'running',
  exit_status INTEGER,
  session_id TEXT,
  input_tokens INTEGER NOT NULL DEFAULT 0,
  cached_input_tokens INTEGER NOT NULL DEFAULT 0,
  cache_write_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  estimate_micros INTEGER NOT NULL DEFAULT 0,   -- vane's price table
  reported_micros INTEGER,                      -- the provider's own figure
  cost_micros INTEGER NOT NULL DEFAULT 0,       -- what budgets count: reported, else estimate
  ceiling_micros INTEGER NOT NULL,              -- reserved while running
  priced INTEGER NOT NULL DEFAULT 1,
  num_turns INTEGER,
  transcript_artifact INTEGER,
  error TEXT,
  detail TEXT NOT NULL DEFAULT '{}'
);
-- covers the budget check and `vane cost summary` (no table reads)
CREATE INDEX dispatch_attempts_ledger ON dispatch_attempts(env, started_at_ms, provider, model, task_id, outcome,
  input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost_micros, estimate_micros,
  reported_micros, priced, ceiling_micros);
CREATE INDEX dispatch_attempts_task ON dispatch_attempts(task_id);
CREATE INDEX dispatch_attempts_running ON dispatch_attempts(outcome) WHERE outcome = 'running';
CREATE TABLE provider_health (
  provider TEXT PRIMARY KEY,
  data TEXT NOT NULL,               -- vane_core::dispatch::ProviderHealth
  updated_at_ms INTEGER NOT NULL
);
CREATE TABLE budget_alerts (
  env TEXT NOT NULL,
  scope TEXT NOT NULL,              -- total | a provider
  window TEXT NOT NULL,             -- hour | day | month
  window_start_ms INTEGER NOT NULL,
  level TEXT NOT NULL,              -- warning (80 %) | critical (100 %)
  at_ms INTEGER NOT NULL,
  spent_micros INTEGER NOT NULL,
  limit_micros INTEGER NOT NULL,
  PRIMARY KEY (env, scope, window, window_start_ms, level)
);
"#,
        pg: r#"
CREATE TABLE dispatch_attempts (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  task_id TEXT COLLATE "C" NOT NULL,
  runner TEXT NOT NULL,
  runner_pid BIGINT NOT NULL,
  agent_pgid BIGINT,
  env TEXT NOT NULL,
  provider TEXT COLLATE "C" NOT NULL,
  model TEXT COLLATE "C",
  started_at_ms BIGINT NOT NULL,
  finished_at_ms BIGINT,
  outcome TEXT COLLATE "C" NOT NULL DEFAULT 'running',
  exit_status BIGINT,
  session_id TEXT,
  input_tokens BIGINT NOT NULL DEFAULT 0,
  cached_input_tokens BIGINT NOT NULL DEFAULT 0,
  cache_write_tokens BIGINT NOT NULL DEFAULT 0,
  output_tokens BIGINT NOT NULL DEFAULT 0,
  estimate_micros BIGINT NOT NULL DEFAULT 0,
  reported_micros BIGINT,
  cost_micros BIGINT NOT NULL DEFAULT 0,
  ceiling_micros BIGINT NOT NULL,
  priced BIGINT NOT NULL DEFAULT 1,
  num_turns BIGINT,
  transcript_artifact BIGINT,
  error TEXT,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX dispatch_attempts_ledger ON dispatch_attempts(env, started_at_ms, provider, model, task_id, outcome,
  input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, cost_micros, estimate_micros,
  reported_micros, priced, ceiling_micros);
CREATE INDEX dispatch_attempts_task ON dispatch_attempts(task_id);
CREATE INDEX dispatch_attempts_running ON dispatch_attempts(outcome) WHERE outcome = 'running';
CREATE TABLE provider_health (
  provider TEXT COLLATE "C" PRIMARY KEY,
  data TEXT NOT NULL,
  updated_at_ms BIGINT NOT NULL
);
CREATE TABLE budget_alerts (
  env TEXT NOT NULL,
  scope TEXT NOT NULL,
  "window" TEXT NOT NULL,
  window_start_ms BIGINT NOT NULL,
  level TEXT NOT NULL,
  at_ms BIGINT NOT NULL,
  spent_micros BIGINT NOT NULL,
  limit_micros BIGINT NOT NULL,
  PRIMARY KEY (env, scope, "window", window_start_ms, level)
);
"#,
    },
    // 7: an idempotency key is owned by a lease (owner id + expiry, renewed
    // while its call runs), not by a pid: a pid means nothing on another host
    Migration {
        version: 7,
        name: "idempotency_lease",
        phase: Phase::Expand,
        sql: r#"
ALTER TABLE idempotency ADD COLUMN owner TEXT;
ALTER TABLE idempotency ADD COLUMN lease_expires_ms INTEGER;
"#,
        pg: r#"
ALTER TABLE idempotency ADD COLUMN owner TEXT;
ALTER TABLE idempotency ADD COLUMN lease_expires_ms BIGINT;
"#,
    },
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

use rusqlite::{Connection, TransactionBehavior};
use serde_json::json;
use vane_core::{ErrorCode, VaneError};

use crate::sql::{one, one_opt, p, Engine, Sql};
use crate::sqlite::{db_err, Lite};
use crate::store::{now_ms, Result};

/// A migration as reported: its version, name and phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationRef {
    pub version: i64,
    pub name: String,
    pub phase: Phase,
}

impl From<&Migration> for MigrationRef {
    fn from(m: &Migration) -> Self {
        MigrationRef {
            version: m.version,
            name: m.name.to_string(),
            phase: m.phase,
        }
    }
}

/// Where a store stands relative to one binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaInfo {
    /// The store's schema version (`PRAGMA user_version`).
    pub store_version: i64,
    /// The lowest schema version a binary must know to use the store.
    pub floor: i64,
    /// The newest schema version this binary knows.
    pub supported: i64,
    /// Known to this binary, not yet applied, in order.
    pub pending: Vec<MigrationRef>,
    /// Applied to the store, unknown to this binary (a newer version's).
    pub unknown: Vec<MigrationRef>,
    /// `None` when this binary can use the store; otherwise why not.
    pub incompatible: Option<String>,
}

impl SchemaInfo {
    /// The pending migrations a live store may take now: everything up to,
    /// not including, the first contract one.
    pub fn pending_before_contract(&self) -> Vec<&MigrationRef> {
        self.pending
            .iter()
            .take_while(|m| m.phase == Phase::Expand)
            .collect()
    }
    pub fn has_pending_contract(&self) -> bool {
        self.pending.iter().any(|m| m.phase == Phase::Contract)
    }
    pub fn error(&self) -> Option<VaneError> {
        let why = self.incompatible.as_ref()?;
        Some(
            VaneError::new(ErrorCode::SchemaIncompatible, why.clone()).with_details(json!({
                "store_schema": self.store_version,
                "floor": self.floor,
                "supported": self.supported,
                "unknown": self.unknown,
            })),
        )
    }
}

/// One applied migration and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub phase: Phase,
    pub ms: f64,
}

/// How far [`apply`] may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Up to the first contract migration (a brand-new store takes all).
    Expand,
    /// Everything, contract included.
    All,
}

pub(crate) fn table_exists(db: &mut dyn Sql, name: &str) -> Result<bool> {
    let sql = match db.engine() {
        Engine::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        Engine::Postgres => {
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?1"
        }
    };
    Ok(db.query_opt(sql, p![name])?.is_some())
}

/// The store's schema version: `PRAGMA user_version` on SQLite, the
/// `schema_version` row of `meta` on PostgreSQL (0 for an empty database).
pub fn store_version(db: &mut dyn Sql) -> Result<i64> {
    match db.engine() {
        Engine::Sqlite => one(db, "PRAGMA user_version", p![]),
        Engine::Postgres => {
            if !table_exists(db, "meta")? {
                return Ok(0);
            }
            Ok(one_opt(
                db,
                "SELECT value FROM meta WHERE key = 'schema_version'",
                p![],
            )?
            .unwrap_or(0))
        }
    }
}

/// Reads where the store stands against `known` (in version order 1..=n).
pub fn inspect(db: &mut dyn Sql, known: &[Migration]) -> Result<SchemaInfo> {
    let store_version = store_version(db)?;
    let supported = known.len() as i64;
    let mut applied: Vec<MigrationRef> = Vec::new();
    let mut floor = 0;
    if table_exists(db, "schema_migrations")? {
        for r in db.query(
            "SELECT version, name, phase FROM schema_migrations ORDER BY version",
            p![],
        )? {
            let phase = if r.str(2) == "contract" {
                Phase::Contract
            } else {
                Phase::Expand
            };
            applied.push(MigrationRef {
                version: r.get(0)?,
                name: r.get(1)?,
                phase,
            });
        }
        floor = one_opt(
            db,
            "SELECT value FROM meta WHERE key = 'schema_floor'",
            p![],
        )?
        .unwrap_or(0);
    }
    let pending: Vec<MigrationRef> = known
        .iter()
        .filter(|m| m.version > store_version)
        .map(MigrationRef::from)
        .collect();
    let unknown: Vec<MigrationRef> = applied
        .iter()
        .filter(|m| m.version > supported)
        .cloned()
        .collect();
    let mut incompatible = None;
    // the same version number must be the same migration: another lineage's
    // schema (a fork, a reverted branch) is not ours to read or write
    for a in &applied {
        if let Some(k) = known.iter().find(|k| k.version == a.version) {
            if k.name != a.name {
                incompatible = Some(format!(
                    "store migration {} is '{}' but this vane's migration {} is '{}': the store was written by a different line of vane",
                    a.version, a.name, k.version, k.name
                ));
                break;
            }
        }
    }
    if incompatible.is_none() && floor > supported {
        let contracts: Vec<String> = unknown
            .iter()
            .filter(|m| m.phase == Phase::Contract)
            .map(|m| format!("{} '{}'", m.version, m.name))
            .collect();
        incompatible = Some(format!(
            "store schema {store_version} needs a vane that knows schema {floor} or newer (contracting migration {} applied); this vane knows schema {supported}: run the newer vane",
            contracts.join(", ")
        ));
    } else if incompatible.is_none() && store_version > supported && unknown.is_empty() {
        // newer than us with no ledger of what it is: cannot tell it is additive
        incompatible = Some(format!(
            "store schema version {store_version} is newer than this vane understands ({supported}) and records no migration ledger; upgrade vane"
        ));
    }
    Ok(SchemaInfo {
        store_version,
        floor,
        supported,
        pending,
        unknown,
        incompatible,
    })
}

/// Applies the pending migrations of `known` to a SQLite database up to
/// `reach`, all in one exclusive transaction with their ledger rows.
/// Returns what it applied.
pub fn apply_sqlite(
    conn: &mut Connection,
    known: &[Migration],
    reach: Reach,
    actor: &str,
) -> Result<Vec<Applied>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(db_err)?;
    let done = apply_in(&mut Lite(&tx), known, reach, actor)?;
    tx.commit().map_err(db_err)?;
    Ok(done)
}

/// The migrations themselves, inside the caller's transaction (which holds
/// the engine's migration lock).
pub(crate) fn apply_in(
    db: &mut dyn Sql,
    known: &[Migration],
    reach: Reach,
    actor: &str,
) -> Result<Vec<Applied>> {
    // re-read under the lock: another process may have migrated meanwhile
    let info = inspect(db, known)?;
    if let Some(e) = info.error() {
        return Err(e);
    }
    let fresh = info.store_version == 0;
    let mut done = Vec::new();
    for m in known.iter().filter(|m| m.version > info.store_version) {
        if m.phase == Phase::Contract && reach == Reach::Expand && !fresh {
            break;
        }
        let t = std::time::Instant::now();
        db.batch(m.sql_for(db.engine())).map_err(|e| {
            VaneError::new(
                ErrorCode::StoreError,
                format!("migration {} '{}' failed: {}", m.version, m.name, e.message),
            )
            .with_details(json!({ "migration": m.version, "name": m.name, "phase": m.phase }))
        })?;
        set_store_version(db, m.version)?;
        if table_exists(db, "schema_migrations")? {
            db.exec(
                "INSERT INTO schema_migrations(version, name, phase, applied_at_ms, applied_by) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(version) DO UPDATE SET name = excluded.name, phase = excluded.phase,
                   applied_at_ms = excluded.applied_at_ms, applied_by = excluded.applied_by",
                p![m.version, m.name, m.phase.as_str(), now_ms(), actor],
            )?;
            if m.phase == Phase::Contract {
                db.exec(
                    "UPDATE meta SET value = CASE WHEN value > ?1 THEN value ELSE ?1 END WHERE key = 'schema_floor'",
                    p![m.version],
                )?;
            }
        }
        done.push(Applied {
            version: m.version,
            name: m.name.to_string(),
            phase: m.phase,
            ms: t.elapsed().as_secs_f64() * 1000.0,
        });
    }
    Ok(done)
}

/// The advisory lock PostgreSQL migrations run under (one at a time per
/// database, whichever host runs them).
const PG_MIGRATION_LOCK: i64 = 0x7661_6e65_6d69_6772; // "vanemigr"

/// Applies the pending migrations of `known` to a PostgreSQL database up to
/// `reach`, in one transaction (PostgreSQL's DDL is transactional) that
/// holds the migration lock. With `rehearse`, the transaction is rolled
/// back at the end: what would be applied, tried for real, nothing kept.
pub(crate) fn apply_pg(
    pg: &crate::pg::Pg,
    known: &[Migration],
    reach: Reach,
    actor: &str,
    rehearse: bool,
) -> Result<Vec<Applied>> {
    // a rehearsal ends in ROLLBACK: the undo is the point
    pg.transaction_ending("BEGIN", !rehearse, |db| {
        db.exec("SELECT pg_advisory_xact_lock(?1)", p![PG_MIGRATION_LOCK])?;
        apply_in(db, known, reach, actor)
    })
}

fn set_store_version(db: &mut dyn Sql, version: i64) -> Result<()> {
    match db.engine() {
        // PRAGMA takes no parameters; `version` is a number
        Engine::Sqlite => db.batch(&format!("PRAGMA user_version = {version}")),
        Engine::Postgres => db
            .exec(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                p![version],
            )
            .map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This binary's migrations plus a newer version's.
    fn newer(extra: &[Migration]) -> Vec<Migration> {
        MIGRATIONS.iter().chain(extra.iter()).copied().collect()
    }
    const TAGS: Migration = Migration {
        version: SCHEMA_VERSION + 1,
        name: "decision_tags",
        phase: Phase::Expand,
        sql: "ALTER TABLE decisions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';",
        pg: "",
    };
    const DROP_IMPACT: Migration = Migration {
        version: SCHEMA_VERSION + 2,
        name: "decisions_without_impact",
        phase: Phase::Contract,
        sql: "ALTER TABLE decisions DROP COLUMN impact;",
        pg: "",
    };
    const LATER: Migration = Migration {
        version: SCHEMA_VERSION + 3,
        name: "later",
        phase: Phase::Expand,
        sql: "CREATE TABLE later (x INTEGER);",
        pg: "",
    };

    fn store_at_current() -> (tempfile::TempDir, Connection) {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("vane.db")).unwrap();
        let done = apply_sqlite(&mut c, MIGRATIONS, Reach::Expand, "test").unwrap();
        assert_eq!(done.len(), MIGRATIONS.len());
        (d, c)
    }

    fn insert_decision(c: &Connection) -> rusqlite::Result<usize> {
        c.execute(
            "INSERT INTO decisions(title, summary, impact, created_at_ms) VALUES ('t', 's', 'i', 1)",
            [],
        )
    }

    #[test]
    fn a_fresh_store_takes_every_migration_and_records_them() {
        let d = tempfile::tempdir().unwrap();
        let mut c = Connection::open(d.path().join("vane.db")).unwrap();
        let known = newer(&[TAGS, DROP_IMPACT]);
        let done = apply_sqlite(&mut c, &known, Reach::Expand, "test").unwrap();
        assert_eq!(
            done.len(),
            known.len(),
            "nothing can depend on an empty store"
        );
        let info = inspect(&mut Lite(&c), &known).unwrap();
        assert_eq!(info.store_version, known.len() as i64);
        assert_eq!(info.floor, DROP_IMPACT.version);
        assert!(info.pending.is_empty() && info.incompatible.is_none());
        let n: i64 = c
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, known.len() as i64);
    }

    #[test]
    fn expand_stops_before_contract_and_older_code_keeps_working() {
        let (_d, mut c) = store_at_current();
        let known = newer(&[TAGS, DROP_IMPACT, LATER]);
        let before = inspect(&mut Lite(&c), &known).unwrap();
        assert_eq!(before.pending.len(), 3);
        assert_eq!(before.pending_before_contract().len(), 1);
        assert!(before.has_pending_contract());
        let done = apply_sqlite(&mut c, &known, Reach::Expand, "test").unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].name, "decision_tags");
        // this binary (the older one now) sees a newer, compatible store
        let old = inspect(&mut Lite(&c), MIGRATIONS).unwrap();
        assert_eq!(old.store_version, TAGS.version);
        assert_eq!(old.unknown.len(), 1);
        assert!(old.incompatible.is_none(), "{old:?}");
        assert!(old.pending.is_empty());
        insert_decision(&c).expect("older code still writes");
        // applying again with this binary's list changes nothing
        assert!(apply_sqlite(&mut c, MIGRATIONS, Reach::All, "old")
            .unwrap()
            .is_empty());

        // the contract step: the floor rises past the older binary
        let done = apply_sqlite(&mut c, &known, Reach::All, "test").unwrap();
        let names: Vec<_> = done.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["decisions_without_impact", "later"]);
        let old = inspect(&mut Lite(&c), MIGRATIONS).unwrap();
        assert_eq!(old.floor, DROP_IMPACT.version);
        let e = old.error().expect("the older binary refuses");
        assert_eq!(e.code, ErrorCode::SchemaIncompatible);
        assert!(
            e.message.contains("decisions_without_impact"),
            "{}",
            e.message
        );
        assert!(apply_sqlite(&mut c, MIGRATIONS, Reach::Expand, "old").is_err());
        assert!(
            insert_decision(&c).is_err(),
            "the contracted column is gone"
        );
    }

    #[test]
    fn a_failing_migration_leaves_the_store_as_it_was() {
        let (_d, mut c) = store_at_current();
        let broken = Migration {
            version: SCHEMA_VERSION + 2,
            name: "broken",
            phase: Phase::Expand,
            sql: "CREATE TABLE half (x INTEGER); ALTER TABLE no_such_table ADD COLUMN y TEXT;",
            pg: "",
        };
        let known = newer(&[TAGS, broken]);
        let e = apply_sqlite(&mut c, &known, Reach::Expand, "test").unwrap_err();
        assert_eq!(e.code, ErrorCode::StoreError);
        assert!(
            e.message.contains("migration") && e.message.contains("broken"),
            "{}",
            e.message
        );
        let info = inspect(&mut Lite(&c), MIGRATIONS).unwrap();
        assert_eq!(
            info.store_version, SCHEMA_VERSION,
            "not even the good one before it"
        );
        assert!(!table_exists(&mut Lite(&c), "half").unwrap());
        let cols: i64 = c
            .query_row(
                "SELECT count(*) FROM pragma_table_info('decisions') WHERE name = 'tags'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(cols, 0);
    }

    #[test]
    fn another_line_of_vane_or_an_unledgered_newer_store_is_refused() {
        let (_d, mut c) = store_at_current();
        let fork = Migration {
            name: "something_else",
            ..TAGS
        };
        apply_sqlite(&mut c, &newer(&[fork]), Reach::Expand, "fork").unwrap();
        let e = inspect(&mut Lite(&c), &newer(&[TAGS]))
            .unwrap()
            .error()
            .unwrap();
        assert!(e.message.contains("different line"), "{}", e.message);

        let (_d2, c2) = store_at_current();
        c2.execute("DELETE FROM schema_migrations WHERE version > 4", [])
            .unwrap();
        c2.pragma_update(None, "user_version", SCHEMA_VERSION + 4)
            .unwrap();
        let e = inspect(&mut Lite(&c2), MIGRATIONS)
            .unwrap()
            .error()
            .unwrap();
        assert!(e.message.contains("newer than this vane"), "{}", e.message);
    }

    /// PostgreSQL: a rehearsal applies and undoes; a failing migration leaves
    /// the database as it was (its DDL is transactional).
    #[test]
    fn postgres_rehearsals_and_failures_leave_the_schema_as_it_was() {
        let Some(cluster) = testpg::Cluster::shared() else {
            return;
        };
        let db = cluster.database();
        let pg = crate::pg::Pg::open(&crate::PgTarget::parse(&db.url, None).unwrap());
        let done = apply_pg(&pg, MIGRATIONS, Reach::Expand, "test", false).unwrap();
        assert_eq!(done.len(), MIGRATIONS.len());
        let version = |pg: &crate::pg::Pg| {
            inspect(&mut *pg.conn().unwrap(), MIGRATIONS)
                .unwrap()
                .store_version
        };
        assert_eq!(version(&pg), SCHEMA_VERSION);
        let has_tags = || {
            db.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'decisions' AND column_name = 'tags'")
        };

        let known = newer(&[TAGS, DROP_IMPACT]);
        let tried = apply_pg(&pg, &known, Reach::All, "test", true).unwrap();
        let names: Vec<_> = tried.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["decision_tags", "decisions_without_impact"]);
        assert_eq!(version(&pg), SCHEMA_VERSION, "a rehearsal keeps nothing");
        assert_eq!(has_tags(), "0");

        let broken = Migration {
            version: SCHEMA_VERSION + 2,
            name: "broken",
            phase: Phase::Expand,
            sql: "",
            pg: "CREATE TABLE half (x BIGINT); ALTER TABLE no_such_table ADD COLUMN y TEXT;",
        };
        let e = apply_pg(&pg, &newer(&[TAGS, broken]), Reach::Expand, "test", false).unwrap_err();
        assert!(e.message.contains("broken"), "{}", e.message);
        assert_eq!(
            version(&pg),
            SCHEMA_VERSION,
            "not even the good one before it"
        );
        assert_eq!(has_tags(), "0");
        assert_eq!(
            db.psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'half'"),
            "0"
        );

        let done = apply_pg(&pg, &known, Reach::Expand, "test", false).unwrap();
        assert_eq!(done.len(), 1, "expand stops before contract");
        assert_eq!(version(&pg), SCHEMA_VERSION + 1);
        assert_eq!(has_tags(), "1");
        let old = inspect(&mut *pg.conn().unwrap(), MIGRATIONS).unwrap();
        assert!(
            old.incompatible.is_none() && old.unknown.len() == 1,
            "{old:?}"
        );
        apply_pg(&pg, &known, Reach::All, "test", false).unwrap();
        let e = inspect(&mut *pg.conn().unwrap(), MIGRATIONS)
            .unwrap()
            .error()
            .unwrap();
        assert_eq!(e.code, ErrorCode::SchemaIncompatible);
    }
}

#[cfg(test)]
#[path = "../tests/common/pg.rs"]
mod testpg;
