//! A whole `vane upgrade --binary` under a client's continuous calls: the time
//! of each phase (from the report) and the client-side latency before,
//! during and after the switch. Run: `cargo bench -p vane --bench upgrade`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vane_tools::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn run(ws: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .output()
        .unwrap()
}

fn git(ws: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(ws)
        .args(args)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn pct(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // benchmarks measure speed: no rate limits
    std::fs::write(ws.join("vane.toml"), "[rate_limits]\nenabled = false\n").unwrap();
    let roadmap = "tasks:\n".to_string()
        + &(0..50)
            .map(|i| format!("  - id: S{i}\n    title: t{i}\n"))
            .collect::<String>();
    std::fs::write(ws.join("roadmap.yaml"), roadmap).unwrap();
    std::fs::write(ws.join(".gitignore"), ".vane/\n").unwrap();
    assert!(run(
        &ws,
        &[
            "init",
            "--roadmap",
            ws.join("roadmap.yaml").to_str().unwrap()
        ]
    )
    .status
    .success());
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "."]);
    git(&ws, &["commit", "-qm", "init"]);
    let c = Arc::new(
        Client::spawn(
            Path::new(BIN),
            &["serve", "--workspace", ws.to_str().unwrap()],
            &[],
            true,
        )
        .await
        .unwrap(),
    );
    c.call_ok("status", json!({})).await.unwrap();
    // one client calling back to back, every latency with its time
    let samples: Arc<Mutex<Vec<(Instant, f64, bool)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (c2, s2, st) = (c.clone(), samples.clone(), stop.clone());
    let load = tokio::spawn(async move {
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) {
            i += 1;
            let (tool, args) = if i.is_multiple_of(2) {
                ("status", json!({}))
            } else {
                ("plan_next", json!({}))
            };
            let t = Instant::now();
            let ok = c2
                .call(tool, args)
                .await
                .is_ok_and(|r| r.is_error != Some(true));
            s2.lock()
                .unwrap()
                .push((t, t.elapsed().as_secs_f64() * 1e6, ok));
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let ws2 = ws.clone();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &ws2,
            &[
                "upgrade",
                "--binary",
                BIN,
                "--shadow",
                "5s",
                "--observe",
                "5s",
                "--json",
            ],
        )
    })
    .await
    .unwrap();
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!(
        "vane upgrade --binary (release, 2 cores): decision {} in {:.2} s",
        report["decision"],
        report["duration_s"].as_f64().unwrap_or(0.0)
    );
    let steps = report["steps"].as_array().cloned().unwrap_or_default();
    let mut prev = 0.0;
    for s in &steps {
        let at = s["at_s"].as_f64().unwrap_or(0.0);
        println!(
            "  {:<22} {:<8} +{:>8.1} ms",
            s["step"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            (at - prev) * 1000.0
        );
        prev = at;
    }
    let promote_at = steps
        .iter()
        .find(|s| s["step"] == "promote")
        .and_then(|s| s["at_s"].as_f64())
        .map(|s| started + Duration::from_secs_f64(s));
    let all = samples.lock().unwrap().clone();
    let failed = all.iter().filter(|s| !s.2).count();
    let phase = |from: Instant, to: Instant| -> Vec<f64> {
        all.iter()
            .filter(|s| s.0 >= from && s.0 < to)
            .map(|s| s.1)
            .collect()
    };
    let before = phase(started - Duration::from_secs(2), started);
    let during = phase(started, ended);
    let after = phase(ended, ended + Duration::from_secs(2));
    for (name, v) in [
        ("before the upgrade", &before),
        ("during the upgrade", &during),
        ("after the upgrade", &after),
    ] {
        println!(
            "client latency {name:<19} {:>6} calls: p50 {:.0} µs, p99 {:.0} µs, max {:.1} ms",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0) / 1000.0
        );
    }
    if let Some(p) = promote_at {
        let around = phase(
            p - Duration::from_millis(250),
            p + Duration::from_millis(250),
        );
        println!(
            "client latency within ±250 ms of the switch: {} calls, p50 {:.0} µs, max {:.1} ms",
            around.len(),
            pct(&around, 0.5),
            pct(&around, 1.0) / 1000.0
        );
    }
    println!("failed client calls: {failed} of {}", all.len());
}
