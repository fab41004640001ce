//! Idempotency keys: a retried mutation (same key) returns the recorded
//! result instead of running twice — across processes too — and a key reused
//! for other arguments is refused.

use std::path::{Path, PathBuf};

use serde_json::json;
use vane_tools::client::Client;

mod common;

fn workspace() -> (tempfile::TempDir, PathBuf) {
    common::init_workspace("", "tasks:\n  - id: T1\n    title: one\n", &[])
}

async fn serve(ws: &Path) -> Client {
    common::serve(ws, &[]).await
}

fn replayed(r: &rmcp::model::CallToolResult) -> bool {
    r.meta
        .as_ref()
        .and_then(|m| m.0.get("vane/idempotent_replay"))
        .is_some_and(|v| v == &json!(true))
}

#[tokio::test]
async fn a_repeated_key_is_applied_once_even_across_processes() {
    let (_d, ws) = workspace();
    let a = serve(&ws).await;
    let append = json!({ "path": "log.txt", "content": "one line\n", "mode": "append" });
    let r1 = a
        .call_with_meta(
            "fs_write",
            append.clone(),
            json!({ "vane/idempotency_key": "k-1" }),
        )
        .await
        .unwrap();
    assert_eq!(r1.is_error, Some(false));
    assert!(!replayed(&r1));
    let r2 = a
        .call_with_meta(
            "fs_write",
            append.clone(),
            json!({ "vane/idempotency_key": "k-1" }),
        )
        .await
        .unwrap();
    assert!(replayed(&r2));
    assert_eq!(
        r1.structured_content, r2.structured_content,
        "the recorded result comes back"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("log.txt")).unwrap(),
        "one line\n",
        "applied once"
    );

    // another process (a retry after a worker crash lands on a new worker)
    let b = serve(&ws).await;
    let r3 = b
        .call_with_meta(
            "fs_write",
            append.clone(),
            json!({ "vane/idempotency_key": "k-1" }),
        )
        .await
        .unwrap();
    assert!(replayed(&r3));
    assert_eq!(
        std::fs::read_to_string(ws.join("log.txt")).unwrap(),
        "one line\n"
    );

    // the same key for different arguments is refused
    let other = json!({ "path": "log.txt", "content": "other\n", "mode": "append" });
    let r4 = b
        .call_with_meta("fs_write", other, json!({ "vane/idempotency_key": "k-1" }))
        .await
        .unwrap();
    assert_eq!(
        r4.structured_content.unwrap()["error"]["code"],
        "idempotency_key_reused"
    );

    // error results are recorded and replayed too
    let bad = json!({ "task_id": "T1", "status": "done" });
    let e1 = a
        .call_with_meta(
            "plan_update",
            bad.clone(),
            json!({ "vane/idempotency_key": "k-2" }),
        )
        .await
        .unwrap();
    let e2 = b
        .call_with_meta("plan_update", bad, json!({ "vane/idempotency_key": "k-2" }))
        .await
        .unwrap();
    assert_eq!(e1.is_error, Some(true));
    assert!(replayed(&e2) && e2.is_error == Some(true));
    assert_eq!(
        e2.structured_content.unwrap()["error"]["code"],
        "invalid_transition"
    );

    // read-only tools ignore keys
    let s1 = a
        .call_with_meta(
            "status",
            json!({}),
            json!({ "vane/idempotency_key": "k-3" }),
        )
        .await
        .unwrap();
    let s2 = a
        .call_with_meta(
            "status",
            json!({}),
            json!({ "vane/idempotency_key": "k-3" }),
        )
        .await
        .unwrap();
    assert!(!replayed(&s1) && !replayed(&s2));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_reservation_left_by_a_dead_process_is_taken_over_and_a_live_one_waits() {
    let (_d, ws) = workspace();
    // the worker itself (a front would wait for the live owner until its timeout)
    let c = common::worker(&ws).await;
    // prime the schema, then forge reservations as a crashed and a live worker would leave them
    c.call_ok("status", json!({})).await.unwrap();
    let dead = {
        let mut ch = std::process::Command::new("true").spawn().unwrap();
        let pid = ch.id();
        ch.wait().unwrap();
        pid
    };
    let args = json!({ "section": "s", "content": "x" });
    let hash = vane_telemetry::event::content_hash(
        &serde_json::to_vec(&json!({ "tool": "context_write", "arguments": args })).unwrap(),
    );
    let db = rusqlite_path(&ws);
    let conn = open_db(&db);
    for (key, pid) in [("dead-owner", dead), ("live-owner", std::process::id())] {
        conn.execute(
            "INSERT INTO idempotency(key, tool, args_hash, state, owner_pid, created_at_ms) VALUES (?1, 'context_write', ?2, 'pending', ?3, ?4)",
            (key, &hash, pid, chrono_now()),
        )
        .unwrap();
    }
    let r = c
        .call_with_meta(
            "context_write",
            args.clone(),
            json!({ "vane/idempotency_key": "dead-owner" }),
        )
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(false), "{:?}", r.structured_content);
    let r = c
        .call_with_meta(
            "context_write",
            args,
            json!({ "vane/idempotency_key": "live-owner" }),
        )
        .await
        .unwrap();
    let err = r.structured_content.unwrap()["error"].clone();
    assert_eq!(err["code"], "idempotency_key_in_progress");
    assert_eq!(err["details"]["retryable"], true);
    c.close().await;
}

fn rusqlite_path(ws: &Path) -> PathBuf {
    ws.join(".vane/vane.db")
}

fn open_db(p: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(p).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    c
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The narrowest window: a keyed call's write committed and the worker died
/// before recording the result. The retry in another worker replays the
/// write from the journal (committed with it): same answer, applied once.
#[tokio::test]
async fn a_crash_between_commit_and_record_replays_from_the_journal() {
    let (_d, ws) = workspace();
    let args = json!({ "title": "use the journal", "summary": "exactly once" });
    let meta = json!({ "vane/idempotency_key": "journal-1" });
    let crashing = Client::spawn(
        Path::new(common::BIN),
        &["worker", "--workspace", ws.to_str().unwrap()],
        &[("FAILPOINTS", "worker_crash_before_finish=return")],
        true,
    )
    .await
    .unwrap();
    let pid = crashing.pid.unwrap();
    assert!(
        crashing
            .call_with_meta("decision_record", args.clone(), meta.clone())
            .await
            .is_err(),
        "the worker died mid-call"
    );
    // wait until it is gone (reaped by tokio's child handling)
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let conn = open_db(&rusqlite_path(&ws));
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row(
            "SELECT count(*) FROM decisions WHERE title = 'use the journal'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(count(&conn), 1, "the write committed before the crash");
    let journal: Option<String> = conn
        .query_row(
            "SELECT journal FROM idempotency WHERE key = 'journal-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(journal.unwrap().contains("use the journal"));

    let w = common::worker(&ws).await;
    let r = w
        .call_with_meta("decision_record", args.clone(), meta.clone())
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(false), "{:?}", r.structured_content);
    let first = r.structured_content.unwrap();
    assert_eq!(first["title"], "use the journal");
    assert_eq!(count(&conn), 1, "not applied twice");
    // and from now on it is an ordinary recorded replay
    let again = w
        .call_with_meta("decision_record", args, meta)
        .await
        .unwrap();
    assert!(replayed(&again));
    assert_eq!(again.structured_content.unwrap()["id"], first["id"]);
    w.close().await;
}
