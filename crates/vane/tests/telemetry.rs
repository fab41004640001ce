//! Observability end to end: the operations log from several processes, a
//! real OTLP receiver decoding what vane exports, a Prometheus scrape, the
//! summary and the tail — all against the real binary.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

mod common;

use common::{serve, BIN};

fn workspace(extra_toml: &str) -> (tempfile::TempDir, PathBuf) {
    common::init_workspace(
        extra_toml,
        "tasks:\n  - id: T1\n    title: one\n  - id: T2\n    title: two\n",
        &[("a.txt", "alpha\n")],
    )
}

fn events(ws: &Path) -> Vec<Value> {
    let dir = ws.join(".vane/telemetry");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("operations.jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            out.push(serde_json::from_str::<Value>(line).unwrap_or_else(|e| {
                panic!("torn or invalid line in {}: {e}: {line}", f.display())
            }));
        }
    }
    out
}

/// Thousands of calls from three processes at once, with rotation racing
/// between them: every call is in the log exactly once, every line whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_from_several_processes_is_logged_exactly_once() {
    let (_d, ws) = workspace("[telemetry]\nlog_max_bytes = 200000\nlog_retention = 1000\n");
    let per = 1000;
    let mut handles = Vec::new();
    for p in 0..3 {
        let ws = ws.clone();
        handles.push(tokio::spawn(async move {
            let c = serve(&ws, &[]).await;
            for i in 0..per {
                let tool = ["status", "plan_next", "fs_read"][i % 3];
                let args = if tool == "fs_read" {
                    json!({ "path": "a.txt" })
                } else {
                    json!({})
                };
                c.call_ok(tool, args).await.unwrap();
            }
            c.close().await;
            p
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // the servers flush on exit; give the last one a moment to finish writing
    let mut calls = Vec::new();
    for _ in 0..50 {
        calls = events(&ws)
            .into_iter()
            .filter(|e| e["kind"] == "tool_call")
            .collect();
        if calls.len() >= 3 * per {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(calls.len(), 3 * per, "every call logged once");
    let mut keys: Vec<(String, String)> = calls
        .iter()
        .map(|e| {
            (
                e["session_id"].as_str().unwrap().to_string(),
                e["request_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 3 * per, "no call logged twice");
    let sessions: std::collections::BTreeSet<&str> = calls
        .iter()
        .map(|e| e["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(sessions.len(), 3);
    let rotated = std::fs::read_dir(ws.join(".vane/telemetry"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("operations.jsonl.")
        })
        .count();
    assert!(rotated >= 3, "the log rotated ({rotated} rotated files)");
    for e in &calls {
        assert_eq!(e["v"], 1);
        assert!(e["args_hash"].as_str().unwrap().starts_with("xxh3:"));
        assert!(e["duration_us"].as_u64().is_some());
        assert_eq!(e["trace_id"].as_str().unwrap().len(), 32);
        assert!(
            e.get("content").is_none() && e.get("arguments").is_none(),
            "payloads are not logged"
        );
    }
    let processes: Vec<&Value> = events(&ws)
        .into_iter()
        .filter(|e| e["kind"] == "process")
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .collect();
    // three fronts, each with its worker
    for role in ["front", "worker"] {
        let of = |ev: &str| {
            processes
                .iter()
                .filter(|e| e["event"] == ev && e["process"]["role"] == role)
                .count()
        };
        assert_eq!((of("start"), of("stop")), (3, 3), "{role}");
    }

    // the summary agrees with the log
    let out = std::process::Command::new(BIN)
        .args([
            "--workspace",
            ws.to_str().unwrap(),
            "telemetry",
            "summary",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["totals"]["tool_calls"], 3 * per);
    // i % 3 over 0..1000: 334 status, 333 plan_next, 333 fs_read per process
    assert_eq!(s["tools"]["status"]["calls"], 3 * 334);
    assert_eq!(s["tools"]["fs_read"]["calls"], 3 * 333);
    assert!(s["tools"]["status"]["p95_ms"].as_f64().unwrap() > 0.0);
    assert!(ws.join(".vane/telemetry/metrics_summary.json").exists());
}

#[tokio::test]
async fn task_critic_events_and_redaction() {
    let (_d, ws) = workspace("[critics.ok]\ncommand = \"true\"\n");
    let c = serve(&ws, &[]).await;
    c.call_ok("plan_next", json!({ "claim": { "agent": "a1" } }))
        .await
        .unwrap();
    c.call_ok("critics_run", json!({ "critics": ["ok"] }))
        .await
        .unwrap();
    c.call_ok("plan_update", json!({ "task_id": "T1", "status": "done" }))
        .await
        .unwrap();
    let e = c
        .call_err(
            "fs_read",
            json!({ "path": "notes token=supersecretvalue123" }),
        )
        .await
        .unwrap();
    assert_eq!(e["code"], "not_found");
    c.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ev = events(&ws);
    let tasks: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "task").collect();
    assert!(tasks
        .iter()
        .any(|t| t["task_id"] == "T1" && t["to"] == "in_progress" && t["actor"] == "a1"));
    assert!(tasks
        .iter()
        .any(|t| t["task_id"] == "T1" && t["from"] == "in_progress" && t["to"] == "done"));
    assert!(ev
        .iter()
        .any(|e| e["kind"] == "critic" && e["critic"] == "ok" && e["status"] == "pass"));
    let raw = std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap();
    assert!(
        !raw.contains("supersecretvalue123"),
        "a secret reached the log"
    );
    assert!(raw.contains("[REDACTED]"));
    let err = ev
        .iter()
        .find(|e| e["kind"] == "tool_call" && e["ok"] == false)
        .unwrap();
    assert_eq!(err["error_code"], "not_found");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body.split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// `name{labels} value` lines into (name, labels, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (name, labels) = match head.find('{') {
                Some(i) => (&head[..i], &head[i..]),
                None => (head, ""),
            };
            Some((name.to_string(), labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn prometheus_endpoint_serves_counts_latency_in_flight_and_memory() {
    let (_d, ws) = workspace("");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let c = serve(&ws, &["--metrics-addr", &addr]).await;
    for _ in 0..3 {
        c.call_ok("status", json!({})).await.unwrap();
    }
    c.call_err("fs_read", json!({ "path": "../x" }))
        .await
        .unwrap();
    // status reports this server's last minutes (3 status + 1 error so far)
    let st = c
        .call_ok("status", json!({ "detail": true }))
        .await
        .unwrap();
    assert_eq!(st["recent_calls"]["calls"], 4, "{}", st["recent_calls"]);
    assert_eq!(st["recent_calls"]["error_rate"], 0.25);
    let text = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .unwrap();
    let s = samples(&text);
    let get = |name: &str, has: &[&str]| {
        s.iter()
            .find(|(n, l, _)| n == name && has.iter().all(|h| l.contains(h)))
            .map(|x| x.2)
    };
    assert_eq!(
        get(
            "vane_tool_calls_total",
            &["tool=\"status\"", "outcome=\"ok\""]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        get(
            "vane_tool_calls_total",
            &["tool=\"fs_read\"", "outcome=\"error\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "vane_tool_errors_total",
            &["tool=\"fs_read\"", "code=\"path_outside_workspace\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "vane_tool_call_duration_seconds_count",
            &["tool=\"status\""]
        ),
        Some(4.0)
    );
    assert!(
        get(
            "vane_tool_call_duration_seconds_bucket",
            &["tool=\"status\"", "le=\"+Inf\""]
        ) == Some(4.0)
    );
    assert_eq!(get("vane_tool_calls_in_flight", &[]), Some(0.0));
    assert!(get("vane_process_resident_memory_bytes", &[]).unwrap() > 1_000_000.0);
    c.close().await;
}

type Bodies = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn otlp_receiver() -> (u16, Bodies) {
    use axum::routing::post;
    let got: Bodies = Arc::new(Mutex::new(Vec::new()));
    let g1 = got.clone();
    let g2 = got.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| {
                let g = g1.clone();
                async move {
                    g.lock().unwrap().push(("traces".into(), body.to_vec()));
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        )
        .route(
            "/v1/metrics",
            post(move |body: axum::body::Bytes| {
                let g = g2.clone();
                async move {
                    g.lock().unwrap().push(("metrics".into(), body.to_vec()));
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, got)
}

fn attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            V::StringValue(s) => s.clone(),
            V::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

/// Spans and the duration histogram arrive at a real OTLP/HTTP receiver,
/// with the MCP semantic-convention names and attributes, and the client's
/// `traceparent` as parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_export_reaches_a_real_receiver() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let (port, got) = otlp_receiver().await;
    let (_d, ws) = workspace("");
    let ws2 = ws.clone();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--workspace", ws2.to_str().unwrap()])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let msgs = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "otel-test", "version": "0"}}}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "status", "arguments": {}, "_meta": {"traceparent": format!("00-{trace_id}-{parent_span}-01")}}}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fs_read", "arguments": {"path": "../nope"}}}),
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
        ];
        for m in &msgs {
            writeln!(stdin, "{m}").unwrap();
        }
        stdin.flush().unwrap();
        let mut n = 0;
        let mut line = String::new();
        while n < 4 && out.read_line(&mut line).unwrap() > 0 {
            n += 1;
            line.clear();
        }
        drop(stdin);
        let status = child.wait().unwrap();
        assert!(status.success());
    })
    .await
    .unwrap();
    let bodies = got.lock().unwrap().clone();
    let mut spans = Vec::new();
    let mut metric_names = Vec::new();
    for (kind, body) in &bodies {
        if kind == "traces" {
            let req =
                ExportTraceServiceRequest::decode(body.as_slice()).expect("valid OTLP traces");
            for rs in req.resource_spans {
                let res_attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
                assert_eq!(attr(&res_attrs, "service.name").as_deref(), Some("vane"));
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        } else {
            let req =
                ExportMetricsServiceRequest::decode(body.as_slice()).expect("valid OTLP metrics");
            for rm in req.resource_metrics {
                for sm in rm.scope_metrics {
                    metric_names.extend(sm.metrics.into_iter().map(|m| m.name));
                }
            }
        }
    }
    let status = spans
        .iter()
        .find(|s| s.name == "tools/call status")
        .unwrap_or_else(|| {
            panic!(
                "no status span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(hex(&status.trace_id), trace_id, "traceparent honoured");
    assert_eq!(hex(&status.parent_span_id), parent_span);
    assert_eq!(
        attr(&status.attributes, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        attr(&status.attributes, "gen_ai.tool.name").as_deref(),
        Some("status")
    );
    assert_eq!(
        attr(&status.attributes, "jsonrpc.request.id").as_deref(),
        Some("2")
    );
    assert_eq!(
        attr(&status.attributes, "mcp.protocol.version").as_deref(),
        Some("2025-06-18")
    );
    assert!(attr(&status.attributes, "mcp.session.id").is_some());
    assert_eq!(attr(&status.attributes, "error.type"), None);
    let failed = spans
        .iter()
        .find(|s| s.name == "tools/call fs_read")
        .unwrap();
    assert_eq!(
        attr(&failed.attributes, "error.type").as_deref(),
        Some("tool_error")
    );
    assert!(spans.iter().any(|s| s.name == "tools/list"));
    assert!(spans.iter().any(|s| s.name == "initialize"));
    assert!(
        metric_names
            .iter()
            .any(|n| n == "mcp.server.operation.duration"),
        "{metric_names:?}"
    );
    // the operations log carries the same trace id
    let log = std::fs::read_to_string(ws.join(".vane/telemetry/operations.jsonl")).unwrap();
    assert!(log.contains(trace_id));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn tail_follows_new_events_with_filters() {
    let (_d, ws) = workspace("");
    let ws_s = ws.to_str().unwrap().to_string();
    let tail = std::process::Command::new(BIN)
        .args([
            "--workspace",
            &ws_s,
            "telemetry",
            "tail",
            "--json",
            "--kind",
            "tool_call",
            "--tool",
            "status",
            "--for",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let c = serve(&ws, &[]).await;
    for _ in 0..4 {
        c.call_ok("status", json!({})).await.unwrap();
        c.call_ok("plan_next", json!({})).await.unwrap();
    }
    c.close().await;
    let out = tokio::task::spawn_blocking(move || tail.wait_with_output().unwrap())
        .await
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines
        .iter()
        .all(|l| l["tool"] == "status" && l["kind"] == "tool_call"));
}
