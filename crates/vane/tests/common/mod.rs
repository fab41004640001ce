//! Helpers shared by the end-to-end tests: the real binary, a workspace, a
//! connected MCP client.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};

use vane_tools::client::Client;

pub const BIN: &str = env!("CARGO_BIN_EXE_vane");

/// Runs `vane --workspace WS ARGS…` to completion.
pub fn vane(ws: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .current_dir(ws)
        .output()
        .unwrap()
}

/// A temp workspace with `vane.toml`, extra files, and `roadmap` imported by `vane init`.
pub fn init_workspace(
    toml: &str,
    roadmap: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("vane.toml"), toml).unwrap();
    std::fs::write(ws.join("roadmap.yaml"), roadmap).unwrap();
    for (name, body) in files {
        let p = ws.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, body).unwrap();
    }
    let out = vane(&ws, &["init", "--roadmap", "roadmap.yaml", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, ws)
}

/// `vane serve --workspace WS EXTRA…` with a connected MCP client.
pub async fn serve(ws: &Path, extra: &[&str]) -> Client {
    let mut args = vec!["serve", "--workspace", ws.to_str().unwrap()];
    args.extend_from_slice(extra);
    Client::spawn(Path::new(BIN), &args, &[], true)
        .await
        .unwrap()
}

/// A `vane worker` talked to directly (no front in between).
#[allow(dead_code)]
pub async fn worker(ws: &Path) -> Client {
    Client::spawn(
        Path::new(BIN),
        &["worker", "--workspace", ws.to_str().unwrap()],
        &[],
        true,
    )
    .await
    .unwrap()
}

/// `git -C WS ARGS…` with a fixed identity; its trimmed stdout. Panics on failure.
pub fn git(ws: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(ws)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command's stdout as JSON (the panic shows both streams).
pub fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A client load running until stopped: reads and writes in turn, every
/// failed call kept.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

/// Starts a [`Load`] on `c`: `decision_record`, `status`, `plan_next` and
/// `fs_read` of `read_path`, with `pause` between calls.
pub fn load(c: &std::sync::Arc<Client>, read_path: &str, pause: std::time::Duration) -> Load {
    use serde_json::json;
    use std::sync::atomic::Ordering;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c, s, read_path) = (c.clone(), stop.clone(), read_path.to_string());
    let task = tokio::spawn(async move {
        let (mut n, mut failures) = (0u64, Vec::new());
        while !s.load(Ordering::Relaxed) {
            n += 1;
            let (tool, args) = match n % 4 {
                0 => (
                    "decision_record",
                    json!({ "title": format!("load-{n}"), "summary": "load" }),
                ),
                1 => ("status", json!({})),
                2 => ("plan_next", json!({})),
                _ => ("fs_read", json!({ "path": read_path })),
            };
            match c.call(tool, args).await {
                Ok(r) if r.is_error != Some(true) => {}
                Ok(r) => failures.push(format!("{tool}: {:?}", r.structured_content)),
                Err(e) => failures.push(format!("{tool}: {e}")),
            }
            tokio::time::sleep(pause).await;
        }
        (n, failures)
    });
    Load { stop, task }
}

/// Stops a [`Load`]: (calls made, failures).
pub async fn stop(l: Load) -> (u64, Vec<String>) {
    l.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    l.task.await.unwrap()
}
pub mod model_stub;

/// Every `name` in `$VANE_AGENT_CLIS` (one or more npm prefixes, `:`-separated:
/// `.ci/run` installs two Claude Code versions), else the one on PATH.
pub fn find_clis(name: &str) -> Vec<PathBuf> {
    if let Some(dirs) = std::env::var_os("VANE_AGENT_CLIS") {
        let found: Vec<PathBuf> = std::env::split_paths(&dirs)
            .map(|d| d.join("node_modules/.bin").join(name))
            .filter(|p| p.exists())
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .into_iter()
        .collect()
}

/// The CLIs, or none after saying why the test does not run (never under CI).
pub fn clis_or_skip(name: &str) -> Vec<PathBuf> {
    let found = find_clis(name);
    if found.is_empty() {
        assert!(
            std::env::var("CI").is_err(),
            "`{name}` not found (VANE_AGENT_CLIS or PATH): .ci/run installs it"
        );
        eprintln!("SKIPPED: `{name}` not installed (npm: see .ci/run; set VANE_AGENT_CLIS)");
    }
    found
}
