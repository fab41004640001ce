//! `vane preflight` and `vane upgrade`, end to end against a running front
//! under client load: a good upgrade becomes stable with no failed call; bad
//! versions are stopped at the right gate or rolled back with the reason in
//! the report; the upgrade lock refuses a second upgrade and recovers a
//! stale one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use vane_tools::client::Client;

mod common;

use common::{git, json_of, stop, vane, BIN};

fn load(c: &Arc<Client>) -> common::Load {
    common::load(c, "a.txt", Duration::from_millis(2))
}

/// A workspace in a clean git repository, with fast runtime windows.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let (d, ws) = common::init_workspace(
        "[runtime]\nping_interval_ms = 100\n\n[runtime.rollback]\nmin_calls = 10\nerror_window_s = 30\n\n[critics.ok]\ncommand = \"true\"\n",
        "tasks:\n  - id: T1\n    title: one\n  - id: T2\n    title: two\n    dependencies: [T1]\n",
        &[("a.txt", "alpha\n")],
    );
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "vane.toml", "roadmap.yaml", "a.txt"]);
    git(&ws, &["commit", "-qm", "init"]);
    (d, ws)
}

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

fn upgrade(ws: &Path, binary: &Path, extra: &[&str]) -> (Value, std::process::Output) {
    let mut args = vec![
        "upgrade",
        "--binary",
        binary.to_str().unwrap(),
        "--shadow",
        "2s",
        "--observe",
        "2s",
        "--min-samples",
        "10",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = vane(ws, &args);
    (json_of(&out), out)
}

fn active(ws: &Path) -> Value {
    let v = json_of(&vane(ws, &["workers", "--json"]));
    v["fronts"][0]["result"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["role"] == "active")
        .cloned()
        .unwrap()
}

async fn front(ws: &Path) -> Arc<Client> {
    let c = common::serve(ws, &[]).await;
    c.call_ok("status", json!({})).await.unwrap();
    Arc::new(c)
}

#[tokio::test]
async fn preflight_checks_and_the_upgrade_lock() {
    let (_d, ws) = workspace();
    let c = front(&ws).await;
    let out = vane(&ws, &["preflight", "--json"]);
    let v = json_of(&out);
    assert!(out.status.success(), "{v}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "git_clean",
            "toolchain",
            "disk_free",
            "store",
            "sandbox",
            "audit",
            "secrets",
            "front_reachable",
            "upgrade_lock"
        ]
    );
    assert!(Path::new(v["dir"].as_str().unwrap())
        .join("preflight.json")
        .exists());
    assert!(
        !ws.join(".vane/upgrade.lock").exists(),
        "released after preflight"
    );

    // a dirty tree fails, the state directory does not count
    std::fs::write(ws.join("stray.txt"), "x").unwrap();
    let out = vane(&ws, &["preflight", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v = json_of(&out);
    let clean = &v["checks"][0];
    assert_eq!(clean["ok"], false);
    assert!(
        clean["detail"].as_str().unwrap().contains("stray.txt"),
        "{clean}"
    );
    std::fs::remove_file(ws.join("stray.txt")).unwrap();

    // a missing secret fails, without printing values
    std::fs::write(
        ws.join("vane.toml"),
        std::fs::read_to_string(ws.join("vane.toml")).unwrap()
            + "\n[upgrade]\nrequired_secrets = [\"VANE_TEST_SECRET_THAT_IS_NOT_SET\"]\n",
    )
    .unwrap();
    git(&ws, &["commit", "-qam", "secret"]);
    let v = json_of(&vane(&ws, &["preflight", "--json"]));
    let sec = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "secrets")
        .unwrap()
        .clone();
    assert_eq!(sec["ok"], false);
    assert!(sec["detail"]
        .as_str()
        .unwrap()
        .contains("VANE_TEST_SECRET_THAT_IS_NOT_SET"));
    git(&ws, &["revert", "--no-edit", "HEAD"]);

    // a lock held by a live process refuses; a stale one is recovered
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let lock = ws.join(".vane/upgrade.lock");
    std::fs::write(
        &lock,
        json!({ "pid": std::process::id(), "host": host, "started_at": "x" }).to_string(),
    )
    .unwrap();
    let v = json_of(&vane(&ws, &["preflight", "--json"]));
    let l = v["checks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(l["ok"], false);
    assert!(l["detail"].as_str().unwrap().contains("in progress"), "{l}");
    let dead = {
        let mut ch = Command::new("true").spawn().unwrap();
        let pid = ch.id();
        ch.wait().unwrap();
        pid
    };
    std::fs::write(
        &lock,
        json!({ "pid": dead, "host": host, "started_at": "x" }).to_string(),
    )
    .unwrap();
    let out = vane(&ws, &["preflight", "--json"]);
    let v = json_of(&out);
    assert!(out.status.success(), "{v}");
    assert!(v["checks"].as_array().unwrap().last().unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("stale"));
    assert!(!lock.exists());

    // no front: unreachable
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = json_of(&vane(&ws, &["preflight", "--json"]));
    let f = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "front_reachable")
        .unwrap()
        .clone();
    assert_eq!(f["ok"], false, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_upgrade_becomes_stable_under_load_with_no_failed_call() {
    let (_d, ws) = workspace();
    let c = front(&ws).await;
    let before = active(&ws);
    let l = load(&c);
    let (report, out) = upgrade(&ws, Path::new(BIN), &["--flip", "SCHEDULER_MODE=wsjf"]);
    let (calls, failures) = stop(l).await;
    assert!(
        out.status.success(),
        "{} {}\n{}\n{}",
        report["decision"],
        report["reason"],
        report["gates"]["selfchecks"],
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["decision"], "stable", "{report}");
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
    assert!(calls > 100);
    assert_eq!(report["gates"]["build"]["status"], "skipped");
    assert_eq!(report["gates"]["unit"]["status"], "skipped");
    assert_eq!(report["gates"]["canary_ready"]["status"], "passed");
    assert_eq!(report["gates"]["selfchecks"]["status"], "passed");
    // the critics ran on the canary as a dry run
    let critics = report["gates"]["selfchecks"]["detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"] == "critics_run")
        .cloned()
        .unwrap();
    assert_eq!(critics["runs"][0]["critic"], "ok", "{critics}");
    // and the new build's dispatch dry run: prompts for the ready tasks
    let dispatch = report["gates"]["selfchecks"]["detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"] == "dispatch")
        .cloned()
        .unwrap();
    assert_eq!(dispatch["dry_run"], true, "{dispatch}");
    assert!(dispatch["tasks"].is_array(), "{dispatch}");
    assert!(
        report["shadow"]["samples"].as_u64().unwrap() >= 10,
        "{}",
        report["shadow"]
    );
    assert_eq!(report["shadow"]["differed"], 0);
    assert_eq!(report["flips"][0]["flag"], "SCHEDULER_MODE");
    assert_eq!(report["flips"][0]["deterministic"], true);
    let after = active(&ws);
    assert_ne!(after["id"], before["id"], "traffic moved to the new worker");
    assert_eq!(after["binary"], BIN);
    let dir = PathBuf::from(report["dir"].as_str().unwrap());
    for f in ["preflight.json", "progress.json", "report.json"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    assert!(
        !ws.join(".vane/upgrade.lock").exists(),
        "the lock is released"
    );
    let st = json_of(&vane(&ws, &["upgrade", "status", "--json"]));
    assert_eq!(st["decision"], "stable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_versions_are_stopped_at_the_right_gate_or_rolled_back() {
    let (d, ws) = workspace();
    let c = front(&ws).await;
    let l = load(&c);
    let original = active(&ws);

    // never becomes ready: the canary gate
    let mute = d.path().join("mute");
    std::fs::write(&mute, "#!/bin/sh\nexec sleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&mute, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        ws.join("vane.toml"),
        std::fs::read_to_string(ws.join("vane.toml"))
            .unwrap()
            .replace("[runtime]\n", "[runtime]\nready_timeout_ms = 1000\n")
            + "\n[upgrade]\nmigration_timeout_s = 2\n",
    )
    .unwrap();
    git(&ws, &["commit", "-qam", "ready timeout"]);
    // the running front read its config at start; the gate uses its timeout
    let (r, out) = upgrade(&ws, &mute, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(r["decision"], "refused", "{r}");
    assert_eq!(r["gates"]["canary_ready"]["status"], "failed");
    assert_eq!(r["gates"]["selfchecks"]["status"], "not_run");

    // diverges in shadow: aborted before promotion
    let differ = faulty(d.path(), "differ", "worker_diff=return", "canary");
    let (r, out) = upgrade(&ws, &differ, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_ne!(r["decision"], "stable", "{r}");
    let why = r["reason"].as_str().unwrap();
    assert!(why.contains("injected_difference"), "{why}");
    assert_eq!(active(&ws)["id"], original["id"], "never promoted");

    // errors after promotion: rolled back, reason in the report
    let erring = faulty(d.path(), "erring", "worker_error=1*off->40%return", "live");
    let (r, out) = upgrade(&ws, &erring, &["--flip", "OUTPUT_MODE=verbose"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(r["decision"], "rolled_back", "{r}");
    assert_eq!(r["rollback"]["metric"], "error_rate", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("error_rate"));
    assert_eq!(active(&ws)["id"], original["id"], "routed back");
    // flags restored, the kill switch set
    let flags = json_of(&vane(&ws, &["flags", "list", "--json"]));
    let stored = |k: &str| {
        flags["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == k)
            .map(|f| f["stored"].clone())
            .unwrap()
    };
    assert!(stored("OUTPUT_MODE").is_null(), "{flags}");
    assert_eq!(stored("DISABLE_NEW"), "1");

    let (calls, failures) = stop(l).await;
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upgrade_is_refused_by_the_lock_and_abort_stops_the_first() {
    let (_d, ws) = workspace();
    let _c = front(&ws).await;
    let first = Command::new(BIN)
        .args([
            "--workspace",
            ws.to_str().unwrap(),
            "upgrade",
            "--binary",
            BIN,
        ])
        .args(["--shadow", "60s", "--observe", "1s", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = ws.join(".vane/upgrade.lock");
    for _ in 0..200 {
        if lock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(lock.exists());
    let (r, out) = upgrade(&ws, Path::new(BIN), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(r["decision"], "refused");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("another upgrade is in progress"),
        "{r}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(vane(&ws, &["upgrade", "abort"]).status.success());
    let out = tokio::task::spawn_blocking(move || first.wait_with_output().unwrap())
        .await
        .unwrap();
    let r = json_of(&out);
    assert_eq!(r["decision"], "aborted", "{r}");
    assert!(!lock.exists(), "released on failure too");
}

/// `--git` and `--patch`: a real worktree, the configured build and test
/// commands, the built executable; each failing gate refuses with its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_and_patch_sources_pass_through_the_build_and_unit_gates() {
    let (d, ws) = workspace();
    // the "build" writes an executable that runs this test's vane
    std::fs::write(
        ws.join("build.sh"),
        format!("mkdir -p out && printf '#!/bin/sh\\nexec \"{BIN}\" \"$@\"\\n' > out/vane && chmod +x out/vane && echo built\n"),
    )
    .unwrap();
    std::fs::write(ws.join("check.sh"), "echo tests pass\nexit 0\n").unwrap();
    std::fs::write(
        ws.join("vane.toml"),
        std::fs::read_to_string(ws.join("vane.toml")).unwrap()
            + "\n[upgrade]\nbuild_command = \"sh build.sh\"\ntest_command = \"sh check.sh\"\nbinary = \"out/vane\"\n",
    )
    .unwrap();
    std::fs::write(ws.join(".gitignore"), ".vane/\n").unwrap();
    git(&ws, &["add", "."]);
    git(&ws, &["commit", "-qm", "build scripts"]);
    // a patch that breaks the tests, and a branch whose build fails
    std::fs::write(ws.join("check.sh"), "echo a test fails\nexit 1\n").unwrap();
    let diff = Command::new("git")
        .arg("-C")
        .arg(&ws)
        .args(["diff"])
        .output()
        .unwrap();
    let patch = d.path().join("break-tests.patch");
    std::fs::write(&patch, &diff.stdout).unwrap();
    git(&ws, &["checkout", "check.sh"]);
    git(&ws, &["checkout", "-q", "-b", "broken"]);
    std::fs::write(ws.join("build.sh"), "echo compile error >&2\nexit 3\n").unwrap();
    git(&ws, &["commit", "-qam", "break the build"]);
    git(&ws, &["checkout", "-q", "-"]);

    let c = front(&ws).await;
    let l = load(&c);
    let gate_args = |src: &str, val: &str| -> (Value, std::process::Output) {
        let out = vane(
            &ws,
            &[
                "upgrade",
                src,
                val,
                "--shadow",
                "1s",
                "--observe",
                "1s",
                "--min-samples",
                "3",
                "--json",
            ],
        );
        (json_of(&out), out)
    };
    // the unit gate stops the patch
    let (r, out) = gate_args("--patch", patch.to_str().unwrap());
    assert_eq!(out.status.code(), Some(3), "{r}");
    assert_eq!(r["decision"], "refused");
    assert_eq!(r["gates"]["build"]["status"], "passed", "{r}");
    assert_eq!(r["gates"]["unit"]["status"], "failed");
    assert!(r["gates"]["unit"]["detail"]["output_tail"]
        .as_str()
        .unwrap()
        .contains("a test fails"));
    assert_eq!(r["gates"]["canary_ready"]["status"], "not_run");
    assert!(
        !Path::new(r["source"]["worktree"].as_str().unwrap()).exists(),
        "worktree removed"
    );
    // the build gate stops the broken branch
    let (r, out) = gate_args("--git", "broken");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(r["gates"]["build"]["status"], "failed", "{r}");
    assert_eq!(r["gates"]["build"]["detail"]["exit_code"], 3);
    assert!(r["gates"]["build"]["detail"]["output_tail"]
        .as_str()
        .unwrap()
        .contains("compile error"));
    assert_eq!(r["gates"]["unit"]["status"], "not_run");
    // HEAD builds, tests, and goes live from its worktree
    let (r, out) = gate_args("--git", "HEAD");
    assert!(out.status.success(), "{} {}", r["decision"], r["reason"]);
    assert_eq!(r["decision"], "stable");
    assert_eq!(r["source"]["kind"], "git");
    assert_eq!(r["gates"]["build"]["status"], "passed");
    assert_eq!(r["gates"]["unit"]["status"], "passed");
    // the executable that passed the gates is pinned in the upgrade's
    // directory; the worktree is gone
    let bin = active(&ws)["binary"].as_str().unwrap().to_string();
    assert_eq!(
        Path::new(&bin),
        Path::new(r["dir"].as_str().unwrap()).join("vane"),
        "{bin}"
    );
    assert!(r["source"]["built"]
        .as_str()
        .unwrap()
        .ends_with("worktree/out/vane"));
    assert!(!Path::new(r["source"]["worktree"].as_str().unwrap()).exists());
    let (calls, failures) = stop(l).await;
    assert!(
        failures.is_empty(),
        "{} of {calls} failed: {failures:?}",
        failures.len()
    );
}

/// The same pipeline for agents: `upgrade_start` / `upgrade_status`, admin tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_drive_an_upgrade_with_the_admin_tools() {
    let (_d, ws) = workspace();
    let c = front(&ws).await;
    let e = c.call_err("upgrade_status", json!({})).await.unwrap();
    assert_eq!(e["code"], "admin_disabled");
    assert!(vane(&ws, &["flags", "set", "ADMIN_TOOLS", "1"])
        .status
        .success());
    let e = c
        .call_err("upgrade_start", json!({ "binary": BIN, "git": "HEAD" }))
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input");
    let e = c.call_err("upgrade_status", json!({})).await.unwrap();
    assert_eq!(e["code"], "not_found", "no upgrade yet");
    let started = c
        .call_ok(
            "upgrade_start",
            json!({ "binary": BIN, "shadow": "2s", "observe": "1s", "min_samples": 3, "flips": ["OUTPUT_MODE=verbose"] }),
        )
        .await
        .unwrap();
    assert_eq!(started["started"], true);
    let mut last = Value::Null;
    for _ in 0..300 {
        if let Ok(v) = c.call_ok("upgrade_status", json!({})).await {
            if v["decision"] != "in_progress" {
                last = v;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["decision"], "stable", "{last}");
    assert_eq!(last["flips"][0]["flag"], "OUTPUT_MODE");
}

/// A version whose memory grows after promotion: the observation window's
/// memory monitor rolls it back, with the metric in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_memory_grows_is_rolled_back() {
    let (d, ws) = workspace();
    std::fs::write(
        ws.join("vane.toml"),
        std::fs::read_to_string(ws.join("vane.toml"))
            .unwrap()
            .replace(
                "[runtime.rollback]\n",
                "[runtime.rollback]\nrss_window_s = 1\n",
            ),
    )
    .unwrap();
    git(&ws, &["commit", "-qam", "short memory window"]);
    let c = front(&ws).await;
    let l = load(&c);
    let original = active(&ws);
    let leaky = faulty(d.path(), "leaky", "worker_leak=return(3)", "live");
    let out = vane(
        &ws,
        &[
            "upgrade",
            "--binary",
            leaky.to_str().unwrap(),
            "--shadow",
            "2s",
            "--observe",
            "20s",
            "--min-samples",
            "10",
            "--json",
        ],
    );
    let r = json_of(&out);
    assert_eq!(out.status.code(), Some(3), "{r}");
    assert_eq!(r["decision"], "rolled_back", "{r}");
    assert_eq!(r["rollback"]["metric"], "rss_bytes", "{r}");
    assert!(
        r["rollback"]["value"].as_u64().unwrap() > r["rollback"]["threshold"].as_u64().unwrap(),
        "{r}"
    );
    assert!(r["reason"].as_str().unwrap().contains("rss_bytes"));
    assert_eq!(active(&ws)["id"], original["id"], "routed back");
    let (calls, failures) = stop(l).await;
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed: {failures:?}",
        failures.len()
    );
}

/// `vane migrate`: status, a check on a copy, typed errors, and the contract
/// step refused while a front may still route to an older worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_reports_checks_copies_and_guards_the_contract_step() {
    let (d, ws) = workspace();
    let st = json_of(&vane(&ws, &["migrate", "--status", "--json"]));
    assert_eq!(st["store_version"], vane_store::SCHEMA_VERSION, "{st}");
    assert_eq!(st["supported"], vane_store::SCHEMA_VERSION);
    assert_eq!(st["floor"], 0);
    assert!(st["pending"].as_array().unwrap().is_empty());
    assert_eq!(st["ok"], true);

    // a copy is migrated, checked and read back
    let copy_dir = d.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::copy(ws.join(".vane/vane.db"), copy_dir.join("vane.db")).unwrap();
    let copy = copy_dir.join("vane.db");
    let r = json_of(&vane(
        &ws,
        &["migrate", "--check", copy.to_str().unwrap(), "--json"],
    ));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["integrity"], "ok");
    assert_eq!(r["smoke"]["tasks"], 2, "{r}");
    // not a database at all: a typed error, exit 1, nothing written
    let junk = d.path().join("junk/vane.db");
    std::fs::create_dir_all(junk.parent().unwrap()).unwrap();
    std::fs::write(&junk, "not sqlite").unwrap();
    let out = vane(&ws, &["migrate", "--check", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error[store_error]"), "{err}");
    assert_eq!(std::fs::read_to_string(&junk).unwrap(), "not sqlite");
    let out = vane(&ws, &["migrate", "--check", "/nonexistent/vane.db"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[not_found]"));

    // with no front, the contract step runs (nothing to contract here)
    let r = json_of(&vane(&ws, &["migrate", "--contract", "--json"]));
    assert_eq!(r["mode"], "contract");
    assert!(r["applied"].as_array().unwrap().is_empty());
    // with a front, it is the front's to do
    let _c = front(&ws).await;
    let out = vane(&ws, &["migrate", "--contract"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("running front"), "{err}");
}
