//! Telemetry benchmarks. Run: `cargo bench -p vane --bench telemetry`.
//! 1. added median latency per tool call with telemetry on versus off
//!    (real binary, real stdio, interleaved batches to cancel drift);
//! 2. `telemetry summary` over 1,000,000 events.

use std::path::Path;
use std::time::Instant;

use serde_json::json;
use vane_tools::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn workspace(dir: &Path, toml: &str) -> std::path::PathBuf {
    let ws = dir.to_path_buf();
    std::fs::create_dir_all(&ws).unwrap();
    // benchmarks measure speed: no rate limits
    std::fs::write(
        ws.join("vane.toml"),
        format!("{toml}\n[rate_limits]\nenabled = false\n"),
    )
    .unwrap();
    std::fs::write(ws.join("file.txt"), "line\n".repeat(200)).unwrap();
    std::fs::write(
        ws.join("r.yaml"),
        "tasks:\n".to_string()
            + &(0..50)
                .map(|i| format!("  - id: S{i}\n    title: t{i}\n"))
                .collect::<String>(),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "--workspace",
            ws.to_str().unwrap(),
            "init",
            "--roadmap",
            "r.yaml",
        ])
        .current_dir(&ws)
        .output()
        .unwrap();
    assert!(out.status.success());
    ws
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let d = tempfile::tempdir().unwrap();
    let on = workspace(&d.path().join("on"), "");
    let off = workspace(&d.path().join("off"), "[telemetry]\nenabled = false\n");
    let con = Client::spawn(
        Path::new(BIN),
        &["serve", "--workspace", on.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    let coff = Client::spawn(
        Path::new(BIN),
        &["serve", "--workspace", off.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    println!("vane telemetry benchmarks (release build)");
    for (tool, args) in [
        ("status", json!({})),
        ("plan_next", json!({})),
        ("fs_read", json!({ "path": "file.txt" })),
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            con.call_ok(tool, args.clone()).await.unwrap();
            coff.call_ok(tool, args.clone()).await.unwrap();
        }
        // alternate call by call so drift of the machine hits both sides alike
        for i in 0..20_000 {
            let (c, v) = if i % 2 == 0 {
                (&con, &mut a)
            } else {
                (&coff, &mut b)
            };
            let t = Instant::now();
            c.call_ok(tool, args.clone()).await.unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let (mon, moff) = (median(a), median(b));
        println!(
            "{tool:<10} median round trip: telemetry on {mon:.1} µs, off {moff:.1} µs, added {:+.1} µs ({:+.1} %, target < 5 %)",
            mon - moff,
            (mon - moff) / moff * 100.0
        );
    }
    con.close().await;
    coff.close().await;

    // one million events of a realistic mix
    let log_dir = d.path().join("big/.vane/telemetry");
    std::fs::create_dir_all(&log_dir).unwrap();
    let tools = [
        "status",
        "plan_next",
        "fs_read",
        "fs_write",
        "cmd_run",
        "plan_update",
    ];
    let mut buf = String::with_capacity(400 * 1_000_000);
    for i in 0..1_000_000u64 {
        let tool = tools[(i % 6) as usize];
        let ok = i % 50 != 0;
        buf.push_str(&format!(
            "{{\"v\":1,\"ts\":\"2026-11-24T{:02}:{:02}:{:02}.{:03}Z\",\"kind\":\"tool_call\",\"process\":{{\"role\":\"server\",\"version\":\"0.1.{}\",\"pid\":{}}},\"tool\":\"{tool}\",\"ok\":{ok},\"error_code\":{},\"duration_us\":{},\"request_id\":\"{i}\",\"session_id\":\"a697b55cae06626ab6542d539f16abb8\",\"task_id\":null,\"trace_id\":\"22644cb9aad9f62e9bacddb790ec2eb1\",\"span_id\":\"7d68bccb0914897d\",\"args_bytes\":44,\"args_hash\":\"xxh3:595cbeaabfb86d14\",\"result_bytes\":835,\"result_hash\":\"xxh3:f7f002a0d84e829d\"}}\n",
            (i / 3_600_000) % 24, (i / 60_000) % 60, (i / 1000) % 60, i % 1000, i % 2, 1000 + i % 3,
            if ok { "null" } else { "\"not_found\"" },
            100 + (i * 7919) % 5000
        ));
    }
    std::fs::write(log_dir.join("operations.jsonl"), &buf).unwrap();
    println!(
        "summary input: 1,000,000 events, {:.0} MB",
        buf.len() as f64 / 1e6
    );
    drop(buf);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let s =
            vane_telemetry::summary::summarize(&log_dir.join("operations.jsonl"), None).unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(s["totals"]["tool_calls"], 1_000_000);
    }
    println!(
        "telemetry summary over 1,000,000 events (in process): median {:.3} s (target < 1 s)",
        median(times)
    );
    let t = Instant::now();
    let out = std::process::Command::new(BIN)
        .args([
            "--workspace",
            d.path().join("big").to_str().unwrap(),
            "telemetry",
            "summary",
            "--json",
            "--out",
            d.path().join("s.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "vane telemetry summary over 1,000,000 events (whole CLI): {:.3} s",
        t.elapsed().as_secs_f64()
    );
}
