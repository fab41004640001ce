//! vane-dispatch: vane runs the roadmap.
//!
//! `vane run` claims the next ready task, hands it to an agent provider with
//! a prompt assembled from the store, records what the attempt used and cost,
//! runs the task's critics and moves the task on. Providers are adapters
//! behind one seam ([`provider::Provider`]): Claude Code and Codex run as
//! child processes with vane registered as their MCP server (so a dispatched
//! agent's file and shell access are vane's confined tools), a `command`
//! provider speaks a small JSON contract, and an OpenAI-compatible endpoint
//! gets vane's tools as functions.
//!
//! Every adapter ends an attempt the same way: an [`provider::AttemptResult`]
//! with an [`vane_core::dispatch::Outcome`] class. The class alone decides what
//! happens next (retry, wait, fail over, disable, or the task failed), so the
//! runner never parses a provider's text.
#![forbid(unsafe_code)]

pub mod budget;
pub mod changes;
pub mod claude;
pub mod codex;
pub mod command;
pub mod openai;
pub mod process;
pub mod prompt;
pub mod provider;
pub mod runner;
pub mod texts;

/// Installs the process's TLS crypto provider (ring), once. reqwest is built
/// with `rustls-no-provider` (aws-lc-rs, its default, needs cmake and a C
/// toolchain we do not want in the build), and every HTTPS client of the
/// process — the openai adapter, the OTLP exporter — needs one installed
/// before it is built. `vane`'s `main` calls this first.
pub fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Milliseconds since the epoch (the store's clock).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
