//! What vane costs an agent's context: bytes (and ≈ tokens, 4 bytes each) of
//! every tool's definition and of typical answers, as a client receives them
//! over real stdio from `vane serve`. Run: `cargo bench -p vane --bench economy`.
//!
//! Issue 14's targets, printed beside each number: `tools/list` ≤ 10 KB for
//! the default tool set; `plan_next` (limit 5, default arguments) whole answer
//! ≤ 1.5 KB and text block ≤ 1 KB on the larger fixture roadmap; through
//! the official Python SDK (validation on), each call's p50 below the
//! TypeScript original's under the same client. Sizes do not depend on the
//! build profile. The client environments (a venv with the pinned SDK, ajv)
//! are made on first use in ~/.cache/vane-bench-clients.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_vane");

struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
    next: i64,
}

impl Session {
    fn start(ws: &Path) -> Session {
        let mut child = Command::new(BIN)
            .args(["serve", "--workspace", ws.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Session {
            child,
            stdin,
            out,
            next: 1,
        };
        s.request("initialize", json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "economy", "version": "0"}}));
        writeln!(
            s.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        )
        .unwrap();
        s
    }

    /// The raw answer line of one request.
    fn request(&mut self, method: &str, params: Value) -> String {
        let id = self.next;
        self.next += 1;
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )
        .unwrap();
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "stdout closed");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return line.trim_end().to_string();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kb(n: usize) -> String {
    format!("{:.1} KB", n as f64 / 1000.0)
}

fn tokens(n: usize) -> usize {
    n.div_ceil(4)
}

fn main() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/roadmaps/weathervane-2025-11-19.yaml");
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("vane.toml"), "[rate_limits]\nenabled = false\n").unwrap();
    std::fs::write(ws.join("notes.md"), "line of notes\n".repeat(40)).unwrap();
    let out = Command::new(BIN)
        .args(["--workspace", ws.to_str().unwrap(), "init", "--roadmap"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = Session::start(&ws);

    let list = s.request("tools/list", json!({}));
    let v: Value = serde_json::from_str(&list).unwrap();
    let tools = v["result"]["tools"].as_array().unwrap();
    println!(
        "vane economy (what an agent's context pays), {} tools listed by default",
        tools.len()
    );
    println!(
        "tools/list answer: {} (≈ {} tokens)  target ≤ 10 KB",
        kb(list.len()),
        tokens(list.len())
    );
    {
        // the `core` preset ([tools] preset = "core"), in a workspace of its own
        let core = d.path().join("core");
        std::fs::create_dir_all(&core).unwrap();
        std::fs::write(
            core.join("vane.toml"),
            "[rate_limits]\nenabled = false\n[tools]\npreset = \"core\"\n",
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["--workspace", core.to_str().unwrap(), "init"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut c = Session::start(&core);
        let list = c.request("tools/list", json!({}));
        let v: Value = serde_json::from_str(&list).unwrap();
        println!(
            "tools/list with [tools] preset = \"core\" ({} tools): {} (≈ {} tokens)",
            v["result"]["tools"].as_array().map_or(0, Vec::len),
            kb(list.len()),
            tokens(list.len())
        );
    }
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10}",
        "TOOL", "DESC", "INPUT", "OUTPUT", "≈TOKENS*"
    );
    let (mut seen_by_model, mut out_total) = (0, 0);
    for t in tools {
        let desc =
            t["description"].as_str().unwrap_or("").len() + t["name"].as_str().unwrap_or("").len();
        let input = t["inputSchema"].to_string().len();
        let output = t["outputSchema"].to_string().len();
        seen_by_model += desc + input;
        out_total += output;
        println!(
            "{:<18} {:>10} {:>10} {:>10} {:>10}",
            t["name"].as_str().unwrap_or(""),
            desc,
            input,
            output,
            tokens(desc + input)
        );
    }
    println!(
        "definitions a model sees (name + description + input schema): {} (≈ {} tokens); output schemas (clients check them): {}",
        kb(seen_by_model),
        tokens(seen_by_model),
        kb(out_total)
    );
    println!("* name + description + input schema");
    let first = s.request(
        "tools/call",
        json!({"name": "plan_next", "arguments": {"limit": 1}}),
    );
    let first: Value = serde_json::from_str(&first).unwrap();
    let first_task = first["result"]["structuredContent"]["tasks"][0]["id"].clone();

    let answers: [(&str, Value, &str); 12] = [
        (
            "plan_next",
            json!({"limit": 5}),
            "whole ≤ 1.5 KB, text ≤ 1 KB",
        ),
        ("status", json!({}), "—"),
        ("fs_read", json!({"path": "notes.md"}), "—"),
        (
            "fs_write",
            json!({"path": "out.md", "content": "a line\n".repeat(20)}),
            "—",
        ),
        ("cmd_run", json!({"cmd": "ls"}), "—"),
        (
            "plan_update",
            json!({"task_id": first_task, "notes": "looked at it"}),
            "—",
        ),
        (
            "context_write",
            json!({"section": "findings", "content": "the parser is slow"}),
            "—",
        ),
        ("context_snapshot", json!({"reason": "bench"}), "—"),
        ("critics_run", json!({"all": true}), "—"),
        (
            "artifact_record",
            json!({"kind": "log", "path": "notes.md"}),
            "—",
        ),
        (
            "decision_record",
            json!({"title": "keep SQLite", "summary": "one file"}),
            "—",
        ),
        ("tool_manifest", json!({}), "—"),
    ];
    println!(
        "{:<16} {:>9} {:>9} {:>11} {:>8}  target",
        "ANSWER", "WHOLE", "TEXT", "STRUCTURED", "≈TOKENS"
    );
    let mut structured_of = std::collections::BTreeMap::new();
    for (name, args, target) in answers {
        let line = s.request("tools/call", json!({"name": name, "arguments": args}));
        let v: Value = serde_json::from_str(&line).unwrap();
        let r = &v["result"];
        structured_of.insert(name, r["structuredContent"].clone());
        let text: usize = r["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .map(str::len)
            .sum();
        let structured = r["structuredContent"].to_string().len();
        println!(
            "{:<16} {:>9} {:>9} {:>11} {:>8}  {target}",
            name,
            kb(line.len()),
            kb(text),
            kb(structured),
            tokens(line.len())
        );
    }
    drop(s);
    clients(&ws, tools, &structured_of);
}

/// Where the benchmark keeps its client environments (a venv with the
/// official Python SDK, ajv), made on first use from PyPI and npm.
fn clients_dir() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache/vane-bench-clients")
}

fn sh(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ))
    }
}

/// The pinned Python SDK version the numbers are taken with.
const PYTHON_SDK: &str = "mcp==2.3.0";

fn python() -> Result<std::path::PathBuf, String> {
    let venv = clients_dir().join("py");
    let py = venv.join("bin/python");
    if !py.exists() {
        sh(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        sh(Command::new(&py).args(["-m", "pip", "install", "-q", PYTHON_SDK]))?;
    }
    Ok(py)
}

fn ajv() -> Result<std::path::PathBuf, String> {
    let dir = clients_dir().join("node");
    if !dir.join("node_modules/ajv").exists() {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        sh(Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&dir)
            .arg("ajv@8"))?;
    }
    Ok(dir.join("node_modules"))
}

/// Issue 14: what checking vane's answers costs real clients. The Python
/// SDK (validation on, as shipped) end to end, beside the TypeScript
/// original's p50s under the same client on this machine kind; and the
/// validation alone, in Python (jsonschema, as the SDK does it) and with
/// ajv, against the published output schema and the full one.
fn clients(ws: &Path, tools: &[Value], answers: &std::collections::BTreeMap<&str, Value>) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/clients");
    // every answer with its published and full output schema, for both
    // validators
    let full: Vec<Value> = answers["tool_manifest"]["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let input: Vec<Value> = answers
        .keys()
        .filter(|name| **name != "tool_manifest")
        .map(|name| {
            let published = tools.iter().find(|t| t["name"] == *name).unwrap();
            let f = full.iter().find(|t| t["name"] == *name).unwrap();
            json!({
                "name": name,
                "published": published["outputSchema"],
                "full": f["outputSchema"],
                "answer": answers[name],
            })
        })
        .collect();
    let file = ws.join("answers.json");
    std::fs::write(&file, serde_json::to_vec(&input).unwrap()).unwrap();
    println!();
    match python() {
        Err(e) => println!("Python SDK: skipped ({e})"),
        Ok(py) => {
            let out = Command::new(py)
                .arg(here.join("python_sdk.py"))
                .arg(BIN)
                .arg(ws)
                .arg("1000")
                .arg(&file)
                .stderr(Stdio::null())
                .output()
                .unwrap();
            match serde_json::from_slice::<Value>(&out.stdout) {
                Err(e) => println!(
                    "Python SDK: failed ({e}): {}",
                    String::from_utf8_lossy(&out.stdout)
                ),
                Ok(v) => {
                    println!(
                        "through the official Python SDK ({}, validation on), {} calls each:",
                        v["sdk"].as_str().unwrap_or("?"),
                        v["n"]
                    );
                    println!(
                        "{:<10} {:>9} {:>9} {:>14}  {:>16} {:>12}",
                        "CALL", "P50 ms", "P95 ms", "ORIGINAL P50", "VALIDATE pub µs", "full µs"
                    );
                    let original = [
                        ("ping", "0.41"),
                        ("status", "1.04"),
                        ("plan_next", "1.36"),
                        ("fs_read", "1.63"),
                    ];
                    for (name, orig) in original {
                        let c = &v["calls"][name];
                        let num = |k: &str| c[k].as_f64().map_or("—".into(), |x| x.to_string());
                        println!(
                            "{:<10} {:>9} {:>9} {:>14}  {:>16} {:>12}",
                            name,
                            num("p50_ms"),
                            num("p95_ms"),
                            orig,
                            num("validate_published_us"),
                            num("validate_full_us"),
                        );
                    }
                    println!("the SDK's check (jsonschema, compiled once) of each answer, µs:");
                    for (name, t) in v["validate"].as_object().into_iter().flatten() {
                        let num = |k: &str| t[k].as_f64().map_or("—".into(), |x| x.to_string());
                        println!(
                            "  {name:<16} published {:>6}   full {:>6}",
                            num("published_us"),
                            num("full_us")
                        );
                    }
                }
            }
        }
    }
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        println!("ajv: skipped (no node)");
        return;
    }
    match ajv() {
        Err(e) => println!("ajv: skipped ({e})"),
        Ok(modules) => {
            let out = Command::new("node")
                .arg(here.join("ajv.mjs"))
                .arg(&file)
                .env("VANE_AJV_DIR", &modules)
                .output()
                .unwrap();
            match serde_json::from_slice::<Value>(&out.stdout) {
                Err(e) => println!(
                    "ajv: failed ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Ok(v) => {
                    println!(
                        "{} (compiled once, as the TypeScript SDK does), µs per answer:",
                        v["validator"].as_str().unwrap_or("ajv")
                    );
                    for (name, t) in v["tools"].as_object().into_iter().flatten() {
                        let num = |k: &str| t[k].as_f64().map_or("—".into(), |x| x.to_string());
                        println!(
                            "  {name:<16} published {:>6}   full {:>6}   both accept it: {}",
                            num("published_us"),
                            num("full_us"),
                            t["valid"]
                        );
                    }
                }
            }
        }
    }
}
