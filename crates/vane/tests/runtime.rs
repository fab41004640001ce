//! The zero-downtime runtime, end to end: a real `vane serve` front with real
//! `vane worker` children, a real rmcp client running a load of concurrent
//! calls, the CLI driving the front through its control socket, and faults
//! injected with the `fail` crate (compiled into test builds only) through a
//! wrapper script that sets `FAILPOINTS` for the worker it starts.
//!
//! Every case asserts zero failed client calls, the automatic decision the
//! front took, and the reason it recorded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vane_tools::client::Client;

mod common;

use common::{vane, BIN};

/// Fast liveness and small rollback windows, so the tests run in seconds;
/// `runtime` and `rollback` add keys to those tables.
fn workspace_with(runtime: &str, rollback: &str) -> (tempfile::TempDir, PathBuf) {
    let toml = format!(
        "[runtime]\nping_interval_ms = 100\nping_timeout_ms = 500\nping_failures_to_open = 3\n\
         drain_timeout_ms = 2000\nterm_grace_ms = 500\n{runtime}\n\
         [runtime.rollback]\nmin_calls = 10\nerror_window_s = 30\nmin_latency_samples = 10\n{rollback}\n"
    );
    common::init_workspace(
        &toml,
        "tasks:\n  - id: T1\n    title: one\n  - id: T2\n    title: two\n    dependencies: [T1]\n",
        &[("a.txt", "alpha\n")],
    )
}

fn workspace(rollback: &str) -> (tempfile::TempDir, PathBuf) {
    workspace_with("", rollback)
}

/// `vane workers --json` of the workspace's only front.
fn health(ws: &Path) -> Value {
    let out = vane(ws, &["workers", "--json"]);
    assert!(
        out.status.success(),
        "vane workers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["fronts"][0]["result"].clone()
}

fn with_role(h: &Value, role: &str) -> Vec<Value> {
    h["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["role"] == role)
        .cloned()
        .collect()
}

fn active_pid(ws: &Path) -> Option<u64> {
    with_role(&health(ws), "active")
        .first()
        .filter(|w| w["alive"] == true)
        .and_then(|w| w["pid"].as_u64())
}

fn decisions(ws: &Path) -> Vec<Value> {
    health(ws)["decisions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ctl(ws: &Path, args: &[&str]) -> std::process::Output {
    vane(ws, args)
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// A worker binary that runs vane with fault points armed. `when`:
/// "canary" (only with VANE_DRY_RUN=1), "live" (only without), "always".
fn faulty(dir: &Path, name: &str, failpoints: &str, when: &str) -> PathBuf {
    let cond = match when {
        "canary" => "[ -n \"$VANE_DRY_RUN\" ] && ",
        "live" => "[ -z \"$VANE_DRY_RUN\" ] && ",
        _ => "",
    };
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("#!/bin/sh\n{cond}export FAILPOINTS='{failpoints}'\nexec '{BIN}' \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[derive(Default, Debug)]
struct Tally {
    calls: u64,
    failures: Vec<String>,
    written: Vec<String>,
    latencies_us: Vec<u64>,
}

struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

/// `readers` tasks calling status / plan_next / fs_read, `writers` tasks
/// recording uniquely titled decisions; every call must succeed.
fn start_load(c: &Arc<Client>, readers: usize, writers: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for r in 0..readers + writers {
        let c = c.clone();
        let stop = stop.clone();
        let done = done.clone();
        let writer = r >= readers;
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (tool, args) = if writer {
                    let title = format!("load-{r}-{i}");
                    (
                        "decision_record",
                        json!({ "title": title, "summary": "load" }),
                    )
                } else {
                    match i % 3 {
                        0 => ("status", json!({})),
                        1 => ("plan_next", json!({})),
                        _ => ("fs_read", json!({ "path": "a.txt" })),
                    }
                };
                let t0 = Instant::now();
                let res = c.call(tool, args.clone()).await;
                t.latencies_us.push(t0.elapsed().as_micros() as u64);
                t.calls += 1;
                done.fetch_add(1, Ordering::Relaxed);
                match res {
                    Ok(r) if r.is_error != Some(true) => {
                        if writer {
                            t.written.push(args["title"].as_str().unwrap().to_string());
                        }
                    }
                    Ok(r) => t
                        .failures
                        .push(format!("{tool}: {:?}", r.structured_content)),
                    Err(e) => t.failures.push(format!("{tool}: transport {e}")),
                }
                if writer {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            t
        }));
    }
    Load { stop, done, tasks }
}

async fn stop_load(l: Load) -> Tally {
    // a slow machine still gets a meaningful load (at least 100 calls)
    let t0 = Instant::now();
    while l.done.load(Ordering::Relaxed) < 100 && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    l.stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for t in l.tasks {
        let t = t.await.unwrap();
        all.calls += t.calls;
        all.failures.extend(t.failures);
        all.written.extend(t.written);
        all.latencies_us.extend(t.latencies_us);
    }
    all
}

/// Zero failed calls, and every acknowledged write in the store exactly once.
fn assert_clean(ws: &Path, t: &Tally) {
    assert!(
        t.failures.is_empty(),
        "{} of {} calls failed: {:?}",
        t.failures.len(),
        t.calls,
        &t.failures[..t.failures.len().min(5)]
    );
    assert!(t.calls > 50, "the load ran ({} calls)", t.calls);
    let conn = rusqlite::Connection::open(ws.join(".vane/vane.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let dupes: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT title FROM decisions GROUP BY title HAVING count(*) > 1)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dupes, 0, "a write was applied twice");
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM decisions WHERE title LIKE 'load-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        n as usize,
        t.written.len(),
        "every acknowledged write is in the store"
    );
}

fn median_ms(v: &[u64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0) as f64 / 1000.0
}

fn ops_events(ws: &Path, kind: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == kind)
        .collect()
}

async fn front(ws: &Path) -> Arc<Client> {
    let c = common::serve(ws, &[]).await;
    c.call_ok("status", json!({})).await.unwrap();
    Arc::new(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_worker_repeatedly_fails_no_call() {
    let (_d, ws) = workspace("");
    let c = front(&ws).await;
    let load = start_load(&c, 3, 1);
    let mut recoveries = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let pid = active_pid(&ws).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let took = wait_for("a new active worker", Duration::from_secs(10), || {
            active_pid(&ws).is_some_and(|p| p != pid)
        })
        .await;
        recoveries.push(took);
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    let t = stop_load(load).await;
    eprintln!(
        "{} calls, {} writes; recovered after {:?}",
        t.calls,
        t.written.len(),
        recoveries
    );
    assert_clean(&ws, &t);
    let h = health(&ws);
    assert!(h["front"]["restarts"].as_u64().unwrap() >= 5, "{h}");
    let restarts = decisions(&ws)
        .iter()
        .filter(|d| d["action"] == "restart")
        .count();
    assert!(restarts >= 5);
    // the front records the crashes the dying workers could not
    let crashes = ops_events(&ws, "process")
        .into_iter()
        .filter(|e| e["event"] == "crash" && e["process"]["role"] == "front")
        .filter(|e| e["detail"].as_str().unwrap().contains("SIGKILL"))
        .count();
    assert!(crashes >= 5, "{crashes} crash events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_back_and_forth_between_two_workers_fails_no_call() {
    let (_d, ws) = workspace("");
    let c = front(&ws).await;
    let first = active_pid(&ws).unwrap();
    let load = start_load(&c, 3, 1);
    // no canary, no standby: both refused with a reason
    let out = ctl(&ws, &["route", "promote"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no canary"));
    let out = ctl(&ws, &["route", "rollback"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no standby"));

    let out = ctl(&ws, &["canary", "start", "--binary", BIN]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = ctl(&ws, &["route", "promote"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = active_pid(&ws).unwrap();
    assert_ne!(first, second);
    let h = health(&ws);
    assert_eq!(with_role(&h, "standby")[0]["pid"], first, "{h}");
    assert!(
        with_role(&h, "canary").is_empty(),
        "the canary was replaced"
    );
    let mut expect = first;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let out = ctl(&ws, &["route", "rollback"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(active_pid(&ws), Some(expect));
        expect = if expect == first { second } else { first };
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    let h = health(&ws);
    assert_eq!(
        h["front"]["disable_new"], false,
        "manual switches do not trip the kill switch"
    );
    let d = decisions(&ws);
    assert_eq!(d.iter().filter(|d| d["action"] == "rollback").count(), 4);
    assert!(d.iter().all(|d| d["automatic"] != true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_crashes_is_marked_failed_and_cannot_be_promoted() {
    let (d, ws) = workspace("");
    let bin = faulty(d.path(), "crashy", "worker_crash=8*off->return", "canary");
    let c = front(&ws).await;
    let load = start_load(&c, 3, 1);
    let out = ctl(&ws, &["canary", "start", "--binary", bin.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the canary to fail", Duration::from_secs(10), || {
        decisions(&ws)
            .iter()
            .any(|d| d["action"] == "canary_failed")
    })
    .await;
    let out = ctl(&ws, &["route", "promote"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("failed"), "{err}");
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    let h = health(&ws);
    let failed = with_role(&h, "failed");
    assert_eq!(failed.len(), 1, "{h}");
    assert!(
        failed[0]["note"].as_str().unwrap().contains("SIGABRT"),
        "{h}"
    );
    let d = decisions(&ws);
    let why = d.iter().find(|d| d["action"] == "canary_failed").unwrap();
    assert_eq!(why["metric"], "exit");
    assert!(why["value"].as_str().unwrap().contains("SIGABRT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadowing_compares_canary_answers_and_records_differences() {
    let (d, ws) = workspace("");
    let c = front(&ws).await;
    // a faithful canary: every shadowed answer matches
    assert!(ctl(&ws, &["canary", "start", "--binary", BIN])
        .status
        .success());
    let load = start_load(&c, 3, 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t = stop_load(load).await;
    assert!(t.failures.is_empty(), "{:?}", t.failures);
    let h = health(&ws);
    let sh = &with_role(&h, "canary")[0]["shadow"];
    eprintln!("faithful canary: {sh}");
    assert!(sh["compared"].as_u64().unwrap() >= 20, "{sh}");
    assert_eq!(sh["differed"], 0, "{sh}");
    assert_eq!(sh["matched"], sh["compared"]);

    // a canary that answers differently: differences recorded with where
    let bin = faulty(d.path(), "differ", "worker_diff=return", "canary");
    let out = ctl(&ws, &["canary", "start", "--binary", bin.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let load = start_load(&c, 3, 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    let h = health(&ws);
    let sh = &with_role(&h, "canary")[0]["shadow"];
    eprintln!("differing canary: {}", sh["differed"]);
    assert!(sh["differed"].as_u64().unwrap() >= 10, "{sh}");
    // (a write between the active's answer and the canary's can make a
    // read differ for real too — `status`'s revision — so not every one is
    // the injected one)
    let injected = sh["last_differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["difference"]["path"] == "/injected_difference" && d["difference"]["canary"] == true
        })
        .count();
    assert!(injected >= 10, "{sh}");
    let events = ops_events(&ws, "runtime");
    assert!(events
        .iter()
        .any(|e| e["event"] == "shadow_diff" && e["difference"]["path"] == "/injected_difference"));
    // writes are never shadowed: the canary is a dry run and refuses them
    assert_eq!(sh["errors"], 0, "{sh}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_worker_is_shadowed_without_slowing_clients_and_rolled_back_on_p95() {
    let (d, ws) = workspace("p95_slo_ms = 100\n");
    let bin = faulty(d.path(), "slow", "worker_delay=return(250)", "always");
    let c = front(&ws).await;
    let baseline = active_pid(&ws).unwrap();
    assert!(
        ctl(&ws, &["canary", "start", "--binary", bin.to_str().unwrap()])
            .status
            .success()
    );
    // shadowing a slow canary costs the client nothing
    let load = start_load(&c, 3, 0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t = stop_load(load).await;
    assert!(t.failures.is_empty());
    let p50 = median_ms(&t.latencies_us);
    eprintln!("client p50 while a 250 ms canary shadows: {p50:.2} ms");
    assert!(p50 < 50.0, "client median {p50} ms");

    assert!(ctl(&ws, &["route", "promote"]).status.success());
    let load = start_load(&c, 3, 1);
    wait_for("the automatic rollback", Duration::from_secs(20), || {
        decisions(&ws)
            .iter()
            .any(|d| d["action"] == "rollback" && d["automatic"] == true)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    assert_eq!(
        active_pid(&ws),
        Some(baseline),
        "routed back to the standby"
    );
    let d = decisions(&ws);
    let rb = d.iter().find(|d| d["action"] == "rollback").unwrap();
    assert_eq!(rb["metric"], "p95_ms", "{rb}");
    assert!(rb["value"].as_f64().unwrap() > 100.0);
    assert_eq!(rb["threshold"], 100);
    // the kill switch is set and the failed worker kept for inspection
    let flag = vane(&ws, &["flags", "get", "DISABLE_NEW"]);
    assert!(String::from_utf8_lossy(&flag.stdout).contains('1'));
    let h = health(&ws);
    let failed = with_role(&h, "failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["alive"], true, "kept for inspection");
    assert!(failed[0]["note"].as_str().unwrap().contains("p95_ms"));
    let ev = ops_events(&ws, "runtime");
    assert!(ev
        .iter()
        .any(|e| e["event"] == "rollback" && e["metric"] == "p95_ms" && e["threshold"] == 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_errors_after_promotion_is_rolled_back_and_no_call_fails() {
    let (d, ws) = workspace("");
    let bin = faulty(d.path(), "erring", "worker_error=1*off->30%return", "live");
    let c = front(&ws).await;
    let baseline = active_pid(&ws).unwrap();
    assert!(
        ctl(&ws, &["canary", "start", "--binary", bin.to_str().unwrap()])
            .status
            .success()
    );
    let load = start_load(&c, 3, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = ctl(&ws, &["route", "promote"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the automatic rollback", Duration::from_secs(20), || {
        decisions(&ws)
            .iter()
            .any(|d| d["action"] == "rollback" && d["automatic"] == true)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    assert_eq!(active_pid(&ws), Some(baseline));
    let d = decisions(&ws);
    let rb = d.iter().find(|d| d["action"] == "rollback").unwrap();
    assert_eq!(rb["metric"], "error_rate", "{rb}");
    assert!(rb["value"].as_f64().unwrap() > 0.05);
    assert!(rb["disable_new"] == true);
    // the faults were answered by the standby instead
    let retried = ops_events(&ws, "runtime")
        .into_iter()
        .filter(|e| e["event"] == "call_retried")
        .count();
    assert!(retried > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_memory_grows_is_rolled_back() {
    let (d, ws) = workspace("rss_window_s = 1\n");
    let bin = faulty(d.path(), "leaky", "worker_leak=return(3)", "live");
    let c = front(&ws).await;
    assert!(
        ctl(&ws, &["canary", "start", "--binary", bin.to_str().unwrap()])
            .status
            .success()
    );
    let load = start_load(&c, 3, 1);
    assert!(ctl(&ws, &["route", "promote"]).status.success());
    wait_for("the automatic rollback", Duration::from_secs(30), || {
        decisions(&ws)
            .iter()
            .any(|d| d["action"] == "rollback" && d["automatic"] == true)
    })
    .await;
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    let d = decisions(&ws);
    let rb = d.iter().find(|d| d["action"] == "rollback").unwrap();
    assert_eq!(rb["metric"], "rss_bytes", "{rb}");
    assert!(rb["value"].as_u64().unwrap() > rb["threshold"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_worker_opens_its_circuit_and_is_replaced() {
    let (_d, ws) = workspace("");
    let c = front(&ws).await;
    let load = start_load(&c, 3, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = active_pid(&ws).unwrap();
    // frozen, not dead: only the pings can tell
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let took = wait_for("a replacement", Duration::from_secs(10), || {
        active_pid(&ws).is_some_and(|p| p != pid)
    })
    .await;
    eprintln!("frozen worker replaced after {took:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = stop_load(load).await;
    assert_clean(&ws, &t);
    let ev = ops_events(&ws, "runtime");
    assert!(ev.iter().any(|e| e["event"] == "circuit_open"));
}

#[tokio::test]
async fn a_call_past_its_timeout_gets_timeout_and_the_worker_cancels_it() {
    let (_d, ws) = workspace_with("tool_timeouts_ms = { cmd_run = 700 }", "");
    let c = front(&ws).await;
    let t0 = Instant::now();
    let e = c
        .call_err("cmd_run", json!({ "cmd": "sleep 2; echo late > late.txt" }))
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(e["code"], "timeout", "{e}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // the worker was told to cancel: the command never got to write
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !ws.join("late.txt").exists(),
        "the command was not cancelled"
    );
    // and the worker is fine
    c.call_ok("status", json!({})).await.unwrap();
}

#[tokio::test]
async fn a_call_the_client_cancels_is_cancelled_on_the_worker() {
    let (_d, ws) = workspace("");
    let c = front(&ws).await;
    let mut params = rmcp::model::CallToolRequestParams::new("cmd_run");
    params.arguments = json!({ "cmd": "sleep 2; echo late > late.txt" })
        .as_object()
        .cloned();
    let req =
        rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(params));
    let handle = c
        .service
        .peer()
        .send_request_with_option(req, rmcp::service::PeerRequestOptions::no_options())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let active = with_role(&health(&ws), "active");
    assert_eq!(active[0]["in_flight"], 1, "{active:?}");
    handle.cancel(Some("changed my mind".into())).await.unwrap();
    // the front stops counting it at once, and the worker stops the command
    wait_for(
        "the call to leave the books",
        Duration::from_secs(2),
        || with_role(&health(&ws), "active")[0]["in_flight"] == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !ws.join("late.txt").exists(),
        "the command was not cancelled"
    );
    c.call_ok("status", json!({})).await.unwrap();
}

#[tokio::test]
async fn a_canary_that_never_becomes_ready_is_killed_and_reported() {
    let (d, ws) = workspace_with("ready_timeout_ms = 500", "");
    let mute = d.path().join("mute");
    std::fs::write(&mute, "#!/bin/sh\nexec sleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&mute, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _c = front(&ws).await;
    let out = ctl(
        &ws,
        &["canary", "start", "--binary", mute.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not ready within 500 ms"), "{err}");
    let d = decisions(&ws);
    assert!(d.iter().any(|d| d["action"] == "canary_failed"));
    // a bad path is refused before anything starts
    let out = ctl(&ws, &["canary", "start", "--binary", "/nonexistent/vane"]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn admin_tools_and_the_control_socket() {
    let (_d, ws) = workspace("");
    let c = front(&ws).await;
    // the socket is private to the user
    use std::os::unix::fs::PermissionsExt;
    let run = ws.join(".vane/run");
    assert_eq!(
        std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let sock = std::fs::read_dir(&run)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // admin tools are off by default
    let names: Vec<String> = c
        .tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!names.contains(&"worker_health".to_string()));
    assert_eq!(
        c.call_err("worker_health", json!({})).await.unwrap()["code"],
        "admin_disabled"
    );
    assert!(vane(&ws, &["flags", "set", "ADMIN_TOOLS", "1"])
        .status
        .success());
    let names: Vec<String> = c
        .tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    for t in [
        "worker_health",
        "route_switch",
        "flags_list",
        "flags_set",
        "panic_disable_new",
    ] {
        assert!(names.contains(&t.to_string()), "{t} in {names:?}");
    }
    let h = c.call_ok("worker_health", json!({})).await.unwrap();
    let active = &h["workers"][0];
    assert_eq!(active["role"], "active");
    assert!(active["rss_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(active["calls"].as_u64().unwrap() >= 1);
    assert_eq!(active["circuit"], "closed");
    assert_eq!(h["front"]["pid"], c.pid.unwrap());
    let e = c
        .call_err("route_switch", json!({ "action": "rollback" }))
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input");
    assert!(e["message"].as_str().unwrap().contains("no standby"));
    let e = c
        .call_err("route_switch", json!({ "action": "sideways" }))
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input");
    // the people's view of the same
    let out = vane(&ws, &["workers"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("active") && text.contains("closed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_that_stops_answering_pings_is_rolled_back() {
    let (_d, ws) = workspace("");
    let c = front(&ws).await;
    let baseline = active_pid(&ws).unwrap();
    assert!(ctl(&ws, &["canary", "start", "--binary", BIN])
        .status
        .success());
    assert!(ctl(&ws, &["route", "promote"]).status.success());
    let fresh = active_pid(&ws).unwrap();
    assert_ne!(fresh, baseline);
    let load = start_load(&c, 3, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fresh as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    wait_for("the rollback", Duration::from_secs(10), || {
        active_pid(&ws) == Some(baseline)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = stop_load(load).await;
    // let the frozen worker go before checking the store
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fresh as i32),
        nix::sys::signal::Signal::SIGCONT,
    );
    assert_clean(&ws, &t);
    let d = decisions(&ws);
    let rb = d.iter().find(|d| d["action"] == "rollback").unwrap();
    assert_eq!(rb["metric"], "circuit", "{rb}");
    assert_eq!(rb["automatic"], true);
}
