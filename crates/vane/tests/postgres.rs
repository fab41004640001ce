//! Several hosts, simulated: fronts with their own checkout and state
//! directory, sharing one real PostgreSQL server (Debian's binaries, started
//! by the test — see `vane-store/tests/common/pg.rs`).
//!
//! - 3 fronts × 16 agents claiming and completing concurrently: no task
//!   claimed twice, no lost update, every completion visible on every front;
//! - a flag flipped through one checkout is in force on the other fronts
//!   within 1 s (LISTEN/NOTIFY);
//! - the database restarted mid-run: typed `store_unavailable` errors while
//!   it is down, the fronts stay up, and work resumes with nothing lost.

#[path = "../../vane-store/tests/common/pg.rs"]
mod pg;

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vane_tools::client::Client;

use common::{json_of, vane, BIN};

/// A checkout of the workspace at `dir` whose store is `url`.
fn checkout(dir: &Path, url: &str, roadmap: &str) -> PathBuf {
    let ws = dir.to_path_buf();
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("vane.toml"), format!("[store]\nurl = \"{url}\"\n")).unwrap();
    std::fs::write(ws.join("roadmap.yaml"), roadmap).unwrap();
    ws
}

async fn front(ws: &Path) -> Arc<Client> {
    Arc::new(
        Client::spawn(
            Path::new(BIN),
            &["serve", "--workspace", ws.to_str().unwrap()],
            &[],
            true,
        )
        .await
        .unwrap(),
    )
}

fn roadmap(n: usize) -> String {
    let mut y = String::from("tasks:\n");
    for i in 0..n {
        y.push_str(&format!("  - id: T{i:03}\n    title: task {i}\n"));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_fronts_sixteen_agents_one_postgres() {
    let Some(cluster) = pg::Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let d = tempfile::tempdir().unwrap();
    const TASKS: usize = 48;
    let yaml = roadmap(TASKS);
    let checkouts: Vec<PathBuf> = (0..3)
        .map(|i| checkout(&d.path().join(format!("host{i}")), &db.url, &yaml))
        .collect();
    // the first checkout creates the schema and imports the roadmap; the
    // others find it there
    let out = vane(
        &checkouts[0],
        &["init", "--roadmap", "roadmap.yaml", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ws in &checkouts[1..] {
        let out = vane(ws, &["init", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !checkouts[0].join(".vane/vane.db").exists(),
        "no SQLite file when the store is PostgreSQL"
    );
    let mut fronts = Vec::new();
    for ws in &checkouts {
        fronts.push(front(ws).await);
    }

    // 16 agents, spread over the 3 fronts, claim and complete until nothing is left
    let mut agents = Vec::new();
    for i in 0..16 {
        let c = fronts[i % 3].clone();
        agents.push(tokio::spawn(async move {
            let agent = format!("agent-{i}");
            let mut done = Vec::new();
            loop {
                let p = c
                    .call_ok("plan_next", json!({ "claim": { "agent": agent } }))
                    .await
                    .unwrap();
                let Some(t) = p.get("claimed") else { break };
                let id = t["id"].as_str().unwrap().to_string();
                assert_eq!(t["claimed_by"], json!(agent));
                let r = c
                    .call_ok(
                        "plan_update",
                        json!({ "task_id": id, "status": "done", "expected_version": t["version"] }),
                    )
                    .await
                    .unwrap();
                assert_eq!(r["task"]["status"], "done", "{r}");
                done.push(id);
            }
            done
        }));
    }
    let mut all = Vec::new();
    for a in agents {
        all.extend(a.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, all.len(), "a task was completed by two agents");
    assert_eq!(all.len(), TASKS, "every task completed once");
    // the database's own record: one claim and one completion per task
    let claims =
        db.psql("SELECT count(*), count(DISTINCT task_id) FROM task_events WHERE kind = 'claim'");
    assert_eq!(
        claims,
        format!("{TASKS}|{TASKS}"),
        "claims (all | distinct tasks)"
    );
    let dones =
        db.psql("SELECT count(*) FROM task_events WHERE kind = 'update' AND to_status = 'done'");
    assert_eq!(dones, TASKS.to_string());
    // every completion is visible on every front, and in every checkout's export
    for (f, ws) in fronts.iter().zip(&checkouts) {
        let s = f.call_ok("status", json!({})).await.unwrap();
        assert_eq!(s["roadmap"]["by_status"]["done"], json!(TASKS), "{s}");
        let _ = ws;
    }
    // every checkout's exports follow the shared state (each front's
    // exporter hears of the other hosts' changes)
    for ws in &checkouts {
        let t0 = Instant::now();
        loop {
            let export = std::fs::read_to_string(ws.join(".vane/roadmap.yaml")).unwrap_or_default();
            if export.matches("status: done").count() == TASKS {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{}: the export lags the shared store: {} of {TASKS} done",
                ws.display(),
                export.matches("status: done").count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for f in fronts {
        Arc::try_unwrap(f).ok().unwrap().close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_set_on_one_host_is_in_force_on_the_others_within_a_second() {
    let Some(cluster) = pg::Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let d = tempfile::tempdir().unwrap();
    let yaml = "tasks:\n  - id: BIG\n    title: big critical job\n    priority: critical\n    estimate_hours: 40\n  - id: SMALL\n    title: small medium job\n    priority: medium\n    estimate_hours: 1\n";
    let a = checkout(&d.path().join("a"), &db.url, yaml);
    let b = checkout(&d.path().join("b"), &db.url, yaml);
    let c = checkout(&d.path().join("c"), &db.url, yaml);
    assert!(vane(&a, &["init", "--roadmap", "roadmap.yaml"])
        .status
        .success());
    assert!(vane(&b, &["init"]).status.success());
    assert!(vane(&c, &["init"]).status.success());
    let fb = front(&b).await;
    let fc = front(&c).await;
    let first = |v: Value| v["tasks"][0]["id"].as_str().unwrap().to_string();
    for f in [&fb, &fc] {
        assert_eq!(
            first(f.call_ok("plan_next", json!({})).await.unwrap()),
            "BIG"
        );
    }
    // flipped through checkout a (no front of its own running)
    let out = vane(&a, &["flags", "set", "SCHEDULER_MODE", "wsjf"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = Instant::now();
    for f in [&fb, &fc] {
        loop {
            if first(f.call_ok("plan_next", json!({})).await.unwrap()) == "SMALL" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "the flag was not in force on another front within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let seen = t0.elapsed();
    eprintln!("flag in force on both other fronts after {seen:?}");
    let flags = json_of(&vane(&b, &["flags", "list", "--json"]));
    assert!(flags.to_string().contains("wsjf"), "{flags}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_mid_run_nothing_lost() {
    let Some(cluster) = pg::Cluster::private() else {
        return;
    };
    let db = cluster.database();
    let d = tempfile::tempdir().unwrap();
    let ws = checkout(&d.path().join("ws"), &db.url, &roadmap(6));
    let out = vane(&ws, &["init", "--roadmap", "roadmap.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = front(&ws).await;
    let claim = |agent: &'static str| {
        let f = f.clone();
        async move {
            f.call("plan_next", json!({ "claim": { "agent": agent } }))
                .await
                .unwrap()
        }
    };
    let before = claim("a1").await;
    assert_ne!(before.is_error, Some(true));
    let t1 = before.structured_content.unwrap()["claimed"]["id"].clone();

    cluster.stop();
    let t0 = Instant::now();
    let r = claim("a2").await;
    let took = t0.elapsed();
    assert_eq!(
        r.is_error,
        Some(true),
        "a call with the database down fails"
    );
    let e = r.structured_content.unwrap();
    assert_eq!(e["error"]["code"], "store_unavailable", "{e}");
    assert_eq!(e["error"]["details"]["retryable"], true, "{e}");
    assert!(e["error"]["details"]["hint"].is_string(), "{e}");
    assert!(took < Duration::from_secs(10), "fails fast, took {took:?}");
    let s = f.call("status", json!({})).await.unwrap();
    assert_eq!(s.is_error, Some(true));

    cluster.start();
    // the same front, without a restart, serves again
    let t0 = Instant::now();
    let after = loop {
        let r = claim("a3").await;
        if r.is_error != Some(true) {
            break r.structured_content.unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no recovery: {:?}",
            r.structured_content
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t3 = after["claimed"]["id"].clone();
    assert_ne!(t1, t3, "the claim made before the outage is kept");
    let s = f.call_ok("status", json!({})).await.unwrap();
    assert_eq!(
        s["roadmap"]["by_status"]["in_progress"],
        json!(2),
        "nothing lost, nothing doubled: {s}"
    );
    let claims = db.psql("SELECT count(*) FROM task_events WHERE kind = 'claim'");
    assert_eq!(claims, "2");
    Arc::try_unwrap(f).ok().unwrap().close().await;
}

/// `vane init --store`, `vane store info`, `vane migrate` (status, rehearse,
/// apply) and `vane preflight` on a PostgreSQL store whose role needs a
/// password — given in the environment, never in vane.toml, never printed.
#[test]
fn init_migrate_preflight_with_a_password_from_the_environment() {
    let Some(cluster) = pg::Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let secret = format!("pw-{}", std::process::id());
    cluster.password_role(&db.name, &secret);
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{}",
        pg::PASSWORD_ROLE,
        cluster.port,
        db.name
    );
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let run = |args: &[&str], password: Option<&str>| {
        let mut c = std::process::Command::new(BIN);
        c.arg("--workspace").arg(&ws).args(args).current_dir(&ws);
        c.env_remove("VANE_STORE_PASSWORD");
        if let Some(p) = password {
            c.env("VANE_STORE_PASSWORD", p);
        }
        let out = c.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(&secret), "the password was printed: {all}");
        out
    };
    // a password in the URL is refused for vane.toml
    let with_pw = format!(
        "postgres://{}:{secret}@127.0.0.1:{}/{}",
        pg::PASSWORD_ROLE,
        cluster.port,
        db.name
    );
    let out = run(&["init", "--store", &with_pw, "--json"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VANE_STORE_PASSWORD"));
    std::fs::remove_file(ws.join("vane.toml")).unwrap();
    // no password: a clear, typed failure
    let out = run(&["init", "--store", &url, "--json"], None);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        e.contains("store_unavailable") || e.contains("password"),
        "{e}"
    );
    // with it: the schema is created in PostgreSQL
    let out = run(&["init", "--store", &url, "--json"], Some(&secret));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["store"]["engine"], "postgres", "{v}");
    let toml = std::fs::read_to_string(ws.join("vane.toml")).unwrap();
    assert!(toml.contains(&format!("url = \"{url}\"")), "{toml}");
    assert!(!ws.join(".vane/vane.db").exists());

    let info = json_of(&run(&["store", "info", "--json"], Some(&secret)));
    assert_eq!(info["engine"], "postgres");
    assert!(
        info["server_version"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL "),
        "{info}"
    );
    assert_eq!(
        info["schema"]["store_version"],
        json!(vane_store::SCHEMA_VERSION)
    );

    let st = json_of(&run(&["migrate", "--status", "--json"], Some(&secret)));
    assert_eq!(st["ok"], true, "{st}");
    assert_eq!(st["store_version"], json!(vane_store::SCHEMA_VERSION));
    let r = json_of(&run(&["migrate", "--rehearse", "--json"], Some(&secret)));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["integrity"], "ok");
    let m = json_of(&run(&["migrate", "--json"], Some(&secret)));
    assert_eq!(m["ok"], true, "{m}");
    assert_eq!(m["applied"], json!([]), "nothing pending: {m}");

    let out = run(&["preflight", "--json"], Some(&secret));
    let p = json_of(&out);
    let store = p["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .unwrap()
        .clone();
    assert_eq!(store["ok"], true, "{store}");
    let detail = store.to_string();
    assert!(
        detail.contains("PostgreSQL") && detail.contains("reachable"),
        "{detail}"
    );
    // the database down: preflight says so
    let out = run(&["preflight", "--json"], Some("wrong"));
    let p = json_of(&out);
    let store = p["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .unwrap()
        .clone();
    assert_eq!(store["ok"], false, "{store}");
}

/// `vane store copy --to postgres://… --switch`: a SQLite store in use moves
/// into PostgreSQL, verified, and vane carries on from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_is_copied_into_postgres_and_vane_carries_on() {
    let Some(cluster) = pg::Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let (_d, ws) = common::init_workspace("", &roadmap(5), &[]);
    {
        let c = common::serve(&ws, &[]).await;
        c.call_ok("plan_next", json!({ "claim": { "agent": "a1" } }))
            .await
            .unwrap();
        c.call_ok("decision_record", json!({ "title": "t", "summary": "s" }))
            .await
            .unwrap();
        c.call_ok(
            "context_write",
            json!({ "section": "goal", "content": "move" }),
        )
        .await
        .unwrap();
        c.close().await;
    }
    assert!(vane(&ws, &["flags", "set", "SCHEDULER_MODE", "wsjf"])
        .status
        .success());
    let before = json_of(&vane(&ws, &["status", "--json"]));
    let out = vane(
        &ws,
        &["store", "copy", "--to", &db.url, "--switch", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = json_of(&out);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["switched"], true);
    for (t, c) in r["tables"].as_object().unwrap() {
        assert_eq!(c["source"], c["destination"], "{t}: {r}");
    }
    assert_eq!(r["tables"]["tasks"]["source"], 5);
    assert_eq!(r["tables"]["decisions"]["source"], 1);
    // a second copy into the same database is refused, nothing changed
    let again = vane(&ws, &["store", "copy", "--to", &db.url, "--json"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a store"));

    // vane.toml now names PostgreSQL: the same state, served from it
    let info = json_of(&vane(&ws, &["store", "info", "--json"]));
    assert_eq!(info["engine"], "postgres", "{info}");
    let after = json_of(&vane(&ws, &["status", "--json"]));
    assert_eq!(after["roadmap"]["revision"], before["roadmap"]["revision"]);
    assert_eq!(
        after["roadmap"]["by_status"],
        before["roadmap"]["by_status"]
    );
    let flags = json_of(&vane(&ws, &["flags", "list", "--json"]));
    assert!(flags.to_string().contains("wsjf"), "{flags}");
    let c = common::serve(&ws, &[]).await;
    let p = c
        .call_ok("plan_next", json!({ "claim": { "agent": "a2" } }))
        .await
        .unwrap();
    assert_ne!(
        p["claimed"]["id"], "T000",
        "the claim made in SQLite is still held"
    );
    // new rows continue after the copied ids
    let d2 = c
        .call_ok("decision_record", json!({ "title": "t2", "summary": "s2" }))
        .await
        .unwrap();
    assert_eq!(d2["id"], 2, "{d2}");
    c.close().await;
}

/// `vane upgrade` on a workspace whose store is PostgreSQL: the new version
/// rehearses its migrations in a rolled-back transaction (no file copy of a
/// shared database), the dry-run canary reads through read-only sessions,
/// and the switch happens under load with no failed call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_a_postgres_store_is_stable_under_load() {
    let Some(cluster) = pg::Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let d = tempfile::tempdir().unwrap();
    let ws = checkout(
        &d.path().join("ws"),
        &db.url,
        "tasks:\n  - id: T1\n    title: one\n  - id: T2\n    title: two\n    dependencies: [T1]\n",
    );
    let mut toml = std::fs::read_to_string(ws.join("vane.toml")).unwrap();
    toml.push_str("\n[runtime]\nping_interval_ms = 100\n\n[runtime.rollback]\nmin_calls = 10\nerror_window_s = 30\n");
    std::fs::write(ws.join("vane.toml"), toml).unwrap();
    std::fs::write(ws.join("a.txt"), "alpha\n").unwrap();
    let out = vane(&ws, &["init", "--roadmap", "roadmap.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::git(&ws, &["init", "-q"]);
    common::git(&ws, &["add", "vane.toml", "roadmap.yaml", "a.txt"]);
    common::git(&ws, &["commit", "-qm", "init"]);
    let c = front(&ws).await;
    c.call_ok("status", json!({})).await.unwrap();
    let l = common::load(&c, "a.txt", Duration::from_millis(2));
    let out = vane(
        &ws,
        &[
            "upgrade",
            "--binary",
            BIN,
            "--shadow",
            "2s",
            "--observe",
            "2s",
            "--min-samples",
            "10",
            "--json",
        ],
    );
    let (calls, failures) = common::stop(l).await;
    let report = json_of(&out);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["decision"], "stable", "{report}");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
    let copy = report["migrations"]["copy"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        copy.contains("rolled-back transaction"),
        "{}",
        report["migrations"]
    );
    assert_eq!(report["migrations"]["ok"], true, "{}", report["migrations"]);
    assert!(
        !ws.join(".vane/vane.db").exists(),
        "no SQLite file appeared"
    );
    Arc::try_unwrap(c).ok().unwrap().close().await;
}

/// TLS to the database: `sslmode=require` verifies the server's certificate
/// against the system's roots plus `[store] ca_file`; an unknown issuer or
/// a connection in the clear is refused with a typed error.
#[test]
fn tls_to_the_database_is_verified() {
    let Some(mut cluster) = pg::Cluster::private() else {
        return;
    };
    let ca = cluster.enable_tls();
    let db = cluster.database();
    let d = tempfile::tempdir().unwrap();
    let url = format!("{}?sslmode=require", db.url);
    let init = |name: &str, url: &str, ca_file: bool| {
        let ws = d.path().join(name);
        std::fs::create_dir_all(&ws).unwrap();
        let mut toml = format!("[store]\nurl = \"{url}\"\n");
        if ca_file {
            std::fs::copy(&ca, ws.join("db-ca.pem")).unwrap();
            toml.push_str("ca_file = \"db-ca.pem\"\n");
        }
        std::fs::write(ws.join("vane.toml"), toml).unwrap();
        (vane(&ws, &["init", "--json"]), ws)
    };
    let (out, ws) = init("trusted", &url, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = json_of(&vane(&ws, &["store", "info", "--json"]));
    assert_eq!(info["engine"], "postgres", "{info}");
    // the server refuses connections in the clear (hostnossl … reject): this one is TLS
    let (out, _) = init("unknown-ca", &url, false);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        e.contains("store_unavailable") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
    let (out, _) = init("in-the-clear", &format!("{}?sslmode=disable", db.url), true);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(e.contains("store_unavailable"), "{e}");
}
