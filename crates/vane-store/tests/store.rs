//! Store behaviour on real SQLite files: imports, claims under contention,
//! optimistic concurrency, critic gating, atomic exports.

use std::sync::Arc;

use serde_json::json;
use vane_core::planner::PlanQuery;
use vane_core::roadmap::parse_yaml;
use vane_core::{ErrorCode, Status};
use vane_store::*;

const ROADMAP: &str = r#"
epics:
  - id: E1
    title: Epic
    milestones:
      - id: M1
        title: M
        tasks:
          - id: A
            title: first
            exit_criteria: [{critic: tests}]
          - id: B
            title: second
            dependencies: [A]
          - id: C
            title: third
          - id: D
            title: fourth
"#;

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let paths = StatePaths::new(dir.path(), dir.path().join(".vane"));
    let store = Store::open(&paths).unwrap();
    let (r, _) = parse_yaml(ROADMAP).unwrap();
    store.import_roadmap(&r, false, "test").unwrap();
    (dir, store)
}

#[test]
fn reimport_of_unchanged_roadmap_changes_nothing() {
    let (_d, store) = setup();
    let (r, _) = parse_yaml(ROADMAP).unwrap();
    let s = store.import_roadmap(&r, false, "test").unwrap();
    assert_eq!((s.created, s.updated, s.unchanged), (0, 0, 4));
    assert_eq!(store.get_task("A").unwrap().version, 1);
}

#[test]
fn concurrent_claims_never_hand_out_a_task_twice() {
    let (d, store) = setup();
    drop(store);
    let paths = StatePaths::new(d.path(), d.path().join(".vane"));
    let mut handles = Vec::new();
    for i in 0..8 {
        let paths = paths.clone();
        handles.push(std::thread::spawn(move || {
            // each thread its own connection, like separate processes
            let s = Store::open(&paths).unwrap();
            s.claim_next(&PlanQuery::default(), &format!("agent-{i}"), 60, now_ms())
                .unwrap()
                .map(|t| t.0.id)
        }));
    }
    let mut got: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    got.sort();
    // A, C, D are ready (B waits on A): exactly three claims succeed
    assert_eq!(got, vec!["A", "C", "D"]);
}

#[test]
fn stale_update_is_a_version_conflict_and_nothing_is_lost() {
    let (_d, store) = setup();
    let store = Arc::new(store);
    let v = store.get_task("C").unwrap().version;
    let up = |notes: &str| TaskUpdate {
        task_id: "C".into(),
        notes: Some(notes.into()),
        expected_version: Some(v),
        ..Default::default()
    };
    store.update_task(&up("first"), now_ms()).unwrap();
    let e = store.update_task(&up("second"), now_ms()).unwrap_err();
    assert_eq!(e.code, ErrorCode::VersionConflict);
    assert_eq!(e.details["current_version"], json!(v + 1));
    assert_eq!(store.get_task("C").unwrap().notes.as_deref(), Some("first"));
}

#[test]
fn done_needs_a_passing_critic_since_start_unless_forced() {
    let (_d, store) = setup();
    let t0 = now_ms();
    // an old pass before the task started does not count
    store
        .record_critic_run(&NewCriticRun {
            name: "tests".into(),
            status: CriticStatus::Pass,
            exit_code: Some(0),
            command: "true".into(),
            started_at_ms: t0 - 10_000,
            finished_at_ms: t0 - 9_000,
            output_tail: String::new(),
            trigger: json!({}),
        })
        .unwrap();
    let (claimed, previous) = store
        .claim_next(&PlanQuery::default(), "a1", 60, t0)
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, "A");
    assert_eq!(previous, Status::Pending);
    let done = TaskUpdate {
        task_id: "A".into(),
        status: Some(Status::Done),
        ..Default::default()
    };
    let e = store.update_task(&done, t0 + 1).unwrap_err();
    assert_eq!(e.code, ErrorCode::ExitCriteriaUnmet);
    assert_eq!(e.details["unmet"][0]["critic"], "tests");
    // force without reason is refused, with reason recorded
    let forced = TaskUpdate {
        force: true,
        ..done.clone()
    };
    assert_eq!(
        store.update_task(&forced, t0 + 2).unwrap_err().code,
        ErrorCode::InvalidInput
    );
    store
        .record_critic_run(&NewCriticRun {
            name: "tests".into(),
            status: CriticStatus::Pass,
            exit_code: Some(0),
            command: "true".into(),
            started_at_ms: t0 + 5,
            finished_at_ms: t0 + 6,
            output_tail: String::new(),
            trigger: json!({}),
        })
        .unwrap();
    let out = store.update_task(&done, t0 + 10).unwrap();
    assert_eq!(out.task.status, Status::Done);
    assert!(
        out.task.claimed_by.is_none(),
        "leaving in_progress releases the claim"
    );
}

#[test]
fn failing_critic_opens_a_remediation_task() {
    let (d, store) = setup();
    let run = NewCriticRun {
        name: "lint".into(),
        status: CriticStatus::Fail,
        exit_code: Some(1),
        command: "lint".into(),
        started_at_ms: now_ms(),
        finished_at_ms: now_ms(),
        output_tail: "bad style".into(),
        trigger: json!({}),
    };
    let rec = store.record_critic_run(&run).unwrap();
    assert_eq!(rec.remediation_task.as_deref(), Some("CRITIC-lint"));
    let t = store.get_task("CRITIC-lint").unwrap();
    assert_eq!(t.status, Status::Pending);
    assert!(t.description.unwrap().contains("bad style"));
    let exported = std::fs::read_to_string(d.path().join(".vane/critics/lint.json")).unwrap();
    assert!(exported.contains("\"fail\""));
    assert!(std::fs::read_to_string(d.path().join(".vane/roadmap.yaml"))
        .unwrap()
        .contains("CRITIC-lint"));
}

#[test]
fn exports_follow_the_store_and_never_go_backwards() {
    let (d, store) = setup();
    store.context_write("goal", "ship it", false, 100).unwrap();
    let md = std::fs::read_to_string(d.path().join(".vane/context.md")).unwrap();
    assert!(md.contains("## goal") && md.contains("ship it"));
    // a second store on the same files writes a newer revision; the first
    // store's refresh must not put the older content back
    let paths = StatePaths::new(d.path(), d.path().join(".vane"));
    let other = Store::open(&paths).unwrap();
    other.context_write("goal", "newer", false, 100).unwrap();
    assert!(!store.export(ExportKind::Context).unwrap());
    assert!(std::fs::read_to_string(d.path().join(".vane/context.md"))
        .unwrap()
        .contains("newer"));
    let e = store
        .context_write("goal", &"word ".repeat(101), false, 100)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ContextBudgetExceeded);
}

#[test]
fn a_newer_schema_is_refused() {
    let (d, store) = setup();
    drop(store);
    let db = d.path().join(".vane/vane.db");
    // pretend a newer vane migrated this store
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let paths = StatePaths::new(d.path(), d.path().join(".vane"));
    let e = Store::open(&paths).err().unwrap();
    assert_eq!(e.code, ErrorCode::SchemaIncompatible);
    assert!(e.message.contains("newer"));
}

/// A newer vane's expand migration leaves the store usable by this one; its
/// contract migration makes this one refuse the store, read-only or not.
#[test]
fn a_newer_expand_is_accepted_and_a_newer_contract_refused() {
    let (d, store) = setup();
    drop(store);
    let db = d.path().join(".vane/vane.db");
    let v = vane_store::SCHEMA_VERSION;
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "ALTER TABLE decisions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
         INSERT INTO schema_migrations VALUES ({}, 'decision_tags', 'expand', 1, 'newer vane');
         PRAGMA user_version = {};",
        v + 1,
        v + 1
    ))
    .unwrap();
    let paths = StatePaths::new(d.path(), d.path().join(".vane"));
    let store = Store::open(&paths).expect("expand-only newer schema is usable");
    assert_eq!(store.schema_version(), v + 1);
    let info = store.schema_info().unwrap();
    assert_eq!(info.unknown.len(), 1);
    assert!(info.incompatible.is_none());
    store
        .record_decision("still writes", "after a newer expand", None, None)
        .unwrap();
    drop(store);
    Store::open_read_only(&paths).expect("and read-only too");

    c.execute_batch(&format!(
        "INSERT INTO schema_migrations VALUES ({}, 'drop_impact', 'contract', 2, 'newer vane');
         UPDATE meta SET value = {} WHERE key = 'schema_floor';
         PRAGMA user_version = {};",
        v + 2,
        v + 2,
        v + 2
    ))
    .unwrap();
    for e in [
        Store::open(&paths).err().unwrap(),
        Store::open_read_only(&paths).err().unwrap(),
    ] {
        assert_eq!(e.code, ErrorCode::SchemaIncompatible);
        assert!(e.message.contains("drop_impact"), "{}", e.message);
        assert_eq!(e.details["floor"], v + 2);
    }
}
