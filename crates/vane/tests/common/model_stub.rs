//! A scripted model API on loopback, for driving the real agent CLIs (Claude
//! Code, Codex) offline: the CLI believes it talks to its vendor's API, the
//! stub decides the model's turns — call a vane tool, then finish — and keeps
//! a log of every request and of the tool results the CLI sent back.
//!
//! Two wire formats, each as the vendor streams it (server-sent events):
//! Anthropic's Messages API (`POST /v1/messages`, what Claude Code speaks with
//! `ANTHROPIC_BASE_URL`) and OpenAI's Responses API (`POST …/responses`, what
//! Codex speaks to a `model_providers` entry with `wire_api = "responses"`).
//! `VANE_STUB_DUMP=DIR` writes every request body there (to see what a new CLI
//! version sends). Plain HTTP/1.1 on std threads: one request per connection
//! (`Connection: close`), enough for both CLIs and free of any framework.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// Which vendor API the stub speaks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wire {
    /// Anthropic Messages API (Claude Code).
    Anthropic,
    /// OpenAI Responses API (Codex).
    Responses,
}

/// One scripted model turn: call the tool whose name ends with
/// `__{tool}` (the CLI's name for vane's tool) with these arguments.
#[derive(Clone, Debug)]
pub struct Step {
    pub tool: String,
    pub args: Value,
}

/// What the stub saw.
#[derive(Default, Debug)]
pub struct Log {
    /// `METHOD PATH` of every request, in order.
    pub requests: Vec<String>,
    /// The tool names the CLI offered the model (from the last scripted request).
    pub offered_tools: Vec<String>,
    /// The last scripted request, whole (tool lists, deferred-tool names …).
    pub last_request: String,
    /// Tool calls the stub made: (CLI tool name, arguments).
    pub calls: Vec<(String, Value)>,
    /// Tool results the CLI sent back, as the text it gave the model.
    pub results: Vec<String>,
    /// Tool-search queries the model made (deferred tools).
    pub searches: Vec<String>,
    /// Requests the stub could not follow (for the test's failure message).
    pub problems: Vec<String>,
    /// A human-readable transcript of the exchange (the stub's log).
    pub transcript: Vec<String>,
}

pub struct ModelStub {
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
}

impl ModelStub {
    /// Starts the stub on 127.0.0.1 (an ephemeral port) with a script of
    /// tool calls; after the last one the model answers `final_text`.
    pub fn start(wire: Wire, steps: Vec<Step>, final_text: &str) -> ModelStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Log::default()));
        let state = Arc::new((steps, final_text.to_string(), log.clone(), wire));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let state = state.clone();
                std::thread::spawn(move || {
                    let (steps, fin, log, wire) = &*state;
                    let _ = serve_one(conn, *wire, steps, fin, log);
                });
            }
        });
        ModelStub { port, log }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn transcript(&self) -> String {
        self.log.lock().unwrap().transcript.join("\n")
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, path, body }))
}

fn serve_one(
    conn: TcpStream,
    wire: Wire,
    steps: &[Step],
    fin: &str,
    log: &Mutex<Log>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    let Some(req) = read_request(&mut r)? else {
        return Ok(());
    };
    log.lock()
        .unwrap()
        .requests
        .push(format!("{} {}", req.method, req.path));
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    if let Ok(dir) = std::env::var("VANE_STUB_DUMP") {
        let n = log.lock().unwrap().requests.len();
        let _ = std::fs::write(format!("{dir}/{n:03}.json"), &req.body);
    }
    let is_model_call = req.method == "POST"
        && match wire {
            Wire::Anthropic => req.path.starts_with("/v1/messages") && !req.path.contains("count"),
            Wire::Responses => req.path.ends_with("/responses"),
        };
    if !is_model_call {
        // models lists, token counts, telemetry …: nothing the test needs
        let (status, out) = if req.path.contains("count_tokens") {
            ("200 OK", json!({"input_tokens": 100}).to_string())
        } else if req.path.contains("/models") {
            ("200 OK", json!({"data": [], "models": []}).to_string())
        } else {
            (
                "404 Not Found",
                json!({"error": "not in the stub"}).to_string(),
            )
        };
        write!(
            w,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
            out.len()
        )?;
        return w.flush();
    }
    let turn = decide(wire, &body, steps, fin, log);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let events = match wire {
        Wire::Anthropic => anthropic_events(&turn),
        Wire::Responses => responses_events(&turn),
    };
    if stream || wire == Wire::Responses {
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
        )?;
        for (name, data) in events {
            write!(w, "event: {name}\ndata: {data}\n\n")?;
        }
    } else {
        let msg = anthropic_message(&turn).to_string();
        write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
    }
    w.flush()
}

/// The model's next turn.
enum Turn {
    Tool {
        name: String,
        args: Value,
        id: String,
    },
    Text(String),
}

/// Reads the conversation the CLI sent and scripts the next turn: the number
/// of vane tool results already in it says which step comes next. A request
/// that offers no vane tool (title generation, a quota probe …) gets plain
/// text. Where the CLI defers MCP tools behind its tool search (Claude Code's
/// `ToolSearch`: only the names are listed until the model selects them), the
/// model first selects the tool by name, as a real model does.
fn decide(wire: Wire, body: &Value, steps: &[Step], fin: &str, log: &Mutex<Log>) -> Turn {
    let tools = offered_tools(body);
    let text = body.to_string();
    let mut log = log.lock().unwrap();
    if !text.contains("vane") || tools.is_empty() {
        return Turn::Text("ok".into());
    }
    log.offered_tools = tools.clone();
    log.last_request = text.clone();
    let results = tool_results(wire, body);
    let done = results.len();
    if done > log.results.len() {
        for r in &results[log.results.len()..] {
            log.transcript
                .push(format!("  <- tool result from the CLI: {}", clip(r, 600)));
        }
        log.results = results;
    }
    let Some(step) = steps.get(done) else {
        log.transcript.push(format!("  -> final text: {fin}"));
        return Turn::Text(fin.to_string());
    };
    let suffix = format!("__{}", step.tool);
    let offered = tools
        .iter()
        .find(|t| t.ends_with(&suffix) && t.contains("vane"));
    let Some(name) = offered else {
        // deferred: listed by name only, loaded through the tool search
        let deferred = format!("mcp__vane{suffix}");
        let query = format!("select:{deferred}");
        let searches = log.searches.iter().filter(|q| **q == query).count();
        if text.contains(&deferred) && tools.iter().any(|t| t == "ToolSearch") && searches == 0 {
            log.transcript
                .push(format!("  -> model turn: ToolSearch {query}"));
            log.searches.push(query.clone());
            return Turn::Tool {
                name: "ToolSearch".into(),
                args: json!({ "query": query }),
                id: format!("search_{}", log.searches.len()),
            };
        }
        log.problems.push(format!(
            "step {done}: no offered tool ends with {suffix}: {tools:?}"
        ));
        return Turn::Text(format!("the tool {} was not offered", step.tool));
    };
    log.transcript
        .push(format!("  -> model turn: call {name} {}", step.args));
    log.calls.push((name.clone(), step.args.clone()));
    Turn::Tool {
        name: name.clone(),
        args: step.args.clone(),
        id: format!("vane_{done}"),
    }
}

/// The names of the tools the CLI offers the model. A deferred tool (Claude
/// Code's tool search) counts once a search result referenced it; a Responses
/// API namespace (Codex's `mcp__vane`) contributes `namespace__tool` names.
fn offered_tools(body: &Value) -> Vec<String> {
    let text = body.to_string();
    let mut out = Vec::new();
    for t in body["tools"].as_array().into_iter().flatten() {
        let name = t
            .get("name")
            .or_else(|| t.pointer("/function/name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if t["type"] == "namespace" {
            for inner in t["tools"].as_array().into_iter().flatten() {
                if let Some(n) = inner["name"].as_str() {
                    out.push(format!("{name}__{n}"));
                }
            }
            continue;
        }
        let deferred = t.get("defer_loading") == Some(&Value::Bool(true));
        let referenced = text.contains(&format!("\"tool_reference\",\"tool_name\":\"{name}\""));
        if !name.is_empty() && (!deferred || referenced) {
            out.push(name.to_string());
        }
    }
    out
}

/// The results of the scripted vane tool calls in a conversation, in order,
/// as text (tool-search results are not counted).
fn tool_results(wire: Wire, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match wire {
        Wire::Anthropic => {
            for m in body["messages"].as_array().into_iter().flatten() {
                for b in m["content"].as_array().into_iter().flatten() {
                    let ours = b["tool_use_id"]
                        .as_str()
                        .is_some_and(|id| id.starts_with("toolu_vane_"));
                    if b["type"] == "tool_result" && ours {
                        out.push(block_text(&b["content"]));
                    }
                }
            }
        }
        Wire::Responses => {
            for item in body["input"].as_array().into_iter().flatten() {
                let ours = item["call_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("vane_"));
                if item["type"] == "function_call_output" && ours {
                    out.push(block_text(&item["output"]));
                }
            }
        }
    }
    out
}

fn block_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|b| {
                b.get("text")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| b.to_string())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Object(o) => o
            .get("content")
            .map(block_text)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn anthropic_message(turn: &Turn) -> Value {
    let (content, stop) = match turn {
        Turn::Tool { name, args, id } => (
            json!([{"type": "tool_use", "id": format!("toolu_{id}"), "name": name, "input": args}]),
            "tool_use",
        ),
        Turn::Text(t) => (json!([{"type": "text", "text": t}]), "end_turn"),
    };
    json!({
        "id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-stub",
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 7,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    })
}

fn anthropic_events(turn: &Turn) -> Vec<(&'static str, String)> {
    let start = json!({"type": "message_start", "message": {
        "id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-stub",
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}});
    let mut ev = vec![("message_start", start.to_string())];
    let stop = match turn {
        Turn::Tool { name, args, id } => {
            ev.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block":
                    {"type": "tool_use", "id": format!("toolu_{id}"), "name": name, "input": {}}})
                .to_string(),
            ));
            ev.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta":
                    {"type": "input_json_delta", "partial_json": args.to_string()}})
                .to_string(),
            ));
            "tool_use"
        }
        Turn::Text(t) => {
            ev.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}})
                .to_string(),
            ));
            ev.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": t}})
                .to_string(),
            ));
            "end_turn"
        }
    };
    ev.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}).to_string(),
    ));
    ev.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 7}})
        .to_string(),
    ));
    ev.push(("message_stop", json!({"type": "message_stop"}).to_string()));
    ev
}

fn responses_events(turn: &Turn) -> Vec<(&'static str, String)> {
    let item = match turn {
        Turn::Tool { name, args, id } => {
            // a tool of a namespace is called by its own name in that namespace
            let (namespace, name) = match name.rsplit_once("__") {
                Some((ns, n)) if ns.starts_with("mcp__") => (Some(ns), n),
                _ => (None, name.as_str()),
            };
            let mut call = json!({
                "type": "function_call", "id": format!("fc_{id}"), "call_id": id,
                "name": name, "arguments": args.to_string(), "status": "completed"});
            if let Some(ns) = namespace {
                call["namespace"] = json!(ns);
            }
            call
        }
        Turn::Text(t) => json!({
            "type": "message", "id": "msg_stub", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": t, "annotations": []}]}),
    };
    let usage = json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": 19});
    vec![
        (
            "response.created",
            json!({"type": "response.created", "response": {"id": "resp_stub", "status": "in_progress"}})
                .to_string(),
        ),
        (
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": 0, "item": item})
                .to_string(),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "response":
                {"id": "resp_stub", "status": "completed", "output": [item], "usage": usage}})
            .to_string(),
        ),
    ]
}
