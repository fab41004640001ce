//! Schema migrations. `PRAGMA user_version` is the schema version; each entry
//! of [`MIGRATIONS`] moves it up by one inside a transaction. A store whose
//! version is newer than this binary knows is refused, never written.

pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
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
    // 2: live flags with a change history
    r#"
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
    // 3: idempotency keys: a retried mutation returns the recorded result
    r#"
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
    // 4: the journal of a keyed call: what each of its store writes returned,
    // committed in the same transaction as the write itself
    r#"
ALTER TABLE idempotency ADD COLUMN journal TEXT;
"#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
