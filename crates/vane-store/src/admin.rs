//! Operating on a store as a whole, whichever its engine: where its schema
//! stands, migrating it, rehearsing a migration, and moving a SQLite store
//! into PostgreSQL (`vane store copy`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use vane_core::{ErrorCode, VaneError};

use crate::pg::{Pg, PgTarget};
use crate::schema::{self, Reach, SchemaInfo, MIGRATIONS};
use crate::sql::{one, p, Sql, Val};
use crate::sqlite::{db_err, Lite};
use crate::store::{migrate_db, migration_actor, prepare_schema, schema_info_of, MigrateReport};
use crate::{OpenMode, Result, StatePaths};

/// Where the store of `paths` stands against this binary (nothing changed).
pub fn schema_info_at(paths: &StatePaths) -> Result<SchemaInfo> {
    match &paths.store {
        None => schema_info_of(&paths.db()),
        Some(t) => {
            let pg = Pg::open(t);
            let mut c = pg.conn()?;
            schema::inspect(&mut *c, MIGRATIONS)
        }
    }
}

/// `vane migrate` on the store of `paths`: its pending migrations up to
/// `reach`, then a check. A missing SQLite file is `not_found`; an empty
/// PostgreSQL database takes the whole schema.
pub fn migrate_at(paths: &StatePaths, reach: Reach) -> Result<MigrateReport> {
    match &paths.store {
        None => migrate_db(&paths.db(), reach),
        Some(t) => migrate_pg(t, reach, false),
    }
}

/// Applies every pending migration of this binary (contract included) to the
/// store of `paths` and undoes it: on PostgreSQL in one transaction that is
/// rolled back (its DDL is transactional), on SQLite on a private copy.
/// What a new version's migrations would do to the live store, tried for
/// real, nothing kept.
pub fn rehearse_at(paths: &StatePaths, scratch: &Path) -> Result<MigrateReport> {
    match &paths.store {
        None => {
            let copy = scratch.join("vane.db");
            let store = crate::Store::open_mode(paths, OpenMode::Front)?;
            store.snapshot(&copy)?;
            drop(store);
            let mut r = migrate_db(&copy, Reach::All)?;
            r.db = paths.db().display().to_string();
            Ok(r)
        }
        Some(t) => migrate_pg(t, Reach::All, true),
    }
}

fn migrate_pg(target: &PgTarget, reach: Reach, rehearse: bool) -> Result<MigrateReport> {
    let pg = Pg::open(target);
    let before = {
        let mut c = pg.conn()?;
        schema::inspect(&mut *c, MIGRATIONS)?
    };
    if let Some(e) = before.error() {
        return Err(e);
    }
    let applied = schema::apply_pg(&pg, MIGRATIONS, reach, &migration_actor(), rehearse)?;
    let mut c = pg.conn()?;
    let after = schema::inspect(&mut *c, MIGRATIONS)?;
    // PostgreSQL keeps its own pages consistent; what vane can check is
    // that every table of its schema answers
    let mut problems = Vec::new();
    for t in tables(&mut *c)? {
        if let Err(e) = one::<i64>(&mut *c, &format!("SELECT count(*) FROM \"{t}\""), p![]) {
            problems.push(format!("{t}: {}", e.message));
        }
    }
    let integrity = if problems.is_empty() {
        "ok".to_string()
    } else {
        problems.join("; ")
    };
    let ok = integrity == "ok" && after.incompatible.is_none();
    Ok(MigrateReport {
        db: target.shown().to_string(),
        before,
        applied,
        after,
        integrity,
        foreign_key_violations: 0,
        ok,
    })
}

/// The tables of vane's schema in a database (sorted).
fn tables(db: &mut dyn Sql) -> Result<Vec<String>> {
    let sql = match db.engine() {
        crate::Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        crate::Engine::Postgres => {
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        }
    };
    Ok(db
        .query(sql, p![])?
        .iter()
        .map(|r| r.str(0).to_string())
        .collect())
}

/// What `vane store copy` did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub from: String,
    pub to: String,
    pub schema_version: i64,
    /// rows per table: copied, and counted again in the destination
    pub tables: BTreeMap<String, TableCopy>,
    pub rows: i64,
    /// the store revision, read back from both sides
    pub revision: i64,
    pub ms: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableCopy {
    pub source: i64,
    pub destination: i64,
}

/// Tables whose rows the destination's own migrations wrote: merged key by
/// key, not inserted.
const MERGED: &[&str] = &["meta", "roadmap_meta", "schema_migrations"];

/// Copies the SQLite store `db` into the empty PostgreSQL database of
/// `target` (migrated here to the same schema first), in one transaction,
/// and verifies it: every table's row count and every `meta` revision read
/// back from both sides. The source is read in one read transaction, so a
/// store in use is copied as of one instant (stop the fronts first, or the
/// copy misses what they write after it).
pub fn copy_to_postgres(db: &Path, target: &PgTarget) -> Result<CopyReport> {
    let t0 = std::time::Instant::now();
    if !db.is_file() {
        return Err(VaneError::new(
            ErrorCode::NotFound,
            format!("no SQLite store at {}", db.display()),
        ));
    }
    let src_conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err)?;
    src_conn
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    let src_tx = src_conn.unchecked_transaction().map_err(db_err)?;
    let mut src = Lite(&src_tx);
    let info = schema::inspect(&mut src, MIGRATIONS)?;
    if let Some(e) = info.error() {
        return Err(e);
    }
    if !info.pending.is_empty() || !info.unknown.is_empty() {
        return Err(VaneError::new(
            ErrorCode::SchemaIncompatible,
            format!(
                "the SQLite store is at schema {} and this vane at {}: run `vane migrate` (with this vane) on it first",
                info.store_version, info.supported
            ),
        ));
    }

    let pg = Pg::open(target);
    {
        let mut c = pg.conn()?;
        let dinfo = schema::inspect(&mut *c, MIGRATIONS)?;
        if prepare_schema(&dinfo, OpenMode::Write)? {
            drop(c);
            schema::apply_pg(&pg, MIGRATIONS, Reach::All, &migration_actor(), false)?;
        }
    }
    let mut report = CopyReport {
        from: db.display().to_string(),
        to: target.shown().to_string(),
        schema_version: info.store_version,
        tables: BTreeMap::new(),
        rows: 0,
        revision: one(
            &mut src,
            "SELECT value FROM meta WHERE key = 'revision'",
            p![],
        )?,
        ms: 0.0,
        ok: false,
    };
    let src_tables = tables(&mut src)?;
    pg.transaction("BEGIN", |dst| {
        // one copy at a time, and never over a store that is in use
        dst.exec("LOCK TABLE meta IN EXCLUSIVE MODE", p![])?;
        let dst_info = schema::inspect(dst, MIGRATIONS)?;
        if dst_info.store_version != info.store_version {
            return Err(VaneError::new(
                ErrorCode::SchemaIncompatible,
                format!(
                    "the destination is at schema {}, the source at {}",
                    dst_info.store_version, info.store_version
                ),
            ));
        }
        let rev: i64 = one(dst, "SELECT value FROM meta WHERE key = 'revision'", p![])?;
        let tasks: i64 = one(dst, "SELECT count(*) FROM tasks", p![])?;
        if rev != 0 || tasks != 0 {
            return Err(VaneError::new(
                ErrorCode::AlreadyExists,
                format!(
                    "{} already holds a store (revision {rev}, {tasks} tasks); copy into an empty database",
                    target.shown()
                ),
            ));
        }
        let dst_tables = tables(dst)?;
        for t in &src_tables {
            if !dst_tables.contains(t) {
                return Err(VaneError::new(
                    ErrorCode::StoreError,
                    format!("the destination has no table `{t}`"),
                ));
            }
            if t == "schema_migrations" {
                continue; // the destination's ledger, written by the same migrations
            }
            let cols: Vec<String> = src
                .query(&format!("SELECT name FROM pragma_table_info('{t}') ORDER BY cid"), p![])?
                .iter()
                .map(|r| r.str(0).to_string())
                .collect();
            let list = cols
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");

            let insert = if MERGED.contains(&t.as_str()) {
                let key = if t == "meta" { "key" } else { "id" };
                let set = cols
                    .iter()
                    .filter(|c| c.as_str() != key)
                    .map(|c| format!("\"{c}\" = excluded.\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "INSERT INTO \"{t}\"({list}) VALUES ({}) ON CONFLICT(\"{key}\") DO UPDATE SET {set}",
                    placeholders(cols.len())
                )
            } else {
                format!("INSERT INTO \"{t}\"({list}) VALUES ({})", placeholders(cols.len()))
            };
            let mut copied = 0i64;
            src.query_each(&format!("SELECT {list} FROM \"{t}\""), p![], &mut |r| {
                if t == "meta" && r.str(0) == "schema_version" {
                    return Ok(());
                }
                dst.exec(&insert, &r.0)?;
                copied += 1;
                Ok(())
            })?;
            report.rows += copied;
            // identity columns continue after the copied ids
            for (col, seq) in identity_columns(dst, t)? {
                dst.exec(
                    &format!(
                        "SELECT setval(CAST(?1 AS TEXT)::regclass, coalesce((SELECT max(\"{col}\") FROM \"{t}\"), 0) + 1, false)"
                    ),
                    p![seq],
                )?;
            }
            let source: i64 = one(&mut src, &count_sql(t), p![])?;
            let destination: i64 = one(dst, &count_sql(t), p![])?;
            report.tables.insert(t.clone(), TableCopy { source, destination });
        }
        // verified inside the transaction: a mismatch commits nothing
        let mismatched: Vec<&String> = report
            .tables
            .iter()
            .filter(|(_, c)| c.source != c.destination)
            .map(|(t, _)| t)
            .collect();
        let src_meta = meta_of(&mut src)?;
        let dst_meta = meta_of(dst)?;
        if !mismatched.is_empty() || src_meta != dst_meta {
            return Err(VaneError::new(
                ErrorCode::StoreError,
                format!(
                    "the copy does not match its source (tables {mismatched:?}, revisions {src_meta:?} vs {dst_meta:?}); nothing was committed"
                ),
            ));
        }
        Ok(())
    })?;
    // read back after commit, through a fresh connection
    let mut c = pg.conn()?;
    let revision: i64 = one(
        &mut *c,
        "SELECT value FROM meta WHERE key = 'revision'",
        p![],
    )?;
    for (t, tc) in report.tables.iter_mut() {
        tc.destination = one(&mut *c, &count_sql(t), p![])?;
    }
    report.ok =
        revision == report.revision && report.tables.iter().all(|(_, c)| c.source == c.destination);
    report.ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !report.ok {
        return Err(VaneError::new(
            ErrorCode::StoreError,
            "the copy read back differently from its source",
        )
        .with_details(json!(report)));
    }
    Ok(report)
}

/// Rows of `table` that a copy carries (`meta`'s schema version is each
/// engine's own).
fn count_sql(table: &str) -> String {
    if table == "meta" {
        "SELECT count(*) FROM meta WHERE key <> 'schema_version'".into()
    } else {
        format!("SELECT count(*) FROM \"{table}\"")
    }
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(column, sequence)` of each identity column of `table` (PostgreSQL).
fn identity_columns(db: &mut dyn Sql, table: &str) -> Result<Vec<(String, String)>> {
    let rows = db.query(
        "SELECT column_name::text, pg_get_serial_sequence(?1, column_name::text)::text
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name::text = ?1 AND is_identity = 'YES'",
        p![table],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| match (&r.0[0], &r.0[1]) {
            (Val::Text(c), Val::Text(s)) => Some((c.clone(), s.clone())),
            _ => None,
        })
        .collect())
}

/// The revisions in `meta` (not the schema version, which lives elsewhere on SQLite).
fn meta_of(db: &mut dyn Sql) -> Result<BTreeMap<String, i64>> {
    let mut m = BTreeMap::new();
    for r in db.query("SELECT key, value FROM meta", p![])? {
        if r.str(0) != "schema_version" {
            m.insert(r.str(0).to_string(), r.get(1)?);
        }
    }
    Ok(m)
}
