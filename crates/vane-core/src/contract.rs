//! The contracts between vane's processes, in one place: the `_meta` keys a
//! front and its workers exchange on MCP messages, the front's control
//! requests and answers (CLI, `vane upgrade`), and the health view the front
//! publishes (`worker_health`, `vane workers`, the upgrade's gates).
//!
//! Why one module: the front, the worker, the CLI and `vane upgrade` are
//! separate processes, often of different versions during an upgrade. A key
//! spelled in several files drifts; a type both sides (de)serialize cannot.
//! Every field added here is optional on the reading side (`#[serde(default)]`)
//! so an older process can read a newer one's answers and the other way round.

pub mod control;
pub mod health;
pub mod meta;
