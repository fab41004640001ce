//! Many clients at once over Streamable HTTP: 64 concurrent MCP sessions
//! against one `vane serve --http` (release build), each calling tools in a
//! loop — reads only, then a mix with writes, then reads while the active
//! worker is killed every few seconds, then the mix while `vane upgrade
//! --binary` swaps the worker. Prints throughput, p50/p99 latency and failed
//! calls per phase. Client, front and worker share the machine's cores.
//!
//! Run: `cargo bench -p vane --bench http` (`VANE_BENCH_SECS`, default 30
//! per phase; `VANE_BENCH_CLIENTS`, default 64).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn vane(ws: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .output()
        .unwrap()
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut roadmap = String::from("tasks:\n");
    for i in 0..60 {
        roadmap.push_str(&format!(
            "  - id: T{i}\n    title: task {i}\n    priority: {}\n",
            ["high", "medium", "low"][i % 3]
        ));
        if i % 4 == 3 {
            roadmap.push_str(&format!("    dependencies: [T{}]\n", i - 1));
        }
    }
    std::fs::write(ws.join("roadmap.yaml"), roadmap).unwrap();
    std::fs::write(ws.join("a.txt"), "alpha\n".repeat(40)).unwrap();
    std::fs::write(
        ws.join("vane.toml"),
        "[rate_limits]\nenabled = false\n\n[runtime]\nping_interval_ms = 500\n\n[runtime.rollback]\nmin_calls = 1000000\n",
    )
    .unwrap();
    let roadmap = ws.join("roadmap.yaml");
    let out = vane(&ws, &["init", "--roadmap", roadmap.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &[
            "-c",
            "user.email=b@e",
            "-c",
            "user.name=b",
            "commit",
            "-qm",
            "init",
        ],
    ] {
        Command::new("git")
            .args(args)
            .current_dir(&ws)
            .output()
            .unwrap();
    }
    (d, ws)
}

fn serve(ws: &Path) -> (Server, String) {
    let mut child = Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(["serve", "--http", "127.0.0.1:0"])
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
            if let (false, Some(at)) = (sent, line.find("vane: serving MCP at ")) {
                let _ = tx.send(line[at + 21..].trim().to_string());
                sent = true;
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    (Server(child), url)
}

fn message(body: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(body) {
        return Some(v);
    }
    body.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find_map(|d| serde_json::from_str::<Value>(d).ok())
}

struct Session {
    c: reqwest::Client,
    url: String,
    id: String,
    n: u64,
}

impl Session {
    async fn open(c: &reqwest::Client, url: &str) -> Session {
        let post = |body: Value, sid: Option<&str>| {
            let mut r = c
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18");
            if let Some(s) = sid {
                r = r.header("mcp-session-id", s);
            }
            r.body(body.to_string()).send()
        };
        let r = post(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"}}}),
            None,
        )
        .await
        .unwrap();
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
        let _ = r.text().await;
        post(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            Some(&id),
        )
        .await
        .unwrap();
        Session {
            c: c.clone(),
            url: url.to_string(),
            id,
            n: 0,
        }
    }

    /// One call; `Err` with why when it failed in any way.
    async fn call(&mut self, tool: &str, args: &Value) -> Result<(), String> {
        self.n += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.n, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        let r = self
            .c
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", &self.id)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{tool}: {e}"))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| format!("{tool}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{tool}: HTTP {status}: {text}"));
        }
        let m = message(&text).ok_or_else(|| format!("{tool}: no message in {text}"))?;
        if m["result"]["isError"] != false {
            return Err(format!("{tool}: {m}"));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    failures: Vec<String>,
}

/// `clients` sessions calling for `secs`; `mix` picks the n-th call.
async fn phase(
    url: &str,
    clients: usize,
    secs: u64,
    mix: fn(u64) -> (&'static str, Value),
) -> (f64, Tally) {
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(Session::open(&c, url).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for (k, mut s) in sessions.into_iter().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut i = k as u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (tool, args) = mix(i);
                let c0 = Instant::now();
                let r = s.call(tool, &args).await;
                t.latencies_ms.push(c0.elapsed().as_secs_f64() * 1000.0);
                if let Err(e) = r {
                    t.failures.push(e);
                }
            }
            t
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        all.latencies_ms.extend(t.latencies_ms);
        all.failures.extend(t.failures);
    }
    (t0.elapsed().as_secs_f64(), all)
}

fn reads(i: u64) -> (&'static str, Value) {
    match i % 3 {
        0 => ("status", json!({})),
        1 => ("plan_next", json!({"limit": 5})),
        _ => ("fs_read", json!({"path": "a.txt"})),
    }
}

fn mixed(i: u64) -> (&'static str, Value) {
    match i % 10 {
        0 => (
            "decision_record",
            json!({"title": format!("bench {i}"), "summary": "load"}),
        ),
        1 => (
            "context_write",
            json!({"section": "bench", "content": format!("line {i}")}),
        ),
        n => reads(n),
    }
}

fn report(name: &str, secs: f64, mut t: Tally) -> usize {
    let n = t.latencies_ms.len();
    let p50 = pct(&mut t.latencies_ms, 0.50);
    let p99 = pct(&mut t.latencies_ms, 0.99);
    println!(
        "{name:<44} {:>8.0} calls/s  p50 {:>6.2} ms  p99 {:>7.2} ms  {:>7} calls  {} failed",
        n as f64 / secs,
        p50,
        p99,
        n,
        t.failures.len()
    );
    for f in t.failures.iter().take(3) {
        println!("    failure: {}", &f[..f.len().min(300)]);
    }
    t.failures.len()
}

fn active_pid(ws: &Path) -> Option<u32> {
    let out = vane(ws, &["workers", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["fronts"][0]["result"]["workers"]
        .as_array()?
        .iter()
        .find(|w| w["role"] == "active" && w["alive"] == true)
        .and_then(|w| w["pid"].as_u64())
        .map(|p| p as u32)
}

fn main() {
    let secs: u64 = std::env::var("VANE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let clients: usize = std::env::var("VANE_BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    vane_dispatch::install_tls();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_d, ws) = workspace();
    let (_server, url) = serve(&ws);
    println!(
        "vane serve --http, {clients} concurrent sessions, {secs} s per phase, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut failed = 0;
    rt.block_on(async {
        // warm up: the worker's caches, the connection pool
        let _ = phase(&url, 4, 2, reads).await;
        let (s, t) = phase(&url, clients, secs, reads).await;
        failed += report("reads (status, plan_next, fs_read)", s, t);
        let (s, t) = phase(&url, clients, secs, mixed).await;
        failed += report("mixed (20% writes)", s, t);

        // the active worker killed every 3 s
        let stop = Arc::new(AtomicBool::new(false));
        let killer = {
            let (stop, ws) = (stop.clone(), ws.clone());
            std::thread::spawn(move || {
                let mut kills = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(3));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(pid) = active_pid(&ws) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                        kills += 1;
                    }
                }
                kills
            })
        };
        let (s, t) = phase(&url, clients, secs, reads).await;
        stop.store(true, Ordering::Relaxed);
        let kills = killer.join().unwrap();
        failed += report(&format!("reads, active worker killed x{kills}"), s, t);

        // vane upgrade --binary (same build) while the mix runs
        let upgrade = {
            let ws = ws.clone();
            let obs = format!("{}s", (secs / 3).max(2));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                vane(
                    &ws,
                    &[
                        "upgrade",
                        "--binary",
                        BIN,
                        "--shadow",
                        &obs,
                        "--observe",
                        &obs,
                        "--min-samples",
                        "10",
                        "--json",
                    ],
                )
            })
        };
        let (s, t) = phase(&url, clients, secs, mixed).await;
        let out = upgrade.join().unwrap();
        let v = serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null);
        failed += report(
            &format!("mixed during vane upgrade ({})", v["decision"]),
            s,
            t,
        );
        if v["decision"] != "stable" {
            println!("    upgrade: {} — {}", v["decision"], v["reason"]);
        }
    });
    if failed > 0 {
        println!("FAILED CALLS: {failed}");
        std::process::exit(1);
    }
}
