//! `kind = "command"`: any executable, for in-house agents. The contract:
//!
//! - vane starts `command args…` in the workspace, in its own process group,
//!   with the prompt on stdin (then closed) and only these variables besides
//!   the provider's allow-list: `VANE_TASK_ID`, `VANE_WORKSPACE`,
//!   `VANE_MCP_SERVER` (a JSON array: the command line of vane's MCP server
//!   on this workspace, for agents that use vane's tools), `VANE_MODEL`,
//!   `VANE_MAX_TURNS`, `VANE_MAX_BUDGET_USD`.
//! - The agent prints what it likes; its **last** stdout line that is a JSON
//!   object with an `outcome` field is its result:
//!   `{"outcome": "succeeded" | "task_failed" | "rate_limited" |
//!   "quota_exhausted" | "auth" | "transient", "summary": "…", "error": "…",
//!   "usage": {"input_tokens", "cached_input_tokens", "cache_write_tokens",
//!   "output_tokens"}, "cost_usd": 0.12, "model": "…", "session_id": "…",
//!   "num_turns": 3, "resets_at": <epoch s>, "retry_after_s": 30}` — every
//!   field but `outcome` optional.
//! - With no result line, exit status 0 is `succeeded` (usage unknown) and
//!   anything else a transient fault, unless the printed text names a class.
//! - A run past `timeout_s` is killed with its process group (`timeout`).

use serde_json::{json, Value};
use vane_core::dispatch::{Outcome, Usage, MICROS};

use crate::claude::transcript;
use crate::process::{self, Exit, Spawn};
use crate::provider::{vane_server_args, AttemptRequest, AttemptResult, BoxFuture, Provider};
use crate::texts;

#[derive(Debug, Default)]
pub struct Stream {
    result: Option<Value>,
    last_line: Option<String>,
}

impl Stream {
    pub fn feed(&mut self, line: &str) {
        let t = line.trim();
        if t.is_empty() {
            return;
        }
        self.last_line = Some(t.chars().take(1000).collect());
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            if v.get("outcome").is_some_and(Value::is_string) {
                self.result = Some(v);
            }
        }
    }

    pub fn finish(self, exit: &Exit, now_ms: i64) -> AttemptResult {
        let mut r = AttemptResult {
            exit_status: exit.status,
            ..AttemptResult::default()
        };
        if let Some(e) = &exit.spawn_error {
            r.outcome = Some(Outcome::Auth);
            r.error = Some(e.clone());
            return r;
        }
        if exit.timed_out {
            r.outcome = Some(Outcome::Timeout);
            r.error = Some("the agent ran past its timeout".into());
            return r;
        }
        let stderr = exit.stderr_tail(2000);
        let Some(res) = self.result else {
            if exit.status == Some(0) {
                r.outcome = Some(Outcome::Succeeded);
                r.detail = json!({"result_line": false});
                return r;
            }
            let printed = format!("{}\n{stderr}", self.last_line.unwrap_or_default());
            let c = texts::classify(&printed).unwrap_or(Outcome::Transient);
            r.outcome = Some(c);
            r.resets_at_ms = texts::reset_time(&printed, now_ms);
            r.error = Some(format!(
                "exit status {} without a result line: {}",
                exit.status.map_or("?".into(), |s| s.to_string()),
                vane_core::text::tail(printed.trim(), 500)
            ));
            return r;
        };
        let outcome = res["outcome"]
            .as_str()
            .and_then(Outcome::parse)
            .filter(|o| *o != Outcome::Running && *o != Outcome::Interrupted);
        let Some(outcome) = outcome else {
            r.outcome = Some(Outcome::Transient);
            r.error = Some(format!(
                "unknown outcome {} in the result line",
                res["outcome"]
            ));
            return r;
        };
        let u = &res["usage"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        r.usage = Usage {
            input_tokens: n("input_tokens"),
            cached_input_tokens: n("cached_input_tokens"),
            cache_write_tokens: n("cache_write_tokens"),
            output_tokens: n("output_tokens"),
        };
        r.reported_micros = res["cost_usd"]
            .as_f64()
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(|c| (c * MICROS as f64).round() as i64);
        let s = |k: &str| res[k].as_str().map(String::from);
        r.model = s("model");
        r.session_id = s("session_id");
        r.summary = s("summary");
        r.error = s("error");
        r.num_turns = res["num_turns"].as_i64();
        r.resets_at_ms = res["resets_at"]
            .as_i64()
            .map(|t| t * 1000)
            .or_else(|| res["retry_after_s"].as_i64().map(|t| now_ms + t * 1000));
        r.outcome = Some(outcome);
        if outcome != Outcome::Succeeded && r.error.is_none() {
            r.error = Some(format!("the agent reported {}", outcome.as_str()));
        }
        r
    }
}

/// The `command` provider.
pub struct Command;

impl Provider for Command {
    fn kind(&self) -> &'static str {
        "command"
    }
    fn run<'a>(&'a self, req: &'a AttemptRequest) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let mut server = vec![req.vane_exe.display().to_string()];
            server.extend(vane_server_args(req));
            let mut env = req.env.clone();
            for (k, v) in [
                ("VANE_TASK_ID", req.task_id.clone()),
                ("VANE_WORKSPACE", req.workspace.display().to_string()),
                ("VANE_MCP_SERVER", json!(server).to_string()),
                ("VANE_MODEL", req.model.clone().unwrap_or_default()),
                ("VANE_MAX_TURNS", req.max_turns.to_string()),
                ("VANE_MAX_BUDGET_USD", format!("{:.2}", req.max_budget_usd)),
            ] {
                env.push((k.to_string(), v));
            }
            let spec = Spawn {
                program: req.program.clone(),
                args: req.extra_args.clone(),
                env,
                cwd: req.workspace.clone(),
                stdin: req.prompt.clone().into_bytes(),
                timeout: req.timeout,
            };
            let mut s = Stream::default();
            let exit = process::run(&spec, &*req.on_spawn, |l| {
                s.feed(l);
                false
            })
            .await;
            let mut r = s.finish(&exit, crate::now_ms());
            if r.model.is_none() {
                r.model = req.model.clone();
            }
            r.transcript = transcript(&exit);
            r
        })
    }
}
