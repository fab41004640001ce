//! The seam between the store's domain SQL and a database engine.
//!
//! Every query the store runs is written once, against [`Sql`]: numbered
//! parameters (`?1`, `?2`, …), values as [`Val`], rows as [`Row`]. SQLite
//! takes the text as is; PostgreSQL's connection rewrites `?N` to `$N` and
//! converts each [`Val`] to the type the server inferred for its parameter.
//! The SQL itself sticks to what both engines mean the same way
//! (`ON CONFLICT … DO UPDATE/NOTHING`, `RETURNING`, `coalesce`, `CASE`,
//! `CAST(sum(x) AS BIGINT)`); the few engine-specific things (DDL, the
//! schema version, locks, snapshots) are methods here or in the backend.
//!
//! Why not an ORM or a query builder: the store's queries are few, fixed and
//! hand-tuned (covering indexes, one statement per step); an owned value per
//! column is all the two engines need to share them.

use std::fmt;

use vane_core::{ErrorCode, VaneError};

use crate::store::Result;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// One SQL value: a parameter or a column of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    /// integers and booleans (0/1)
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Anything that can be a parameter.
pub trait ToVal {
    fn to_val(&self) -> Val;
}

macro_rules! int_to_val {
    ($($t:ty),*) => {$(
        impl ToVal for $t {
            fn to_val(&self) -> Val {
                Val::Int(*self as i64)
            }
        }
    )*};
}
int_to_val!(i64, i32, u32, u8, usize);

impl ToVal for bool {
    fn to_val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for f64 {
    fn to_val(&self) -> Val {
        Val::Real(*self)
    }
}
impl ToVal for str {
    fn to_val(&self) -> Val {
        Val::Text(self.to_string())
    }
}
impl ToVal for String {
    fn to_val(&self) -> Val {
        Val::Text(self.clone())
    }
}
impl ToVal for [u8] {
    fn to_val(&self) -> Val {
        Val::Blob(self.to_vec())
    }
}
impl ToVal for Val {
    fn to_val(&self) -> Val {
        self.clone()
    }
}
impl<T: ToVal + ?Sized> ToVal for &T {
    fn to_val(&self) -> Val {
        (**self).to_val()
    }
}
impl<T: ToVal> ToVal for Option<T> {
    fn to_val(&self) -> Val {
        match self {
            Some(v) => v.to_val(),
            None => Val::Null,
        }
    }
}

/// Parameters for [`Sql`]: `p![a, b, c]`.
macro_rules! p {
    () => { &[] as &[$crate::sql::Val] };
    ($($e:expr),+ $(,)?) => { &[$($crate::sql::ToVal::to_val(&$e)),+] as &[$crate::sql::Val] };
}
pub(crate) use p;

/// A column's value read as a Rust type.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}

impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromVal for i32 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => i32::try_from(*i).ok(),
            _ => None,
        }
    }
}
impl FromVal for bool {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromVal for f64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Real(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromVal for Vec<u8> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Blob(b) => Some(b.clone()),
            Val::Text(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }
}
impl FromVal for Val {
    fn from_val(v: &Val) -> Option<Self> {
        Some(v.clone())
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Val>);

impl Row {
    /// Column `i` as `T`; a missing column or another type is a
    /// `store_error` (the schema and the query disagree), never a panic.
    pub fn get<T: FromVal>(&self, i: usize) -> Result<T> {
        let v = self.0.get(i).ok_or_else(|| {
            VaneError::new(
                ErrorCode::StoreError,
                format!("store: the query returned no column {i}"),
            )
        })?;
        T::from_val(v).ok_or_else(|| {
            VaneError::new(
                ErrorCode::StoreError,
                format!(
                    "store: column {i} holds {} where {} was expected",
                    v.kind(),
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// Column `i` as text, without a copy (empty for anything else).
    pub fn str(&self, i: usize) -> &str {
        match self.0.get(i) {
            Some(Val::Text(s)) => s,
            _ => "",
        }
    }
}

impl Val {
    fn kind(&self) -> &'static str {
        match self {
            Val::Null => "NULL",
            Val::Int(_) => "an integer",
            Val::Real(_) => "a real",
            Val::Text(_) => "text",
            Val::Blob(_) => "a blob",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One connection (or transaction) of either engine. Every method runs one
/// statement; a transaction is the backend's business (see `Store::write`).
pub trait Sql {
    fn engine(&self) -> Engine;
    /// Runs a statement; returns the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>>;
    /// Runs several statements without parameters (DDL).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Runs a query and hands each row to `each` as it arrives, without
    /// holding them all (the plan graph of 100,000 tasks, a store copy).
    fn query_each(
        &mut self,
        sql: &str,
        params: &[Val],
        each: &mut dyn FnMut(&Row) -> Result<()>,
    ) -> Result<()>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// Exactly one row.
    fn query_row(&mut self, sql: &str, params: &[Val]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| VaneError::new(ErrorCode::StoreError, "store: a query returned no row"))
    }
    /// The first column of exactly one row.
    fn one<T: FromVal>(&mut self, sql: &str, params: &[Val]) -> Result<T>
    where
        Self: Sized,
    {
        self.query_row(sql, params)?.get(0)
    }
}

/// [`Sql::one`] for a `dyn Sql`.
pub fn one<T: FromVal>(db: &mut dyn Sql, sql: &str, params: &[Val]) -> Result<T> {
    db.query_row(sql, params)?.get(0)
}

/// [`Sql::query_opt`]'s first column.
pub fn one_opt<T: FromVal>(db: &mut dyn Sql, sql: &str, params: &[Val]) -> Result<Option<T>> {
    match db.query_opt(sql, params)? {
        Some(r) => r.get(0).map(Some),
        None => Ok(None),
    }
}

/// `?N` → `$N` outside quoted text (PostgreSQL's parameter syntax).
pub fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    out.push(c);
                } else if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                    out.push('$');
                } else {
                    out.push(c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes() {
        assert_eq!(
            dollar_params("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12 OR e = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12 OR e = ?"
        );
        assert_eq!(dollar_params(r#"SELECT "?1", ?2"#), r#"SELECT "?1", $2"#);
    }

    #[test]
    fn a_column_of_another_type_is_a_store_error_not_a_panic() {
        let r = Row(vec![Val::Text("x".into()), Val::Null, Val::Int(3)]);
        assert_eq!(r.get::<String>(0).unwrap(), "x");
        assert_eq!(r.get::<Option<i64>>(1).unwrap(), None);
        assert!(r.get::<bool>(2).unwrap());
        let e = r.get::<i64>(0).unwrap_err();
        assert_eq!(e.code, ErrorCode::StoreError);
        assert!(r.get::<i64>(7).is_err());
        let ps = p![1i64, "a", Option::<i64>::None, true, 2.5f64];
        assert_eq!(
            ps,
            &[
                Val::Int(1),
                Val::Text("a".into()),
                Val::Null,
                Val::Int(1),
                Val::Real(2.5)
            ]
        );
    }
}
