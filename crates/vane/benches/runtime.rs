//! Benchmarks of the runtime: what the front adds per call, calls during
//! switches, the time from a worker's death to serving again, memory of
//! front and worker. Run: `cargo bench -p vane --bench runtime`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vane_tools::client::Client;

const BIN: &str = env!("CARGO_BIN_EXE_vane");

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn vane(ws: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--workspace")
        .arg(ws)
        .args(args)
        .output()
        .unwrap()
}

fn health(ws: &Path) -> Value {
    let out = vane(ws, &["workers", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["fronts"][0]["result"].clone()
}

fn worker_with_role(ws: &Path, role: &str) -> Option<Value> {
    health(ws)["workers"]
        .as_array()?
        .iter()
        .find(|w| w["role"] == role && w["alive"] == true)
        .cloned()
}

fn rss_mib(pid: u64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn timed(c: &Client, tool: &str, args: &Value) -> f64 {
    let t = Instant::now();
    let r = c.call(tool, args.clone()).await.unwrap();
    assert_ne!(r.is_error, Some(true), "{tool}: {:?}", r.structured_content);
    t.elapsed().as_secs_f64() * 1e6
}

/// `runtime --relay BIN ARGS…`: the least any front process can cost — a
/// raw byte relay between its stdio and a child (no parsing at all), for
/// comparison with the real front.
fn relay(args: &[String]) {
    use std::io::{Read, Write};
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = child.stdout.take().unwrap();
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_child.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut stdout = std::io::stdout().lock();
    while let Ok(n) = from_child.read(&mut buf) {
        if n == 0
            || stdout
                .write_all(&buf[..n])
                .and_then(|_| stdout.flush())
                .is_err()
        {
            break;
        }
    }
    let _ = up.join();
    let _ = child.wait();
}

/// `runtime --tokio-relay BIN ARGS…`: the same relay on the front's
/// machinery — one current-thread tokio runtime, stdio and the child's pipes
/// on its event loop, whole lines copied — the floor of a front built like
/// ours, before it looks at a message.
fn tokio_relay(args: &[String]) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut child = tokio::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut to_child = child.stdin.take().unwrap();
        let from_child = child.stdout.take().unwrap();
        let (r, mut w) = vane_tools::stdio::transport();
        let up = tokio::spawn(async move {
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0
                    || to_child.write_all(&line).await.is_err()
                {
                    break;
                }
            }
        });
        let mut r = BufReader::new(from_child);
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0
                || w.write_all(&line).await.is_err()
                || w.flush().await.is_err()
            {
                break;
            }
        }
        up.abort();
        let _ = child.wait().await;
    });
}

/// `runtime --echo`: copies stdin to stdout byte by byte (for
/// [`pipe_round_trip`]).
fn echo() {
    use std::io::{Read, Write};
    let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut b = [0u8; 1];
    while matches!(i.read(&mut b), Ok(1)) {
        if o.write_all(&b).and_then(|_| o.flush()).is_err() {
            break;
        }
    }
}

/// Median round trip of one byte to a child process and back over pipes:
/// two wake-ups across processes, nothing else.
fn pipe_round_trip(me: &Path) -> f64 {
    use std::io::{Read, Write};
    let mut child = Command::new(me)
        .arg("--echo")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to = child.stdin.take().unwrap();
    let mut from = child.stdout.take().unwrap();
    let mut b = [0u8; 1];
    let mut v = Vec::with_capacity(20_000);
    for i in 0..21_000 {
        let t = Instant::now();
        to.write_all(b"x").unwrap();
        from.read_exact(&mut b).unwrap();
        if i >= 1000 {
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(to);
    let _ = child.wait();
    median(v)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--echo") {
        return echo();
    }
    if args.get(1).map(String::as_str) == Some("--relay") {
        return relay(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("--tokio-relay") {
        return tokio_relay(&args[2..]);
    }
    bench();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn bench() {
    let d = tempfile::tempdir().unwrap();
    let ws = d.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("file.txt"), "line\n".repeat(200)).unwrap();
    // benchmarks measure speed: no rate limits
    std::fs::write(
        ws.join("vane.toml"),
        "[runtime]\nping_interval_ms = 2000\n[rate_limits]\nenabled = false\n",
    )
    .unwrap();
    let small = "tasks:\n".to_string()
        + &(0..50)
            .map(|i| format!("  - id: S{i}\n    title: t{i}\n"))
            .collect::<String>();
    std::fs::write(ws.join("small.yaml"), small).unwrap();
    let roadmap = ws.join("small.yaml");
    assert!(vane(&ws, &["init", "--roadmap", roadmap.to_str().unwrap()])
        .status
        .success());
    println!(
        "vane runtime benchmarks (release build, {} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let wsa = ws.to_str().unwrap();
    let direct = Client::spawn(Path::new(BIN), &["worker", "--workspace", wsa], &[], true)
        .await
        .unwrap();
    let front = Client::spawn(Path::new(BIN), &["serve", "--workspace", wsa], &[], true)
        .await
        .unwrap();
    let me = std::env::current_exe().unwrap();
    let relayed = Client::spawn(
        &me,
        &["--relay", BIN, "worker", "--workspace", wsa],
        &[],
        true,
    )
    .await
    .unwrap();
    let t = Instant::now();
    front.call_ok("status", json!({})).await.unwrap();
    println!(
        "front: first tool call answered {:.1} ms after initialize (the worker boots behind it)",
        t.elapsed().as_secs_f64() * 1000.0
    );

    // 0. the floor: one bare MCP round trip (ping, answered by the process
    // itself) — what any extra process hop costs on this machine
    let ping = |c: &Client| {
        let peer = c.service.peer().clone();
        async move {
            let t = Instant::now();
            peer.send_request(rmcp::model::ClientRequest::PingRequest(Default::default()))
                .await
                .unwrap();
            t.elapsed().as_secs_f64() * 1e6
        }
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3000 {
        a.push(ping(&direct).await);
        b.push(ping(&front).await);
    }
    println!(
        "bare MCP ping round trip: worker {:.0} µs, front {:.0} µs (the cost of one process hop here)",
        median(a),
        median(b)
    );

    let fpid = health(&ws)["front"]["pid"].as_u64().unwrap();
    let cpu_s = |pid: u64| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map(|x| x.1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    };

    // what one wake-up across processes costs on this machine: on a
    // virtual machine whose idle CPUs halt, far more than on bare metal
    let rtt = pipe_round_trip(&me);
    let halt_poll =
        std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns").ok();
    println!(
        "this machine: one-byte pipe round trip between two processes {rtt:.1} µs median{}",
        halt_poll
            .map(|v| format!(", guest halt polling {} ns", v.trim()))
            .unwrap_or_default()
    );

    // 1. the front's added latency, back to back (blocks of 100 calls to
    // each in turn, so slow drift of the machine hits all three alike) and
    // spaced 2 ms apart (each call finds the processes asleep)
    for (tool, args) in [
        ("status", json!({})),
        ("plan_next", json!({})),
        ("fs_read", json!({ "path": "file.txt" })),
    ] {
        for _ in 0..200 {
            timed(&direct, tool, &args).await;
            timed(&front, tool, &args).await;
            timed(&relayed, tool, &args).await;
        }
        let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let mut cpu = 0.0;
        for _ in 0..30 {
            for _ in 0..100 {
                a.push(timed(&direct, tool, &args).await);
            }
            let c0 = cpu_s(fpid);
            for _ in 0..100 {
                b.push(timed(&front, tool, &args).await);
            }
            cpu += cpu_s(fpid) - c0;
            for _ in 0..100 {
                r.push(timed(&relayed, tool, &args).await);
            }
        }
        let cpu = cpu / 3000.0 * 1e6;
        let (ma, mb, mr) = (median(a), median(b), median(r));
        println!(
            "{tool:<10} back to back: direct {ma:.0} µs, through the front {mb:.0} µs: front adds {:+.0} µs median (target ≤ 50 µs), front CPU {cpu:.0} µs per call; a raw byte relay adds {:+.0} µs",
            mb - ma,
            mr - ma
        );
        let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let gap = Duration::from_millis(2);
        for _ in 0..300 {
            tokio::time::sleep(gap).await;
            a.push(timed(&direct, tool, &args).await);
            tokio::time::sleep(gap).await;
            b.push(timed(&front, tool, &args).await);
            tokio::time::sleep(gap).await;
            r.push(timed(&relayed, tool, &args).await);
        }
        let (ma, mb, mr) = (median(a), median(b), median(r));
        println!(
            "{:<10} 2 ms apart:   direct {ma:.0} µs, through the front {mb:.0} µs: front adds {:+.0} µs median; a raw byte relay adds {:+.0} µs",
            "",
            mb - ma,
            mr - ma
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wpid = worker_with_role(&ws, "active").unwrap()["pid"]
        .as_u64()
        .unwrap();
    println!(
        "memory after 10,500 calls through the front: front {:.1} MiB, its worker {:.1} MiB, a worker alone {:.1} MiB",
        rss_mib(fpid),
        rss_mib(wpid),
        rss_mib(direct.pid.unwrap() as u64)
    );
    relayed.close().await;
    // the floor of a front built like ours: the same event loop, no looking
    let tokio_relayed = Client::spawn(
        &me,
        &["--tokio-relay", BIN, "worker", "--workspace", wsa],
        &[],
        true,
    )
    .await
    .unwrap();
    let args = json!({ "path": "file.txt" });
    let (mut a, mut t) = (Vec::new(), Vec::new());
    for _ in 0..3000 {
        a.push(timed(&direct, "fs_read", &args).await);
        t.push(timed(&tokio_relayed, "fs_read", &args).await);
    }
    println!(
        "fs_read through a tokio line relay (one current-thread runtime, whole lines copied): adds {:.0} µs median",
        median(t) - median(a)
    );
    direct.close().await;
    tokio_relayed.close().await;

    // 2. death → serving again: kill -9 the active worker, then call at once
    let mut recover = Vec::new();
    for _ in 0..20 {
        let pid = worker_with_role(&ws, "active").unwrap()["pid"]
            .as_u64()
            .unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        recover.push(timed(&front, "status", &json!({})).await / 1000.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "kill -9 of the active worker → next call answered: median {:.1} ms, p95 {:.1} ms, max {:.1} ms (target ≤ 200 ms)",
        median(recover.clone()),
        pct(recover.clone(), 0.95),
        pct(recover, 1.0)
    );

    // 3. switches: a canary, promote, then route back and forth while a
    // client calls continuously
    assert!(vane(&ws, &["canary", "start", "--binary", BIN])
        .status
        .success());
    let out = vane(&ws, &["route", "promote"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(
        &Command::new(BIN)
            .args(["--workspace", wsa, "workers", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let promote = v["fronts"][0]["result"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|d| d["action"] == "promote")
        .cloned()
        .unwrap();
    println!(
        "promote: new worker started and ready in {:.1} ms, traffic moved in {} µs",
        promote["start_us"].as_f64().unwrap() / 1000.0,
        promote["switch_us"]
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let wsb = ws.clone();
    let switcher = std::thread::spawn(move || {
        let mut n = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            assert!(vane(&wsb, &["route", "rollback"]).status.success());
            n += 1;
        }
        n
    });
    let mut during = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        during.push(timed(&front, "status", &json!({})).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let switches = switcher.join().unwrap();
    println!(
        "{} calls during {switches} switches in 5 s: median {:.0} µs, p99 {:.0} µs, max {:.1} ms, 0 failed",
        during.len(),
        median(during.clone()),
        pct(during.clone(), 0.99),
        pct(during, 1.0) / 1000.0
    );
    front.close().await;
}
