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
//! decides by ([`skim`]). On the direct path its bytes go to the client as
//! they are; on the task path it becomes a small stub carrying a token, the
//! bytes wait in a table, and the client's transport puts them back in place
//! of the stub ([`substitute`], [`answer_line`]). Either way the client gets
//! the worker's answer byte for byte, decoded and encoded zero times on the
//! way. Anything else takes rmcp's own path.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, JsonRpcMessage, RequestId, ServerResult};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

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
        let m = match fast_decode(line) {
            Some(m) => m,
            None => match serde_json::from_slice::<RxJsonRpcMessage<RoleClient>>(line) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(target: "vane::front", "unreadable message from a worker ({e}): {}", String::from_utf8_lossy(&line[..line.len().min(200)]));
                    continue;
                }
            },
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

#[derive(Deserialize)]
struct Envelope<'a> {
    id: Option<RequestId>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Lite<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(rename = "isError")]
    is_error: Option<bool>,
    #[serde(rename = "structuredContent", borrow)]
    structured: Option<LiteStructured<'a>>,
}

#[derive(Deserialize)]
struct LiteStructured<'a> {
    #[serde(borrow)]
    error: Option<LiteError<'a>>,
}

#[derive(Deserialize)]
struct LiteError<'a> {
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
}

/// Worker answers waiting to be written to the client as they are, by token.
/// Entries are taken when the answer is written, materialised, or discarded
/// (a retried fault); stragglers (an answer nobody waited for any more) are
/// pruned after two minutes.
type RawTable = BTreeMap<u64, (Instant, RawAnswer)>;

/// A tool answer's bytes: the buffer it arrived in (usually the worker's
/// whole line, moved, never copied) and where its `result` value lies.
pub struct RawAnswer {
    buf: Vec<u8>,
    result: std::ops::Range<usize>,
}

impl RawAnswer {
    fn whole(raw: &RawValue) -> RawAnswer {
        let buf = raw.get().as_bytes().to_vec();
        let n = buf.len();
        RawAnswer { buf, result: 0..n }
    }
    /// The `result` value's JSON text.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.result.clone()]
    }
}
static RAW: std::sync::Mutex<RawTable> = std::sync::Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
const RAW_KEY: &str = "vane/raw";

fn raw_table() -> std::sync::MutexGuard<'static, RawTable> {
    RAW.lock().unwrap_or_else(|e| e.into_inner())
}

fn stash(raw: RawAnswer) -> u64 {
    let token = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut t = raw_table();
    while let Some((&k, (at, _))) = t.iter().next() {
        if at.elapsed() < Duration::from_secs(120) {
            break;
        }
        t.remove(&k);
    }
    t.insert(token, (Instant::now(), raw));
    token
}

fn token_of(r: &CallToolResult) -> Option<u64> {
    r.meta.as_ref()?.0.get(RAW_KEY)?.as_u64()
}

/// The full answer behind a stub, decoded, leaving the bytes for the client.
pub fn peek(r: &CallToolResult) -> Option<CallToolResult> {
    let token = token_of(r)?;
    let t = raw_table();
    let raw = &t.get(&token)?.1;
    serde_json::from_slice(raw.bytes()).ok()
}

/// The full answer (for the front's own use); its bytes are not written.
pub fn materialize(r: CallToolResult) -> CallToolResult {
    let Some(token) = token_of(&r) else {
        return r;
    };
    let raw = raw_table().remove(&token);
    raw.and_then(|(_, raw)| serde_json::from_slice(raw.bytes()).ok())
        .unwrap_or(r)
}

/// Drops the bytes of an answer the front will not pass on.
pub fn discard(r: &CallToolResult) {
    if let Some(token) = token_of(r) {
        raw_table().remove(&token);
    }
}

/// A `tools/call` answer as a small stub — `isError`, the error code, and a
/// token for its bytes, which go to the client unchanged; `None` for
/// anything else.
pub fn fast_decode(line: &[u8]) -> Option<RxJsonRpcMessage<RoleClient>> {
    let env: Envelope = serde_json::from_slice(line).ok()?;
    if env.method.is_some() {
        return None;
    }
    let (id, result) = (env.id?, env.result?);
    let stub = stub_from(result)?;
    Some(JsonRpcMessage::response(
        ServerResult::CallToolResult(stub),
        id,
    ))
}

/// A tool answer's stub: `isError`, the error code, a token for its bytes.
fn stub_from(result: &RawValue) -> Option<CallToolResult> {
    stub_of(RawAnswer::whole(result))
}

/// The stub of an answer whose bytes are `raw` (one pass over them).
fn stub_of(raw: RawAnswer) -> Option<CallToolResult> {
    let lite: Lite = serde_json::from_slice(raw.bytes()).ok()?;
    lite.content?;
    let mut stub = CallToolResult::success(Vec::new());
    stub.is_error = lite.is_error;
    if let Some(code) = lite.structured.and_then(|s| s.error).and_then(|e| e.code) {
        stub.structured_content = Some(serde_json::json!({ "error": { "code": code } }));
    }
    let token = stash(raw);
    let mut meta = serde_json::Map::new();
    meta.insert(RAW_KEY.into(), token.into());
    stub.meta = Some(rmcp::model::MetaObject(meta));
    Some(stub)
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

    /// One `tools/call` from a task; the answer as a stub (see [`stub_from`]).
    pub async fn call(
        self: &Arc<Self>,
        params: &rmcp::model::CallToolRequestParams,
        timeout: Duration,
        ct: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<CallToolResult, LaneError> {
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
                Ok(Ok(answer)) => return decode_answer(answer),
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

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// A lane answer: its `result` range was found by the reader; an empty one
/// means the line is something else (an error answer) and is read here.
fn decode_answer(answer: RawAnswer) -> Result<CallToolResult, LaneError> {
    if !answer.result.is_empty() {
        return stub_of(answer)
            .ok_or_else(|| LaneError::Protocol("the answer is not a tool result".into()));
    }
    let a: Answer = serde_json::from_slice(&answer.buf)
        .map_err(|e| LaneError::Protocol(format!("unreadable answer: {e}")))?;
    match (a.result, a.error) {
        (Some(r), _) => stub_from(r)
            .ok_or_else(|| LaneError::Protocol("the answer is not a tool result".into())),
        (None, Some(e)) => Err(LaneError::Protocol(e.get().to_string())),
        _ => Err(LaneError::Protocol(
            "an answer with neither result nor error".into(),
        )),
    }
}

/// The lane call number and `result` range of a line written the way a
/// vane worker (rmcp, serde) writes an answer:
/// `{"jsonrpc":"2.0","id":"f:N","result":…}` — checked without reading the
/// answer; anything else is `None` and read the general way.
fn lane_answer_shape(line: &[u8]) -> Option<(u64, std::ops::Range<usize>)> {
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

#[derive(Deserialize)]
struct StubLine<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    result: StubResult,
}

#[derive(Deserialize)]
struct StubResult {
    #[serde(rename = "_meta")]
    meta: std::collections::HashMap<String, u64>,
}

/// A line rmcp wrote for the client that answers a call with a stub,
/// rewritten to carry the worker's answer bytes instead.
pub fn substitute(line: &[u8]) -> Option<Vec<u8>> {
    // stubs are small; anything else is not worth a look
    // (a stub is under 300 bytes plus the client's request id)
    if line.len() > 8192 || memchr::memmem::find(line, RAW_KEY.as_bytes()).is_none() {
        return None;
    }
    let stub: StubLine = serde_json::from_slice(line).ok()?;
    let token = *stub.result.meta.get(RAW_KEY)?;
    let (_, raw) = raw_table().remove(&token)?;
    let mut out = Vec::with_capacity(raw.bytes().len() + 64);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(stub.id.get().as_bytes());
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(raw.bytes());
    out.push(b'}');
    Some(out)
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
        if front.initialized.load(Ordering::Acquire) {
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
            let buf = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            let mut line = substitute(&buf).unwrap_or(buf);
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
                        if self.front.initialized.load(Ordering::Acquire) =>
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

/// A tool answer's line for the client: `{"jsonrpc":"2.0","id":ID,"result":…}`
/// with the worker's bytes when `r` is a stub, else `r` encoded.
pub fn answer_line(id_raw: &str, r: &CallToolResult) -> Option<Vec<u8>> {
    let raw = token_of(r)
        .and_then(|t| raw_table().remove(&t))
        .map(|(_, raw)| raw);
    let mut line = Vec::with_capacity(raw.as_ref().map_or(512, |r| r.bytes().len() + 64));
    line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    line.extend_from_slice(id_raw.as_bytes());
    line.extend_from_slice(b",\"result\":");
    match raw {
        Some(raw) => line.extend_from_slice(raw.bytes()),
        None => serde_json::to_writer(&mut line, r).ok()?,
    }
    line.extend_from_slice(b"}\n");
    Some(line)
}

/// The same for an answer still in its worker's bytes.
pub fn raw_answer_line(id_raw: &str, raw: &RawAnswer) -> Vec<u8> {
    let mut line = Vec::with_capacity(raw.bytes().len() + id_raw.len() + 40);
    line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    line.extend_from_slice(id_raw.as_bytes());
    line.extend_from_slice(b",\"result\":");
    line.extend_from_slice(raw.bytes());
    line.extend_from_slice(b"}\n");
    line
}

/// What the front decides by in a lane answer, without decoding it:
/// `isError` and the error code; an error response or anything that is not
/// a tool result is `Err` with why.
pub fn skim(answer: &RawAnswer) -> Result<(bool, Option<String>), String> {
    if answer.result.is_empty() {
        let a: Answer =
            serde_json::from_slice(&answer.buf).map_err(|e| format!("unreadable answer: {e}"))?;
        return Err(match (a.result, a.error) {
            (_, Some(e)) => e.get().to_string(),
            _ => "the answer is not a tool result".into(),
        });
    }
    // A vane worker writes a result's fields in rmcp's order — `content`,
    // `structuredContent`, `isError`, `_meta` (its own `vane/` keys) — so
    // the last `"isError":` is the result's own; a success is known
    // without reading the answer. Anything else is read.
    let b = answer.bytes();
    if let Some(at) = memchr::memmem::rfind(b, b"\"isError\":") {
        if b[at + 10..].starts_with(b"false") {
            return Ok((false, None));
        }
    }
    let lite: Lite = serde_json::from_slice(b).map_err(|e| format!("unreadable answer: {e}"))?;
    if lite.content.is_none() {
        return Err("the answer is not a tool result".into());
    }
    let is_error = lite.is_error == Some(true);
    let code = if is_error {
        lite.structured
            .and_then(|s| s.error)
            .and_then(|e| e.code)
            .map(|c| c.into_owned())
    } else {
        None
    };
    Ok((is_error, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub_of(m: RxJsonRpcMessage<RoleClient>) -> (RequestId, CallToolResult) {
        match m {
            JsonRpcMessage::Response(r) => match r.result {
                ServerResult::CallToolResult(c) => (r.id, c),
                _ => panic!("not a tool answer"),
            },
            _ => panic!("not a response"),
        }
    }

    #[test]
    fn tool_answers_pass_through_as_bytes() {
        let result = r#"{"content":[{"type":"text","text":"{\"error\":{\"code\":\"internal\"}}"}],"structuredContent":{"error":{"code":"internal","message":"x \"q\""}},"isError":true,"_meta":{"vane/idempotent_replay":true}}"#;
        let line = format!(r#"{{"jsonrpc":"2.0","id":7,"result":{result}}}"#);
        let (id, stub) = stub_of(fast_decode(line.as_bytes()).expect("fast path"));
        assert_eq!(stub.is_error, Some(true));
        assert_eq!(
            stub.structured_content.as_ref().unwrap()["error"]["code"],
            "internal"
        );
        // the full answer, for the front's own use, without taking it
        let full = peek(&stub).unwrap();
        assert_eq!(
            full.structured_content.unwrap()["error"]["message"],
            "x \"q\""
        );
        // what rmcp writes for the stub becomes the worker's bytes
        let msg: rmcp::service::TxJsonRpcMessage<rmcp::RoleServer> =
            JsonRpcMessage::response(ServerResult::CallToolResult(stub.clone()), id);
        let out = serde_json::to_vec(&msg).unwrap();
        let rewritten = substitute(&out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(
            v["result"],
            serde_json::from_str::<serde_json::Value>(result).unwrap()
        );
        // taken once
        assert!(substitute(&out).is_none());
        assert!(peek(&stub).is_none());
    }

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
        // the caller reads `result` once: the stub, and the bytes kept
        let stub = decode_answer(RawAnswer {
            buf: line.to_vec(),
            result: lane_answer_shape(line).unwrap().1,
        })
        .unwrap();
        assert_eq!(stub.is_error, Some(true));
        assert_eq!(materialize(stub).is_error, Some(true));
        // an error answer is read the general way
        let e = decode_answer(RawAnswer {
            buf: br#"{"jsonrpc":"2.0","id":"f:1","error":{"code":-32602,"message":"bad"}}"#
                .to_vec(),
            result: 0..0,
        })
        .unwrap_err();
        assert!(matches!(e, LaneError::Protocol(m) if m.contains("bad")));
    }

    #[test]
    fn skim_reads_only_what_the_front_decides_by() {
        let raw = |l: &[u8]| {
            let (_, result) = lane_answer_shape(l).unwrap();
            RawAnswer {
                buf: l.to_vec(),
                result,
            }
        };
        // a success, with look-alikes inside the content and the structure
        let ok = raw(br#"{"jsonrpc":"2.0","id":"f:1","result":{"content":[{"type":"text","text":"\"isError\":true"}],"structuredContent":{"isError":true},"isError":false}}"#);
        assert_eq!(skim(&ok).unwrap(), (false, None));
        let e = raw(br#"{"jsonrpc":"2.0","id":"f:2","result":{"content":[],"structuredContent":{"error":{"code":"internal"}},"isError":true,"_meta":{"vane/idempotent_replay":true}}}"#);
        assert_eq!(skim(&e).unwrap(), (true, Some("internal".to_string())));
        let not_a_tool = raw(br#"{"jsonrpc":"2.0","id":"f:3","result":{"tools":[]}}"#);
        assert!(skim(&not_a_tool).is_err());
        let rpc_error = RawAnswer {
            buf:
                br#"{"jsonrpc":"2.0","id":"f:4","error":{"code":-32602,"message":"no such tool"}}"#
                    .to_vec(),
            result: 0..0,
        };
        assert!(skim(&rpc_error).unwrap_err().contains("no such tool"));
    }

    #[test]
    fn materialize_and_discard_free_the_bytes() {
        let line =
            r#"{"jsonrpc":"2.0","id":"a","result":{"content":[],"structuredContent":{"n":1}}}"#;
        let (_, stub) = stub_of(fast_decode(line.as_bytes()).unwrap());
        assert!(stub.structured_content.is_none());
        let full = materialize(stub.clone());
        assert_eq!(full.structured_content.unwrap()["n"], 1);
        assert!(peek(&stub).is_none());
        let (_, stub) = stub_of(fast_decode(line.as_bytes()).unwrap());
        discard(&stub);
        assert!(peek(&stub).is_none());
    }

    #[test]
    fn everything_else_is_left_to_rmcp() {
        for l in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"not json"#,
        ] {
            assert!(fast_decode(l.as_bytes()).is_none(), "{l}");
        }
        assert!(substitute(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#).is_none());
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
