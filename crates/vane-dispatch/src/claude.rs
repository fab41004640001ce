//! Claude Code headless: `claude -p --output-format stream-json --verbose`.
//!
//! The stream is one JSON object per line. What vane reads (Claude Code
//! 2.1.x, as printed by the real CLI):
//! - `{"type":"system","subtype":"init","session_id","model","tools","mcp_servers"}`
//! - `{"type":"assistant","message":{…},"error":"authentication_failed"|"billing_error"|
//!   "rate_limit"|"overloaded"|…}` — `error` set only on an API error message
//! - `{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"|"allowed_warning"|
//!   "rejected","resetsAt":<epoch s>,"rateLimitType":"five_hour"|"seven_day"|…}}`
//! - the last line, `{"type":"result","subtype":"success"|"error_max_turns"|
//!   "error_max_budget_usd"|"error_during_execution"|…,"is_error","result",
//!   "total_cost_usd","usage":{input_tokens,cache_read_input_tokens,
//!   cache_creation_input_tokens,output_tokens},"modelUsage","num_turns",
//!   "session_id","duration_ms","api_error_status"}`
//!
//! An unauthenticated CLI still ends with `subtype: "success"` but
//! `is_error: true` — so `is_error` decides, and the assistant's `error`
//! says why.

use serde_json::{json, Value};
use vane_core::dispatch::{Outcome, Usage, MICROS};

use crate::process::{self, Exit, Spawn};
use crate::provider::{vane_server_args, AttemptRequest, AttemptResult, BoxFuture, Provider};
use crate::texts;

/// The arguments vane gives `claude`: vane as the only MCP server, its tools
/// allowed, Claude Code's own file and shell tools off (the agent's access
/// to the workspace is vane's confined tools), the turn and money limits.
pub fn args(req: &AttemptRequest) -> Vec<String> {
    let mcp = json!({"mcpServers": {"vane": {
        "command": req.vane_exe.display().to_string(),
        "args": vane_server_args(req),
        // Claude Code starts MCP servers without waiting for them in `-p`
        // mode: without this the first turn can be built before vane is
        // connected, and the agent has none of its tools. `alwaysLoad`
        // makes it wait (up to its 5 s connect limit) and keeps vane's
        // tools in the prompt instead of behind tool search.
        "alwaysLoad": true,
    }}});
    let mut a: Vec<String> = [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--no-session-persistence",
        "--strict-mcp-config",
        "--mcp-config",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(mcp.to_string());
    a.extend(["--tools".into(), String::new()]);
    a.extend(["--max-turns".into(), req.max_turns.to_string()]);
    a.extend([
        "--max-budget-usd".into(),
        format!("{:.2}", req.max_budget_usd.max(0.01)),
    ]);
    if let Some(m) = &req.model {
        a.extend(["--model".into(), m.clone()]);
    }
    a.extend(req.extra_args.iter().cloned());
    // last: `--allowedTools` takes every argument after it
    a.extend(["--allowedTools".into(), "mcp__vane__*".into()]);
    a
}

/// What the stream said so far.
#[derive(Debug, Default)]
pub struct Stream {
    session_id: Option<String>,
    model: Option<String>,
    result: Option<Value>,
    /// the assistant's `error` (an API error message) and its text
    api_error: Option<(String, String)>,
    rejected: Option<(Option<i64>, String)>,
    last_text: Option<String>,
    garbage: usize,
}

impl Stream {
    pub fn feed(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            self.garbage += 1;
            return;
        };
        match v["type"].as_str() {
            Some("system") if v["subtype"] == "init" => {
                self.session_id = v["session_id"].as_str().map(String::from);
                self.model = v["model"].as_str().map(String::from);
            }
            Some("assistant") => {
                let text: String = v["message"]["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                if let Some(e) = v["error"].as_str() {
                    self.api_error = Some((e.to_string(), text.clone()));
                }
                if !text.is_empty() {
                    self.last_text = Some(text);
                }
            }
            Some("rate_limit_event") => {
                let info = &v["rate_limit_info"];
                if info["status"] == "rejected" {
                    self.rejected = Some((
                        info["resetsAt"].as_i64().map(|s| s * 1000),
                        info["rateLimitType"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
            Some("result") => self.result = Some(v),
            _ => {}
        }
    }

    /// The attempt's result, from the stream and how the process ended.
    pub fn finish(self, exit: &Exit, now_ms: i64) -> AttemptResult {
        let mut r = AttemptResult {
            session_id: self.session_id.clone(),
            model: self.model.clone(),
            exit_status: exit.status,
            summary: self.last_text.clone(),
            ..AttemptResult::default()
        };
        let mut detail = serde_json::Map::new();
        if self.garbage > 0 {
            detail.insert("unparsed_lines".into(), json!(self.garbage));
        }
        if let Some(res) = &self.result {
            let u = &res["usage"];
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            r.usage = Usage {
                input_tokens: n("input_tokens"),
                cached_input_tokens: n("cache_read_input_tokens"),
                cache_write_tokens: n("cache_creation_input_tokens"),
                output_tokens: n("output_tokens"),
            };
            r.reported_micros = res["total_cost_usd"]
                .as_f64()
                .map(|c| (c * MICROS as f64).round() as i64);
            r.num_turns = res["num_turns"].as_i64();
            if let Some(s) = res["session_id"].as_str() {
                r.session_id = Some(s.to_string());
            }
            // the model that did the most output, by the CLI's own account
            if let Some(m) = res["modelUsage"].as_object().and_then(|m| {
                m.iter()
                    .max_by_key(|(_, u)| u["outputTokens"].as_u64().unwrap_or(0))
                    .map(|(k, _)| k.clone())
            }) {
                r.model = Some(m);
            }
            if let Some(t) = res["result"].as_str() {
                if !t.is_empty() {
                    r.summary = Some(t.to_string());
                }
            }
            for k in [
                "subtype",
                "api_error_status",
                "duration_ms",
                "terminal_reason",
            ] {
                if !res[k].is_null() {
                    detail.insert(k.into(), res[k].clone());
                }
            }
            if let Some(d) = res["permission_denials"]
                .as_array()
                .filter(|d| !d.is_empty())
            {
                detail.insert("permission_denials".into(), json!(d.len()));
            }
        }
        r.detail = Value::Object(detail);
        let (outcome, error) = self.classify(exit, now_ms, &mut r.resets_at_ms);
        r.outcome = Some(outcome);
        r.error = error;
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
        if exit.timed_out {
            return (
                Outcome::Timeout,
                Some("the agent ran past its timeout".into()),
            );
        }
        let stderr = exit.stderr_tail(2000);
        if let Some(res) = &self.result {
            let subtype = res["subtype"].as_str().unwrap_or("");
            let is_error = res["is_error"].as_bool().unwrap_or(true);
            if !is_error && subtype == "success" {
                return (Outcome::Succeeded, None);
            }
            if matches!(
                subtype,
                "error_max_turns" | "error_max_budget_usd" | "error_max_structured_output_retries"
            ) {
                return (
                    Outcome::TaskFailed,
                    Some(format!("the agent stopped at a limit ({subtype})")),
                );
            }
            let text = res["result"].as_str().unwrap_or("").to_string();
            if let Some(c) = self.api_class(now_ms, resets) {
                let why = self
                    .api_error
                    .as_ref()
                    .map(|(e, t)| format!("{e}: {t}"))
                    .unwrap_or_else(|| text.clone());
                return (c, Some(why));
            }
            if let Some(status) = res["api_error_status"].as_i64() {
                let c = match status {
                    401 | 403 => Outcome::Auth,
                    429 => Outcome::RateLimited,
                    402 => Outcome::QuotaExhausted,
                    400 | 404 => Outcome::Auth,
                    _ => Outcome::Transient,
                };
                return (c, Some(format!("API status {status}: {text}")));
            }
            let all = format!("{text}\n{stderr}");
            let c = texts::classify(&all).unwrap_or(Outcome::Transient);
            if matches!(c, Outcome::QuotaExhausted | Outcome::RateLimited) {
                *resets = texts::reset_time(&all, now_ms);
            }
            return (c, Some(format!("{subtype}: {}", first_line(&all))));
        }
        // no result line: the CLI died, was cut off, or printed garbage
        if let Some(c) = self.api_class(now_ms, resets) {
            let why = self.api_error.as_ref().map(|(e, t)| format!("{e}: {t}"));
            return (c, why);
        }
        let printed = format!("{}\n{stderr}", self.last_text.clone().unwrap_or_default());
        if let Some(c) = texts::classify(&printed) {
            if matches!(c, Outcome::QuotaExhausted | Outcome::RateLimited) {
                *resets = texts::reset_time(&printed, now_ms);
            }
            return (c, Some(first_line(&printed)));
        }
        let how = match (exit.status, exit.cut_line) {
            (_, true) => "the stream ended mid-line".to_string(),
            (Some(s), _) => format!("exit status {s} without a result"),
            (None, _) => "ended without a result".into(),
        };
        let why = if stderr.trim().is_empty() {
            how
        } else {
            format!("{how}: {}", vane_core::text::tail(stderr.trim(), 500))
        };
        (Outcome::Transient, Some(why))
    }

    /// The class the structured fields give: a rejected rate-limit event
    /// (its window says rate limit or quota), then the assistant's error.
    fn api_class(&self, now_ms: i64, resets: &mut Option<i64>) -> Option<Outcome> {
        if let Some((at, kind)) = &self.rejected {
            *resets = *at;
            return Some(if kind == "five_hour" || kind.is_empty() {
                Outcome::RateLimited
            } else {
                Outcome::QuotaExhausted
            });
        }
        let (e, text) = self.api_error.as_ref()?;
        let c = match e.as_str() {
            "authentication_failed"
            | "oauth_org_not_allowed"
            | "account_on_hold"
            | "verification_required"
            | "cloud_credential_error"
            | "invalid_request"
            | "model_not_found" => Outcome::Auth,
            "billing_error" => Outcome::QuotaExhausted,
            "rate_limit" => Outcome::RateLimited,
            "max_output_tokens" => Outcome::TaskFailed,
            _ => texts::classify(text).unwrap_or(Outcome::Transient),
        };
        if matches!(c, Outcome::QuotaExhausted | Outcome::RateLimited) {
            *resets = texts::reset_time(text, now_ms);
        }
        Some(c)
    }
}

fn first_line(s: &str) -> String {
    let l = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    l.chars().take(500).collect()
}

/// The `claude` provider.
pub struct Claude;

impl Provider for Claude {
    fn kind(&self) -> &'static str {
        "claude"
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
            let exit = process::run(&spec, &*req.on_spawn, |l| {
                s.feed(l);
                false
            })
            .await;
            let mut r = s.finish(&exit, crate::now_ms());
            r.transcript = transcript(&exit);
            r
        })
    }
}

/// stdout, then stderr's tail under a marker line.
pub fn transcript(exit: &Exit) -> Vec<u8> {
    let mut t = exit.stdout.clone();
    if !exit.stderr.is_empty() {
        t.extend_from_slice(b"\n--- stderr ---\n");
        t.extend_from_slice(&exit.stderr);
    }
    t
}
