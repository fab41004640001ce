//! `vane serve --http`: the real binary serving Streamable HTTP, driven by
//! real HTTP requests (reqwest) and the official Python SDK's HTTP client;
//! tokens, DNS-rebinding protection, limits, sessions across a worker's
//! death, graceful shutdown.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{init_workspace, vane, BIN};
use serde_json::{json, Value};

const READER: &str = "reader-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

struct Server {
    child: Child,
    url: String,
    _d: tempfile::TempDir,
    ws: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vane serve --http 127.0.0.1:0` in a fresh workspace; `toml` is its
/// vane.toml. Waits for the line that names the endpoint.
fn start(toml: &str) -> Server {
    let (d, ws) = init_workspace(
        toml,
        "tasks:\n  - id: T1\n    title: one\n  - id: T2\n    title: two\n",
        &[("a.txt", "alpha\n")],
    );
    start_in(d, ws)
}

fn start_in(d: tempfile::TempDir, ws: PathBuf) -> Server {
    let mut child = Command::new(BIN)
        .arg("--workspace")
        .arg(&ws)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env(
            "VANE_TEST_HTTP_TOKENS",
            format!("{READER}, {ADMIN}:tools+admin"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if !sent {
                if let Some(at) = line.find("vane: serving MCP at ") {
                    let _ = tx.send(line[at + 21..].trim().to_string());
                    sent = true;
                }
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("vane serve --http names its endpoint on stderr");
    Server {
        child,
        url,
        _d: d,
        ws,
    }
}

const WITH_TOKENS: &str = "[http]\ntokens_env = \"VANE_TEST_HTTP_TOKENS\"\nmax_body_bytes = 65536\n\n[runtime]\nping_interval_ms = 200\n";

fn http() -> reqwest::Client {
    vane_dispatch::install_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The JSON-RPC message in an answer (a JSON body, or the last `data:` of
/// an SSE stream).
fn message(body: &str) -> Value {
    if let Ok(v) = serde_json::from_str(body) {
        return v;
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .find_map(|d| serde_json::from_str::<Value>(d).ok())
        .unwrap_or_else(|| panic!("no JSON-RPC message in {body:?}"))
}

/// One MCP session over HTTP, as a client library would drive it.
struct Mcp {
    c: reqwest::Client,
    url: String,
    token: Option<String>,
    session: Option<String>,
    id: u64,
}

impl Mcp {
    async fn open(url: &str, token: Option<&str>) -> Mcp {
        let mut m = Mcp {
            c: http(),
            url: url.to_string(),
            token: token.map(str::to_string),
            session: None,
            id: 0,
        };
        let (status, headers, body) = m
            .post(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "vane-test", "version": "1"}}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        m.session = headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(m.session.is_some(), "a session id");
        let (status, _, _) = m
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(status, 202);
        m
    }

    async fn post(&self, msg: Value) -> (u16, reqwest::header::HeaderMap, String) {
        let mut r = self
            .c
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            r = r.header("mcp-session-id", s);
        }
        let resp = r.body(msg.to_string()).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let (status, _, body) = self
            .post(json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params}))
            .await;
        assert_eq!(status, 200, "{method}: {body}");
        message(&body)
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        let m = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        m["result"].clone()
    }

    async fn tool_names(&mut self) -> Vec<String> {
        let m = self.request("tools/list", json!({})).await;
        m["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }
}

fn active_worker_pid(ws: &Path) -> u32 {
    let out = vane(ws, &["workers", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["fronts"][0]["result"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["role"] == "active")
        .and_then(|w| w["pid"].as_u64())
        .expect("an active worker") as u32
}

/// Tokens: none → 401 naming the resource metadata; a wrong one → 401
/// `invalid_token`; the metadata document says where to get one. The
/// reader's token gets tools but never admin tools, whatever the flag; the
/// admin's gets them once the flag is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_and_the_resource_metadata() {
    let s = start(WITH_TOKENS);
    let c = http();
    let r = c
        .post(&s.url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    let meta_url = challenge.split('"').nth(1).unwrap().to_string();
    assert!(
        meta_url.ends_with("/.well-known/oauth-protected-resource/mcp"),
        "{meta_url}"
    );
    let r = c
        .post(&s.url)
        .bearer_auth("not-a-token-0123456789")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    let doc: Value = c.get(&meta_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["resource"], s.url.as_str());
    assert_eq!(doc["scopes_supported"], json!(["tools", "admin"]));

    assert!(vane(&s.ws, &["flags", "set", "ADMIN_TOOLS", "1"])
        .status
        .success());
    let mut reader = Mcp::open(&s.url, Some(READER)).await;
    let names = reader.tool_names().await;
    assert!(names.contains(&"status".to_string()), "{names:?}");
    for admin in ["flags_list", "worker_health", "route_switch"] {
        assert!(
            !names.contains(&admin.to_string()),
            "{admin} shown to a reader: {names:?}"
        );
    }
    let st = reader.call("status", json!({})).await;
    assert_eq!(st["structuredContent"]["roadmap"]["tasks"], 2);
    let e = reader.call("flags_list", json!({})).await;
    assert_eq!(e["isError"], true);
    assert_eq!(
        e["structuredContent"]["error"]["code"], "unauthorized",
        "{e}"
    );
    let e = reader.call("worker_health", json!({})).await;
    assert_eq!(
        e["structuredContent"]["error"]["code"], "unauthorized",
        "{e}"
    );

    let mut admin = Mcp::open(&s.url, Some(ADMIN)).await;
    let names = admin.tool_names().await;
    assert!(names.contains(&"worker_health".to_string()), "{names:?}");
    let h = admin.call("worker_health", json!({})).await;
    assert_eq!(
        h["structuredContent"]["workers"][0]["role"], "active",
        "{h}"
    );
    let f = admin.call("flags_list", json!({})).await;
    assert_eq!(f["isError"], false, "{f}");
}

/// DNS rebinding and limits: a foreign Host or Origin is refused before
/// anything runs, a body over `max_body_bytes` gets 413, and the server
/// goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_nothing_else_degrades() {
    let s = start(WITH_TOKENS);
    let c = http();
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}})
    .to_string();
    let post = |extra: &[(&str, &str)], body: String| {
        let mut r = c
            .post(&s.url)
            .bearer_auth(READER)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        r.body(body).send()
    };
    let r = post(&[("host", "evil.example")], init.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "a foreign Host");
    let r = post(&[("origin", "http://evil.example")], init.clone())
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "a foreign Origin");
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "fs_write", "arguments": {"path": "x", "content": "x".repeat(200_000)}}});
    let r = post(&[], big.to_string()).await.unwrap();
    assert_eq!(r.status().as_u16(), 413, "over max_body_bytes");
    // a client that opens its session's event stream and never reads it
    let mut slow = Mcp::open(&s.url, Some(READER)).await;
    let stream = c
        .get(&s.url)
        .bearer_auth(READER)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", slow.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200, "the GET stream is open");
    // many idle sessions cost little and block nobody
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let r = post(&[], init.clone()).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        idle.push(r.headers()["mcp-session-id"].to_str().unwrap().to_string());
    }
    let t = Instant::now();
    let mut m = Mcp::open(&s.url, Some(READER)).await;
    for _ in 0..20 {
        let st = m.call("status", json!({})).await;
        assert_eq!(st["isError"], false);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // the slow client's own requests still work, its stream still open
    assert_eq!(slow.call("plan_next", json!({})).await["isError"], false);
    drop(stream);
}

fn stateless(c: &reqwest::Client, url: &str, token: &str, id: u64) -> reqwest::RequestBuilder {
    c.post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "plan_next")
        .body(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "plan_next", "arguments": {"limit": 1},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}})
            .to_string(),
        )
}

/// Stateless requests have no session, so what is kept per client follows
/// the token: its rate limit holds across requests, and another token has
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_clients_are_rate_limited_by_their_token() {
    let s = start(&format!(
        "{WITH_TOKENS}\n[rate_limits]\ntools = {{ per_second = 1, burst = 3 }}\n"
    ));
    let c = http();
    let mut limited = 0;
    for i in 0..6 {
        let r = stateless(&c, &s.url, READER, i).send().await.unwrap();
        let m = message(&r.text().await.unwrap());
        if m["result"]["structuredContent"]["error"]["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(
        limited >= 2,
        "6 quick calls over a burst of 3: {limited} limited"
    );
    let r = stateless(&c, &s.url, ADMIN, 99).send().await.unwrap();
    let m = message(&r.text().await.unwrap());
    assert_eq!(
        m["result"]["isError"], false,
        "another token, another bucket: {m}"
    );
}

/// A client of revision 2026-07-28 sends stateless requests: no
/// initialize, no session, each request saying what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_requests_need_no_session() {
    let s = start(WITH_TOKENS);
    let r = http()
        .post(&s.url)
        .bearer_auth(READER)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "plan_next")
        .body(
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
                "name": "plan_next", "arguments": {"limit": 1},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("mcp-session-id").is_none(), "no session");
    let m = message(&r.text().await.unwrap());
    assert_eq!(m["id"], 9);
    assert_eq!(
        m["result"]["structuredContent"]["tasks"][0]["id"], "T1",
        "{m}"
    );
}

/// Several sessions at once keep working while the active worker is killed
/// under them, and SIGTERM stops the server gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_worker_death_and_shutdown_is_graceful() {
    let mut s = start(WITH_TOKENS);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(Mcp::open(&s.url, Some(READER)).await);
    }
    for m in &mut sessions {
        let r = m.call("fs_read", json!({"path": "a.txt"})).await;
        assert_eq!(r["isError"], false, "{r}");
    }
    let pid = active_worker_pid(&s.ws);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut handles = Vec::new();
    for mut m in sessions {
        handles.push(tokio::spawn(async move {
            let mut bad = Vec::new();
            for i in 0..10 {
                let r = if i % 2 == 0 {
                    m.call("status", json!({})).await
                } else {
                    m.call("plan_next", json!({})).await
                };
                if r["isError"] != false {
                    bad.push(r);
                }
            }
            bad
        }));
    }
    for h in handles {
        let bad = h.await.unwrap();
        assert!(
            bad.is_empty(),
            "failed calls across the worker's death: {bad:?}"
        );
    }
    let replacement = active_worker_pid(&s.ws);
    assert_ne!(replacement, pid, "replaced");
    // graceful stop
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let t = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // its worker went with it (drained, then stopped)
    let gone = |p: u32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), None).is_err()
            || std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|st| st.contains(") Z "))
    };
    let t = Instant::now();
    while !gone(replacement) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone(replacement), "worker {replacement} outlived the front");
}

/// The Python interpreter with the official `mcp` SDK: `$VANE_PYTHON`
/// (`.ci/run` makes a venv), else `~/.cache/vane-py`.
fn python() -> PathBuf {
    let p = std::env::var_os("VANE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vane-py/bin/python")
        });
    let ok = Command::new(&p)
        .args([
            "-c",
            "from mcp.client.streamable_http import streamable_http_client",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} with the `mcp` package is needed (python3 -m venv ~/.cache/vane-py && ~/.cache/vane-py/bin/pip install mcp; .ci/run does it)",
        p.display()
    );
    p
}

/// The official Python SDK's Streamable HTTP client, with a bearer token:
/// handshake, tools/list, a call whose answer its own validation accepts.
#[test]
fn the_python_sdk_http_client_gets_real_answers() {
    let py = python();
    let s = start(WITH_TOKENS);
    let script = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main(url, token):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, streamable_http_client(url, http_client=http) as (r, w):
        async with ClientSession(r, w) as s:
            init = await s.initialize()
            tools = await s.list_tools()
            st = await s.call_tool("status", {})
            pn = await s.call_tool("plan_next", {"limit": 5})
            print(json.dumps({
                "server": init.server_info.name,
                "tools": [t.name for t in tools.tools],
                "status_error": st.is_error,
                "tasks": st.structured_content["roadmap"]["tasks"],
                "next": [t["id"] for t in pn.structured_content["tasks"]],
            }))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;
    let out = Command::new(py)
        .args(["-c", script, &s.url, READER])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["server"], "vane");
    assert_eq!(v["status_error"], false);
    assert_eq!(v["tasks"], 2);
    assert_eq!(v["next"], json!(["T1", "T2"]));
    assert!(v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "plan_next"));
}

/// Without tokens the endpoint serves loopback only, and a non-loopback
/// address is refused unless asked for — and then it needs tokens.
#[test]
fn without_tokens_only_loopback_is_served() {
    let (_d, ws) = init_workspace("", "tasks: []\n", &[]);
    let out = vane(&ws, &["serve", "--http", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_remote"), "{err}");
    std::fs::write(ws.join("vane.toml"), "[http]\nallow_remote = true\n").unwrap();
    let out = vane(&ws, &["serve", "--http", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs tokens"), "{err}");
}

/// `vane http-token new` stores only the token's hash (0600) and prints the
/// token once; a server reading that file accepts it with its scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_token_new_stores_a_hash_the_server_accepts() {
    let (d, ws) = init_workspace(
        "[http]\ntokens_file = \".vane/http-tokens\"\n",
        "tasks:\n  - id: T1\n    title: one\n",
        &[],
    );
    let out = vane(&ws, &["http-token", "new"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("vane_") && token.len() > 40, "{token}");
    let file = ws.join(".vane/http-tokens");
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&token), "the token itself is never stored");
    assert!(
        stored.starts_with("sha256:") && stored.trim_end().ends_with(" tools"),
        "{stored}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let s = start_in(d, ws);
    let mut m = Mcp::open(&s.url, Some(&token)).await;
    assert_eq!(m.call("status", json!({})).await["isError"], false);
    let r = http()
        .post(&s.url)
        .bearer_auth(READER)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "only the file's tokens");
}
