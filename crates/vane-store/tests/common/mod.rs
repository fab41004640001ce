//! One store test suite, run against both engines: each test is written once
//! as `fn name(env: Env)`, and [`both_engines!`] makes a `sqlite::name` and a
//! `postgres::name` test of it.

#![allow(dead_code)]

pub mod pg;

use std::path::Path;

use vane_store::{PgTarget, StatePaths, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A workspace checkout with a store of either engine.
pub struct Env {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
    pub paths: StatePaths,
    pub db: Option<pg::TestDb>,
}

impl Env {
    /// `None` when the engine is not installed here (the test is skipped).
    pub fn new(engine: Engine) -> Option<Env> {
        let dir = tempfile::tempdir().unwrap();
        let db = match engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(pg::Cluster::shared()?.database()),
        };
        let paths = StatePaths::new(dir.path(), dir.path().join(".vane"))
            .with_store(db.as_ref().map(|d| PgTarget::parse(&d.url, None).unwrap()));
        Some(Env {
            engine,
            dir,
            paths,
            db,
        })
    }

    /// A new [`Store`] on this env's store (its own connections, as another
    /// process would have).
    pub fn open(&self) -> Store {
        Store::open(&self.paths).unwrap()
    }

    /// Another checkout (own directory, own exports) sharing this store.
    pub fn checkout(&self, dir: &Path) -> StatePaths {
        StatePaths::new(dir, dir.join(".vane")).with_store(self.paths.store.clone())
    }

    /// Runs raw SQL on the store, behind vane's back.
    pub fn raw(&self, sql: &str) {
        match &self.db {
            None => rusqlite::Connection::open(self.paths.db())
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Some(db) => {
                db.psql(sql);
            }
        }
    }

    /// Sets the stored schema version, as a newer vane would.
    pub fn set_schema_version(&self, v: i64) {
        match self.engine {
            Engine::Sqlite => self.raw(&format!("PRAGMA user_version = {v}")),
            Engine::Postgres => self.raw(&format!(
                "UPDATE meta SET value = {v} WHERE key = 'schema_version'"
            )),
        }
    }
}

/// `both_engines!(a, b)` → tests `sqlite::a`, `postgres::a`, … each calling
/// `a(env)` with a fresh [`Env`] of its engine.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let env = super::common::Env::new(super::common::Engine::Sqlite).unwrap();
                    super::$name(env)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(env) = super::common::Env::new(super::common::Engine::Postgres) else {
                        return;
                    };
                    super::$name(env)
                }
            )*
        }
    };
}
