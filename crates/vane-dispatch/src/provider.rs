//! The seam every provider adapter implements, and what an attempt returns.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use vane_core::dispatch::{Outcome, Usage};

/// What one attempt is asked to do.
#[derive(Clone)]
pub struct AttemptRequest {
    pub task_id: String,
    pub prompt: String,
    /// the workspace the agent works in (its cwd)
    pub workspace: PathBuf,
    /// the vane executable the agent reaches as its MCP server
    pub vane_exe: PathBuf,
    /// `--state-dir` for that server, when not the default
    pub state_dir: Option<PathBuf>,
    pub model: Option<String>,
    pub max_turns: u32,
    pub timeout: Duration,
    /// what this attempt may still spend, USD (claude `--max-budget-usd`)
    pub max_budget_usd: f64,
    /// the environment the agent's process gets (already filtered)
    pub env: Vec<(String, String)>,
    /// the provider's executable and extra arguments
    pub program: String,
    pub extra_args: Vec<String>,
    /// openai: the endpoint and the variable holding its key
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// openai: the tool loop calls vane's tools in-process, through the
    /// same registry (validation, confinement, budgets) MCP clients use
    pub ctx: Option<std::sync::Arc<vane_tools::ToolCtx>>,
    pub registry: Option<std::sync::Arc<vane_tools::Registry>>,
    /// told the agent's process group id once it started (recorded so a
    /// later `vane run` can stop the agents of a runner killed with -9)
    pub on_spawn: std::sync::Arc<dyn Fn(i32) + Send + Sync>,
}

/// How an attempt ended, in a provider-neutral shape.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttemptResult {
    pub outcome: Option<Outcome>,
    /// a rate limit's or quota's reset, or a Retry-After, as a time (ms)
    pub resets_at_ms: Option<i64>,
    pub usage: Usage,
    /// the provider's own cost figure, micro-dollars
    pub reported_micros: Option<i64>,
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub num_turns: Option<i64>,
    pub exit_status: Option<i32>,
    /// the agent's last words (its final message)
    pub summary: Option<String>,
    /// why it failed, in one line (redacted before it is stored)
    pub error: Option<String>,
    /// adapter-specific facts worth keeping (subtype, api error status …)
    pub detail: Value,
    /// everything the provider printed, for the transcript artifact
    #[serde(skip)]
    pub transcript: Vec<u8>,
}

impl AttemptResult {
    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Transient)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A provider adapter. `run` never fails: every way an attempt can end is
/// an [`AttemptResult`] with its class. Dropping the future stops the agent
/// (its whole process group, or its HTTP request).
pub trait Provider: Send + Sync {
    /// `claude`, `codex`, `openai` or `command`
    fn kind(&self) -> &'static str;
    fn run<'a>(&'a self, req: &'a AttemptRequest) -> BoxFuture<'a, AttemptResult>;
}

/// The MCP server entry that points an agent at vane on the same workspace.
pub fn vane_server_args(req: &AttemptRequest) -> Vec<String> {
    let mut args = vec![
        "--workspace".to_string(),
        req.workspace.display().to_string(),
    ];
    if let Some(s) = &req.state_dir {
        args.push("--state-dir".into());
        args.push(s.display().to_string());
    }
    args.push("serve".into());
    args
}
