//! `kind = "openai"`: any OpenAI-compatible chat-completions endpoint, with
//! vane's own tools as functions.
//!
//! vane runs the tool loop itself: it sends the conversation with every
//! non-admin tool as a function (name, description, the tool's own input
//! schema), executes the calls the model makes through the same
//! [`Registry`](vane_tools::Registry) MCP clients go through (validation,
//! confinement, sandbox, output budget), and sends the results back, up to
//! `max_turns` model turns. This is what lets vane run a task on a local
//! model server or any gateway, with no vendor CLI.
//!
//! Classification (the API's documented errors): 401/403 → `auth`; 429 with
//! `insufficient_quota` → `quota_exhausted`, other 429s → `rate_limited`
//! (`retry-after-ms`, then `retry-after` in seconds, is the reset); 400/404
//! (bad model, bad request) → `auth` (configuration: retrying cannot help);
//! 5xx, connection failures → `transient`; the turn limit → `task_failed`.

use std::time::Duration;

use serde_json::{json, Value};
use vane_core::dispatch::{Outcome, Usage};

use crate::provider::{AttemptRequest, AttemptResult, BoxFuture, Provider};
use crate::texts;

pub struct OpenAi {
    client: Result<reqwest::Client, String>,
}

impl OpenAi {
    pub fn new() -> OpenAi {
        crate::install_tls();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"));
        OpenAi { client }
    }
}

impl Default for OpenAi {
    fn default() -> Self {
        OpenAi::new()
    }
}

/// The functions the model gets: every tool an MCP client would see
/// without the admin flag, as `[tools]` offers them.
pub fn functions(
    reg: &vane_tools::Registry,
    offered: &vane_core::config::ToolsConfig,
) -> Vec<Value> {
    reg.tools()
        .iter()
        .filter(|t| !t.admin && offered.enabled(t.name))
        .map(|t| {
            let mut desc = t.description.to_string();
            if !t.notes.is_empty() {
                desc.push(' ');
                desc.push_str(t.notes);
            }
            json!({"type": "function", "function": {
                "name": t.name,
                "description": desc,
                "parameters": Value::Object((*t.input_schema).clone()),
            }})
        })
        .collect()
}

fn usage_of(u: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let prompt = n(&u["prompt_tokens"]);
    let cached = n(&u["prompt_tokens_details"]["cached_tokens"]);
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        cached_input_tokens: cached,
        cache_write_tokens: 0,
        output_tokens: n(&u["completion_tokens"]),
    }
}

/// The reset a 429 or 503 names: `retry-after-ms`, else `retry-after`
/// (seconds, or an HTTP date).
pub fn retry_after(h: &reqwest::header::HeaderMap, now_ms: i64) -> Option<i64> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(now_ms + ms.max(0.0) as i64);
    }
    let ra = get("retry-after")?;
    if let Ok(s) = ra.parse::<f64>() {
        return Some(now_ms + (s.max(0.0) * 1000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc2822(ra)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The class of an HTTP error answer.
pub fn classify_status(status: u16, body: &Value) -> Outcome {
    let code = body["error"]["code"]
        .as_str()
        .or(body["error"]["type"].as_str())
        .unwrap_or("");
    match status {
        401 | 403 => Outcome::Auth,
        402 => Outcome::QuotaExhausted,
        429 if code == "insufficient_quota" => Outcome::QuotaExhausted,
        429 => Outcome::RateLimited,
        400 | 404 | 422 => Outcome::Auth,
        _ => Outcome::Transient,
    }
}

struct Loop<'a> {
    req: &'a AttemptRequest,
    client: &'a reqwest::Client,
    r: AttemptResult,
    log: Vec<u8>,
}

impl Loop<'_> {
    fn note(&mut self, v: &Value) {
        self.log.extend_from_slice(v.to_string().as_bytes());
        self.log.push(b'\n');
    }

    fn fail(&mut self, o: Outcome, e: String) {
        self.r.outcome = Some(o);
        self.r.error = Some(e);
    }

    async fn run(&mut self) {
        let req = self.req;
        let (Some(ctx), Some(reg)) = (&req.ctx, &req.registry) else {
            return self.fail(
                Outcome::Auth,
                "the openai adapter needs vane's tool registry".into(),
            );
        };
        let Some(base) = req.base_url.as_deref() else {
            return self.fail(Outcome::Auth, "provider has no base_url".into());
        };
        let Some(model) = req.model.clone() else {
            return self.fail(Outcome::Auth, "provider has no model".into());
        };
        let key = match &req.api_key_env {
            Some(k) => match std::env::var(k) {
                Ok(v) if !v.is_empty() => Some(v),
                _ => {
                    return self.fail(
                        Outcome::Auth,
                        format!("the environment variable `{k}` (api_key_env) is not set"),
                    )
                }
            },
            None => None,
        };
        self.r.model = Some(model.clone());
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let tools = functions(reg, &ctx.config.tools);
        let mut messages = vec![json!({"role": "user", "content": req.prompt})];
        let mut turns = 0i64;
        loop {
            if turns >= req.max_turns as i64 {
                return self.fail(
                    Outcome::TaskFailed,
                    format!("the agent stopped at a limit (max_turns {})", req.max_turns),
                );
            }
            turns += 1;
            self.r.num_turns = Some(turns);
            let body = json!({"model": model, "messages": messages, "tools": tools, "tool_choice": "auto"});
            let mut http = self.client.post(&url).json(&body).timeout(req.timeout);
            if let Some(k) = &key {
                http = http.bearer_auth(k);
            }
            let resp = match http.send().await {
                Ok(r) => r,
                Err(e) => {
                    let o = if e.is_timeout() {
                        Outcome::Timeout
                    } else {
                        Outcome::Transient
                    };
                    return self.fail(o, format!("request to {url} failed: {e}"));
                }
            };
            let status = resp.status().as_u16();
            let reset = retry_after(resp.headers(), crate::now_ms());
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    return self.fail(
                        Outcome::Transient,
                        format!("reading the answer failed: {e}"),
                    )
                }
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            self.note(&json!({"turn": turns, "status": status, "response": if v.is_null() { json!(vane_core::text::tail(&text, 2000)) } else { v.clone() }}));
            if !(200..300).contains(&status) {
                let msg = v["error"]["message"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| vane_core::text::tail(&text, 300));
                let mut o = classify_status(status, &v);
                if o == Outcome::Transient {
                    o = texts::classify(&msg)
                        .filter(|c| *c != Outcome::Auth)
                        .unwrap_or(o);
                }
                self.r.resets_at_ms = reset;
                self.r.detail = json!({"http_status": status, "code": v["error"]["code"]});
                return self.fail(o, format!("HTTP {status}: {msg}"));
            }
            self.r.usage.add(&usage_of(&v["usage"]));
            if let Some(id) = v["id"].as_str() {
                self.r.session_id.get_or_insert_with(|| id.to_string());
            }
            if let Some(m) = v["model"].as_str() {
                self.r.model = Some(m.to_string());
            }
            let msg = &v["choices"][0]["message"];
            if !msg.is_object() {
                return self.fail(
                    Outcome::Transient,
                    format!(
                        "an answer without a message: {}",
                        vane_core::text::tail(&text, 300)
                    ),
                );
            }
            let calls = msg["tool_calls"].as_array().cloned().unwrap_or_default();
            if calls.is_empty() {
                self.r.summary = msg["content"].as_str().map(String::from);
                self.r.outcome = Some(Outcome::Succeeded);
                return;
            }
            messages.push(msg.clone());
            for c in calls {
                let id = c["id"].as_str().unwrap_or("").to_string();
                let name = c["function"]["name"].as_str().unwrap_or("").to_string();
                let args = c["function"]["arguments"].as_str().unwrap_or("{}");
                // an unknown name goes on to the registry's not_found
                let offered = reg
                    .get(&name)
                    .is_none_or(|d| !d.admin && ctx.config.tools.enabled(d.name));
                let content = match serde_json::from_str::<Value>(if args.trim().is_empty() { "{}" } else { args }) {
                    Ok(Value::Object(_)) if !offered => {
                        json!({"error": {"code": "tool_disabled", "message": format!("`{name}` is not one of the functions offered")}}).to_string()
                    }
                    Ok(Value::Object(m)) => {
                        let out = reg.call(ctx, &name, Some(m)).await;
                        match out.result {
                            Ok(v) => v.to_string(),
                            Err(e) => json!({"error": {"code": e.code.as_str(), "message": e.message, "details": e.details}}).to_string(),
                        }
                    }
                    _ => json!({"error": {"code": "invalid_input", "message": "arguments must be a JSON object"}}).to_string(),
                };
                self.note(&json!({"tool": name, "result_bytes": content.len()}));
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
        }
    }
}

impl Provider for OpenAi {
    fn kind(&self) -> &'static str {
        "openai"
    }
    fn run<'a>(&'a self, req: &'a AttemptRequest) -> BoxFuture<'a, AttemptResult> {
        Box::pin(async move {
            let client = match &self.client {
                Ok(c) => c,
                Err(e) => {
                    return AttemptResult {
                        outcome: Some(Outcome::Auth),
                        error: Some(e.clone()),
                        ..AttemptResult::default()
                    }
                }
            };
            let mut l = Loop {
                req,
                client,
                r: AttemptResult::default(),
                log: Vec::new(),
            };
            let timed_out = tokio::time::timeout(req.timeout, l.run()).await.is_err();
            let mut r = std::mem::take(&mut l.r);
            if timed_out {
                r.outcome = Some(Outcome::Timeout);
                r.error = Some("the agent ran past its timeout".into());
            }
            r.transcript = std::mem::take(&mut l.log);
            r
        })
    }
}
