//! SQLite behind [`Sql`]: the default engine, one file per workspace.
//!
//! What it guarantees: one process-wide connection per store, WAL mode,
//! every write one `BEGIN IMMEDIATE` transaction (writers from several
//! processes on one machine are serialized by SQLite's lock, readers never
//! block), statements prepared once and cached.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;
use serde_json::json;
use vane_core::{ErrorCode, VaneError};

use crate::sql::{Engine, Row, Sql, Val};
use crate::store::Result;

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

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Real(f) => ValueRef::Real(*f),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
            Val::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn val_of(v: ValueRef<'_>) -> Val {
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(f) => Val::Real(f),
        ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Val::Blob(b.to_vec()),
    }
}

/// A SQLite connection (or a transaction, which derefs to one) as [`Sql`].
pub(crate) struct Lite<'a>(pub &'a Connection);

impl Sql for Lite<'_> {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64> {
        let mut st = self.0.prepare_cached(sql).map_err(db_err)?;
        let n = st
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(db_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        let mut st = self.0.prepare_cached(sql).map_err(db_err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(db_err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(db_err)? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(val_of(r.get_ref(i).map_err(db_err)?));
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.execute_batch(sql).map_err(db_err)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Val],
        each: &mut dyn FnMut(&Row) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.0.prepare_cached(sql).map_err(db_err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(db_err)?;
        let mut row = Row(Vec::with_capacity(n));
        while let Some(r) = rows.next().map_err(db_err)? {
            row.0.clear();
            for i in 0..n {
                row.0.push(val_of(r.get_ref(i).map_err(db_err)?));
            }
            each(&row)?;
        }
        Ok(())
    }
}
