//! Store behaviour on both engines (real SQLite files, a real PostgreSQL
//! server): imports, claims under contention, optimistic concurrency,
//! critic gating, atomic exports, schema compatibility.

#[macro_use]
mod common;

use std::sync::Arc;

use common::Env;

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

both_engines!(
    reimport_of_unchanged_roadmap_changes_nothing,
    concurrent_claims_never_hand_out_a_task_twice,
    stale_update_is_a_version_conflict_and_nothing_is_lost,
    done_needs_a_passing_critic_since_start_unless_forced,
    failing_critic_opens_a_remediation_task,
    exports_follow_the_store_and_never_go_backwards,
    a_newer_schema_is_refused,
    a_newer_expand_is_accepted_and_a_newer_contract_refused,
    flags_and_their_history,
    artifacts_decisions_and_checkpoints,
    idempotency_keys_replay_and_refuse_reuse,
    idempotency_ownership_is_a_lease_not_a_pid,
    prune_and_keep_on_reimport,
    a_read_only_store_reads_and_writes_nothing,
    a_large_import_is_exact,
);

fn setup(env: &Env) -> Store {
    let store = env.open();
    let (r, _) = parse_yaml(ROADMAP).unwrap();
    store.import_roadmap(&r, false, "test").unwrap();
    store
}

fn reimport_of_unchanged_roadmap_changes_nothing(env: Env) {
    let store = setup(&env);
    let (r, _) = parse_yaml(ROADMAP).unwrap();
    let s = store.import_roadmap(&r, false, "test").unwrap();
    assert_eq!((s.created, s.updated, s.unchanged), (0, 0, 4));
    assert_eq!(store.get_task("A").unwrap().version, 1);
}

fn concurrent_claims_never_hand_out_a_task_twice(env: Env) {
    let store = setup(&env);
    drop(store);
    let paths = env.paths.clone();
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

fn stale_update_is_a_version_conflict_and_nothing_is_lost(env: Env) {
    let store = setup(&env);
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

fn done_needs_a_passing_critic_since_start_unless_forced(env: Env) {
    let store = setup(&env);
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

fn failing_critic_opens_a_remediation_task(env: Env) {
    let store = setup(&env);
    let d = &env.dir;
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

fn exports_follow_the_store_and_never_go_backwards(env: Env) {
    let store = setup(&env);
    let d = &env.dir;
    store.context_write("goal", "ship it", false, 100).unwrap();
    let md = std::fs::read_to_string(d.path().join(".vane/context.md")).unwrap();
    assert!(md.contains("## goal") && md.contains("ship it"));
    // a second store on the same files writes a newer revision; the first
    // store's refresh must not put the older content back
    let other = env.open();
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

fn a_newer_schema_is_refused(env: Env) {
    let store = setup(&env);
    drop(store);
    // pretend a newer vane migrated this store
    env.set_schema_version(999);
    let e = Store::open(&env.paths).err().unwrap();
    assert_eq!(e.code, ErrorCode::SchemaIncompatible);
    assert!(e.message.contains("newer"));
}

/// A newer vane's expand migration leaves the store usable by this one; its
/// contract migration makes this one refuse the store, read-only or not.
fn a_newer_expand_is_accepted_and_a_newer_contract_refused(env: Env) {
    let store = setup(&env);
    drop(store);
    let v = vane_store::SCHEMA_VERSION;
    env.raw(&format!(
        "ALTER TABLE decisions ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
         INSERT INTO schema_migrations VALUES ({}, 'decision_tags', 'expand', 1, 'newer vane');",
        v + 1
    ));
    env.set_schema_version(v + 1);
    let paths = env.paths.clone();
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

    env.raw(&format!(
        "INSERT INTO schema_migrations VALUES ({}, 'drop_impact', 'contract', 2, 'newer vane');
         UPDATE meta SET value = {} WHERE key = 'schema_floor';",
        v + 2,
        v + 2
    ));
    env.set_schema_version(v + 2);
    for e in [
        Store::open(&paths).err().unwrap(),
        Store::open_read_only(&paths).err().unwrap(),
    ] {
        assert_eq!(e.code, ErrorCode::SchemaIncompatible);
        assert!(e.message.contains("drop_impact"), "{}", e.message);
        assert_eq!(e.details["floor"], v + 2);
    }
}

fn flags_and_their_history(env: Env) {
    let store = setup(&env);
    let r0 = store.flags_revision().unwrap();
    assert_eq!(
        store.set_flag("tools.cmd_run", Some("off"), "ops").unwrap(),
        None
    );
    assert_eq!(
        store
            .set_flag("tools.cmd_run", Some("on"), "ops")
            .unwrap()
            .as_deref(),
        Some("off")
    );
    store.set_flag("a_b", Some("1"), "ops").unwrap();
    store.set_flag("ab", Some("2"), "ops").unwrap();
    assert_eq!(store.flags_revision().unwrap(), r0 + 4);
    // byte order, as on SQLite, whatever the database's collation
    let keys: Vec<String> = store.flags().unwrap().into_iter().map(|f| f.key).collect();
    assert_eq!(keys, ["a_b", "ab", "tools.cmd_run"]);
    assert_eq!(
        store.set_flag("ab", None, "ops").unwrap().as_deref(),
        Some("2")
    );
    let h = store.flag_history(10).unwrap();
    assert_eq!(h.len(), 5);
    assert_eq!(h[0]["key"], "ab");
    assert_eq!(h[0]["new"], json!(null));
    // another process (a front on another host) sees the change
    let other = env.open();
    assert_eq!(other.flags().unwrap().len(), 2);
    assert_eq!(
        other.flags_revision().unwrap(),
        store.flags_revision().unwrap()
    );
}

fn artifacts_decisions_and_checkpoints(env: Env) {
    let store = setup(&env);
    let a = store
        .record_artifact(
            "log",
            Some("out.txt"),
            &json!({"k": 1}),
            Some("A"),
            Some(b"hello"),
        )
        .unwrap();
    let b = store
        .record_artifact("note", None, &json!({}), None, None)
        .unwrap();
    assert!(b.id > a.id);
    let got = store.get_artifact(a.id).unwrap();
    assert_eq!(got.metadata, json!({"k": 1}));
    assert_eq!(store.artifact_content(&got).unwrap().unwrap(), b"hello");
    assert_eq!(store.list_artifacts(10).unwrap()[0].id, b.id);
    assert_eq!(
        store.get_artifact(999).unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        store
            .record_artifact("x", None, &json!({}), Some("nope"), None)
            .unwrap_err()
            .code,
        ErrorCode::TaskNotFound
    );
    let d = store
        .record_decision("use pg", "shared", Some("big"), Some("A"))
        .unwrap();
    assert_eq!(store.decisions(5).unwrap()[0].id, d.id);
    let c1 = store.write_checkpoint("first", json!({"n": 1})).unwrap();
    let c2 = store.write_checkpoint("second", json!({"n": 2})).unwrap();
    assert!(c2.id > c1.id);
    assert_eq!(store.latest_checkpoint().unwrap().unwrap().reason, "second");
    let ctx = std::fs::read_to_string(env.dir.path().join(".vane/context.md")).unwrap();
    assert!(ctx.contains("use pg"), "{ctx}");
    let status = store.status(now_ms()).unwrap();
    assert_eq!(status.tasks, 4);
    assert_eq!(status.schema_version, SCHEMA_VERSION);
    assert!(status.revision >= 4);
}

fn idempotency_keys_replay_and_refuse_reuse(env: Env) {
    let store = setup(&env);
    let alive = |_pid: u32| true;
    let me = KeyOwner::this_process();
    let other = |host: &str, pid: u32| KeyOwner {
        id: format!("{host}:{pid}:1"),
        host: host.into(),
        pid,
    };
    assert_eq!(
        store
            .idempotency_begin("k1", "plan_update", "h1", &me, &alive)
            .unwrap(),
        Idempotency::Run
    );
    // the same key, held by a live owner elsewhere
    let e = store
        .idempotency_begin("k1", "plan_update", "h1", &other("elsewhere", 11), &alive)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::IdempotencyKeyInProgress);
    assert_eq!(e.details["owner"], json!(me.id));
    assert!(store.idempotency_heartbeat("k1", &me).unwrap());
    assert!(!store
        .idempotency_heartbeat("k1", &other("elsewhere", 11))
        .unwrap());
    store
        .idempotency_finish("k1", &json!({"ok": true}), false)
        .unwrap();
    assert!(!store.idempotency_heartbeat("k1", &me).unwrap(), "finished");
    assert_eq!(
        store
            .idempotency_begin("k1", "plan_update", "h1", &other("elsewhere", 11), &alive)
            .unwrap(),
        Idempotency::Replay {
            result: json!({"ok": true}),
            is_error: false
        }
    );
    assert_eq!(
        store
            .idempotency_begin("k1", "plan_update", "other", &me, &alive)
            .unwrap_err()
            .code,
        ErrorCode::IdempotencyKeyReused
    );
    assert_eq!(
        store
            .idempotency_begin("k2", "plan_claim", "h", &me, &alive)
            .unwrap(),
        Idempotency::Run
    );
    assert!(store.idempotency_release("k2").unwrap());
    assert!(!store.idempotency_release("k2").unwrap());
}

/// A key's owner on another host is judged by its lease, never by a pid
/// (which names nothing there); on this host a dead pid frees it at once.
fn idempotency_ownership_is_a_lease_not_a_pid(env: Env) {
    let store = setup(&env);
    let dead = |_pid: u32| false;
    let live = |_pid: u32| true;
    let me = KeyOwner::this_process();
    let remote = KeyOwner {
        id: "far-host:4242:7".into(),
        host: "far-host".into(),
        pid: 4242,
    };
    assert_eq!(
        store
            .idempotency_begin("k", "plan_update", "h", &remote, &live)
            .unwrap(),
        Idempotency::Run
    );
    // pid 4242 is not alive *here*, which says nothing about far-host
    assert_eq!(
        store
            .idempotency_begin("k", "plan_update", "h", &me, &dead)
            .unwrap_err()
            .code,
        ErrorCode::IdempotencyKeyInProgress
    );
    // the remote owner stops renewing: once the lease lapses, the key is taken over
    env.raw("UPDATE idempotency SET lease_expires_ms = 1 WHERE key = 'k'");
    assert_eq!(
        store
            .idempotency_begin("k", "plan_update", "h", &me, &live)
            .unwrap(),
        Idempotency::Run
    );
    assert!(store.idempotency_heartbeat("k", &me).unwrap());
    assert!(
        !store.idempotency_heartbeat("k", &remote).unwrap(),
        "no longer the remote's"
    );
    // a process of this host that died: taken over at once, lease or not
    let local = KeyOwner {
        id: format!("{}:999999:1", me.host),
        host: me.host.clone(),
        pid: 999_999,
    };
    assert_eq!(
        store
            .idempotency_begin("k3", "plan_update", "h", &local, &live)
            .unwrap(),
        Idempotency::Run
    );
    assert_eq!(
        store
            .idempotency_begin("k3", "plan_update", "h", &me, &dead)
            .unwrap(),
        Idempotency::Run
    );
}

fn prune_and_keep_on_reimport(env: Env) {
    let store = setup(&env);
    let (mut r, _) = parse_yaml(ROADMAP).unwrap();
    r.tasks.retain(|t| t.id != "C");
    let s = store.import_roadmap(&r, false, "test").unwrap();
    assert_eq!(s.kept_not_in_file, 1);
    let order: Vec<String> = store
        .load_roadmap()
        .unwrap()
        .tasks
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        order,
        ["A", "B", "D", "C"],
        "kept tasks go after the file's"
    );
    let s = store.import_roadmap(&r, true, "test").unwrap();
    assert_eq!(s.removed, 1);
    assert_eq!(
        store.get_task("C").unwrap_err().code,
        ErrorCode::TaskNotFound
    );
    assert_eq!(store.plan_graph().unwrap().items().len(), 3);
}

/// PostgreSQL only: a flag change reaches another process's listener
/// (`LISTEN vane_flags`) without that process asking the database.
#[test]
fn postgres_flag_changes_are_heard_by_other_processes() {
    let Some(env) = Env::new(common::Engine::Postgres) else {
        return;
    };
    let listener = env.open();
    let t0 = std::time::Instant::now();
    while listener.heard_flags_revision().is_none() {
        assert!(t0.elapsed().as_secs() < 5, "the listener never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let before = listener.heard_flags_revision().unwrap();
    let writer = env.open();
    writer
        .set_flag("SCHEDULER_MODE", Some("wsjf"), "test")
        .unwrap();
    let t0 = std::time::Instant::now();
    while listener.heard_flags_revision() == Some(before) {
        assert!(t0.elapsed().as_secs() < 1, "not heard within 1 s");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(listener.heard_flags_revision(), Some(before + 1));
    assert_eq!(listener.flags_revision().unwrap(), before + 1);
    // the listening connection lost: readers ask the database meanwhile
    // (the polling fallback), and the listener comes back by itself
    let db = env.db.as_ref().unwrap();
    db.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vane-listener' AND datname = current_database()");
    let t0 = std::time::Instant::now();
    while listener.heard_flags_revision().is_some() {
        assert!(
            t0.elapsed().as_secs() < 3,
            "the lost listener was not noticed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    writer
        .set_flag("SCHEDULER_MODE", Some("priority"), "test")
        .unwrap();
    assert_eq!(listener.flags_revision().unwrap(), before + 2, "polled");
    let t0 = std::time::Instant::now();
    while listener.heard_flags_revision() != Some(before + 2) {
        assert!(t0.elapsed().as_secs() < 5, "the listener did not come back");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SQLite has no listener: every read asks the file
    let lite = Env::new(common::Engine::Sqlite).unwrap().open();
    assert_eq!(lite.heard_flags_revision(), None);
}

/// A dry-run canary's store: every read works, nothing is written (on
/// PostgreSQL its connections are read-only sessions too).
fn a_read_only_store_reads_and_writes_nothing(env: Env) {
    let store = setup(&env);
    store.context_write("goal", "ship", false, 100).unwrap();
    let ro = Store::open_read_only(&env.paths).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.status(now_ms()).unwrap().tasks, 4);
    assert_eq!(ro.context_sections().unwrap()[0].content, "ship");
    assert_eq!(ro.load_roadmap().unwrap().tasks.len(), 4);
    let before = ro.revision().unwrap();
    let e = ro.context_write("goal", "changed", false, 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::StoreError);
    assert!(e.message.contains("read-only"), "{}", e.message);
    assert!(ro
        .claim_next(&PlanQuery::default(), "a", 60, now_ms())
        .is_err());
    assert_eq!(store.revision().unwrap(), before);
    assert_eq!(store.context_sections().unwrap()[0].content, "ship");
}

/// An import larger than one multi-row statement: every task created once,
/// with its event; a re-import changes exactly what changed.
fn a_large_import_is_exact(env: Env) {
    let store = setup(&env);
    let yaml = |changed: usize| {
        let mut y = String::from("tasks:\n");
        for i in 0..1203 {
            let title = if i < changed {
                format!("changed {i}")
            } else {
                format!("task {i}")
            };
            y.push_str(&format!(
                "  - id: L{i:04}\n    title: {title}\n    priority: high\n"
            ));
        }
        y
    };
    let (r, _) = parse_yaml(&yaml(0)).unwrap();
    let s = store.import_roadmap(&r, false, "test").unwrap();
    assert_eq!((s.created, s.updated, s.kept_not_in_file), (1203, 0, 4));
    assert_eq!(store.plan_graph().unwrap().items().len(), 1207);
    let last = store.get_task("L1202").unwrap();
    assert_eq!((last.title.as_str(), last.version), ("task 1202", 1));
    assert_eq!(store.task_events("L1202", 10).unwrap().len(), 1);
    let order: Vec<String> = store
        .load_roadmap()
        .unwrap()
        .tasks
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(order[0], "L0000");
    assert_eq!(order[1202], "L1202");
    assert_eq!(order[1203], "A", "kept tasks after the file's");
    let (r, _) = parse_yaml(&yaml(2)).unwrap();
    let s = store.import_roadmap(&r, false, "test").unwrap();
    assert_eq!((s.created, s.updated, s.unchanged), (0, 2, 1201));
    assert_eq!(store.get_task("L0001").unwrap().version, 2);
    assert_eq!(store.get_task("L0001").unwrap().title, "changed 1");
    assert_eq!(store.get_task("L0002").unwrap().version, 1);
    let ev = store.task_events("L0001", 10).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["version"], 2);
}
