//! `vane demo`: a sample workspace, a real `vane serve` child process, and a
//! real MCP client walking through one agent session, printed as a transcript.

use serde_json::{json, Value};
use vane_tools::client::{Client, ClientError};

const ROADMAP: &str = r#"epics:
  - id: DEMO
    title: Demo epic
    milestones:
      - id: DEMO.M1
        title: First steps
        tasks:
          - id: GREET-1
            title: Write the greeting file
            priority: high
            exit_criteria:
              - critic: greeting
              - doc: hello.txt
          - id: GREET-2
            title: Announce the greeting
            dependencies: [GREET-1]
          - id: DOCS-1
            title: Polish the docs
            priority: low
"#;

const CONFIG: &str = r#"[critics.greeting]
command = "grep -q 'hello, vane' hello.txt"
paths = ["hello.txt"]
timeout_s = 30

# `vane run` would dispatch to Claude Code; the demo only shows a dry run
[providers.claude]
kind = "claude"
model = "claude-sonnet-4-5"
max_cost_usd = 2.0
"#;

fn show(label: &str, v: &Value) {
    let text = serde_json::to_string(v).unwrap_or_default();
    let text = if text.len() > 300 {
        format!(
            "{}…",
            &text[..text
                .char_indices()
                .take_while(|(i, _)| *i < 300)
                .last()
                .map(|(i, _)| i)
                .unwrap_or(0)]
        )
    } else {
        text
    };
    println!("    {label}: {text}");
}

fn step(n: usize, what: &str) {
    println!("\n{n:>2}. {what}");
}

pub async fn run(keep: bool) -> Result<(), ClientError> {
    let dir = tempfile::Builder::new().prefix("vane-demo-").tempdir()?;
    let ws = dir.path().to_path_buf();
    std::fs::write(ws.join("roadmap.yaml"), ROADMAP)?;
    std::fs::write(
        ws.join("vane.toml"),
        format!("{}\n{}", vane_core::config::DEFAULT_TOML, CONFIG),
    )?;
    std::fs::write(ws.join("README.md"), "# demo project\n")?;
    let _ = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&ws)
        .status();
    let exe = std::env::current_exe()?;
    let ws_s = ws.to_string_lossy().to_string();
    println!("vane demo — workspace {ws_s}");
    let st = std::process::Command::new(&exe)
        .args(["--workspace", &ws_s, "init", "--roadmap", "roadmap.yaml"])
        .current_dir(&ws)
        .output()?;
    print!("{}", String::from_utf8_lossy(&st.stdout));
    if !st.status.success() {
        return Err(format!("vane init: {}", String::from_utf8_lossy(&st.stderr)).into());
    }

    step(1, "start `vane serve` and complete the MCP handshake");
    let t0 = std::time::Instant::now();
    let c = Client::spawn(&exe, &["serve", "--workspace", &ws_s], &[], true).await?;
    let info = c
        .service
        .peer_info()
        .and_then(|i| i.server_info.clone())
        .map(|s| format!("{} {}", s.name, s.version))
        .unwrap_or_default();
    println!(
        "    connected to {info} in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );

    step(2, "tools/list");
    let tools = c.tools().await?;
    println!(
        "    {} tools: {}",
        tools.len(),
        tools
            .iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    step(3, "status");
    let s = c.call_ok("status", json!({})).await?;
    show("roadmap", &s["roadmap"]["by_status"]);

    step(4, "plan_next with a claim");
    let p = c
        .call_ok(
            "plan_next",
            json!({ "claim": { "agent": "demo-agent", "ttl_s": 600 }, "explain_blocked": 3 }),
        )
        .await?;
    show(
        "claimed",
        &json!({ "id": p["claimed"]["id"], "status": p["claimed"]["status"], "lease_expires_at": p["claimed"]["lease_expires_at"] }),
    );
    show("blocked", &p["blocked"]);

    step(5, "fs_write hello.txt, then fs_read it back");
    let w = c
        .call_ok(
            "fs_write",
            json!({ "path": "hello.txt", "content": "hello, vane\n" }),
        )
        .await?;
    show(
        "written",
        &json!({ "sha256": w["sha256"], "created": w["created"], "diff": w["diff"]["unified"] }),
    );
    let r = c.call_ok("fs_read", json!({ "path": "hello.txt" })).await?;
    show(
        "read",
        &json!({ "content": r["content"], "sha256": r["sha256"] }),
    );

    step(
        6,
        "confinement: read outside the workspace, run a hostile command",
    );
    show(
        "fs_read ../../etc/passwd",
        &c.call_err("fs_read", json!({ "path": "../../etc/passwd" }))
            .await?,
    );
    show(
        "cmd_run bash -c \"rm -rf /\"",
        &c.call_err("cmd_run", json!({ "cmd": "bash -c \"rm -rf /\"" }))
            .await?,
    );

    step(7, "cmd_run");
    let o = c
        .call_ok("cmd_run", json!({ "cmd": "ls && wc -c hello.txt" }))
        .await?;
    show(
        "result",
        &json!({ "exit_code": o["exit_code"], "stdout": o["stdout"], "duration_ms": o["duration_ms"], "sandbox": o["sandbox"] }),
    );

    step(8, "try to complete GREET-1 before its critic ran");
    show(
        "plan_update done",
        &c.call_err(
            "plan_update",
            json!({ "task_id": "GREET-1", "status": "done" }),
        )
        .await?,
    );

    step(9, "critics_run greeting");
    let cr = c
        .call_ok("critics_run", json!({ "critics": ["greeting"] }))
        .await?;
    show(
        "runs",
        &json!(cr["runs"].as_array().map(|a| a
            .iter()
            .map(|r| json!({"name": r["name"], "status": r["status"]}))
            .collect::<Vec<_>>())),
    );

    step(10, "complete GREET-1; GREET-2 becomes ready");
    let u = c.call_ok("plan_update", json!({ "task_id": "GREET-1", "status": "done", "notes": "greeting written and checked" })).await?;
    show(
        "task",
        &json!({ "id": u["task"]["id"], "status": u["task"]["status"], "version": u["task"]["version"] }),
    );
    let n = c.call_ok("plan_next", json!({ "limit": 3 })).await?;
    show(
        "ready",
        &json!(n["tasks"]
            .as_array()
            .map(|a| a.iter().map(|t| t["id"].clone()).collect::<Vec<_>>())),
    );

    step(
        11,
        "record a decision and the running context, then checkpoint",
    );
    c.call_ok(
        "decision_record",
        json!({ "title": "Greeting text", "summary": "Use 'hello, vane'", "task_id": "GREET-1" }),
    )
    .await?;
    c.call_ok(
        "context_write",
        json!({ "section": "next_steps", "content": "Announce the greeting (GREET-2)." }),
    )
    .await?;
    let cp = c
        .call_ok(
            "context_snapshot",
            json!({ "reason": "end of demo session", "detail": true }),
        )
        .await?;
    show(
        "checkpoint",
        &json!({ "id": cp["id"], "reason": cp["reason"], "git": cp["git"], "next_ready": cp["next_ready"] }),
    );

    step(12, "resources");
    let roadmap = c.read_text("vane://roadmap").await?;
    println!("    vane://roadmap ({} bytes), first lines:", roadmap.len());
    for line in roadmap.lines().take(6) {
        println!("      {line}");
    }

    step(
        13,
        "the runtime: kill -9 the worker behind the front; the session goes on",
    );
    let state = std::path::Path::new(&ws_s).join(".vane");
    let fronts = vane_front::control::fronts(&state).await;
    if let Some((_, sock)) = fronts.first() {
        let workers = |h: &vane_core::contract::health::HealthView| {
            h.worker(vane_core::contract::health::Role::Active)
                .map(|w| (w.id, w.pid))
        };
        let timeout = std::time::Duration::from_secs(10);
        let h = vane_front::control::health(sock, timeout).await?;
        if let Some((id, pid)) = workers(&h) {
            println!("    active worker {id} (pid {pid}); sending it SIGKILL");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let t = std::time::Instant::now();
            let st = c.call_ok("status", json!({})).await?;
            println!(
                "    the next call answered in {:.1} ms: {} tasks, {} done",
                t.elapsed().as_secs_f64() * 1000.0,
                st["roadmap"]["tasks"],
                st["roadmap"]["by_status"]["done"]
            );
            let h = vane_front::control::health(sock, timeout).await?;
            if let Some((id, pid)) = workers(&h) {
                println!("    now served by worker {id} (pid {pid}); the client never noticed");
            }
        }
    }
    c.close().await;

    step(
        14,
        "dispatch, dry run: what `vane run` would hand an agent next",
    );
    let out = std::process::Command::new(&exe)
        .args(["--workspace", &ws_s, "run", "--dry-run", "--json"])
        .current_dir(&ws)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "vane run --dry-run: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let report: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("vane run --dry-run printed no report: {e}"))?;
    let tasks = report["dry_run_tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if tasks.is_empty() {
        println!("    no ready task left: nothing to dispatch");
    }
    for t in tasks.iter().take(1) {
        println!(
            "    {} → {} ({} words of prompt; nothing claimed, no provider called):",
            t["task_id"].as_str().unwrap_or(""),
            t["provider"].as_str().unwrap_or("no provider"),
            t["prompt_words"]
        );
        for line in t["prompt"].as_str().unwrap_or("").lines().skip(2).take(6) {
            println!("      {line}");
        }
    }
    println!(
        "\nexports in {}/.vane: roadmap.yaml, context.md, checkpoint.json, critics/greeting.json",
        ws_s
    );
    if keep {
        let kept = dir.keep();
        println!("workspace kept at {}", kept.display());
    }
    println!("demo complete.");
    Ok(())
}
