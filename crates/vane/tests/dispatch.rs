//! `vane run`: dispatch to providers, failover, budgets, critics, recovery.
//!
//! The agents here are real child processes: executables that print exactly
//! what the real CLIs print (the fixtures of `vane-dispatch/tests/fixtures`,
//! captured from Claude Code and Codex), small shell agents speaking the
//! `command` contract, and — where installed (always under CI) — the real
//! `claude` CLI without credentials, whose real failure must be classified
//! and failed over.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{init_workspace, json_of, BIN};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vane-dispatch/tests/fixtures")
        .join(name)
}

fn script(ws: &Path, name: &str, body: &str) -> String {
    let p = ws.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// `vane ARGS` in `ws` with a private HOME (no real credentials reach a CLI).
fn vane_env(ws: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = ws.parent().unwrap().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut c = Command::new(BIN);
    c.arg("--workspace")
        .arg(ws)
        .args(args)
        .current_dir(ws)
        .env("HOME", &home)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn run_json(ws: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
    let mut a = vec!["run", "--json"];
    a.extend_from_slice(args);
    let out = vane_env(ws, &a, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "vane run --json ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code(), v, stderr)
}

fn task(ws: &Path, id: &str) -> Value {
    json_of(&common::vane(ws, &["task", "show", id, "--json"]))
}

fn status_of(ws: &Path, id: &str) -> String {
    let t = task(ws, id);
    t["task"]["status"]
        .as_str()
        .or(t["status"].as_str())
        .unwrap_or("?")
        .to_string()
}

fn outcomes(report: &Value, id: &str) -> Vec<(String, String)> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task_id"] == id)
        .flat_map(|t| t["attempts"].as_array().unwrap().clone())
        .map(|a| {
            (
                a["provider"].as_str().unwrap().to_string(),
                a["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const TWO: &str = "tasks:
  - id: T-1
    title: First
    priority: high
  - id: T-2
    title: Second
";

/// A `command` agent: writes `out-$VANE_TASK_ID.txt`, reports usage and cost.
const GOOD_AGENT: &str = r#"cat > /dev/null
echo "agent for $VANE_TASK_ID; key=${LOCAL_KEY:-none}; secret=${VANE_TEST_SECRET:-none}" > "out-$VANE_TASK_ID.txt"
echo '{"outcome":"succeeded","summary":"wrote the file","usage":{"input_tokens":1000,"cached_input_tokens":500,"output_tokens":200},"model":"gpt-4o-mini"}'
"#;

fn alive(pid: i32) -> bool {
    // a zombie is dead for this purpose
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[test]
fn failover_on_auth_and_rate_limit_then_done_with_the_ledger() {
    let (_d, ws) = init_workspace("", TWO, &[]);
    // the real Claude Code without credentials where installed, else a
    // stand-in printing exactly what it prints
    let real = common::find_clis("claude").into_iter().next();
    let claude = match &real {
        Some(p) => p.display().to_string(),
        None => script(
            &ws,
            "claude-fake.sh",
            &format!(
                "cat > /dev/null\ncat {}\nexit 1\n",
                fixture("claude-not-logged-in.jsonl").display()
            ),
        ),
    };
    if real.is_none() {
        assert!(std::env::var("CI").is_err(), "claude is installed under CI");
    }
    let codex = script(
        &ws,
        "codex-fake.sh",
        &format!(
            "cat > /dev/null\ncat {}\nexit 1\n",
            fixture("codex-429.jsonl").display()
        ),
    );
    let agent = script(&ws, "agent.sh", GOOD_AGENT);
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            r#"
[providers.claude]
kind = "claude"
command = "{claude}"
timeout_s = 120

[providers.codex]
kind = "codex"
command = "{codex}"

[providers.local]
kind = "command"
command = "{agent}"
api_key_env = "LOCAL_KEY"

[dispatch]
providers = ["claude", "codex", "local"]
backoff_min_ms = 10
backoff_max_ms = 50
"#
        ),
    )
    .unwrap();
    let (code, report, stderr) = run_json(
        &ws,
        &[],
        &[
            ("LOCAL_KEY", "sk-local-test-key"),
            ("VANE_TEST_SECRET", "must-not-leak"),
        ],
    );
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        outcomes(&report, "T-1"),
        pairs(&[
            ("claude", "auth"),
            ("codex", "rate_limited"),
            ("local", "succeeded")
        ]),
        "{report}\n{stderr}"
    );
    // in the same run, the disabled and the cooling provider are not tried again
    assert_eq!(
        outcomes(&report, "T-2"),
        pairs(&[("local", "succeeded")]),
        "{report}"
    );
    assert_eq!(status_of(&ws, "T-1"), "done");
    assert_eq!(status_of(&ws, "T-2"), "done");
    // the agent got its key and nothing else of vane's environment
    let seen = std::fs::read_to_string(ws.join("out-T-1.txt")).unwrap();
    assert!(
        seen.contains("key=sk-local-test-key") && seen.contains("secret=none"),
        "{seen}"
    );
    assert!(
        stderr.contains("disabled"),
        "the auth failure is said loudly: {stderr}"
    );

    // health, as `vane providers` shows it
    let p = json_of(&vane_env(&ws, &["providers", "--json"], &[]));
    let state = |n: &str| {
        p["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state("claude"), "disabled", "{p}");
    assert_eq!(state("codex"), "cooling", "{p}");
    assert_eq!(state("local"), "ok", "{p}");
    let claude_err = p["providers"][0]["last_error"].as_str().unwrap_or("");
    assert!(claude_err.contains("Not logged in"), "{p}");

    // the ledger: every attempt, its cost from the price table (gpt-4o-mini:
    // 1000 × 0.15 + 500 × 0.075 + 200 × 0.6 per million = $0.0003075)
    let cost = json_of(&vane_env(
        &ws,
        &["cost", "summary", "--by", "provider", "--json"],
        &[],
    ));
    assert_eq!(cost["attempts"], 4, "{cost}");
    let local = cost["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "local")
        .unwrap();
    assert_eq!(local["cost_micros"], 2 * 308, "{cost}");
    assert_eq!(local["input_tokens"], 2000, "{cost}");
    // transcripts are artifacts, dispatch events are in the operations log
    let ops =
        std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap_or_default();
    assert_eq!(
        ops.lines().filter(|l| l.contains("\"dispatch\"")).count(),
        4,
        "{ops}"
    );
    assert!(!ops.contains("sk-local-test-key"));
    let summary = json_of(&vane_env(&ws, &["telemetry", "summary", "--json"], &[]));
    assert_eq!(
        summary["cost"]["attempts"], 4,
        "folded into the telemetry summary: {summary}"
    );
    let by_task = json_of(&vane_env(
        &ws,
        &["cost", "summary", "--by", "task", "--json"],
        &[],
    ));
    assert_eq!(by_task["rows"].as_array().unwrap().len(), 2, "{by_task}");
}

#[test]
fn transient_faults_retry_task_failures_never_fail_over() {
    let (_d, ws) = init_workspace("", TWO, &[]);
    // T-1: the first call dies like a dropped connection, the second works;
    // T-2: the agent runs and says the task is not done, every time
    let flaky = script(
        &ws,
        "flaky.sh",
        r#"cat > /dev/null
n=$(cat "count-$VANE_TASK_ID" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "count-$VANE_TASK_ID"
if [ "$VANE_TASK_ID" = "T-2" ]; then
  echo '{"outcome":"task_failed","error":"the tests still fail","usage":{"input_tokens":10,"output_tokens":5}}'
  exit 0
fi
if [ $n -eq 1 ]; then echo "Error: read ECONNRESET" >&2; exit 1; fi
echo '{"outcome":"succeeded","summary":"ok"}'
"#,
    );
    let spare = script(
        &ws,
        "spare.sh",
        "cat > /dev/null\ntouch spare-called\necho '{\"outcome\":\"succeeded\"}'\n",
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            r#"
[providers.main]
kind = "command"
command = "{flaky}"
[providers.spare]
kind = "command"
command = "{spare}"
[dispatch]
providers = ["main", "spare"]
retries = 2
backoff_min_ms = 10
backoff_max_ms = 20
max_task_failures = 2
"#
        ),
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        outcomes(&report, "T-1"),
        pairs(&[("main", "transient"), ("main", "succeeded")]),
        "{report}\n{stderr}"
    );
    assert_eq!(status_of(&ws, "T-1"), "done");
    // a task failure is the task's, not the provider's: no failover; after
    // max_task_failures the task is blocked with the failures in its notes
    assert_eq!(
        outcomes(&report, "T-2"),
        pairs(&[("main", "task_failed"), ("main", "task_failed")]),
        "{report}"
    );
    assert!(
        !ws.join("spare-called").exists(),
        "the spare provider was never called"
    );
    assert_eq!(status_of(&ws, "T-2"), "blocked");
    let notes = task(&ws, "T-2").to_string();
    assert!(
        notes.contains("the tests still fail") && notes.contains("(2/2)"),
        "{notes}"
    );
}

#[test]
fn critics_gate_done_and_a_failing_critic_sends_the_task_back() {
    let roadmap = "tasks:
  - id: C-1
    title: Make the check pass
    exit_criteria:
      - critic: check
";
    let (_d, ws) = init_workspace("", roadmap, &[]);
    // first attempt: claims success without doing the work; second: does it
    let agent = script(
        &ws,
        "agent.sh",
        r#"cat > /dev/null
if [ -f tried ]; then echo done > done.txt; fi
touch tried
echo '{"outcome":"succeeded","summary":"finished (I think)"}'
"#,
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            r#"
[providers.local]
kind = "command"
command = "{agent}"
[dispatch]
max_task_failures = 3
[critics.check]
command = "test -f done.txt"
"#
        ),
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        outcomes(&report, "C-1"),
        pairs(&[("local", "task_failed"), ("local", "succeeded")]),
        "{report}\n{stderr}"
    );
    assert_eq!(status_of(&ws, "C-1"), "done");
    let first = &report["tasks"][0]["attempts"][0]["error"];
    assert!(first.as_str().unwrap().contains("check"), "{report}");
}

#[test]
fn budgets_reserve_ceilings_alert_once_and_stop() {
    let roadmap = "tasks:\n".to_string()
        + &(1..=5)
            .map(|i| format!("  - id: B-{i}\n    title: Task {i}\n"))
            .collect::<String>();
    let (_d, ws) = init_workspace("", &roadmap, &[]);
    let agent = script(
        &ws,
        "agent.sh",
        "cat > /dev/null\necho '{\"outcome\":\"succeeded\",\"cost_usd\":0.45}'\n",
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            r#"
[providers.local]
kind = "command"
command = "{agent}"
max_cost_usd = 0.40

[budgets.dev]
day_usd = 1.00
"#
        ),
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[]);
    // 0.45 spent; 0.45 + 0.40 ceiling fits; 0.90 + 0.40 does not
    assert_eq!(
        code,
        Some(2),
        "exit 2: stopped by the budget\n{report}\n{stderr}"
    );
    assert_eq!(report["stopped"], "budget", "{report}");
    let done: Vec<String> = (1..=5)
        .map(|i| format!("B-{i}"))
        .filter(|id| status_of(&ws, id) == "done")
        .collect();
    assert_eq!(done.len(), 2, "{report}");
    assert_eq!(
        status_of(&ws, "B-3"),
        "pending",
        "the refused task is released"
    );
    assert_eq!(report["alerts"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["alerts"][0]["level"], "warning");
    // a second run starts nothing, spends nothing, alerts nothing new
    let (code, again, _) = run_json(&ws, &[], &[]);
    assert_eq!(code, Some(2), "{again}");
    assert_eq!(
        again["tasks"][0]["attempts"].as_array().unwrap().len(),
        0,
        "{again}"
    );
    assert_eq!(
        again["alerts"].as_array().unwrap().len(),
        0,
        "once per window and level: {again}"
    );
    let cost = json_of(&vane_env(&ws, &["cost", "summary", "--json"], &[]));
    assert_eq!(cost["cost_micros"], 900_000, "{cost}");
    assert_eq!(cost["alerts"].as_array().unwrap().len(), 1, "{cost}");
    // the alert reached the running context and the operations log
    let st = json_of(&common::vane(&ws, &["status", "--json"]));
    let alerts = &st["dispatch"]["budget_alerts"];
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{st}");
    assert_eq!(alerts[0]["level"], "warning", "{st}");
    let context = std::fs::read_to_string(ws.join(".vane/context.md")).unwrap();
    assert!(context.contains("warning budget alert"), "{context}");
    let ops =
        std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap_or_default();
    assert_eq!(
        ops.lines().filter(|l| l.contains("\"alert\"")).count(),
        1,
        "{ops}"
    );
}

#[test]
fn a_budget_with_fallback_moves_to_a_cheaper_provider() {
    let (_d, ws) = init_workspace("", TWO, &[]);
    let agent = script(
        &ws,
        "agent.sh",
        "cat > /dev/null\necho \"$VANE_MODEL\" >> models.log\necho '{\"outcome\":\"succeeded\",\"cost_usd\":0.30}'\n",
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            r#"
[providers.pricey]
kind = "command"
command = "{agent}"
model = "claude-opus-4-1"
max_cost_usd = 0.5
[providers.cheap]
kind = "command"
command = "{agent}"
model = "gpt-4o-mini"
max_cost_usd = 0.5
[dispatch]
providers = ["pricey", "cheap"]
[budgets.dev]
on_exceeded = "fallback"
[budgets.dev.providers.pricey]
day_usd = 0.6
"#
        ),
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        outcomes(&report, "T-1"),
        pairs(&[("pricey", "succeeded")]),
        "{report}"
    );
    // 0.30 + 0.50 ceiling > 0.60: the next task goes to the cheaper one
    assert_eq!(
        outcomes(&report, "T-2"),
        pairs(&[("cheap", "succeeded")]),
        "{report}\n{stderr}"
    );
}

#[test]
fn a_hung_agent_is_killed_with_its_process_group() {
    let (_d, ws) = init_workspace("", "tasks:\n  - id: H-1\n    title: Hang\n", &[]);
    let agent = script(
        &ws,
        "hang.sh",
        "cat > /dev/null\nsleep 300 &\necho $! > child.pid\necho $$ > agent.pid\nsleep 300\n",
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!("[providers.local]\nkind = \"command\"\ncommand = \"{agent}\"\ntimeout_s = 2\n[dispatch]\nretries = 0\n"),
    )
    .unwrap();
    let t0 = Instant::now();
    let (code, report, stderr) = run_json(&ws, &[], &[]);
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(
        code,
        Some(3),
        "exit 3: no provider could take it\n{report}\n{stderr}"
    );
    assert_eq!(
        outcomes(&report, "H-1"),
        pairs(&[("local", "timeout")]),
        "{report}"
    );
    assert_eq!(status_of(&ws, "H-1"), "pending");
    for f in ["agent.pid", "child.pid"] {
        let pid: i32 = std::fs::read_to_string(ws.join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid), "{f} {pid} was killed with the group");
    }
}

#[test]
fn parallel_runners_never_take_the_same_task() {
    let roadmap = "tasks:\n".to_string()
        + &(1..=12)
            .map(|i| format!("  - id: P-{i}\n    title: Task {i}\n"))
            .collect::<String>();
    let (_d, ws) = init_workspace("", &roadmap, &[]);
    let agent = script(
        &ws,
        "agent.sh",
        "cat > /dev/null\necho \"$VANE_TASK_ID\" >> work.log\nsleep 0.2\necho '{\"outcome\":\"succeeded\"}'\n",
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!("[providers.local]\nkind = \"command\"\ncommand = \"{agent}\"\n"),
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &["--parallel", "4"], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let log = std::fs::read_to_string(ws.join("work.log")).unwrap();
    let mut ids: Vec<&str> = log.lines().collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(
        (before, ids.len()),
        (12, 12),
        "each task dispatched exactly once: {log}"
    );
    let runners: std::collections::BTreeSet<&str> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["runner"].as_str().unwrap())
        .collect();
    assert!(runners.len() > 1, "work was shared: {runners:?}");
}

fn wait_for(p: &Path, limit: Duration) -> String {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(t0.elapsed() < limit, "{} did not appear", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A slow agent the first time (pid in agent.pid), a quick one once
/// `quick` exists.
const SLOW_THEN_QUICK: &str = r#"cat > /dev/null
if [ -f quick ]; then echo '{"outcome":"succeeded","cost_usd":0.01}'; exit 0; fi
echo $$ > agent.pid
sleep 60
"#;

fn spawn_run(ws: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(["--workspace", ws.to_str().unwrap(), "run", "--json"])
        .current_dir(ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_runner_killed_with_sigkill_is_recovered_on_the_next_start() {
    let (_d, ws) = init_workspace("", "tasks:\n  - id: K-1\n    title: Survive\n", &[]);
    let agent = script(&ws, "agent.sh", SLOW_THEN_QUICK);
    std::fs::write(
        ws.join("vane.toml"),
        format!("[providers.local]\nkind = \"command\"\ncommand = \"{agent}\"\nmodel = \"gpt-4o-mini\"\n"),
    )
    .unwrap();
    let mut run = spawn_run(&ws);
    let pid: i32 = wait_for(&ws.join("agent.pid"), Duration::from_secs(30))
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    run.wait().unwrap();
    assert!(
        alive(pid),
        "the agent outlived its runner (its own process group)"
    );
    std::fs::write(ws.join("quick"), "").unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(report["interrupted_orphans"], 1, "{report}");
    assert!(!alive(pid), "the orphaned agent was stopped");
    assert_eq!(
        outcomes(&report, "K-1"),
        pairs(&[("local", "succeeded")]),
        "{report}"
    );
    assert_eq!(status_of(&ws, "K-1"), "done");
    let cost = json_of(&vane_env(
        &ws,
        &["cost", "summary", "--by", "outcome", "--json"],
        &[],
    ));
    let keys: Vec<&str> = cost["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&"interrupted") && keys.contains(&"succeeded"),
        "{cost}"
    );
    assert_eq!(
        cost["cost_micros"], 10_000,
        "the finished attempt's cost is kept: {cost}"
    );
}

#[test]
fn stopping_vane_run_stops_its_agents_and_releases_the_task() {
    let (_d, ws) = init_workspace("", "tasks:\n  - id: S-1\n    title: Stop me\n", &[]);
    let agent = script(&ws, "agent.sh", SLOW_THEN_QUICK);
    std::fs::write(
        ws.join("vane.toml"),
        format!("[providers.local]\nkind = \"command\"\ncommand = \"{agent}\"\n"),
    )
    .unwrap();
    let run = spawn_run(&ws);
    let pid: i32 = wait_for(&ws.join("agent.pid"), Duration::from_secs(30))
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!alive(pid), "the agent was stopped with vane run");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcomes(&report, "S-1"),
        pairs(&[("local", "interrupted")]),
        "{report}"
    );
    assert_eq!(status_of(&ws, "S-1"), "pending");
}

#[test]
fn dry_run_assembles_prompts_and_changes_nothing() {
    let roadmap = "tasks:
  - id: D-1
    title: Document the API
    description: Write docs/api.md from the handlers.
    exit_criteria:
      - critic: docs
  - id: D-2
    title: Later
    dependencies: [D-1]
";
    let (_d, ws) = init_workspace("", roadmap, &[]);
    std::fs::write(
        ws.join("vane.toml"),
        "[providers.local]\nkind = \"command\"\ncommand = \"/bin/false\"\n[critics.docs]\ncommand = \"true\"\n",
    )
    .unwrap();
    let before = std::fs::read(ws.join(".vane/vane.db")).unwrap();
    let (code, report, stderr) = run_json(&ws, &["--dry-run"], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    let t = &report["dry_run_tasks"];
    assert_eq!(
        t.as_array().unwrap().len(),
        1,
        "only the ready task: {report}"
    );
    assert_eq!(t[0]["provider"], "local");
    let prompt = t[0]["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("D-1")
            && prompt.contains("docs/api.md")
            && prompt.contains("critic `docs`"),
        "{prompt}"
    );
    assert_eq!(status_of(&ws, "D-1"), "pending");
    assert_eq!(
        std::fs::read(ws.join(".vane/vane.db")).unwrap(),
        before,
        "nothing written"
    );
}

/// The whole loop with the real Claude Code: `vane run` hands it the task
/// with vane as its only MCP server; the agent (its model scripted by a
/// loopback stub of the Messages API) writes the file through vane's
/// `fs_write`; the critic passes; the task is done — no step faked.
#[test]
fn claude_code_does_a_task_through_vanes_tools_and_it_ends_done() {
    for claude in common::clis_or_skip("claude") {
        agent_cli_end_to_end(&claude, common::model_stub::Wire::Anthropic);
    }
}

/// The same with the real Codex (a stub of the Responses API).
#[test]
fn codex_does_a_task_through_vanes_tools_and_it_ends_done() {
    for codex in common::clis_or_skip("codex") {
        agent_cli_end_to_end(&codex, common::model_stub::Wire::Responses);
    }
}

fn agent_cli_end_to_end(cli: &Path, wire: common::model_stub::Wire) {
    use common::model_stub::{ModelStub, Step, Wire};
    let roadmap = "tasks:
  - id: E-1
    title: Write the greeting
    description: Create greeting.txt saying hello.
    exit_criteria:
      - critic: greeting
";
    let (_d, ws) = init_workspace("", roadmap, &[]);
    common::git(&ws, &["init", "-q"]);
    let stub = ModelStub::start(
        wire,
        vec![Step {
            tool: "fs_write".into(),
            args: serde_json::json!({"path": "greeting.txt", "content": "hello from the agent\n"}),
        }],
        "Wrote greeting.txt through vane.",
    );
    let provider = match wire {
        Wire::Anthropic => format!(
            r#"[providers.agent]
kind = "claude"
command = "{}"
model = "claude-sonnet-4-5"
timeout_s = 240
env_pass = ["ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "DISABLE_AUTOUPDATER"]
"#,
            cli.display()
        ),
        Wire::Responses => format!(
            r#"[providers.agent]
kind = "codex"
command = "{}"
model = "gpt-5-codex"
timeout_s = 240
env_pass = ["CODEX_API_KEY"]
args = ["-c", "model_provider=\"stub\"", "-c", "model_providers.stub={{name=\"stub\",base_url=\"{}/v1\",wire_api=\"responses\",env_key=\"CODEX_API_KEY\"}}", "--disable", "plugins", "--disable", "apps"]
"#,
            cli.display(),
            stub.base_url()
        ),
    };
    std::fs::write(
        ws.join("vane.toml"),
        format!("{provider}\n[critics.greeting]\ncommand = \"grep -q hello greeting.txt\"\n"),
    )
    .unwrap();
    let base = stub.base_url();
    let (code, report, stderr) = run_json(
        &ws,
        &["--once"],
        &[
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-stub-not-a-real-key"),
            ("CODEX_API_KEY", "sk-stub-not-a-real-key"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
        ],
    );
    let log = format!("{report}\n{stderr}\nstub:\n{}", stub.transcript());
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        outcomes(&report, "E-1"),
        pairs(&[("agent", "succeeded")]),
        "{log}"
    );
    assert_eq!(status_of(&ws, "E-1"), "done", "{log}");
    // the file came through vane's fs_write, and the stub got vane's answer
    assert_eq!(
        std::fs::read_to_string(ws.join("greeting.txt")).unwrap(),
        "hello from the agent\n"
    );
    {
        let l = stub.log.lock().unwrap();
        assert!(l.problems.is_empty(), "{:?}\n{log}", l.problems);
        assert!(
            l.calls.iter().any(|(name, _)| name.ends_with("fs_write")),
            "{log}"
        );
        assert!(
            l.results.iter().any(|r| r.contains("greeting.txt")),
            "vane's real fs_write answer reached the model: {log}"
        );
    }
    // the critic ran and passed; the attempt's usage is in the ledger
    assert_eq!(report["tasks"][0]["critics"]["passed"], 1, "{log}");
    let cost = json_of(&vane_env(&ws, &["cost", "summary", "--json"], &[]));
    assert!(
        cost["rows"][0]["output_tokens"].as_i64().unwrap() > 0,
        "{cost}"
    );
    // the agent's calls went through vane's own pipeline
    let ops = std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap();
    assert!(ops.contains("\"fs_write\""), "{ops}");
}

/// A loopback server answering like the OpenAI chat-completions API, from a
/// script: each request takes the next (delay, status, headers, body).
struct ChatStub {
    base: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

type Answer = (u64, u16, Vec<(&'static str, String)>, Value);

fn chat_stub(script: Vec<Answer>) -> ChatStub {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!(
        "http://127.0.0.1:{}/v1",
        listener.local_addr().unwrap().port()
    );
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        script,
    )));
    let reqs = requests.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (mut len, mut auth) = (0usize, String::new());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    auth = h["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            reqs.lock()
                .unwrap()
                .push((auth, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let next = script.lock().unwrap().pop_front();
            let (delay, status, headers, body) = next.unwrap_or((
                0,
                500,
                vec![],
                serde_json::json!({"error": {"message": "script ended"}}),
            ));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                let body = body.to_string();
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                let _ = conn.write_all(format!("{head}\r\n{body}").as_bytes());
            });
        }
    });
    ChatStub { base, requests }
}

fn tool_call(id: &str, name: &str, args: Value) -> Answer {
    (
        0,
        200,
        vec![],
        serde_json::json!({
            "id": format!("chatcmpl-{id}"), "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
                      "prompt_tokens_details": {"cached_tokens": 800}}
        }),
    )
}

fn final_answer(text: &str) -> Answer {
    (
        0,
        200,
        vec![],
        serde_json::json!({
            "id": "chatcmpl-final", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 30, "total_tokens": 1230}
        }),
    )
}

fn api_error(status: u16, code: &str, headers: Vec<(&'static str, String)>) -> Answer {
    (
        0,
        status,
        headers,
        serde_json::json!({"error": {"message": format!("{code} (stub)"), "type": code, "param": null, "code": code}}),
    )
}

fn openai_provider(name: &str, base: &str, extra: &str) -> String {
    format!(
        "[providers.{name}]\nkind = \"openai\"\nbase_url = \"{base}\"\nmodel = \"gpt-4o-mini\"\napi_key_env = \"STUB_KEY\"\n{extra}\n"
    )
}

#[test]
fn openai_tool_loop_runs_vanes_tools_over_several_turns() {
    let roadmap =
        "tasks:\n  - id: O-1\n    title: Write notes\n    exit_criteria:\n      - critic: notes\n";
    let (_d, ws) = init_workspace("", roadmap, &[]);
    let stub = chat_stub(vec![
        api_error(
            429,
            "rate_limit_exceeded",
            vec![("retry-after-ms", "300".into())],
        ),
        tool_call(
            "call_1",
            "fs_write",
            serde_json::json!({"path": "notes.txt", "content": "from the tool loop\n"}),
        ),
        tool_call(
            "call_2",
            "fs_read",
            serde_json::json!({"path": "notes.txt"}),
        ),
        final_answer("notes.txt is written."),
    ]);
    std::fs::write(
        ws.join("vane.toml"),
        openai_provider("api", &stub.base, "")
            + "[critics.notes]\ncommand = \"grep -q 'tool loop' notes.txt\"\n",
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[("STUB_KEY", "sk-stub-key-for-tests")]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    // the 429 cooled the provider until its Retry-After; it then finished
    assert_eq!(
        outcomes(&report, "O-1"),
        pairs(&[("api", "rate_limited"), ("api", "succeeded")]),
        "{report}\n{stderr}"
    );
    assert_eq!(status_of(&ws, "O-1"), "done");
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
        "from the tool loop\n"
    );
    let reqs = stub.requests.lock().unwrap();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[0].0, "Bearer sk-stub-key-for-tests");
    // vane's tools were offered as functions, with their schemas
    let tools = reqs[1].1["tools"].as_array().unwrap();
    assert!(tools.iter().any(|t| t["function"]["name"] == "fs_write"
        && t["function"]["parameters"]["properties"]["path"].is_object()));
    assert!(
        !tools.iter().any(|t| t["function"]["name"] == "flags_set"),
        "no admin tools"
    );
    // the third request carries fs_read's real answer
    let last_tool = reqs[3].1["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert!(
        last_tool["content"]
            .as_str()
            .unwrap()
            .contains("from the tool loop"),
        "{last_tool}"
    );
    drop(reqs);
    // usage over the turns: prompt 3200 of which 1600 cached, completion 130
    let cost = json_of(&vane_env(
        &ws,
        &["cost", "summary", "--by", "outcome", "--json"],
        &[],
    ));
    let ok = cost["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "succeeded")
        .unwrap();
    assert_eq!(
        (
            ok["input_tokens"].as_i64(),
            ok["cached_input_tokens"].as_i64(),
            ok["output_tokens"].as_i64()
        ),
        (Some(1600), Some(1600), Some(130)),
        "{cost}"
    );
    // the key is nowhere in the state directory
    let out = Command::new("grep")
        .args(["-r", "-l", "sk-stub-key-for-tests"])
        .arg(ws.join(".vane"))
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn openai_quota_fails_over_and_server_errors_and_slowness_retry() {
    let (_d, ws) = init_workspace("", "tasks:\n  - id: Q-1\n    title: Quota\n", &[]);
    let broke = chat_stub(vec![api_error(429, "insufficient_quota", vec![])]);
    let flaky = chat_stub(vec![
        api_error(500, "server_error", vec![]),
        // slower than the attempt's timeout
        (3000, 200, vec![], final_answer("too late").3),
        final_answer("done"),
    ]);
    std::fs::write(
        ws.join("vane.toml"),
        openai_provider("broke", &broke.base, "")
            + &openai_provider("flaky", &flaky.base, "timeout_s = 1")
            + "[dispatch]\nproviders = [\"broke\", \"flaky\"]\nretries = 3\nbackoff_min_ms = 10\nbackoff_max_ms = 20\n",
    )
    .unwrap();
    let (code, report, stderr) = run_json(&ws, &[], &[("STUB_KEY", "sk-stub")]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        outcomes(&report, "Q-1"),
        pairs(&[
            ("broke", "quota_exhausted"),
            ("flaky", "transient"),
            ("flaky", "timeout"),
            ("flaky", "succeeded"),
        ]),
        "{report}\n{stderr}"
    );
    let p = json_of(&vane_env(&ws, &["providers", "--json"], &[]));
    assert_eq!(
        p["providers"][0]["state"], "cooling",
        "quota cools the provider: {p}"
    );
}

/// The README's dispatch configuration is valid as written.
#[test]
fn the_readmes_dispatch_configuration_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = &readme[readme.find("## Dispatch").expect("a Dispatch section")..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let toml = &section[start..start + section[start..].find("```").unwrap()];
    let (_d, ws) = init_workspace("", TWO, &[]);
    std::fs::write(ws.join("vane.toml"), toml).unwrap();
    let (code, report, stderr) = run_json(&ws, &["--dry-run"], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(report["dry_run_tasks"][0]["provider"], "claude", "{report}");
    let p = json_of(&vane_env(&ws, &["providers", "--json"], &[]));
    assert_eq!(p["providers"].as_array().unwrap().len(), 4, "{p}");
}

/// The real Codex, its API answering 401 (a loopback server speaking as
/// OpenAI's does): its real failure is classified `auth` and the task fails
/// over to the next provider.
#[test]
fn the_real_codex_failing_auth_is_classified_and_failed_over() {
    for codex in common::clis_or_skip("codex") {
        let (_d, ws) = init_workspace("", "tasks:\n  - id: X-1\n    title: Fail over\n", &[]);
        let api = chat_stub(
            (0..20)
                .map(|_| api_error(401, "invalid_api_key", vec![]))
                .collect(),
        );
        let agent = script(&ws, "agent.sh", GOOD_AGENT);
        std::fs::write(
            ws.join("vane.toml"),
            format!(
                r#"[providers.codex]
kind = "codex"
command = "{}"
model = "gpt-5-codex"
timeout_s = 120
env_pass = ["CODEX_API_KEY"]
args = ["-c", "model_provider=\"stub\"", "-c", "model_providers.stub={{name=\"stub\",base_url=\"{}\",wire_api=\"responses\",env_key=\"CODEX_API_KEY\"}}", "--disable", "plugins", "--disable", "apps"]

[providers.local]
kind = "command"
command = "{agent}"

[dispatch]
providers = ["codex", "local"]
"#,
                codex.display(),
                api.base
            ),
        )
        .unwrap();
        let (code, report, stderr) = run_json(&ws, &[], &[("CODEX_API_KEY", "sk-wrong")]);
        assert_eq!(code, Some(0), "{report}\n{stderr}");
        assert_eq!(
            outcomes(&report, "X-1"),
            pairs(&[("codex", "auth"), ("local", "succeeded")]),
            "{report}\n{stderr}"
        );
        let err = report["tasks"][0]["attempts"][0]["error"]
            .as_str()
            .unwrap_or("");
        assert!(err.contains("401"), "{report}");
        assert!(
            !api.requests.lock().unwrap().is_empty(),
            "Codex reached the stub"
        );
    }
}

/// `SELECTIVE_TESTS=1`: after a run, only the critics watching the files it
/// changed run; with the default, every critic runs.
#[test]
fn selective_tests_run_only_the_critics_of_the_changed_files() {
    let (_d, ws) = init_workspace("", TWO, &[("a/keep.txt", "a\n"), ("b/keep.txt", "b\n")]);
    common::git(&ws, &["init", "-q"]);
    common::git(&ws, &["add", "-A"]);
    common::git(
        &ws,
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    );
    let agent = script(
        &ws,
        "agent.sh",
        "cat > /dev/null\necho change >> a/keep.txt\necho '{\"outcome\":\"succeeded\"}'\n",
    );
    std::fs::write(
        ws.join("vane.toml"),
        format!(
            r#"[providers.local]
kind = "command"
command = "{agent}"
[critics.crit_a]
command = "true"
paths = ["a/**"]
[critics.crit_b]
command = "true"
paths = ["b/**"]
"#
        ),
    )
    .unwrap();
    let ran = |report: &Value, i: usize| -> Vec<String> {
        report["tasks"][i]["critics"]["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["critic"]
                    .as_str()
                    .or(r["name"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let (code, report, stderr) = run_json(&ws, &["--once"], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        ran(&report, 0),
        ["crit_a", "crit_b"],
        "all by default: {report}"
    );
    assert!(common::vane(&ws, &["flags", "set", "SELECTIVE_TESTS", "1"])
        .status
        .success());
    let (code, report, stderr) = run_json(&ws, &["--once"], &[]);
    assert_eq!(code, Some(0), "{report}\n{stderr}");
    assert_eq!(
        ran(&report, 0),
        ["crit_a"],
        "only the changed files' critic: {report}"
    );
}
