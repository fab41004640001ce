//! `vane telemetry tail`: follows the operations log as events arrive,
//! across rotations, filtered by kind and tool.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    pub kinds: Vec<String>,
    pub tool: Option<String>,
}

impl TailFilter {
    pub fn matches(&self, v: &serde_json::Value) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| v["kind"] == k.as_str()))
            && self.tool.as_ref().is_none_or(|t| v["tool"] == t.as_str())
    }
}

/// Writes matching lines to `out` until `stop` elapses (forever when `None`).
/// `from_start` replays the current file first.
pub fn follow(
    path: &Path,
    filter: &TailFilter,
    from_start: bool,
    stop: Option<Duration>,
    out: &mut dyn Write,
    json: bool,
) -> std::io::Result<u64> {
    let started = Instant::now();
    let mut written = 0u64;
    let mut reader: Option<(BufReader<std::fs::File>, u64)> = None;
    // a file that appears later is read from its start: nothing written
    // after the tail began is skipped
    let mut first_open = path.exists();
    let mut line = String::new();
    loop {
        if reader.is_none() {
            if let Ok(f) = std::fs::File::open(path) {
                let ino = f.metadata()?.ino();
                let mut r = BufReader::new(f);
                if first_open && !from_start {
                    r.seek(SeekFrom::End(0))?;
                }
                first_open = false;
                reader = Some((r, ino));
            }
        }
        let mut progressed = false;
        if let Some((r, _)) = reader.as_mut() {
            loop {
                line.clear();
                let n = r.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    if n > 0 {
                        // a partial line: wait for the rest
                        let back = n as i64;
                        r.seek_relative(-back)?;
                    }
                    break;
                }
                progressed = true;
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if filter.matches(&v) {
                        if json {
                            out.write_all(line.as_bytes())?;
                        } else {
                            writeln!(out, "{}", human(&v))?;
                        }
                        out.flush()?;
                        written += 1;
                    }
                }
            }
        }
        if stop.is_some_and(|s| started.elapsed() >= s) {
            return Ok(written);
        }
        if !progressed {
            // rotated or recreated: start over on the new file
            if let Some((_, ino)) = &reader {
                let now = std::fs::metadata(path).map(|m| m.ino()).ok();
                if now != Some(*ino) {
                    reader = None;
                    first_open = false;
                    continue;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One readable line per event.
pub fn human(v: &serde_json::Value) -> String {
    let s = |k: &str| match &v[k] {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(x) => x.clone(),
        other => other.to_string(),
    };
    let head = format!("{} {:<9} pid {}", s("ts"), s("kind"), v["process"]["pid"]);
    match v["kind"].as_str() {
        Some("tool_call") => format!(
            "{head} {:<16} {} {:>8.3} ms{}",
            s("tool"),
            if v["ok"] == true { "ok   " } else { "ERROR" },
            v["duration_us"].as_f64().unwrap_or(0.0) / 1000.0,
            if v["ok"] == true {
                String::new()
            } else {
                format!(" {}", s("error_code"))
            }
        ),
        Some("task") => format!(
            "{head} {} {} → {} by {}",
            s("task_id"),
            s("from"),
            s("to"),
            s("actor")
        ),
        Some("critic") => format!(
            "{head} {} {} ({} ms)",
            s("critic"),
            s("status"),
            s("duration_ms")
        ),
        Some("process") => format!("{head} {} {}", s("event"), s("detail")),
        Some("alert") => format!("{head} {}: {}", s("alert"), s("message")),
        _ => format!(
            "{head} {}",
            serde_json::Value::Object(v.as_object().cloned().unwrap_or_default())
        ),
    }
}
