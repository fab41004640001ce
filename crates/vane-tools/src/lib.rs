//! vane-tools: the tool pipeline and every tool handler, the MCP server that
//! exposes them, and the confinement they run under (workspace paths,
//! command policy, bubblewrap sandbox).
//!
//! A tool call flows: decode → validate input (JSON Schema, unknown fields
//! rejected) → handler (domain code over typed input) → validate output
//! (outputSchema) → size budget (truncate, keep the full text as an artifact).
//! Handlers never see JSON-RPC and never panic across the boundary: a panic
//! is caught and reported as an `internal` error result.
#![forbid(unsafe_code)]

pub mod audit;
pub mod beneath;
pub mod client;
pub mod confine;
pub mod critics;
pub mod ctx;
pub mod exec;
#[cfg(feature = "failpoints")]
pub mod faults;
pub mod front_tools;
pub mod git;
pub mod handlers;
pub mod limits;
pub mod policy;
pub mod rate;
pub mod registry;
pub mod sandbox;
pub mod schema;
pub mod server;
pub mod stdio;

pub use ctx::ToolCtx;
pub use registry::Registry;
pub use server::VaneServer;

/// Arms the fault-injection points from `FAILPOINTS` (test builds only; a
/// no-op otherwise).
pub fn failpoints_setup() {
    #[cfg(feature = "failpoints")]
    faults::setup();
}
