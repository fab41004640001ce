//! Live flags end to end: changed by the CLI or admin tools, seen by a running
//! server on its next call, each flag tested in both positions, and the kill
//! switch.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vane_tools::client::Client;

mod common;

use common::{vane, BIN};

fn workspace() -> (tempfile::TempDir, PathBuf) {
    common::init_workspace(
        "",
        "tasks:\n  - id: BIG\n    title: big critical job\n    priority: critical\n    estimate_hours: 40\n  - id: SMALL\n    title: small medium job\n    priority: medium\n    estimate_hours: 1\n",
        &[],
    )
}

async fn first_ready(c: &Client) -> String {
    let p = c.call_ok("plan_next", json!({ "limit": 2 })).await.unwrap();
    p["tasks"][0]["id"].as_str().unwrap().to_string()
}

async fn tool_names(c: &Client) -> Vec<String> {
    c.tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test]
async fn scheduler_mode_and_kill_switch_apply_to_a_running_server() {
    let (_d, ws) = workspace();
    let c = Client::spawn(
        Path::new(BIN),
        &["serve", "--workspace", ws.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    assert_eq!(
        first_ready(&c).await,
        "BIG",
        "priority mode: critical first"
    );
    let out = vane(&ws, &["flags", "set", "SCHEDULER_MODE", "wsjf"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        first_ready(&c).await,
        "SMALL",
        "wsjf: 3/1 beats 8/40, without a restart"
    );
    assert!(vane(&ws, &["flags", "kill-switch", "on"]).status.success());
    assert_eq!(
        first_ready(&c).await,
        "BIG",
        "kill switch: safe value (priority)"
    );
    let out = vane(&ws, &["flags", "get", "SCHEDULER_MODE"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "priority");
    assert!(vane(&ws, &["flags", "kill-switch", "off"]).status.success());
    assert_eq!(first_ready(&c).await, "SMALL", "stored values return");
    assert!(vane(&ws, &["flags", "unset", "SCHEDULER_MODE"])
        .status
        .success());
    assert_eq!(first_ready(&c).await, "BIG");
    // claims follow the scheduler too
    assert!(vane(&ws, &["flags", "set", "SCHEDULER_MODE", "wsjf"])
        .status
        .success());
    let p = c
        .call_ok("plan_next", json!({ "claim": { "agent": "a" } }))
        .await
        .unwrap();
    assert_eq!(p["claimed"]["id"], "SMALL");

    // bad keys and values are errors that list what is allowed, and change nothing
    let out = vane(&ws, &["flags", "set", "SCHEDULER_MODE", "random"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("priority, wsjf"));
    let out = vane(&ws, &["flags", "set", "TURBO", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADMIN_TOOLS"));
    let out = vane(&ws, &["flags", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sched = v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "SCHEDULER_MODE")
        .unwrap();
    assert_eq!(sched["effective"], "wsjf");
    assert!(v["history"].as_array().unwrap().len() >= 5);
    c.close().await;
    // every change is a `flag` event in the operations log
    let log = std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap();
    let flag_events = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"flag\""))
        .count();
    // set wsjf, kill on, kill off, unset, set wsjf; refused changes leave no event
    assert_eq!(flag_events, 5);
}

#[tokio::test]
async fn admin_tools_output_mode_and_panic() {
    let (_d, ws) = workspace();
    let c = Client::spawn(
        Path::new(BIN),
        &["serve", "--workspace", ws.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    assert!(!tool_names(&c).await.contains(&"flags_list".to_string()));
    let e = c.call_err("flags_list", json!({})).await.unwrap();
    assert_eq!(e["code"], "admin_disabled");
    assert!(vane(&ws, &["flags", "set", "ADMIN_TOOLS", "on"])
        .status
        .success());
    let names = tool_names(&c).await;
    for t in ["flags_list", "flags_set", "panic_disable_new"] {
        assert!(
            names.contains(&t.to_string()),
            "{t} listed with ADMIN_TOOLS=1"
        );
    }
    let l = c.call_ok("flags_list", json!({})).await.unwrap();
    assert_eq!(l["kill_switch"], false);
    // OUTPUT_MODE: compact text, then verbose (indented) text
    let compact = c.call("status", json!({})).await.unwrap();
    let text = |r: &rmcp::model::CallToolResult| r.content[0].as_text().unwrap().text.clone();
    assert!(!text(&compact).contains("\n  "));
    let e = c
        .call_err(
            "flags_set",
            json!({ "key": "OUTPUT_MODE", "value": "loud" }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input");
    c.call_ok(
        "flags_set",
        json!({ "key": "OUTPUT_MODE", "value": "verbose", "agent": "tester" }),
    )
    .await
    .unwrap();
    let verbose = c.call("status", json!({})).await.unwrap();
    assert!(
        text(&verbose).contains("\n  "),
        "verbose output is indented"
    );
    assert_eq!(
        verbose.structured_content.as_ref().unwrap()["version"],
        compact.structured_content.as_ref().unwrap()["version"]
    );
    // SANDBOX_MODE: off runs without bubblewrap; bwrap requires it
    c.call_ok(
        "flags_set",
        json!({ "key": "SANDBOX_MODE", "value": "off" }),
    )
    .await
    .unwrap();
    let o = c
        .call_ok("cmd_run", json!({ "cmd": "true" }))
        .await
        .unwrap();
    assert_eq!(o["sandbox"], "none");
    c.call_ok(
        "flags_set",
        json!({ "key": "SANDBOX_MODE", "value": "bwrap" }),
    )
    .await
    .unwrap();
    if vane_tools::exec::detect_bwrap().is_some() {
        let o = c
            .call_ok("cmd_run", json!({ "cmd": "true" }))
            .await
            .unwrap();
        assert_eq!(o["sandbox"], "bwrap");
    } else {
        let e = c
            .call_err("cmd_run", json!({ "cmd": "true" }))
            .await
            .unwrap();
        assert_eq!(e["code"], "sandbox_unavailable");
    }
    // the kill switch through MCP: admin tools vanish, output is compact again
    c.call_ok("panic_disable_new", json!({ "reason": "test" }))
        .await
        .unwrap();
    assert!(!tool_names(&c).await.contains(&"flags_list".to_string()));
    assert_eq!(
        c.call_err("flags_list", json!({})).await.unwrap()["code"],
        "admin_disabled"
    );
    assert!(!text(&c.call("status", json!({})).await.unwrap()).contains("\n  "));
    let out = vane(&ws, &["flags", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kill_switch"], true);
    assert!(v["history"][0]["actor"]
        .as_str()
        .unwrap()
        .contains("panic_disable_new: test"));
    c.close().await;
}

/// A flag that changes the tool set reaches an idle client as
/// `notifications/tools/list_changed`, without any call from it.
#[tokio::test]
async fn admin_flag_sends_tools_list_changed_to_an_idle_client() {
    let (_d, ws) = workspace();
    let c = common::serve(&ws, &[]).await;
    // the client has seen the tool list (and the front's worker is up)
    tool_names(&c).await;
    let changes = c.tool_list_changes.clone();
    assert_eq!(changes.load(std::sync::atomic::Ordering::SeqCst), 0);
    let t0 = std::time::Instant::now();
    assert!(vane(&ws, &["flags", "set", "ADMIN_TOOLS", "1"])
        .status
        .success());
    while changes.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "no list_changed notification"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!("list_changed after {:?}", t0.elapsed());
    assert!(tool_names(&c).await.contains(&"flags_list".to_string()));
    // unrelated flags do not change the tool set
    assert!(vane(&ws, &["flags", "set", "OUTPUT_MODE", "verbose"])
        .status
        .success());
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(changes.load(std::sync::atomic::Ordering::SeqCst), 1);
    c.close().await;
}
