//! The store on SQLite and on PostgreSQL, through the real binary.
//! Run: `cargo bench -p vane --bench store` (needs Debian's postgresql
//! binaries: the bench starts its own server, like the tests).
//!
//! - claims per second: 64 agents across 3 fronts (`vane serve`, each its own
//!   checkout and state directory on PostgreSQL; one workspace on SQLite)
//!   claiming a flat roadmap until nothing is left;
//! - `plan_next` round trip p50 on each engine, on the larger fixture roadmap
//!   and on 100,000 tasks (a `vane worker` over stdio);
//! - the same machine's floor for each: a `status` call (no planning).
//!
//! PostgreSQL runs on this machine with `fsync=off` (like the tests): the
//! numbers measure vane's work and the protocol round trips, not a disk.

#[path = "../../vane-store/tests/common/pg.rs"]
mod pg;

#[path = "common/roadmaps.rs"]
mod roadmaps;
use roadmaps::big_roadmap;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use vane_tools::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn pct(mut v: Vec<f64>, p: usize) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn vane(ws: &Path, args: &[&str]) {
    let out = std::process::Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .current_dir(ws)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A checkout with `roadmap` at `dir`; `url`: its PostgreSQL store.
fn checkout(dir: &Path, url: Option<&str>, roadmap: &str, import: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut toml = String::from("[rate_limits]\nenabled = false\n");
    if let Some(u) = url {
        toml.push_str(&format!("[store]\nurl = \"{u}\"\nmax_connections = 16\n"));
    }
    std::fs::write(dir.join("vane.toml"), toml).unwrap();
    std::fs::write(dir.join("roadmap.yaml"), roadmap).unwrap();
    if import {
        vane(dir, &["init", "--roadmap", "roadmap.yaml"]);
    } else {
        vane(dir, &["init"]);
    }
    dir.to_path_buf()
}

fn flat(n: usize) -> String {
    let mut y = String::from("tasks:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: T{i:05}\n    title: task {i}\n"));
    }
    y
}

async fn serve(ws: &Path) -> Arc<Client> {
    Arc::new(
        Client::spawn(
            Path::new(BIN),
            &["serve", "--workspace", ws.to_str().unwrap()],
            &[],
            true,
        )
        .await
        .unwrap(),
    )
}

/// 64 agents over `fronts` claim until nothing is left: claims per second.
async fn claims_per_second(fronts: &[Arc<Client>], tasks: usize) -> f64 {
    let t0 = Instant::now();
    let mut agents = Vec::new();
    for i in 0..64 {
        let c = fronts[i % fronts.len()].clone();
        agents.push(tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let p = c
                    .call_ok(
                        "plan_next",
                        json!({ "limit": 1, "claim": { "agent": format!("agent-{i}") } }),
                    )
                    .await
                    .unwrap();
                if p.get("claimed").is_none() {
                    return n;
                }
                n += 1;
            }
        }));
    }
    let mut total = 0;
    for a in agents {
        total += a.await.unwrap();
    }
    assert_eq!(total, tasks, "every task claimed exactly once");
    total as f64 / t0.elapsed().as_secs_f64()
}

/// Round trips of `tool` on a worker of each workspace, interleaved in
/// batches so that the machine's noise falls on every engine alike:
/// (first call ms, p50, p95) per workspace.
async fn compare(
    wss: &[&Path],
    tool: &str,
    args: serde_json::Value,
    n: usize,
) -> Vec<(f64, f64, f64)> {
    let mut clients = Vec::new();
    let mut firsts = Vec::new();
    for ws in wss {
        let c = Client::spawn(
            Path::new(BIN),
            &["worker", "--workspace", ws.to_str().unwrap()],
            &[],
            true,
        )
        .await
        .unwrap();
        let t = Instant::now();
        c.call_ok(tool, args.clone()).await.unwrap();
        firsts.push(t.elapsed().as_secs_f64() * 1000.0);
        for _ in 0..20 {
            c.call_ok(tool, args.clone()).await.unwrap();
        }
        clients.push(c);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(n); wss.len()];
    let batch = (n / 20).max(1);
    for _ in 0..20 {
        for (c, v) in clients.iter().zip(samples.iter_mut()) {
            for _ in 0..batch {
                let t = Instant::now();
                c.call_ok(tool, args.clone()).await.unwrap();
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    for c in clients {
        c.close().await;
    }
    firsts
        .into_iter()
        .zip(samples)
        .map(|(f, v)| (f, pct(v.clone(), 50), pct(v, 95)))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let Some(cluster) = pg::Cluster::private() else {
        eprintln!("the store bench needs PostgreSQL's binaries (apt-get install postgresql)");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    println!(
        "vane store benchmarks (release build, {} cores; PostgreSQL {} on this machine)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cluster.psql("postgres", "SHOW server_version")
    );

    // claims per second, 64 agents, 3 fronts
    const TASKS: usize = 2000;
    let yaml = flat(TASKS);
    for engine in ["sqlite", "postgres"] {
        let db = cluster.database();
        let url = (engine == "postgres").then_some(db.url.as_str());
        let base = d.path().join(format!("claims-{engine}"));
        let first = checkout(&base.join("host0"), url, &yaml, true);
        let checkouts: Vec<PathBuf> = if url.is_some() {
            let mut v = vec![first];
            for i in 1..3 {
                v.push(checkout(&base.join(format!("host{i}")), url, &yaml, false));
            }
            v
        } else {
            vec![first.clone(), first.clone(), first]
        };
        let mut fronts = Vec::new();
        for ws in &checkouts {
            fronts.push(serve(ws).await);
        }
        let rate = claims_per_second(&fronts, TASKS).await;
        println!(
            "claims/s, 64 agents across 3 fronts, {TASKS} ready tasks, {engine}: {rate:.0}{}",
            if url.is_some() {
                " (3 checkouts, one database)"
            } else {
                " (one workspace)"
            }
        );
        for f in fronts {
            Arc::try_unwrap(f).ok().unwrap().close().await;
        }
    }

    // plan_next on the larger fixture roadmap and on 100,000 tasks
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/roadmaps/weathervane-2025-11-19.yaml");
    let mut roadmaps = Vec::new();
    if let Ok(text) = std::fs::read_to_string(&fixture) {
        roadmaps.push((
            "weathervane-2025-11-19.yaml (the larger fixture)",
            text,
            2000,
        ));
    }
    roadmaps.push(("100,000 tasks", big_roadmap(100_000), 300));
    for (name, yaml, n) in roadmaps {
        let db = cluster.database();
        let mut wss = Vec::new();
        for (engine, url) in [("sqlite", None), ("postgres", Some(db.url.as_str()))] {
            let ws = d.path().join(format!("plan-{engine}-{}", yaml.len()));
            let t = Instant::now();
            checkout(&ws, url, &yaml, true);
            println!(
                "import of {name} on {engine}: {:.1} s",
                t.elapsed().as_secs_f64()
            );
            wss.push(ws);
        }
        let paths: Vec<&Path> = wss.iter().map(|p| p.as_path()).collect();
        let plan = compare(&paths, "plan_next", json!({ "limit": 5 }), n).await;
        let floor = compare(&paths, "fs_read", json!({ "path": "vane.toml" }), n).await;
        for (i, engine) in ["sqlite", "postgres"].iter().enumerate() {
            let (first, p50, p95) = plan[i];
            println!(
                "plan_next, {name}, {engine}: p50 {p50:.2} ms, p95 {p95:.2} ms, first call {first:.1} ms (floor: fs_read p50 {:.2} ms)",
                floor[i].1
            );
        }
    }
}
