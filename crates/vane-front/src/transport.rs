//! The front's two transports — to its client and to each worker —
//! newline-delimited JSON-RPC read by threads (see `pipes`), and the lane:
//! the path of the message that dominates, a `tools/call` and its answer.
//!
//! rmcp decodes every incoming line as the untagged `ServerResult` enum: serde
//! buffers the whole message into its generic `Content` tree and tries the
//! variants in turn, building an error for each miss. For a tool answer of a
//! few kilobytes that was most of the front's CPU per call (measured with
//! `perf`). So a lane answer (id `f:N`) is taken off the worker's pipe by its
//! number and only skimmed — `isError` and the error code, all the front
//! decides by (`answer::skim`). It travels as an owned value
//! (`answer::Answer`) to whoever writes it, and the client gets the worker's
//! answer byte for byte, decoded and encoded zero times on the way. Anything
//! else takes rmcp's own path.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::answer::{skim, RawAnswer, WorkerAnswer};
use crate::pipes::{LineReader, Out};

/// The rmcp client's transport to one worker. A thread reads the worker's
/// stdout: fast-lane answers go straight to their callers (a thread of the
/// direct path, or a task), everything else to rmcp through a channel.
pub struct WorkerTransport {
    rx: mpsc::UnboundedReceiver<RxJsonRpcMessage<RoleClient>>,
    lane: Arc<Lane>,
}

impl WorkerTransport {
    /// `reader`: the worker's stdout; `writer`: its stdin.
    pub fn new(reader: OwnedFd, writer: OwnedFd, name: String) -> std::io::Result<Self> {
        let lane = Arc::new(Lane {
            out: Out::new(writer),
            pending: Default::default(),
            next: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = LineReader::new(reader);
        let l = lane.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || read_worker(reader, l, tx))?;
        Ok(WorkerTransport { rx, lane })
    }

    /// The fast lane over this transport's pipe.
    pub fn lane(&self) -> Arc<Lane> {
        self.lane.clone()
    }
}

/// The worker's stdout, line by line, until it closes.
fn read_worker(
    mut reader: LineReader,
    lane: Arc<Lane>,
    tx: mpsc::UnboundedSender<RxJsonRpcMessage<RoleClient>>,
) {
    let mut buf = Vec::with_capacity(8 * 1024);
    while reader.next_line(&mut buf) {
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        // a fast-lane answer (string id `f:N`) goes to its caller: in the
        // shape a vane worker writes, the line itself is handed over (its
        // `result` is read once, by the caller); otherwise it is looked at
        // the general way
        let off = line.as_ptr() as usize - buf.as_ptr() as usize;
        if let Some((n, range)) = lane_answer_shape(line) {
            if let Some(w) = lane.take(n) {
                let result = off + range.start..off + range.end;
                let buf = std::mem::replace(&mut buf, Vec::with_capacity(8 * 1024));
                w.deliver(RawAnswer { buf, result });
                continue;
            }
        }
        const LANE_ID: &[u8] = b"\"id\":\"f:";
        if line.starts_with(b"{") && memchr::memmem::find(line, LANE_ID).is_some() {
            if let Ok(IdOnly { id: Some(id) }) = serde_json::from_slice::<IdOnly>(line) {
                let n = id.strip_prefix("f:").and_then(|n| n.parse::<u64>().ok());
                if let Some(w) = n.and_then(|n| lane.take(n)) {
                    w.deliver(RawAnswer {
                        buf: line.to_vec(),
                        result: 0..0,
                    });
                    continue;
                }
            }
        }
        let m = match serde_json::from_slice::<RxJsonRpcMessage<RoleClient>>(line) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(target: "vane::front", "unreadable message from a worker ({e}): {}", String::from_utf8_lossy(&line[..line.len().min(200)]));
                continue;
            }
        };
        // rmcp may be gone (the worker is retiring): keep reading for the lane
        let _ = tx.send(m);
    }
    // the worker is gone: its calls fail over at once
    lane.close();
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

/// A `tools/call` the front forwarded from a thread of its direct path.
/// Whoever takes it off its lane finishes it — the reader of the answer, the
/// reader that saw the worker's end, the front's timeout sweep, or the
/// client's cancellation — exactly once.
pub trait DirectCall: Send {
    fn answered(self: Box<Self>, answer: RawAnswer);
    /// the worker's pipe closed before the answer came
    fn closed(self: Box<Self>);
    fn timed_out(self: Box<Self>);
    fn cancelled(self: Box<Self>);
}

/// Who waits for a lane answer.
pub enum Waiter {
    Task(tokio::sync::oneshot::Sender<RawAnswer>),
    Direct(Box<dyn DirectCall>),
}

impl Waiter {
    fn deliver(self, answer: RawAnswer) {
        match self {
            Waiter::Task(tx) => {
                let _ = tx.send(answer);
            }
            Waiter::Direct(d) => d.answered(answer),
        }
    }
}

/// The worker link's fast lane for `tools/call`: the request is written on
/// the same pipe as rmcp's messages (whole lines, see [`Out`]) with an id of
/// its own (`f:N`), and the answer line is taken off the pipe before rmcp
/// sees it — no rmcp request machinery either way.
pub struct Lane {
    out: Arc<Out>,
    pending: Mutex<HashMap<u64, Waiter>>,
    next: AtomicU64,
    closed: AtomicBool,
}

/// Why a lane call did not produce an answer.
#[derive(Debug)]
pub enum LaneError {
    Closed,
    Timeout,
    Cancelled,
    Protocol(String),
}

impl Lane {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker's stdout closed: every waiter learns it now.
    fn close(&self) {
        let waiters: Vec<Waiter> = {
            let mut p = self.pending();
            self.closed.store(true, Ordering::Release);
            p.drain().map(|(_, w)| w).collect()
        };
        for w in waiters {
            if let Waiter::Direct(d) = w {
                d.closed();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the worker's stdin (it sees EOF and exits cleanly).
    pub fn close_writer(&self) {
        self.out.close();
    }

    /// A number for the next lane call.
    pub fn next_call(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for answer `n`; the waiter comes back if the lane is closed.
    pub fn register(&self, n: u64, w: Waiter) -> Result<(), Waiter> {
        let mut p = self.pending();
        if self.closed.load(Ordering::Acquire) {
            return Err(w);
        }
        p.insert(n, w);
        Ok(())
    }

    /// Takes the waiter of call `n` off the lane, if it is still there.
    pub fn take(&self, n: u64) -> Option<Waiter> {
        self.pending().remove(&n)
    }

    /// The request line of lane call `n`.
    pub fn request_line(n: u64, params: &rmcp::model::CallToolRequestParams) -> Option<Vec<u8>> {
        let mut req = Vec::with_capacity(256);
        req.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":\"f:");
        req.extend_from_slice(n.to_string().as_bytes());
        req.extend_from_slice(b"\",\"method\":\"tools/call\",\"params\":");
        serde_json::to_writer(&mut req, params).ok()?;
        req.extend_from_slice(b"}\n");
        Some(req)
    }

    /// The `notifications/cancelled` line for lane call `n`.
    pub fn cancel_line(n: u64, why: &str) -> Vec<u8> {
        let note = serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": format!("f:{n}"), "reason": why } });
        let mut line = serde_json::to_vec(&note).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Writes a line from a thread that may block; gives up when the lane
    /// closes or `give_up` says so.
    pub fn send_blocking(&self, line: &[u8], give_up: &dyn Fn() -> bool) -> bool {
        self.out
            .line_blocking(line, &|| self.is_closed() || give_up())
            .is_ok()
    }

    /// Writes a line from the event loop.
    pub async fn send(self: &Arc<Self>, line: Vec<u8>) -> bool {
        let lane = Arc::downgrade(self);
        self.out
            .line_async(
                line,
                Arc::new(move || lane.upgrade().is_none_or(|l| l.is_closed())),
            )
            .await
            .is_ok()
    }

    /// One `tools/call` from a task; the answer as its bytes, skimmed.
    pub async fn call(
        self: &Arc<Self>,
        params: &rmcp::model::CallToolRequestParams,
        timeout: Duration,
        ct: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<WorkerAnswer, LaneError> {
        if self.is_closed() {
            return Err(LaneError::Closed);
        }
        let n = self.next_call();
        let Some(req) = Self::request_line(n, params) else {
            return Err(LaneError::Protocol("unserialisable parameters".into()));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.register(n, Waiter::Task(tx)).is_err() {
            return Err(LaneError::Closed);
        }
        if !self.send(req).await {
            self.take(n);
            return Err(LaneError::Closed);
        }
        let cancelled = async {
            match ct {
                Some(ct) => ct.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            r = tokio::time::timeout(timeout, rx) => match r {
                Ok(Ok(answer)) => return WorkerAnswer::read(answer).map_err(LaneError::Protocol),
                Ok(Err(_)) => return Err(LaneError::Closed),
                Err(_) => (LaneError::Timeout, "timeout"),
            },
            _ = cancelled => (LaneError::Cancelled, "cancelled by the client"),
        };
        self.take(n);
        self.send(Self::cancel_line(n, why.1)).await;
        Err(why.0)
    }
}

/// The lane call number and `result` range of a line written the way a
/// vane worker (rmcp, serde) writes an answer:
/// `{"jsonrpc":"2.0","id":"f:N","result":…}` — checked without reading the
/// answer; anything else is `None` and read the general way.
pub(crate) fn lane_answer_shape(line: &[u8]) -> Option<(u64, std::ops::Range<usize>)> {
    const PRE: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":\"f:";
    const MID: &[u8] = b"\",\"result\":";
    let rest = line.strip_prefix(PRE)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || !rest[digits..].starts_with(MID) || line.last() != Some(&b'}')
    {
        return None;
    }
    let n: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let start = PRE.len() + digits + MID.len();
    (start < line.len() - 1).then_some((n, start..line.len() - 1))
}

impl Transport<RoleClient> for WorkerTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let lane = self.lane.clone();
        async move {
            let mut buf = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            if lane.send(buf).await {
                Ok(())
            } else {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        self.rx.recv().await
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        // closing our end of the worker's stdin lets it exit
        self.lane.close_writer();
        std::future::ready(Ok(()))
    }
}

/// What the client's reader thread hands to the event loop.
pub enum Inbound {
    /// a line for rmcp (or the task path)
    Line(Vec<u8>),
    /// a `tools/call` the direct path declined (see [`crate::Front::try_direct`])
    Call(String, Box<rmcp::model::CallToolRequestParams>),
}

/// The front's transport to its client. A thread reads the client's stdin:
/// a `tools/call` after the handshake goes to the worker from that thread
/// ([`crate::Front::try_direct`]) and its answer comes back from the
/// worker's reader thread, on the same [`Out`]; what the direct path
/// declines runs as a task, and everything else is rmcp's.
pub struct ClientTransport {
    rx: mpsc::UnboundedReceiver<Inbound>,
    out: Arc<Out>,
    front: Arc<crate::Front>,
}

impl ClientTransport {
    /// Over this process's stdin and stdout.
    pub fn stdio(front: Arc<crate::Front>) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let r = std::io::stdin().as_fd().try_clone_to_owned()?;
        let w = std::io::stdout().as_fd().try_clone_to_owned()?;
        Self::new(r, w, front)
    }

    pub fn new(
        reader: OwnedFd,
        writer: OwnedFd,
        front: Arc<crate::Front>,
    ) -> std::io::Result<Self> {
        let out = Out::new(writer);
        front.set_client_out(out.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = LineReader::new(reader);
        let f = front.clone();
        std::thread::Builder::new()
            .name("vane-client-in".into())
            .spawn(move || read_client(reader, f, tx))?;
        Ok(ClientTransport { rx, out, front })
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CancelParams<'a> {
    #[serde(rename = "requestId", borrow)]
    request_id: Option<&'a RawValue>,
}

fn trim_line(buf: &[u8]) -> &[u8] {
    let line = buf.trim_ascii();
    line.strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(line)
}

/// Answer bytes a client may leave unread before the front stops taking its
/// requests.
const MAX_UNREAD: usize = 8 << 20;

/// Answers a request line over the cap with a JSON-RPC error (-32600) for
/// its id, when the head of the line names one.
fn too_long(front: &crate::Front, head: &[u8], n: usize, max: usize) {
    let id = request_id_in_head(head).unwrap_or(serde_json::Value::Null);
    tracing::warn!(bytes = n, max, "a request line over the limit was refused");
    let answer = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32600,
            "message": format!("request of {n} bytes is over the limit of {max} bytes ([runtime] max_request_bytes)"),
            "data": { "code": "invalid_input", "bytes": n, "max_bytes": max },
        }
    });
    if let Some(out) = front.client_out.get() {
        let mut line = answer.to_string().into_bytes();
        line.push(b'\n');
        let start = std::time::Instant::now();
        let _ = out.line_blocking(&line, &|| {
            start.elapsed() > std::time::Duration::from_secs(5)
        });
    }
}

/// The `"id"` of a JSON-RPC request from the first bytes of its line (the
/// usual order puts it before `params`).
fn request_id_in_head(head: &[u8]) -> Option<serde_json::Value> {
    let at = memchr::memmem::find(head, b"\"id\"")?;
    let rest = &head[at + 4..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = rest[colon..].strip_prefix(b":")?;
    let mut de = serde_json::Deserializer::from_slice(rest).into_iter::<serde_json::Value>();
    match de.next()? {
        Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::String(_))) => Some(v),
        _ => None,
    }
}

/// The client's stdin, line by line, until it closes.
fn read_client(
    mut reader: LineReader,
    front: Arc<crate::Front>,
    tx: mpsc::UnboundedSender<Inbound>,
) {
    let mut buf = Vec::with_capacity(8 * 1024);
    let max = usize::try_from(front.cfg.max_request_bytes).unwrap_or(usize::MAX);
    loop {
        match reader.next_line_capped(&mut buf, max, 64 * 1024) {
            crate::pipes::Capped::End => break,
            crate::pipes::Capped::Line => {}
            crate::pipes::Capped::TooLong(n) => {
                too_long(&front, &buf, n, max);
                continue;
            }
        }
        let line = trim_line(&buf);
        if line.is_empty() {
            continue;
        }
        // backpressure: while the client leaves answers unread, take no new
        // request from it (nothing else waits on it: answers are queued)
        if let Some(out) = front.client_out.get() {
            while out.pending_len() > MAX_UNREAD && !out.is_closed() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if front
            .stdio_session()
            .is_some_and(|s| s.initialized.load(Ordering::Acquire))
        {
            match serde_json::from_slice::<Incoming>(line) {
                Ok(Incoming {
                    id: Some(id),
                    method: Some(m),
                    params: Some(params),
                }) if m == "tools/call" => {
                    match front.try_direct(id.get(), params) {
                        Ok(None) => continue,
                        Ok(Some(params)) => {
                            let _ = tx.send(Inbound::Call(id.get().to_string(), Box::new(params)));
                            continue;
                        }
                        // not a call: rmcp says why
                        Err(_) => {}
                    }
                }
                Ok(Incoming {
                    id: None,
                    method: Some(m),
                    params: Some(p),
                }) if m == "notifications/cancelled" => {
                    if let Ok(CancelParams {
                        request_id: Some(rid),
                    }) = serde_json::from_str(p.get())
                    {
                        if front.cancel_direct(rid.get()) {
                            continue;
                        }
                    }
                }
                _ => {}
            }
        }
        if tx.send(Inbound::Line(line.to_vec())).is_err() {
            break;
        }
    }
}

impl Transport<rmcp::RoleServer> for ClientTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<rmcp::RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.out.clone();
        async move {
            let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            line.push(b'\n');
            out.line_async(line, Arc::new(|| false)).await
        }
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>> {
        loop {
            let line = match self.rx.recv().await? {
                Inbound::Call(id, params) => {
                    self.front.spawn_call(id, *params);
                    continue;
                }
                Inbound::Line(line) => line,
            };
            let head: Option<Incoming> = serde_json::from_slice(&line).ok();
            if let Some(inc) = &head {
                match (inc.method.as_deref(), inc.id, inc.params) {
                    (Some("tools/call"), Some(id), Some(params))
                        if self
                            .front
                            .stdio_session()
                            .is_some_and(|s| s.initialized.load(Ordering::Acquire)) =>
                    {
                        if let Ok(params) =
                            serde_json::from_str::<rmcp::model::CallToolRequestParams>(params.get())
                        {
                            self.front.spawn_call(id.get().to_string(), params);
                            continue;
                        }
                    }
                    (Some("notifications/cancelled"), None, Some(p)) => {
                        if let Ok(CancelParams {
                            request_id: Some(rid),
                        }) = serde_json::from_str(p.get())
                        {
                            if self.front.cancel_task(rid.get()) {
                                continue;
                            }
                        }
                    }
                    _ => {}
                }
            }
            match serde_json::from_slice::<rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>>(&line)
            {
                Ok(m) => return Some(m),
                Err(e) => match (
                    e.classify(),
                    head.and_then(|h| h.id.map(|i| i.get().to_string())),
                ) {
                    // well-formed JSON that is not a valid request: say so
                    (serde_json::error::Category::Data, Some(id)) => {
                        let msg = serde_json::json!({ "jsonrpc": "2.0", "id": serde_json::from_str::<serde_json::Value>(&id).unwrap_or_default(),
                            "error": { "code": -32600, "message": format!("Invalid request: {e}") } });
                        let mut buf = serde_json::to_vec(&msg).unwrap_or_default();
                        buf.push(b'\n');
                        let _ = self.out.line_async(buf, Arc::new(|| false)).await;
                    }
                    // unparsable input or a notification we do not know: ignored,
                    // as the MCP SDKs do
                    _ => {
                        tracing::debug!(target: "vane::front", "ignoring an incoming message: {e}")
                    }
                },
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        std::future::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_answers_in_a_workers_shape_are_found_without_reading_them() {
        let line = br#"{"jsonrpc":"2.0","id":"f:42","result":{"content":[],"isError":true}}"#;
        let (n, r) = lane_answer_shape(line).unwrap();
        assert_eq!(n, 42);
        assert_eq!(&line[r], br#"{"content":[],"isError":true}"#);
        for other in [
            &br#"{"jsonrpc":"2.0","id":"f:42","error":{"code":-1,"message":"x"}}"#[..],
            br#"{"id":"f:42","jsonrpc":"2.0","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":"f:","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":"f:1x","result":{}}"#,
            br#"{"jsonrpc":"2.0","id":"f:1","result":"#,
            br#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
        ] {
            assert!(
                lane_answer_shape(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        // the caller reads `result` once, and the bytes are kept
        let a = WorkerAnswer::read(RawAnswer {
            buf: line.to_vec(),
            result: lane_answer_shape(line).unwrap().1,
        })
        .unwrap();
        assert!(a.is_error());
        assert_eq!(a.decode().unwrap().is_error, Some(true));
    }
}

/// Entry points for the fuzz targets (`fuzz/`): the front's framing of what
/// a client and a worker send, exactly as the reader threads run it.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Feeds `data` as a client's stdin through the capped line reader and
    /// the decoding the client's reader thread does on each line. Returns
    /// the number of lines and of oversized lines seen.
    pub fn client_input(data: &[u8], max: usize) -> (usize, usize) {
        use std::io::Write;
        let (r, mut w) = std::io::pipe().expect("a pipe");
        let data = data.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
        let mut reader = crate::pipes::LineReader::new(OwnedFd::from(r));
        let (mut lines, mut long) = (0, 0);
        let mut buf = Vec::new();
        loop {
            match reader.next_line_capped(&mut buf, max, 64 * 1024) {
                crate::pipes::Capped::End => break,
                crate::pipes::Capped::TooLong(n) => {
                    assert!(n > max && buf.len() <= 64 * 1024);
                    long += 1;
                    let _ = request_id_in_head(&buf);
                }
                crate::pipes::Capped::Line => {
                    assert!(buf.len() <= max);
                    lines += 1;
                    let line = trim_line(&buf);
                    if let Ok(Incoming { id, method, params }) =
                        serde_json::from_slice::<Incoming>(line)
                    {
                        let _ = (id.map(RawValue::get), method);
                        if let Some(p) = params {
                            let _ = serde_json::from_str::<CancelParams>(p.get());
                            let _ =
                                serde_json::from_str::<rmcp::model::CallToolRequestParams>(p.get());
                        }
                    }
                    let _ = request_id_in_head(line);
                }
            }
        }
        let _ = writer.join();
        (lines, long)
    }

    /// What the worker's reader thread does with one answer line.
    pub fn worker_answer(line: &[u8]) {
        if let Some((_, result)) = lane_answer_shape(line) {
            assert!(result.end <= line.len());
            let _ = skim(&RawAnswer {
                buf: line.to_vec(),
                result,
            });
        }
    }
}
