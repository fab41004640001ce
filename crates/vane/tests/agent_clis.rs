//! The real agent CLIs use vane's real tools.
//!
//! `claude` (Claude Code) and `codex` (Codex CLI) from npm, started the way a
//! user starts them, with vane registered the way the README says, talk to a
//! scripted stub of their model API on loopback (`common::model_stub`). The
//! "model" calls vane's tools; a test passes only when the stub received
//! vane's real answers back through the CLI and the file written by
//! `fs_write` exists. `connected` is not enough: Claude Code once listed vane
//! as connected while rejecting its whole tool list.
//!
//! The CLIs are found in `$VANE_AGENT_CLIS/node_modules/.bin` (what `.ci/run`
//! installs) or on PATH. Under CI (`CI=true`) a missing CLI is a failure;
//! elsewhere the test says it skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::model_stub::{ModelStub, Step, Wire};
use common::{clis_or_skip, git, init_workspace, vane, BIN};
use serde_json::{json, Value};

const ROADMAP: &str = "epics:
  - id: E1
    title: Agent CLIs
    tasks:
      - id: CLI-1
        title: Greet from an agent CLI
        priority: high
";

/// PATH with the directory of the `vane` under test first, so that the
/// README's `vane serve …` registration runs this build.
fn path_with_vane() -> String {
    let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let mut all = vec![bin_dir];
    all.extend(std::env::split_paths(&rest));
    std::env::join_paths(all).unwrap().into_string().unwrap()
}

/// Runs a CLI to completion with stdin closed, killing it after `limit`.
fn run(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    out
}

fn show(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The steps both CLIs script: read vane's `status`, then write a file.
fn steps(file: &str, content: &str) -> Vec<Step> {
    vec![
        Step {
            tool: "status".into(),
            args: json!({}),
        },
        Step {
            tool: "fs_write".into(),
            args: json!({ "path": file, "content": content }),
        },
    ]
}

/// What must hold after either CLI ran the script: the stub got vane's real
/// `status` and `fs_write` answers, and the file is there.
fn assert_real_round_trip(stub: &ModelStub, ws: &Path, file: &str, content: &str, out: &str) {
    let log = stub.log.lock().unwrap();
    assert!(log.problems.is_empty(), "{:?}\n{out}", log.problems);
    assert_eq!(
        log.calls.len(),
        2,
        "the model's two tool calls were made: {:?}\n{out}",
        log.calls
    );
    assert_eq!(
        log.results.len(),
        2,
        "the CLI sent both tool results back: {:?}\n{out}",
        log.results
    );
    // vane's status: the workspace, the roadmap's task and its version
    let status = &log.results[0];
    assert!(
        status.contains("CLI-1") && status.contains(&ws.display().to_string()),
        "status result is vane's real answer: {status}"
    );
    assert!(
        status.contains(env!("CARGO_PKG_VERSION")),
        "status names vane's version: {status}"
    );
    // vane's fs_write: the sha256 of what it wrote
    let written = std::fs::read_to_string(ws.join(file))
        .unwrap_or_else(|e| panic!("{file} was not written ({e}); results: {:?}", log.results));
    assert_eq!(written, content);
    let sha = vane_sha256(content);
    assert!(
        log.results[1].contains(&sha),
        "fs_write result carries the file's sha256 {sha}: {}",
        log.results[1]
    );
    // the CLI listed every one of vane's tools to the model (Claude Code may
    // list them by name only, behind its tool search)
    for t in VANE_TOOLS {
        let name = format!("vane__{t}");
        assert!(
            log.last_request.contains(&name)
                || log.offered_tools.iter().any(|o| o.ends_with(&name)),
            "the CLI listed vane's {t} to the model; offered: {:?}",
            log.offered_tools
        );
    }
}

/// The tools a default `vane serve` lists.
const VANE_TOOLS: [&str; 12] = [
    "plan_next",
    "plan_update",
    "context_write",
    "context_snapshot",
    "fs_read",
    "fs_write",
    "cmd_run",
    "critics_run",
    "artifact_record",
    "decision_record",
    "status",
    "tool_manifest",
];

fn vane_sha256(s: &str) -> String {
    // vane's own answer to a read of the file is the reference
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn workspace() -> (tempfile::TempDir, PathBuf) {
    let (d, ws) = init_workspace("", ROADMAP, &[("README.md", "agent CLI test\n")]);
    git(&ws, &["init", "-q"]);
    (d, ws)
}

/// The README's text: the registrations below are read from it, so the
/// instructions users follow are the ones tested.
fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

/// The first README line starting with `prefix`, split like a shell would
/// (single and double quotes, no escapes), with `/path/to/repo` replaced by
/// the workspace.
fn readme_command(prefix: &str, ws: &Path) -> Vec<String> {
    let text = readme();
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("README has no line starting with `{prefix}`"));
    let (mut words, mut cur, mut any) = (Vec::new(), String::new(), false);
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match ch {
            '"' | '\'' if quote.is_none() => {
                quote = Some(ch);
                any = true;
            }
            c if quote == Some(c) => quote = None,
            c if c.is_whitespace() && quote.is_none() => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
        .into_iter()
        .map(|w| w.replace("/path/to/repo", ws.to_str().unwrap()))
        .collect()
}

/// The README's ```toml block that holds `[mcp_servers.vane]`.
fn readme_codex_toml(ws: &Path) -> String {
    let text = readme();
    let block = text
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("[mcp_servers.vane]"))
        .expect("README has a ```toml block with [mcp_servers.vane]");
    block.replace("/path/to/repo", ws.to_str().unwrap())
}

fn command(words: &[String]) -> (&str, &[String]) {
    (words[0].as_str(), &words[1..])
}

/// The CLI's version, printed as the test starts with it.
fn announce(cli: &Path) -> String {
    let out = run(Command::new(cli).arg("--version"), Duration::from_secs(30));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!("== {} ({version})", cli.display());
    version
}

/// A CLI started as a user would in `ws`: its own `HOME`, this build's
/// `vane` first on `PATH`, nothing else from the test's environment.
fn clean_env<'c>(c: &'c mut Command, home: &Path, ws: &Path) -> &'c mut Command {
    c.env_clear()
        .env("HOME", home)
        .env("PATH", path_with_vane())
        .env("LANG", "C.UTF-8")
        .current_dir(ws)
}

#[test]
fn claude_code_calls_vane_tools() {
    let clis = clis_or_skip("claude");
    for claude in &clis {
        claude_round_trip(claude);
    }
}

fn claude_round_trip(claude: &Path) {
    let (d, ws) = workspace();
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let version = announce(claude);
    let (file, content) = ("from-claude.txt", "written by Claude Code through vane\n");
    let stub = ModelStub::start(
        Wire::Anthropic,
        steps(file, content),
        "Done: vane answered.",
    );
    // vane as registered starts two seconds late, as on a loaded machine:
    // Claude Code must still wait for it (the README's `alwaysLoad`), not
    // build its first turn without vane's tools (measured with 2.1.332:
    // registered without `alwaysLoad`, a 1 s delay still passes, 2 s fails)
    let slow = d.path().join("slow-bin");
    std::fs::create_dir_all(&slow).unwrap();
    let wrapper = slow.join("vane");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nsleep 2\nexec '{BIN}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", slow.display(), path_with_vane());
    let env = |c: &mut Command| {
        clean_env(c, &home, &ws)
            .env("PATH", &path)
            .env("ANTHROPIC_BASE_URL", stub.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-stub-not-a-real-key")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1");
    };
    // registered exactly as the README tells users to
    let add = readme_command("claude mcp add-json vane ", &ws);
    let (_, args) = command(&add);
    let mut c = Command::new(claude);
    env(&mut c);
    let out = run(c.args(args), Duration::from_secs(60));
    assert!(out.status.success(), "{add:?}: {}", show(&out));
    // … with `alwaysLoad`, without which Claude Code builds the first turn
    // without waiting for vane (CI once caught 2.1.332 doing exactly that)
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join(".claude.json")).unwrap()).unwrap();
    let server = &config["projects"][ws.to_str().unwrap()]["mcpServers"]["vane"];
    assert_eq!(server["alwaysLoad"], true, "{config}");
    assert_eq!(server["command"], "vane", "{config}");

    // the README's headless run; `--output-format json` goes before
    // `--allowedTools`, which takes every argument after it
    let mut p = readme_command("claude -p ", &ws);
    assert!(
        p.iter().any(|w| w == "--allowedTools"),
        "the README's claude -p line allows vane's tools: {p:?}"
    );
    p.splice(3..3, ["--output-format".to_string(), "json".to_string()]);
    let (_, args) = command(&p);
    let mut c = Command::new(claude);
    env(&mut c);
    let out = run(c.args(args), Duration::from_secs(180));
    let printed = show(&out);
    eprintln!("stub's log (Claude Code {version}):\n{}", stub.transcript());
    assert!(out.status.success(), "{p:?}: {printed}");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("claude's JSON result ({e}): {printed}"));
    assert_eq!(result["is_error"], false, "{printed}");
    assert_eq!(
        result["permission_denials"].as_array().map(Vec::len),
        Some(0),
        "no vane tool was denied: {printed}"
    );
    assert_real_round_trip(&stub, &ws, file, content, &printed);
    // the calls went through vane's own pipeline: its operations log has them
    let ops = vane(&ws, &["telemetry", "summary", "--json"]);
    let ops = String::from_utf8_lossy(&ops.stdout);
    assert!(ops.contains("fs_write") && ops.contains("status"), "{ops}");
}

/// Claude Code over Streamable HTTP, registered as the README says
/// (`claude mcp add --transport http … --header "Authorization: Bearer …"`):
/// `claude mcp list` reports vane connected, and a headless run does real
/// work through vane's tools over HTTP.
#[test]
fn claude_code_calls_vane_tools_over_http() {
    let clis = clis_or_skip("claude");
    for claude in &clis {
        claude_over_http(claude);
    }
}

struct HttpVane(std::process::Child);

impl Drop for HttpVane {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `vane serve --http 127.0.0.1:0` with one token; (the server, its URL).
fn serve_http(ws: &Path, token: &str) -> (HttpVane, String) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("VANE_TEST_TOKEN", format!("{token}:tools"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let (false, Some(at)) = (sent, line.find("vane: serving MCP at ")) {
                let _ = tx.send(line[at + 21..].trim().to_string());
                sent = true;
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("vane serve --http names its endpoint");
    (HttpVane(child), url)
}

fn claude_over_http(claude: &Path) {
    let (d, ws) = workspace();
    std::fs::write(
        ws.join("vane.toml"),
        "[http]\ntokens_env = \"VANE_TEST_TOKEN\"\n",
    )
    .unwrap();
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let version = announce(claude);
    // made up here (a literal would read as a committed secret to `vane audit`)
    let bearer = format!("claude-over-http-{:020}", std::process::id());
    let token = bearer.as_str();
    let (_server, url) = serve_http(&ws, token);
    let (file, content) = (
        "over-http.txt",
        "written by Claude Code through vane over HTTP\n",
    );
    let stub = ModelStub::start(
        Wire::Anthropic,
        steps(file, content),
        "Done: vane answered.",
    );
    let env = |c: &mut Command| {
        clean_env(c, &home, &ws)
            .env("ANTHROPIC_BASE_URL", stub.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-stub-not-a-real-key")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1");
    };
    let add: Vec<String> = readme_command("claude mcp add --transport http vane ", &ws)
        .into_iter()
        .map(|w| {
            w.replace("http://127.0.0.1:8731/mcp", &url)
                .replace("$VANE_TOKEN", token)
        })
        .collect();
    let (_, args) = command(&add);
    let mut c = Command::new(claude);
    env(&mut c);
    let out = run(c.args(args), Duration::from_secs(60));
    assert!(out.status.success(), "{add:?}: {}", show(&out));
    let mut c = Command::new(claude);
    env(&mut c);
    let out = run(c.args(["mcp", "list"]), Duration::from_secs(90));
    let listed = show(&out);
    let line = listed
        .lines()
        .find(|l| l.starts_with("vane:"))
        .unwrap_or_else(|| panic!("claude mcp list names vane: {listed}"));
    assert!(line.contains("Connected"), "Claude Code {version}: {line}");

    let mut p = readme_command("claude -p ", &ws);
    p.splice(3..3, ["--output-format".to_string(), "json".to_string()]);
    let (_, args) = command(&p);
    let mut c = Command::new(claude);
    env(&mut c);
    let out = run(c.args(args), Duration::from_secs(180));
    let printed = show(&out);
    eprintln!(
        "stub's log (Claude Code {version}, HTTP):\n{}",
        stub.transcript()
    );
    assert!(out.status.success(), "{p:?}: {printed}");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("claude's JSON result ({e}): {printed}"));
    assert_eq!(result["is_error"], false, "{printed}");
    assert_real_round_trip(&stub, &ws, file, content, &printed);
}

#[test]
fn codex_calls_vane_tools() {
    let clis = clis_or_skip("codex");
    for codex in &clis {
        codex_round_trip(codex);
    }
}

fn codex_round_trip(codex: &Path) {
    let (d, ws) = workspace();
    let home = d.path().join("home");
    let codex_home = home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    let version = announce(codex);
    let (file, content) = ("from-codex.txt", "written by Codex through vane\n");
    let stub = ModelStub::start(
        Wire::Responses,
        steps(file, content),
        "Done: vane answered.",
    );
    let env = |c: &mut Command| {
        clean_env(c, &home, &ws).env("RUST_LOG", "error");
    };
    // registered exactly as the README tells users to: `codex mcp add` …
    let add = readme_command("codex mcp add vane -- ", &ws);
    let (_, args) = command(&add);
    let mut c = Command::new(codex);
    env(&mut c);
    let out = run(c.args(args), Duration::from_secs(60));
    assert!(out.status.success(), "{add:?}: {}", show(&out));
    let written = std::fs::read_to_string(codex_home.join("config.toml")).unwrap();
    let readme_toml = readme_codex_toml(&ws);
    let parsed = |s: &str| -> Value {
        let v: toml::Value = toml::from_str(s).unwrap();
        serde_json::to_value(v).unwrap()
    };
    let (added, documented) = (parsed(&written), parsed(&readme_toml));
    for key in ["command", "args"] {
        assert_eq!(
            added["mcp_servers"]["vane"][key], documented["mcp_servers"]["vane"][key],
            "`codex mcp add` wrote what the README's config shows:\n{written}\n---\n{readme_toml}"
        );
    }
    // … plus the README's approval line: the README's table is the config
    std::fs::write(codex_home.join("config.toml"), &readme_toml).unwrap();

    // the README's `codex exec` run, with the stub as the model provider and
    // the features that would reach the internet (plugin and app sync) off
    let exec = readme_command("codex exec ", &ws);
    let (_, args) = command(&exec);
    let (prompt, flags) = args.split_last().unwrap();
    let provider = format!(
        "model_providers.stub={{name=\"stub\",base_url=\"{}/v1\",wire_api=\"responses\"}}",
        stub.base_url()
    );
    let mut c = Command::new(codex);
    env(&mut c);
    c.args(flags).args([
        "--json",
        "-c",
        "model_provider=\"stub\"",
        "-c",
        "model=\"gpt-stub\"",
        "-c",
        &provider,
        "--disable",
        "plugins",
        "--disable",
        "apps",
    ]);
    let out = run(c.arg(prompt), Duration::from_secs(180));
    let printed = show(&out);
    eprintln!("stub's log (Codex {version}):\n{}", stub.transcript());
    assert!(out.status.success(), "{exec:?}: {printed}");
    assert_real_round_trip(&stub, &ws, file, content, &printed);
    let ops = vane(&ws, &["telemetry", "summary", "--json"]);
    let ops = String::from_utf8_lossy(&ops.stdout);
    assert!(ops.contains("fs_write") && ops.contains("status"), "{ops}");
}

/// No boolean subschema in any schema of any tool — the worker's tools and
/// the front's, admin tools included — as clients get them from `tools/list`.
/// (Claude Code drops a server's whole tool list over one.)
#[tokio::test]
async fn every_listed_schema_is_free_of_boolean_subschemas() {
    let (_d, ws) = workspace();
    assert!(vane(&ws, &["flags", "set", "ADMIN_TOOLS", "1"])
        .status
        .success());
    let c = common::serve(&ws, &[]).await;
    let tools = c.tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for t in [
        "status",
        "plan_next",
        "flags_set",
        "worker_health",
        "route_switch",
    ] {
        assert!(names.contains(&t), "{t} listed: {names:?}");
    }
    let mut bad = Vec::new();
    for t in &tools {
        let input = Value::Object((*t.input_schema).clone());
        for p in vane_tools::schema::boolean_subschemas(&input) {
            bad.push(format!("{} inputSchema{p}", t.name));
        }
        if let Some(o) = &t.output_schema {
            let output = Value::Object((**o).clone());
            for p in vane_tools::schema::boolean_subschemas(&output) {
                bad.push(format!("{} outputSchema{p}", t.name));
            }
            // the TypeScript SDK's rule: every property schema is an object
            for (name, s) in output["properties"].as_object().into_iter().flatten() {
                assert!(
                    s.is_object(),
                    "{} outputSchema property {name}: {s}",
                    t.name
                );
            }
        }
        for (name, s) in input["properties"].as_object().into_iter().flatten() {
            assert!(s.is_object(), "{} inputSchema property {name}: {s}", t.name);
        }
    }
    assert!(bad.is_empty(), "boolean subschemas: {bad:#?}");
    c.close().await;
}
