//! vane-core: the domain of vane, synchronous and free of I/O.
//!
//! It owns the roadmap model (groups, tasks, exit criteria), the import of the
//! upstream roadmap format and its export, the task state machine, the planner
//! (`plan_next` ordering and blocking reasons), the typed error codes every tool
//! returns, and the `vane.toml` configuration model.
//!
//! It must never touch the filesystem, the network, a clock it was not handed,
//! or a database: callers pass data in and get data out, which keeps it fast
//! and trivially testable.
#![forbid(unsafe_code)]

pub mod config;
pub mod contract;
pub mod dispatch;
pub mod error;
pub mod flags;
pub mod model;
pub mod planner;
pub mod redact;
pub mod roadmap;
pub mod rules;
pub mod text;
pub mod transitions;

pub use error::{ErrorCode, VaneError};
pub use model::{ExitCriterion, Group, GroupKind, Priority, Roadmap, Status, Task};
