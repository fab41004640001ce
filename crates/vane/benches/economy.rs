//! What vane costs an agent's context: bytes (and ≈ tokens, 4 bytes each) of
//! every tool's definition and of typical answers, as a client receives them
//! over real stdio from `vane serve`. Run: `cargo bench -p vane --bench economy`.
//!
//! Issue 14's targets, printed beside each number: `tools/list` ≤ 10 KB for
//! the default tool set; `plan_next` (limit 5, default arguments) whole answer
//! ≤ 1.5 KB and text block ≤ 1 KB on the larger fixture roadmap. (The
//! client-side validation cost with the Python SDK and ajv is not measured
//! here yet.) Sizes do not depend on the build profile.

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

    let answers: [(&str, Value, &str); 4] = [
        (
            "plan_next",
            json!({"limit": 5}),
            "whole ≤ 1.5 KB, text ≤ 1 KB",
        ),
        ("status", json!({}), "—"),
        ("fs_read", json!({"path": "notes.md"}), "—"),
        ("tool_manifest", json!({}), "—"),
    ];
    println!(
        "{:<14} {:>12} {:>12} {:>12}  target",
        "ANSWER", "WHOLE", "TEXT", "STRUCTURED"
    );
    for (name, args, target) in answers {
        let line = s.request("tools/call", json!({"name": name, "arguments": args}));
        let v: Value = serde_json::from_str(&line).unwrap();
        let r = &v["result"];
        let text: usize = r["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .map(str::len)
            .sum();
        let structured = r["structuredContent"].to_string().len();
        println!(
            "{:<14} {:>12} {:>12} {:>12}  {target}",
            name,
            kb(line.len()),
            kb(text),
            kb(structured)
        );
    }
}
