//! Benchmarks of the real binary over real stdio. Run: `cargo bench -p vane --bench stdio`.
//! Prints one line per number; the README quotes them.

#[path = "common/roadmaps.rs"]
mod roadmaps;
use roadmaps::big_roadmap;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vane_tools::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn p95(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

fn init(ws: &Path, roadmap: Option<&Path>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--workspace", ws.to_str().unwrap(), "init"]);
    if let Some(r) = roadmap {
        cmd.args(["--roadmap", r.to_str().unwrap()]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Process start to the `initialize` response, raw pipes.
fn startup(ws: &Path) -> f64 {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}});
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args(["serve", "--workspace", ws.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{init}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert!(line.contains("protocolVersion"), "{line}");
    drop(stdin);
    let _ = child.wait();
    ms
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn round_trips(c: &Client, tool: &str, args: serde_json::Value, n: usize) -> Vec<f64> {
    for _ in 0..50 {
        c.call_ok(tool, args.clone()).await.unwrap();
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.call_ok(tool, args.clone()).await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/roadmaps/weathervane-2025-11-19.yaml");
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // benchmarks measure speed: no rate limits
    std::fs::write(ws.join("vane.toml"), "[rate_limits]\nenabled = false\n").unwrap();
    std::fs::write(ws.join("file.txt"), "line\n".repeat(200)).unwrap();
    let small = "tasks:\n".to_string()
        + &(0..50)
            .map(|i| format!("  - id: S{i}\n    title: t{i}\n"))
            .collect::<String>();
    std::fs::write(ws.join("small.yaml"), small).unwrap();
    init(&ws, Some(&ws.join("small.yaml")));
    println!(
        "vane benchmarks (release build, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    let starts: Vec<f64> = (0..30).map(|_| startup(&ws)).collect();
    println!(
        "start → initialize response (front): median {:.2} ms, p95 {:.2} ms (target ≤ 20 ms)",
        median(starts.clone()),
        p95(starts)
    );

    // the tool server itself (`vane worker`); benches/runtime.rs measures
    // what the front adds on top
    let c = Client::spawn(
        Path::new(BIN),
        &["worker", "--workspace", ws.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    for (tool, args) in [
        ("status", json!({})),
        ("plan_next", json!({})),
        ("fs_read", json!({ "path": "file.txt" })),
    ] {
        let v = round_trips(&c, tool, args, 2000).await;
        println!(
            "{tool:<10} round trip over stdio: median {:.3} ms, p95 {:.3} ms (target ≤ 0.2 ms)",
            median(v.clone()),
            p95(v)
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(c.pid.unwrap());
    println!(
        "resident memory after 6,000 calls, idle: {:.1} MiB (target ≤ 15 MiB)",
        rss as f64 / 1024.0
    );
    c.close().await;

    // importing the larger fixture roadmap, in process
    if fixtures.exists() {
        let text = std::fs::read_to_string(&fixtures).unwrap();
        let mut times = Vec::new();
        for i in 0..10 {
            let wd = d.path().join(format!("imp{i}"));
            let paths = vane_store::StatePaths::new(&wd, wd.join(".vane"));
            let store = vane_store::Store::open(&paths).unwrap();
            let t = Instant::now();
            let (r, _) = vane_core::roadmap::parse_yaml(&text).unwrap();
            store.import_roadmap(&r, false, "bench").unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!("import weathervane-2025-11-19.yaml (190 tasks, parse + store + export): median {:.1} ms (target ≤ 50 ms)", median(times));
    }

    // plan_next on a 100,000-task roadmap
    let big = d.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("big.yaml"), big_roadmap(100_000)).unwrap();
    let t = Instant::now();
    init(&big, Some(&big.join("big.yaml")));
    println!(
        "import of a 100,000-task roadmap via the CLI: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let c = Client::spawn(
        Path::new(BIN),
        &["worker", "--workspace", big.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    let t = Instant::now();
    c.call_ok("plan_next", json!({})).await.unwrap();
    println!(
        "plan_next, 100,000 tasks, first call (loads the graph): {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let v = round_trips(&c, "plan_next", json!({ "limit": 5 }), 200).await;
    println!("plan_next, 100,000 tasks, round trip over stdio: median {:.2} ms, p95 {:.2} ms (target ≤ 5 ms)", median(v.clone()), p95(v));
    let rss = rss_kib(c.pid.unwrap());
    println!(
        "resident memory with the 100,000-task graph loaded: {:.1} MiB",
        rss as f64 / 1024.0
    );
    c.close().await;
}
