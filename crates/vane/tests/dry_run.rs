//! A dry-run worker (`VANE_DRY_RUN=1`) answers reads like a live one and
//! refuses every mutation with `dry_run_no_mutation`, leaving the store, the
//! exports and the workspace exactly as they were.

use std::path::Path;

use serde_json::{json, Value};
use vane_tools::client::Client;

mod common;

use common::{vane, BIN};

#[tokio::test]
async fn dry_run_reads_but_never_mutates() {
    let (_d, ws) = common::init_workspace(
        "[critics.ok]\ncommand = \"true\"\n",
        "tasks:\n  - id: T1\n    title: one\n",
        &[("a.txt", "alpha\n")],
    );
    // a live server holds the store open, as it would beside a canary
    let live = Client::spawn(
        Path::new(BIN),
        &["serve", "--workspace", ws.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap();
    live.call_ok("status", json!({})).await.unwrap();
    let before: Value = serde_json::from_slice(&vane(&ws, &["status", "--json"]).stdout).unwrap();
    let roadmap_before = std::fs::read_to_string(ws.join(".vane/roadmap.yaml")).unwrap();

    let dry = Client::spawn(
        Path::new(BIN),
        &["worker", "--workspace", ws.to_str().unwrap()],
        &[("VANE_DRY_RUN", "1")],
        true,
    )
    .await
    .unwrap();
    // reads work and match the live worker
    let s_live = live.call_ok("plan_next", json!({})).await.unwrap();
    let s_dry = dry.call_ok("plan_next", json!({})).await.unwrap();
    assert_eq!(s_live["tasks"], s_dry["tasks"]);
    assert_eq!(
        dry.call_ok("fs_read", json!({ "path": "a.txt" }))
            .await
            .unwrap()["content"],
        "alpha\n"
    );
    dry.call_ok("status", json!({})).await.unwrap();
    // every mutation is refused
    for (tool, args) in [
        ("fs_write", json!({ "path": "b.txt", "content": "x" })),
        (
            "plan_update",
            json!({ "task_id": "T1", "status": "in_progress" }),
        ),
        ("plan_next", json!({ "claim": { "agent": "canary" } })),
        ("context_write", json!({ "section": "s", "content": "x" })),
        ("context_snapshot", json!({ "reason": "x" })),
        ("artifact_record", json!({ "kind": "k" })),
        ("decision_record", json!({ "title": "t", "summary": "s" })),
    ] {
        let e = dry.call_err(tool, args).await.unwrap();
        assert_eq!(e["code"], "dry_run_no_mutation", "{tool}: {e}");
    }
    if vane_tools::exec::detect_bwrap().is_some() {
        // commands run, but in a sandbox where the workspace is read-only too
        let o = dry
            .call_ok("cmd_run", json!({ "cmd": "cat a.txt; touch b.txt" }))
            .await
            .unwrap();
        assert_eq!(o["stdout"], "alpha\n");
        assert_ne!(o["exit_code"], 0);
        // critics run and report, without recording
        let c = dry
            .call_ok("critics_run", json!({ "critics": ["ok"] }))
            .await
            .unwrap();
        assert_eq!(c["runs"][0]["status"], "pass");
        assert_eq!(c["runs"][0]["id"], 0);
    } else {
        let e = dry
            .call_err("cmd_run", json!({ "cmd": "true" }))
            .await
            .unwrap();
        assert_eq!(e["code"], "dry_run_no_mutation");
    }
    assert!(!ws.join("b.txt").exists());
    dry.close().await;
    let after: Value = serde_json::from_slice(&vane(&ws, &["status", "--json"]).stdout).unwrap();
    assert_eq!(
        before["roadmap"]["revision"], after["roadmap"]["revision"],
        "the store did not change"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join(".vane/roadmap.yaml")).unwrap(),
        roadmap_before
    );
    assert!(after.get("failing_critics").is_none(), "{after}");
    live.close().await;
}
