//! Dispatch benchmarks. Run: `cargo bench -p vane --bench dispatch`.
//! 1. vane's own overhead per dispatched task, provider time excluded:
//!    `vane run` over 200 tasks with an agent that answers at once; the
//!    wall time minus the agents' own time (each attempt's start→end in the
//!    ledger), per task. The machine's floor — starting the same agent
//!    directly — is printed beside it.
//! 2. `vane cost summary` over 1,000,000 ledger rows, each grouping.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn vane(ws: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
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
    out
}

fn workspace(dir: &Path, tasks: usize, toml: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vane.toml"), toml).unwrap();
    std::fs::write(
        dir.join("r.yaml"),
        "tasks:\n".to_string()
            + &(0..tasks)
                .map(|i| format!("  - id: B{i}\n    title: task {i}\n"))
                .collect::<String>(),
    )
    .unwrap();
    vane(dir, &["init", "--roadmap", "r.yaml"]);
    dir.to_path_buf()
}

fn overhead() {
    let d = tempfile::tempdir().unwrap();
    let agent = d.path().join("agent.sh");
    std::fs::write(
        &agent,
        "#!/bin/sh\ncat > /dev/null\necho '{\"outcome\":\"succeeded\",\"usage\":{\"input_tokens\":1000,\"output_tokens\":100}}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let n = 200;
    let ws = workspace(
        &d.path().join("ws"),
        n,
        &format!(
            "[providers.local]\nkind = \"command\"\ncommand = \"{}\"\nmodel = \"gpt-4o-mini\"\n[telemetry]\nenabled = true\n",
            agent.display()
        ),
    );
    // the floor: the same agent started directly, n times
    let t0 = Instant::now();
    for _ in 0..n {
        let out = Command::new(&agent)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let floor_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;

    let t0 = Instant::now();
    let out = vane(&ws, &["run", "--json"]);
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), n, "every task dispatched");
    let agent_ms: f64 = tasks
        .iter()
        .flat_map(|t| t["attempts"].as_array().unwrap())
        .map(|a| a["duration_ms"].as_f64().unwrap())
        .sum();
    let per_task = (wall_ms - agent_ms) / n as f64;
    println!(
        "dispatch overhead: {n} tasks in {:.0} ms; agents' own time {:.0} ms; vane's overhead {:.2} ms per task (target ≤ 20 ms); starting the agent directly: {:.2} ms (the machine's floor)",
        wall_ms, agent_ms, per_task, floor_ms
    );
}

fn cost_summary() {
    let d = tempfile::tempdir().unwrap();
    let ws = workspace(&d.path().join("ws"), 1, "");
    let rows = 1_000_000i64;
    let t0 = Instant::now();
    {
        let conn = rusqlite::Connection::open(ws.join(".vane/vane.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
            .unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut ins = tx
                .prepare(
                    "INSERT INTO dispatch_attempts(task_id, runner, runner_pid, env, provider, model, started_at_ms,
                       finished_at_ms, outcome, input_tokens, cached_input_tokens, output_tokens, estimate_micros,
                       cost_micros, ceiling_micros, priced)
                     VALUES (?1, 'bench:1:0', 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 5000000, 1)",
                )
                .unwrap();
            let providers = ["claude", "codex", "api", "local"];
            let models = [
                "claude-sonnet-4-5",
                "claude-opus-4-1",
                "gpt-5-codex",
                "gpt-4o-mini",
                "gpt-5",
                "gpt-5-mini",
                "claude-haiku-4-5",
                "local-model",
            ];
            let outcomes = ["succeeded", "task_failed", "rate_limited", "transient"];
            let now = chrono::Utc::now().timestamp_millis();
            for i in 0..rows {
                let started = now - (i * 7_776) % (90 * 86_400_000); // 90 days
                ins.execute(rusqlite::params![
                    format!("T-{}", i % 5000),
                    if i % 10 == 0 { "prod" } else { "dev" },
                    providers[(i % 4) as usize],
                    models[(i % 8) as usize],
                    started,
                    started + 60_000,
                    outcomes[(i % 13 % 4) as usize],
                    20_000 + i % 1000,
                    10_000,
                    1_500,
                    40_000 + i % 5000,
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    println!(
        "cost summary: {rows} ledger rows written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    for by in ["provider", "model", "task", "day", "outcome"] {
        for since in [None, Some("7d")] {
            let mut args = vec!["cost", "summary", "--json", "--by", by, "--all-envs"];
            if let Some(s) = since {
                args.extend(["--since", s]);
            }
            let mut times = Vec::new();
            for _ in 0..3 {
                let t0 = Instant::now();
                vane(&ws, &args);
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "cost summary --by {by:<8} {:<12} over {rows} rows: {:.0} ms (median of 3, whole command; target < 1000 ms)",
                since.map(|s| format!("--since {s}")).unwrap_or_default(),
                times[1]
            );
        }
    }
}

fn main() {
    overhead();
    cost_summary();
}
