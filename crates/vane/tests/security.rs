//! Hostile rounds, performed for real: each test is an attack an agent could
//! make through vane's tools (or a workspace could carry), against the real
//! binary, the real sandbox and real git — and what must not happen.

mod common;

use std::path::{Path, PathBuf};

use common::{git, init_workspace, vane, BIN};
use serde_json::{json, Value};
use vane_tools::client::Client;

const ROADMAP: &str = "epics:
  - id: E1
    title: Security
    tasks:
      - id: S1
        title: Hold the line
";

fn bwrap() -> bool {
    if vane_tools::exec::detect_bwrap().is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "bubblewrap not usable: .ci/run installs it"
    );
    eprintln!("SKIPPED: bubblewrap not usable here");
    false
}

async fn serve_env(ws: &Path, env: &[(&str, &str)]) -> Client {
    Client::spawn(
        Path::new(BIN),
        &["serve", "--workspace", ws.to_str().unwrap()],
        env,
        true,
    )
    .await
    .unwrap()
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let (d, ws) = init_workspace("", ROADMAP, &[("README.md", "security\n")]);
    git(&ws, &["init", "-q"]);
    (d, ws)
}

async fn run(c: &Client, cmd: &str) -> Value {
    c.call_ok("cmd_run", json!({ "cmd": cmd }))
        .await
        .unwrap_or_else(|e| panic!("cmd_run {cmd}: {e}"))
}

/// vane often runs as root; bwrap started by root keeps every capability
/// unless told otherwise, and with CAP_SYS_ADMIN a command remounts `/`
/// writable and writes the host (found in this round: it did).
#[tokio::test]
async fn a_command_cannot_remount_the_host_writable() {
    if !bwrap() {
        return;
    }
    let (_d, ws) = workspace();
    let c = serve_env(&ws, &[]).await;
    let target = format!("/usr/vane-escape-{}", std::process::id());
    // MS_REMOUNT | MS_BIND on / → read-write; an interpreter, so no deny rule sees it
    let attack = format!(
        "python3 -c \"import ctypes; l=ctypes.CDLL(None); print('mount', l.mount(b'none', b'/', None, 4128, None))\"; \
         mount -o remount,bind,rw / 2>&1; echo x > {target} 2>&1; echo done"
    );
    let o = run(&c, &attack).await;
    assert_eq!(o["sandbox"], "bwrap", "{o}");
    assert!(o["stdout"].as_str().unwrap().contains("done"), "{o}");
    let escaped = Path::new(&target).exists();
    let _ = std::fs::remove_file(&target);
    assert!(
        !escaped,
        "a sandboxed command wrote {target} on the host: {o}"
    );
    c.close().await;
}

/// The control socket starts executables as workers. Connecting to a Unix
/// socket needs no write access, so a read-only state directory did not
/// protect it: the sandbox must not see it at all, and a request without the
/// front's token is refused.
#[tokio::test]
async fn the_control_socket_is_out_of_an_agents_reach() {
    if !bwrap() {
        return;
    }
    let (_d, ws) = workspace();
    let c = serve_env(&ws, &[]).await;
    let run_dir = ws.join(".vane/run");
    let sock = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("the front's control socket");
    // from inside the sandbox: the socket's path, absolute
    let attack = format!(
        "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('{}'); s.sendall(b'{{\\\"op\\\":\\\"workers\\\"}}\\n'); print('ANSWER', s.recv(200))\" 2>&1; ls -A {} 2>&1",
        sock.display(),
        run_dir.display()
    );
    let o = run(&c, &attack).await;
    let out = o["stdout"].as_str().unwrap();
    assert!(
        !out.contains("ANSWER"),
        "the sandbox reached the socket: {o}"
    );
    assert!(!out.contains(".sock") && !out.contains(".token"), "{o}");
    // from the host, without the token: refused
    let answer = {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.write_all(b"{\"op\":\"canary_start\",\"binary\":\"/bin/true\"}\n")
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized", "{answer}");
    // with it (the operator's CLI): served
    let out = vane(&ws, &["workers", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.close().await;
}

/// A repository's git config can make git execute programs. Written by an
/// agent's command, it must be refused; arrived with the workspace, vane's
/// own git (context_snapshot, critics_run, preflight) must not run it.
#[tokio::test]
async fn git_config_never_makes_vane_run_a_program() {
    if !bwrap() {
        return;
    }
    let (d, ws) = workspace();
    let c = serve_env(&ws, &[]).await;
    // 1. through the sandbox: .git/config, hooks and .git itself hold
    let o = run(
        &c,
        "git config core.fsmonitor 'touch /tmp/x' 2>&1; echo '#!/bin/sh' > .git/hooks/pre-commit 2>&1; mv .git .git-away 2>&1; echo done",
    )
    .await;
    let config = std::fs::read_to_string(ws.join(".git/config")).unwrap();
    assert!(!config.contains("fsmonitor"), "{config}\n{o}");
    assert!(!ws.join(".git/hooks/pre-commit").exists(), "{o}");
    assert!(
        ws.join(".git").is_dir() && !ws.join(".git-away").exists(),
        "{o}"
    );
    // 2. planted on the host: every program-naming setting git knows
    let marker = |n: &str| d.path().join(format!("ran-{n}"));
    let mut cfg = config.clone();
    cfg.push_str(&format!(
        "[core]\n\tfsmonitor = \"touch {}\"\n\tpager = \"touch {}\"\n\thooksPath = hooks-evil\n[filter \"evil\"]\n\tclean = \"touch {}; cat\"\n\tsmudge = \"touch {}; cat\"\n\trequired = true\n[diff]\n\texternal = \"touch {}\"\n",
        marker("fsmonitor").display(),
        marker("pager").display(),
        marker("clean").display(),
        marker("smudge").display(),
        marker("diff").display(),
    ));
    std::fs::write(ws.join(".git/config"), cfg).unwrap();
    std::fs::write(ws.join(".gitattributes"), "* filter=evil\n").unwrap();
    std::fs::write(ws.join("tracked.txt"), "x\n").unwrap();
    c.call_ok("context_snapshot", json!({ "reason": "attack" }))
        .await
        .unwrap();
    c.call_ok("critics_run", json!({})).await.unwrap();
    let _ = vane(&ws, &["preflight", "--json"]);
    for m in ["fsmonitor", "pager", "clean", "smudge", "diff"] {
        assert!(
            !marker(m).exists(),
            "vane's git ran the repository's {m} program on the host"
        );
    }
    c.close().await;
}

/// vane.toml holds the sandbox setting, the deny rules and where the state
/// directory is: no tool may write it, and a workspace served without one
/// gets one (so that an agent cannot create it for the next worker).
#[tokio::test]
async fn vane_toml_is_out_of_an_agents_reach() {
    let (_d, ws) = workspace();
    let c = serve_env(&ws, &[]).await;
    let before = std::fs::read_to_string(ws.join("vane.toml")).unwrap();
    let e = c
        .call_err(
            "fs_write",
            json!({ "path": "vane.toml", "content": "[commands]\nsandbox = \"off\"\n" }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "path_protected", "{e}");
    let e = c
        .call_err(
            "fs_write",
            json!({ "path": "./sub/../vane.toml", "content": "x", "mode": "append" }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "path_protected", "{e}");
    if bwrap() {
        let o = run(
            &c,
            "printf '\\n[commands]\\nsandbox = \"off\"\\n' >> vane.toml 2>&1; rm -f vane.toml 2>&1; echo done",
        )
        .await;
        assert!(o["stdout"].as_str().unwrap().contains("done"), "{o}");
    }
    assert_eq!(
        std::fs::read_to_string(ws.join("vane.toml")).unwrap(),
        before
    );
    c.close().await;
    // served without a vane.toml: vane writes the default one first
    let d2 = tempfile::tempdir().unwrap();
    let c = serve_env(d2.path(), &[]).await;
    let toml = std::fs::read_to_string(d2.path().join("vane.toml")).unwrap();
    assert!(toml.contains("[commands]"), "{toml}");
    c.close().await;
}

/// The server's API keys are not a command's business — with the sandbox
/// and without it.
#[tokio::test]
async fn commands_never_see_the_servers_secrets() {
    let (_d, ws) = workspace();
    // a home outside /tmp and /var/tmp (the sandbox has its own of those, which
    // would hide everything there and prove nothing about credentials)
    let ephemeral = |p: &Path| p.starts_with("/tmp") || p.starts_with("/var/tmp");
    let base = [
        std::env::var_os("HOME").map(std::path::PathBuf::from),
        Some(std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_dir() && !ephemeral(p))
    .expect("a writable directory outside /tmp");
    let h = tempfile::Builder::new()
        .prefix(".vane-test-home-")
        .tempdir_in(base)
        .unwrap();
    let home = h.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE-KEY-MATERIAL\n").unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        "aws_secret_access_key=SECRETAWS\n",
    )
    .unwrap();
    std::fs::write(home.join(".netrc"), "machine x password NETRCSECRET\n").unwrap();
    let key = "sk-ant-api03-Zq9xVbT3kLmN8pQrStUvWxYz0123456789abcdefghijklmnopqrstuvwx"; // vane:allow-secret
    let env = [
        ("ANTHROPIC_API_KEY", key),
        (
            "OPENAI_API_KEY",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789", // vane:allow-secret
        ),
        ("HOME", home.to_str().unwrap()),
    ];
    let c = serve_env(&ws, &env).await;
    for mode in ["auto", "off"] {
        assert!(vane(&ws, &["flags", "set", "SANDBOX_MODE", mode])
            .status
            .success());
        let o = run(&c, "env; echo HOME=$HOME").await;
        let out = o["stdout"].as_str().unwrap();
        assert!(
            !out.contains("sk-ant") && !out.contains("sk-proj"),
            "{mode}: {out}"
        );
        assert!(!out.contains("API_KEY"), "{mode}: {out}");
        assert!(out.contains("PATH="), "{mode}: {out}");
        if mode == "auto" && bwrap() {
            let o = run(
                &c,
                "cat ~/.ssh/id_ed25519 ~/.aws/credentials ~/.netrc 2>&1; ls -A ~/.ssh; echo done",
            )
            .await;
            let out = o["stdout"].as_str().unwrap();
            assert!(out.contains("done"), "{o}");
            for s in ["PRIVATE-KEY", "SECRETAWS", "NETRCSECRET"] {
                assert!(!out.contains(s), "the sandbox showed {s}: {o}");
            }
            // the rest of that home is there (only credentials are hidden)
            std::fs::write(home.join("notes.txt"), "VISIBLE\n").unwrap();
            let o = run(&c, "cat ~/notes.txt").await;
            assert_eq!(o["stdout"], "VISIBLE\n", "{o}");
        }
    }
    c.close().await;
}

/// A process swaps a workspace directory with a symlink to the outside as
/// fast as it can (`renameat2(RENAME_EXCHANGE)`) while an agent reads and
/// writes through that directory: no read may return the outside file, no
/// write may land outside, not even a temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_swapped_for_a_symlink_mid_call_never_leads_out() {
    let (d, ws) = workspace();
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "OUTSIDE-SECRET\n").unwrap();
    std::fs::create_dir_all(ws.join("a")).unwrap();
    std::fs::write(ws.join("a/secret.txt"), "inside\n").unwrap();
    std::os::unix::fs::symlink(&outside, ws.join("b")).unwrap();
    let c = serve_env(&ws, &[]).await;
    // the flipper: a real process exchanging `a` and `b` in a loop
    let mut flipper = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import ctypes, time\n\
             l = ctypes.CDLL(None, use_errno=True)\n\
             end = time.time() + 30\n\
             while time.time() < end:\n    l.renameat2(-100, b'a', -100, b'b', 2)\n",
        )
        .current_dir(&ws)
        .spawn()
        .unwrap();
    let (mut reads_inside, mut writes_ok, mut refused) = (0, 0, 0);
    for n in 0..300 {
        match c
            .call("fs_read", json!({ "path": "a/secret.txt" }))
            .await
            .unwrap()
        {
            r if r.is_error != Some(true) => {
                let v = r.structured_content.unwrap();
                assert_eq!(v["content"], "inside\n", "read the outside file: {v}");
                reads_inside += 1;
            }
            _ => refused += 1,
        }
        let w = c
            .call(
                "fs_write",
                json!({ "path": format!("a/new-{n}.txt"), "content": "x" }),
            )
            .await
            .unwrap();
        if w.is_error != Some(true) {
            writes_ok += 1;
        }
    }
    let _ = flipper.kill();
    let _ = flipper.wait();
    let leaked: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "secret.txt")
        .collect();
    assert!(
        leaked.is_empty(),
        "written outside the workspace: {leaked:?}"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "OUTSIDE-SECRET\n"
    );
    eprintln!("reads inside {reads_inside}, writes {writes_ok}, refused {refused}");
    assert!(reads_inside + writes_ok > 0, "nothing got through at all");
    c.close().await;
}

/// `fs_read` of a FIFO used to block the worker's only thread forever (not
/// even `ping` answered); a special file is refused at once.
#[tokio::test]
async fn reading_a_fifo_is_refused_at_once() {
    let (_d, ws) = workspace();
    nix::unistd::mkfifo(
        &ws.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let c = serve_env(&ws, &[]).await;
    let e = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.call_err("fs_read", json!({ "path": "pipe" })),
    )
    .await
    .expect("fs_read of a FIFO answered within 5 s")
    .unwrap();
    assert_eq!(e["code"], "invalid_input", "{e}");
    assert!(e["message"].as_str().unwrap().contains("FIFO"), "{e}");
    let e = c
        .call_err("artifact_record", json!({ "kind": "log", "path": "pipe" }))
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input", "{e}");
    c.call_ok("status", json!({})).await.unwrap();
    c.close().await;
}

/// Raw JSON-RPC with the real `vane serve`: messages written as they are,
/// answers read line by line.
struct Raw {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Raw {
    fn start(ws: &Path, env: &[(&str, &str)]) -> Raw {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["serve", "--workspace", ws.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut r = Raw { child, stdin, out };
        r.send(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}).to_string());
        r.answer(0);
        r.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        r
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn answer(&mut self, id: i64) -> Value {
        use std::io::BufRead;
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "stdout closed");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 64 MiB request line used to be buffered whole by the front (1 GB line →
/// 1 GB of memory), and lines over 16 MiB were dropped without an answer:
/// now it gets a JSON-RPC error for its id, the front's memory stays flat,
/// and the session goes on.
#[test]
fn an_oversized_request_gets_an_error_and_costs_no_memory() {
    let (_d, ws) = workspace();
    // a 1 MiB limit for this front (the default is 32 MiB)
    std::fs::write(
        ws.join("vane.toml"),
        "[runtime]\nmax_request_bytes = 1048576\n",
    )
    .unwrap();
    let mut raw = Raw::start(&ws, &[]);
    raw.send(&json!({"jsonrpc": "2.0", "id": 6, "method": "ping"}).to_string());
    raw.answer(6);
    let before = raw.rss_kib();
    let huge = "x".repeat(64 << 20);
    raw.send(&format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{{\"name\":\"fs_write\",\"arguments\":{{\"path\":\"big.txt\",\"content\":\"{huge}\"}}}}}}"
    ));
    let a = raw.answer(7);
    assert_eq!(a["error"]["code"], -32600, "{a}");
    assert!(
        a["error"]["message"].as_str().unwrap().contains("limit"),
        "{a}"
    );
    let grew_mib = raw.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grew_mib < 8,
        "the front's peak memory grew by {grew_mib} MiB"
    );
    raw.send(&json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "status", "arguments": {}}}).to_string());
    assert_eq!(raw.answer(8)["result"]["isError"], false);
    assert!(!ws.join("big.txt").exists());
}

/// Calls marked as the front's self-checks are kept out of the operations
/// log; a client claiming to be one is logged all the same — and every text
/// field of a logged call is redacted.
#[test]
fn a_client_cannot_hide_its_calls_and_logged_fields_are_redacted() {
    let (_d, ws) = workspace();
    let mut raw = Raw::start(&ws, &[]);
    let secret = "ghp_0123456789abcdefghijABCDEFGHIJklmn"; // vane:allow-secret
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fs_read", "arguments": {"path": "README.md"}, "_meta": {"vane/self_check": true}}}).to_string());
    assert_eq!(raw.answer(1)["result"]["isError"], false);
    raw.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "plan_update", "arguments": {"task_id": format!("token={secret}"), "status": "done"}}}).to_string());
    assert_eq!(raw.answer(2)["result"]["isError"], true);
    raw.send(&json!({"jsonrpc": "2.0", "id": format!("req-{secret}"), "method": "tools/call", "params": {"name": "status", "arguments": {}}}).to_string());
    drop(raw);
    let log_path = ws.join(".vane/telemetry/operations.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let calls: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "tool_call")
            .collect();
        let hidden_logged = calls.iter().any(|v| v["tool"] == "fs_read");
        if hidden_logged && calls.iter().any(|v| v["tool"] == "plan_update") {
            assert!(
                !log.contains(secret),
                "a secret reached the operations log:\n{log}"
            );
            assert!(log.contains("[REDACTED]"), "{log}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client's 'self-check' call was not logged:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A command's memory and process count are limited by the kernel (a
/// cgroup where vane can make one, else rlimits), and a worker runs only so
/// many commands at once — a burst waits its turn instead of piling up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_held_to_memory_process_and_concurrency_limits() {
    let (_d, ws) = workspace();
    std::fs::write(
        ws.join("vane.toml"),
        "[limits]\ncmd_max_memory_mb = 200\ncmd_max_processes = 40\ncmd_max_concurrent = 2\n",
    )
    .unwrap();
    let c = std::sync::Arc::new(serve_env(&ws, &[]).await);
    let st = c
        .call_ok("status", json!({ "detail": true }))
        .await
        .unwrap();
    let enforced = st["sandbox"]["limits"]["enforced_by"]
        .as_str()
        .unwrap()
        .to_string();
    eprintln!("limits enforced by {enforced}");
    // memory: 600 MB in one process
    let o = run(
        &c,
        "python3 -c \"b = bytearray(600 * 1024 * 1024); print('ALLOCATED', len(b))\" 2>&1; echo exit=$?",
    )
    .await;
    let out = o["stdout"].as_str().unwrap();
    assert!(
        !out.contains("ALLOCATED"),
        "600 MB under a 200 MB limit: {o}"
    );
    // processes: 100 sleepers
    let o = run(
        &c,
        "n=0; for i in $(seq 1 100); do sleep 3 & n=$((n+1)); done 2>/dev/null; echo started=$(jobs -p | wc -l); kill $(jobs -p) 2>/dev/null; true",
    )
    .await;
    let started: u64 = o["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .parse()
        .unwrap_or(0);
    if enforced != "rlimit" || std::env::var("USER").is_ok_and(|u| u != "root") {
        assert!(started < 100, "100 processes under a limit of 40: {o}");
    }
    // concurrency: 6 commands of 400 ms at once, at most 2 running
    let t0 = std::time::Instant::now();
    let mut calls = Vec::new();
    for _ in 0..6 {
        let c = c.clone();
        calls.push(tokio::spawn(async move {
            c.call_ok(
                "cmd_run",
                json!({ "cmd": "date +%s%N; sleep 0.4; date +%s%N" }),
            )
            .await
            .unwrap()
        }));
    }
    let mut spans = Vec::new();
    for call in calls {
        let o = call.await.unwrap();
        let t: Vec<u128> = o["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect();
        spans.push((t[0], t[1]));
    }
    let most = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(a, b)| a <= s && s < b).count())
        .max()
        .unwrap();
    assert!(most <= 2, "{most} commands ran at once: {spans:?}");
    assert!(t0.elapsed() >= std::time::Duration::from_millis(1100));
    match std::sync::Arc::try_unwrap(c) {
        Ok(c) => c.close().await,
        Err(_) => panic!("client still shared"),
    }
}

/// A session over its quota gets `rate_limited` with `retry_after_ms`, per
/// tool; after that wait it is served again.
#[tokio::test]
async fn a_session_over_its_rate_limit_is_told_when_to_retry() {
    let (_d, ws) = workspace();
    std::fs::write(
        ws.join("vane.toml"),
        "[rate_limits]\ntools = { per_second = 2, burst = 3 }\n",
    )
    .unwrap();
    let c = serve_env(&ws, &[]).await;
    for _ in 0..3 {
        c.call_ok("fs_read", json!({ "path": "README.md" }))
            .await
            .unwrap();
    }
    let e = c
        .call_err("fs_read", json!({ "path": "README.md" }))
        .await
        .unwrap();
    assert_eq!(e["code"], "rate_limited", "{e}");
    let wait = e["details"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&wait), "{e}");
    // another tool has its own quota; health calls theirs
    c.call_ok("plan_next", json!({})).await.unwrap();
    c.call_ok("status", json!({})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(wait + 20)).await;
    c.call_ok("fs_read", json!({ "path": "README.md" }))
        .await
        .unwrap();
    c.close().await;
}

/// Size budgets hold for text without spaces too: one 200 KB "word" in a
/// context section, 100 KB of notes or metadata are refused.
#[tokio::test]
async fn long_words_and_notes_do_not_slip_past_size_budgets() {
    let (_d, ws) = workspace();
    let c = serve_env(&ws, &[]).await;
    let word = "x".repeat(200_000);
    let e = c
        .call_err(
            "context_write",
            json!({ "section": "notes", "content": word }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "context_budget_exceeded", "{e}");
    let e = c
        .call_err(
            "plan_update",
            json!({ "task_id": "S1", "notes": "y".repeat(100_000) }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input", "{e}");
    let e = c
        .call_err(
            "artifact_record",
            json!({ "kind": "log", "metadata": { "blob": "z".repeat(100_000) } }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "invalid_input", "{e}");
    // ordinary sizes still pass
    c.call_ok(
        "context_write",
        json!({ "section": "notes", "content": "short and fine" }),
    )
    .await
    .unwrap();
    c.close().await;
}

/// A client that stops reading its answers used to stall the front's worker
/// reader on the client's full pipe: the worker's pings went unread, its
/// circuit opened, a healthy worker was killed and in-flight commands ran
/// twice. Now answers queue (bounded: the front stops taking requests), the
/// worker stays, and every answer arrives once the client reads again.
#[test]
fn a_client_that_stops_reading_stalls_nothing() {
    use std::io::BufRead;
    let (_d, ws) = workspace();
    std::fs::write(ws.join("big.txt"), "0123456789abcdef ".repeat(30_000)).unwrap(); // ~510 KB
    std::fs::write(
        ws.join("vane.toml"),
        "[limits]\nfs_read_max_bytes = 1048576\noutput_token_budget = 400000\n",
    )
    .unwrap();
    let mut raw = Raw::start(&ws, &[]);
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "status", "arguments": {}}}).to_string());
    raw.answer(1);
    let workers = |ws: &Path| -> Value {
        let out = vane(ws, &["workers", "--json"]);
        json_of_ok(&out)["fronts"][0]["result"].clone()
    };
    let before = workers(&ws);
    let active = |h: &Value| {
        h["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["role"] == "active")
            .map(|w| w["pid"].clone())
    };
    let first = active(&before).expect("an active worker");
    // 60 answers of ~510 KB each, and nobody reading for 9 s: more than the
    // 3 missed pings (2 s apart) that open a worker's circuit
    for n in 0..60 {
        raw.send(&json!({"jsonrpc": "2.0", "id": 100 + n, "method": "tools/call", "params": {"name": "fs_read", "arguments": {"path": "big.txt"}}}).to_string());
    }
    std::thread::sleep(std::time::Duration::from_secs(9));
    let during = workers(&ws);
    assert_eq!(
        active(&during),
        Some(first.clone()),
        "the worker was replaced: {during}"
    );
    assert_eq!(during["front"]["restarts"], 0, "{during}");
    // now read: every answer arrives, each once
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 60 {
        let mut line = String::new();
        assert!(raw.out.read_line(&mut line).unwrap() > 0, "stdout closed");
        let v: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = v["id"].as_i64().filter(|i| *i >= 100) {
            assert_eq!(
                v["result"]["isError"],
                false,
                "{}",
                &line[..line.len().min(300)]
            );
            assert!(seen.insert(id), "answer {id} twice");
        }
    }
}

fn json_of_ok(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One redaction layer for every writer: what an agent stores as text
/// (context, notes, decisions), what vane exports, and what an error says
/// never holds a secret in full.
#[tokio::test]
async fn secrets_are_masked_in_the_store_exports_and_errors() {
    let (_d, ws) = workspace();
    let key = concat!(
        "sk-ant-",
        "api03-Zq9xVbT3kLmN8pQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxAA"
    );
    let c = serve_env(&ws, &[]).await;
    c.call_ok(
        "context_write",
        json!({ "section": "findings", "content": format!("the key is {key}") }),
    )
    .await
    .unwrap();
    c.call_ok(
        "plan_update",
        json!({ "task_id": "S1", "notes": format!("api_key={key}") }),
    )
    .await
    .unwrap();
    c.call_ok(
        "decision_record",
        json!({ "title": "rotate", "summary": format!("leaked {key}") }),
    )
    .await
    .unwrap();
    c.call_ok(
        "context_snapshot",
        json!({ "reason": format!("after {key}") }),
    )
    .await
    .unwrap();
    let e = c
        .call_err("plan_update", json!({ "task_id": key, "status": "done" }))
        .await
        .unwrap();
    assert!(!e.to_string().contains(key), "{e}");
    let ctx = c.read_text("vane://context").await.unwrap();
    assert!(ctx.contains("[REDACTED]") && !ctx.contains(key), "{ctx}");
    let task = vane(&ws, &["task", "show", "S1", "--json"]);
    assert!(!String::from_utf8_lossy(&task.stdout).contains(key));
    c.close().await;
    // every file vane wrote: exports, checkpoint, the log
    let mut files = vec![ws.join(".vane")];
    let mut texts = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if !p.to_string_lossy().contains("vane.db") {
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts += 1;
                assert!(!t.contains(key), "{} holds the key", p.display());
            }
        }
    }
    assert!(texts >= 3, "exports were written");
    // the store itself, its write-ahead log included
    let needle = key.as_bytes();
    for f in ["vane.db", "vane.db-wal"] {
        let db = std::fs::read(ws.join(".vane").join(f)).unwrap_or_default();
        assert!(
            !db.windows(needle.len()).any(|w| w == needle),
            "the key reached {f}"
        );
    }
}
