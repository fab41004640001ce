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
