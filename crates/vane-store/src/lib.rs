//! vane-store: the transactional source of truth.
//!
//! One store API over two engines (see `store.rs` and ARCHITECTURE.md, "The
//! store seam"): SQLite in WAL mode, one file per workspace, the default; or
//! a PostgreSQL database that fronts on several hosts share. A versioned
//! schema with forward-only expand/contract migrations, and one transaction
//! per mutation in one global write order, so any number of `vane serve`
//! processes — on one machine or many — never lose an update, never claim a
//! task twice, never corrupt the store. After each change the human/git
//! exports (`roadmap.yaml`, `context.md`, `checkpoint.json`,
//! `critics/<name>.json`) are rewritten atomically (temp file + rename) in
//! the checkout's state directory under a lock, and only when the store holds
//! a newer revision than the one already exported — an older export never
//! overwrites a newer one.
//!
//! It must never hold a transaction open across an `await` or an external
//! command: callers do slow work first, then record its result.
#![forbid(unsafe_code)]

mod admin;
pub mod dispatch;
mod exports;
pub mod journal;
mod paths;
pub mod pg;
pub mod schema;
mod sql;
mod sqlite;
mod store;

pub use admin::{copy_to_postgres, migrate_at, rehearse_at, schema_info_at, CopyReport, TableCopy};
pub use dispatch::{
    Attempt, AttemptEnd, BudgetAlert, BudgetCheck, CostBy, CostRow, NewAttempt, Spent,
};
pub use exports::{write_atomic, ExportKind};
pub use paths::StatePaths;
pub use pg::PgTarget;
pub use schema::{
    Applied, Migration, MigrationRef, Phase, Reach, SchemaInfo, MIGRATIONS, SCHEMA_VERSION,
};
pub use sql::Engine;
pub use store::*;
