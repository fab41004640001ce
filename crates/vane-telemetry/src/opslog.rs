//! The operations log writer.
//!
//! `emit` serialises the event and hands the line to a bounded queue with
//! `try_send`: it never waits. A background thread drains the queue in
//! batches and appends each batch with one `write` under an exclusive file
//! lock, so lines from several processes never interleave. Before writing it
//! checks the size: past `max_bytes` the file is rotated
//! (`operations.jsonl` → `.1` → … → `.N`, the oldest dropped), and a writer
//! whose file was rotated by another process reopens the path. Events that do
//! not fit in the queue are counted; the count is written as an `alert` event
//! as soon as there is room, so a loss is never silent.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fs4::fs_std::FileExt;

use crate::event::{now_ts, Event, ProcessInfo, ToolCall};

/// Rotation settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    pub retention: usize,
    pub queue_capacity: usize,
}

/// How often the writer drains the queue.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);

enum Msg {
    Event(Box<Event>),
    ToolCall(Box<(String, ToolCall)>),
    Flush(SyncSender<()>),
}

pub struct OpsLog {
    tx: Mutex<Option<SyncSender<Msg>>>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    process: ProcessInfo,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl OpsLog {
    pub fn open(cfg: LogConfig, process: ProcessInfo) -> std::io::Result<Arc<OpsLog>> {
        if let Some(dir) = cfg.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (tx, rx) = sync_channel::<Msg>(cfg.queue_capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            cfg: cfg.clone(),
            file: None,
            ino: 0,
            dropped: dropped.clone(),
            reported: 0,
            written: written.clone(),
            process: process.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("vane-opslog".into())
            .spawn(move || writer.run(rx))?;
        Ok(Arc::new(OpsLog {
            tx: Mutex::new(Some(tx)),
            dropped,
            written,
            process,
            thread: Mutex::new(Some(thread)),
            path: cfg.path,
        }))
    }

    pub fn process(&self) -> &ProcessInfo {
        &self.process
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues an event; never blocks. Returns false when it was dropped.
    pub fn emit(&self, event: Event) -> bool {
        self.send(Msg::Event(Box::new(event)))
    }

    /// Queues a tool call; it is serialised on the writer thread.
    pub fn emit_tool_call(&self, call: ToolCall) -> bool {
        self.send(Msg::ToolCall(Box::new((now_ts(), call))))
    }

    fn send(&self, msg: Msg) -> bool {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return false;
        };
        match tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events written so far by this process.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        let sent = {
            let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            // a blocking send: flush is for shutdown and tests, not the hot path
            guard
                .as_ref()
                .map(|t| t.send(Msg::Flush(tx)).is_ok())
                .unwrap_or(false)
        };
        if sent {
            let _ = rx.recv();
        }
    }

    /// Flushes and stops the writer thread.
    pub fn shutdown(&self) {
        self.flush();
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    cfg: LogConfig,
    file: Option<File>,
    ino: u64,
    dropped: Arc<AtomicU64>,
    reported: u64,
    written: Arc<AtomicU64>,
    process: ProcessInfo,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            // Poll on a timer instead of blocking in `recv`: a sender never has
            // to wake this thread, which keeps `emit` to a queue push.
            let mut flushes = Vec::new();
            let mut lines = 0u64;
            let mut disconnected = false;
            let process = self.process.clone();
            while buf.len() < 1024 * 1024 {
                match rx.try_recv() {
                    Ok(Msg::Event(e)) => {
                        buf.extend_from_slice(&e.to_line());
                        lines += 1;
                    }
                    Ok(Msg::ToolCall(c)) => {
                        buf.extend_from_slice(&c.1.to_line(&c.0, &process));
                        lines += 1;
                    }
                    Ok(Msg::Flush(done)) => flushes.push(done),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let full = buf.len() >= 1024 * 1024;
            if let Some(alert) = self.drop_alert() {
                buf.extend_from_slice(&alert);
            }
            if !buf.is_empty() {
                if let Err(e) = self.append_lines(&buf) {
                    eprintln!("vane: operations log write failed: {e}");
                } else {
                    self.written.fetch_add(lines, Ordering::Relaxed);
                }
                buf.clear();
            }
            for f in flushes {
                let _ = f.send(());
            }
            if disconnected {
                break;
            }
            if !full {
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        // drops counted after the last batch are still reported
        if let Some(alert) = self.drop_alert() {
            let _ = self.append(&alert);
        }
    }

    /// The `alert` line for drops not reported yet, if any.
    fn drop_alert(&mut self) -> Option<Vec<u8>> {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped <= self.reported {
            return None;
        }
        let n = dropped - self.reported;
        self.reported = dropped;
        let ev = Event::new("alert", &self.process)
            .with("alert", "telemetry_dropped")
            .with(
                "message",
                format!("{n} events dropped: the telemetry queue was full"),
            )
            .with("value", n)
            .with("threshold", self.cfg.queue_capacity as u64);
        Some(ev.to_line())
    }

    fn open(&mut self) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)?;
        self.ino = f.metadata()?.ino();
        self.file = Some(f);
        Ok(())
    }

    /// Appends whole lines in pieces no larger than the rotation size.
    fn append_lines(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let max = self.cfg.max_bytes.max(1) as usize;
        let mut start = 0;
        while start < buf.len() {
            let mut end = (start + max).min(buf.len());
            if end < buf.len() {
                // back up to the end of the last whole line in the piece
                match buf[start..end].iter().rposition(|b| *b == b'\n') {
                    Some(i) => end = start + i + 1,
                    None => {
                        end = start
                            + buf[start..]
                                .iter()
                                .position(|b| *b == b'\n')
                                .map(|i| i + 1)
                                .unwrap_or(buf.len() - start)
                    }
                }
            }
            self.append(&buf[start..end])?;
            start = end;
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        for _ in 0..3 {
            let f = self.file.as_ref().expect("opened above");
            f.lock_exclusive()?;
            // another process may have rotated the file since we opened it
            let current = std::fs::metadata(&self.cfg.path).map(|m| m.ino()).ok();
            if current != Some(self.ino) {
                let _ = FileExt::unlock(f);
                self.open()?;
                continue;
            }
            let size = f.metadata()?.len();
            if size > 0 && size + bytes.len() as u64 > self.cfg.max_bytes {
                self.rotate();
                let _ = FileExt::unlock(self.file.as_ref().expect("opened"));
                self.open()?;
                continue;
            }
            let mut f = self.file.as_ref().expect("opened above");
            let r = f.write_all(bytes);
            let _ = FileExt::unlock(f);
            return r;
        }
        Err(std::io::Error::other("log kept rotating under us"))
    }

    fn rotate(&self) {
        let p = &self.cfg.path;
        let name = |i: usize| PathBuf::from(format!("{}.{i}", p.display()));
        if self.cfg.retention == 0 {
            let _ = std::fs::remove_file(p);
            return;
        }
        let _ = std::fs::remove_file(name(self.cfg.retention));
        for i in (1..self.cfg.retention).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        let _ = std::fs::rename(p, name(1));
    }
}

/// The log files of `path`, oldest first (rotated ones included).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = Vec::new();
    if let (Some(dir), Some(stem)) = (path.parent(), path.file_name().and_then(|s| s.to_str())) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(i) = n
                    .strip_prefix(stem)
                    .and_then(|r| r.strip_prefix('.'))
                    .and_then(|r| r.parse::<usize>().ok())
                {
                    rotated.push((i, e.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, max: u64, cap: usize) -> LogConfig {
        LogConfig {
            path: dir.join("operations.jsonl"),
            max_bytes: max,
            retention: 3,
            queue_capacity: cap,
        }
    }

    #[test]
    fn every_event_lands_once_and_rotation_keeps_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = ProcessInfo::current("test", "0");
        let log = OpsLog::open(cfg(d.path(), 20_000, 100_000), p.clone()).unwrap();
        for i in 0..1000 {
            assert!(log.emit(Event::new("tool_call", &p).with("n", i)));
        }
        log.shutdown();
        let files = log_files(&d.path().join("operations.jsonl"));
        assert_eq!(files.len(), 4, "current + 3 rotated: {files:?}");
        let mut seen = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(std::fs::metadata(f).unwrap().len() <= 20_000);
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                seen.push(v["n"].as_u64().unwrap());
            }
        }
        // the oldest rotated files were dropped by retention; what remains is a
        // contiguous, duplicate-free tail of the sequence
        let first = seen[0];
        assert_eq!(seen, (first..1000).collect::<Vec<_>>());
    }

    #[test]
    fn overflow_is_counted_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let p = ProcessInfo::current("test", "0");
        let log = OpsLog::open(cfg(d.path(), 1 << 30, 4), p.clone()).unwrap();
        let mut ok = 0;
        for i in 0..5000 {
            if log.emit(Event::new("tool_call", &p).with("n", i)) {
                ok += 1;
            }
        }
        let dropped = log.dropped();
        assert!(
            dropped > 0,
            "a 4-slot queue must overflow under 5000 events"
        );
        assert_eq!(ok + dropped, 5000);
        log.shutdown();
        let text = std::fs::read_to_string(d.path().join("operations.jsonl")).unwrap();
        let reported: u64 = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "alert")
            .map(|v| v["value"].as_u64().unwrap())
            .sum();
        assert_eq!(reported, dropped, "every drop is reported");
    }
}
