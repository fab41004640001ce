//! Codex: `codex exec --json`, the prompt on stdin (`-`).
//!
//! The stream is JSONL (Codex 0.17x, as printed by the real CLI):
//! `thread.started{thread_id}`, `turn.started`, `item.started|updated|completed{item}`
//! (item types `agent_message{text}`, `mcp_tool_call`, `error{message}` …),
//! `turn.completed{usage{input_tokens,cached_input_tokens,output_tokens}}`,
//! `turn.failed{error{message}}`, and `error{message}` — some of which are
//! only progress ("Reconnecting... 2/5 (…)"). Codex reports no cost: vane's
//! estimate from the price table is the cost.

use serde_json::{json, Value};
use vane_core::dispatch::{Outcome, Usage};

use crate::claude::transcript;
use crate::process::{self, Exit, Spawn};
use crate::provider::{vane_server_args, AttemptRequest, AttemptResult, BoxFuture, Provider};
use crate::texts;

fn toml_str(s: &str) -> String {
    // a TOML basic string is a JSON string for everything vane passes
    serde_json::to_string(s).expect("string")
}

/// The arguments vane gives `codex exec`: vane as an MCP server whose tools
/// run without an approval prompt, Codex's own shell sandboxed read-only, the
/// prompt from stdin.
pub fn args(req: &AttemptRequest) -> Vec<String> {
    let server_args: Vec<String> = vane_server_args(req).iter().map(|a| toml_str(a)).collect();
    let mut a: Vec<String> = vec![
        "exec".into(),
        "--json".into(),
        "--skip-git-repo-check".into(),
        "--sandbox".into(),
        "read-only".into(),
        "-C".into(),
        req.workspace.display().to_string(),
        "-c".into(),
        format!(
            "mcp_servers.vane.command={}",
            toml_str(&req.vane_exe.display().to_string())
        ),
        "-c".into(),
        format!("mcp_servers.vane.args=[{}]", server_args.join(",")),
        "-c".into(),
        "mcp_servers.vane.default_tools_approval_mode=\"approve\"".into(),
    ];
    if let Some(m) = &req.model {
        a.extend(["-m".into(), m.clone()]);
    }
    a.extend(req.extra_args.iter().cloned());
    a.push("-".into());
    a
}

#[derive(Debug, Default)]
pub struct Stream {
    thread_id: Option<String>,
    usage: Usage,
    turns: i64,
    completed: bool,
    failed: Option<String>,
    errors: Vec<String>,
    last_text: Option<String>,
    garbage: usize,
    /// Codex said it is waiting for the network
    offline: bool,
}

impl Stream {
    /// Takes one line; true when the run should end now (Codex waits for
    /// the network forever once it is unreachable: that is an outage).
    pub fn feed(&mut self, line: &str) -> bool {
        let line = line.trim();
        if line.is_empty() {
            return false;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            self.garbage += 1;
            return false;
        };
        match v["type"].as_str() {
            Some("thread.started") => self.thread_id = v["thread_id"].as_str().map(String::from),
            Some("turn.completed") => {
                let u = &v["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                // input_tokens includes the cached ones
                let cached = n("cached_input_tokens");
                self.usage.add(&Usage {
                    input_tokens: n("input_tokens").saturating_sub(cached),
                    cached_input_tokens: cached,
                    cache_write_tokens: 0,
                    output_tokens: n("output_tokens"),
                });
                self.turns += 1;
                self.completed = true;
                self.failed = None;
            }
            Some("turn.failed") => {
                let m = v["error"]["message"].as_str().unwrap_or("turn failed");
                self.failed = Some(m.to_string());
                self.completed = false;
            }
            Some("error") => {
                if let Some(m) = v["message"].as_str() {
                    self.errors.push(m.to_string());
                    if m.starts_with("Reconnecting... waiting for network") {
                        self.offline = true;
                        return true;
                    }
                }
            }
            Some("item.completed") => {
                let item = &v["item"];
                match item["type"].as_str() {
                    Some("agent_message") => {
                        self.last_text = item["text"].as_str().map(String::from);
                    }
                    Some("error") => {
                        if let Some(m) = item["message"].as_str() {
                            self.errors.push(m.to_string());
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        false
    }

    pub fn finish(self, exit: &Exit, now_ms: i64) -> AttemptResult {
        let mut detail = serde_json::Map::new();
        if self.garbage > 0 {
            detail.insert("unparsed_lines".into(), json!(self.garbage));
        }
        if !self.errors.is_empty() {
            detail.insert("errors".into(), json!(self.errors.len()));
        }
        let mut r = AttemptResult {
            session_id: self.thread_id.clone(),
            exit_status: exit.status,
            usage: self.usage,
            num_turns: (self.turns > 0).then_some(self.turns),
            summary: self.last_text.clone(),
            detail: Value::Object(detail),
            ..AttemptResult::default()
        };
        let (o, e) = self.classify(exit, now_ms, &mut r.resets_at_ms);
        r.outcome = Some(o);
        r.error = e;
        r
    }

    fn classify(
        &self,
        exit: &Exit,
        now_ms: i64,
        resets: &mut Option<i64>,
    ) -> (Outcome, Option<String>) {
        if let Some(e) = &exit.spawn_error {
            return (Outcome::Auth, Some(e.clone()));
        }
        let stderr = exit.stderr_tail(2000);
        // the last real error (progress lines are not why it failed)
        let last_error = self
            .errors
            .iter()
            .rev()
            .find(|e| !e.starts_with("Reconnecting"))
            .or(self.errors.last())
            .cloned();
        if self.offline {
            // the errors before it say why (DNS, connection refused …)
            let cause = self
                .errors
                .iter()
                .rev()
                .find(|e| !e.contains("waiting for network"))
                .cloned()
                .unwrap_or_default();
            return (
                Outcome::Transient,
                Some(
                    format!(
                        "the model API is unreachable (Codex is waiting for the network) {cause}"
                    )
                    .trim()
                    .to_string(),
                ),
            );
        }
        if exit.timed_out {
            let why = match &last_error {
                Some(e) => format!("the agent ran past its timeout (last error: {e})"),
                None => "the agent ran past its timeout".into(),
            };
            return (Outcome::Timeout, Some(why));
        }
        if self.completed && self.failed.is_none() && exit.status == Some(0) {
            return (Outcome::Succeeded, None);
        }
        let why = self.failed.clone().or(last_error).unwrap_or_else(|| {
            let s = stderr.trim();
            match (exit.status, exit.cut_line) {
                (_, true) => "the stream ended mid-line".to_string(),
                _ if !s.is_empty() => vane_core::text::tail(s, 500),
                (Some(c), _) => format!("exit status {c} without a finished turn"),
                (None, _) => "ended without a finished turn".into(),
            }
        });
        let all = format!("{why}\n{stderr}");
        let c = texts::classify(&all).unwrap_or(Outcome::Transient);
        if matches!(c, Outcome::QuotaExhausted | Outcome::RateLimited) {
            *resets = texts::reset_time(&all, now_ms);
        }
        (c, Some(why.chars().take(1000).collect()))
    }
}

/// The `codex` provider.
pub struct Codex;

impl Provider for Codex {
    fn kind(&self) -> &'static str {
        "codex"
    }
    fn run<'a>(&'a self, req: &'a AttemptRequest) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let spec = Spawn {
                program: req.program.clone(),
                args: args(req),
                env: req.env.clone(),
                cwd: req.workspace.clone(),
                stdin: req.prompt.clone().into_bytes(),
                timeout: req.timeout,
            };
            let mut s = Stream::default();
            let exit = process::run(&spec, &*req.on_spawn, |l| s.feed(l)).await;
            let mut r = s.finish(&exit, crate::now_ms());
            if r.model.is_none() {
                r.model = req.model.clone();
            }
            r.transcript = transcript(&exit);
            r
        })
    }
}
