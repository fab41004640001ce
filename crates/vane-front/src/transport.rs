//! The front's transport to a worker: newline-delimited JSON-RPC over the
//! worker's stdin/stdout, for the rmcp client — with a fast path for the
//! message that dominates, a `tools/call` answer.
//!
//! rmcp decodes every incoming line as the untagged `ServerResult` enum: serde
//! buffers the whole message into its generic `Content` tree and tries the
//! variants in turn, building an error for each miss. For a tool answer of a
//! few kilobytes that was most of the front's CPU per call (measured with
//! `perf`). So a line that is a response whose `result` has `content` (a tool
//! answer) is only skimmed — `isError` and the error code, all the front
//! decides by — and handed to rmcp as a small stub carrying a token; the
//! answer's bytes wait in a table and [`RawWriter`], under rmcp's writer to
//! the client, puts them back in place of the stub. The client gets the
//! worker's answer byte for byte, decoded and encoded zero times on the way.
//! Anything else takes rmcp's own path.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolResult, JsonRpcMessage, RequestId, ServerResult};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

pub struct WorkerTransport<R, W> {
    reader: BufReader<R>,
    writer: Arc<tokio::sync::Mutex<Option<W>>>,
    line: Vec<u8>,
    lane: Arc<Lane<W>>,
}

impl<R, W> WorkerTransport<R, W> {
    pub fn new(reader: R, writer: W) -> Self
    where
        R: AsyncRead,
    {
        let writer = Arc::new(tokio::sync::Mutex::new(Some(writer)));
        WorkerTransport {
            reader: BufReader::with_capacity(64 * 1024, reader),
            lane: Arc::new(Lane {
                writer: writer.clone(),
                pending: Default::default(),
                next: AtomicU64::new(1),
                closed: Default::default(),
            }),
            writer,
            line: Vec::with_capacity(8 * 1024),
        }
    }

    /// The fast lane over this transport's pipe.
    pub fn lane(&self) -> Arc<Lane<W>> {
        self.lane.clone()
    }
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

/// The worker link's fast lane for `tools/call`: the request is written on
/// the same pipe as rmcp's messages (whole lines, under the same lock) with an
/// id of its own (`f:N`), and the answer line is taken off the pipe before
/// rmcp sees it — no rmcp request machinery either way.
pub struct Lane<W> {
    writer: Arc<tokio::sync::Mutex<Option<W>>>,
    pending:
        std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<RawAnswer>>>,
    next: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
}

/// Why a lane call did not produce an answer.
#[derive(Debug)]
pub enum LaneError {
    Closed,
    Timeout,
    Cancelled,
    Protocol(String),
}

impl<W: AsyncWrite + Unpin + Send> Lane<W> {
    fn pending(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<u64, tokio::sync::oneshot::Sender<RawAnswer>>,
    > {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending().clear();
    }

    async fn write_line(&self, v: &serde_json::Value) -> bool {
        let Ok(mut line) = serde_json::to_vec(v) else {
            return false;
        };
        line.push(b'\n');
        self.write_bytes(&line).await
    }

    async fn write_bytes(&self, line: &[u8]) -> bool {
        let mut w = self.writer.lock().await;
        match w.as_mut() {
            Some(w) => w.write_all(line).await.is_ok() && w.flush().await.is_ok(),
            None => false,
        }
    }

    /// Closes the worker's stdin (it sees EOF and exits cleanly).
    pub async fn close_writer(&self) {
        let w = self.writer.lock().await.take();
        drop(w);
    }

    /// One `tools/call`; the answer as a stub (see [`stub_from`]).
    pub async fn call(
        &self,
        params: &rmcp::model::CallToolRequestParams,
        timeout: Duration,
        ct: Option<&tokio_util::sync::CancellationToken>,
    ) -> Result<CallToolResult, LaneError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LaneError::Closed);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending().insert(n, tx);
        let mut req = Vec::with_capacity(256);
        req.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":\"f:");
        req.extend_from_slice(n.to_string().as_bytes());
        req.extend_from_slice(b"\",\"method\":\"tools/call\",\"params\":");
        if serde_json::to_writer(&mut req, params).is_err() {
            self.pending().remove(&n);
            return Err(LaneError::Protocol("unserialisable parameters".into()));
        }
        req.extend_from_slice(b"}\n");
        if !self.write_bytes(&req).await {
            self.pending().remove(&n);
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
        self.pending().remove(&n);
        let note = serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": format!("f:{n}"), "reason": why.1 } });
        self.write_line(&note).await;
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

/// The front's stdout: rmcp writes whole lines; a line that answers a call
/// with a stub is rewritten to carry the worker's answer bytes instead.
pub struct RawWriter<W> {
    inner: W,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
}

impl<W> RawWriter<W> {
    pub fn new(inner: W) -> Self {
        RawWriter {
            inner,
            input: Vec::with_capacity(8 * 1024),
            output: Vec::with_capacity(8 * 1024),
            written: 0,
        }
    }

    fn rewrite(&mut self) {
        while let Some(end) = self.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.input.drain(..=end).collect();
            match substitute(&line[..line.len() - 1]) {
                Some(l) => {
                    self.output.extend_from_slice(&l);
                    self.output.push(b'\n');
                }
                None => self.output.extend_from_slice(&line),
            }
        }
    }
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

fn substitute(line: &[u8]) -> Option<Vec<u8>> {
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

impl<W: AsyncWrite + Unpin> RawWriter<W> {
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.written < self.output.len() {
            match std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.output[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.output.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for RawWriter<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        // backpressure: earlier output goes first
        match self.drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        self.input.extend_from_slice(buf);
        self.rewrite();
        // start writing at once; what the pipe does not take now waits for a flush
        if let Poll::Ready(Err(e)) = self.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        match self.drain(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        // a partial last line is written as it is
        if !self.input.is_empty() {
            let rest = std::mem::take(&mut self.input);
            self.output.extend_from_slice(&rest);
        }
        match self.drain(cx) {
            Poll::Ready(Ok(())) => std::pin::Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

impl<R, W> Transport<RoleClient> for WorkerTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let w = self.writer.clone();
        async move {
            let mut buf = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            let mut w = w.lock().await;
            let w = w
                .as_mut()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
            w.write_all(&buf).await?;
            w.flush().await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            self.line.clear();
            let n: usize = self
                .reader
                .read_until(b'\n', &mut self.line)
                .await
                .unwrap_or_default();
            if n == 0 {
                // the worker is gone: fast-lane calls fail over at once
                self.lane.close();
                return None;
            }
            let line = self.line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            // a fast-lane answer (string id `f:N`) goes to its caller: in
            // the shape a vane worker writes, the line itself is handed
            // over (its `result` is read once, by the caller); otherwise
            // it is looked at the general way
            let off = line.as_ptr() as usize - self.line.as_ptr() as usize;
            if let Some((n, range)) = lane_answer_shape(line) {
                let waiter = self.lane.pending().remove(&n);
                if let Some(tx) = waiter {
                    let result = off + range.start..off + range.end;
                    let buf = std::mem::replace(&mut self.line, Vec::with_capacity(8 * 1024));
                    let _ = tx.send(RawAnswer { buf, result });
                    continue;
                }
            }
            const LANE_ID: &[u8] = b"\"id\":\"f:";
            if line.starts_with(b"{") && memchr::memmem::find(line, LANE_ID).is_some() {
                if let Ok(IdOnly { id: Some(id) }) = serde_json::from_slice::<IdOnly>(line) {
                    let n = id.strip_prefix("f:").and_then(|n| n.parse::<u64>().ok());
                    let waiter = n.and_then(|n| self.lane.pending().remove(&n));
                    if let Some(tx) = waiter {
                        let _ = tx.send(RawAnswer {
                            buf: line.to_vec(),
                            result: 0..0,
                        });
                        continue;
                    }
                }
            }
            if let Some(m) = fast_decode(line) {
                return Some(m);
            }
            match serde_json::from_slice::<RxJsonRpcMessage<RoleClient>>(line) {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::warn!(target: "vane::front", "unreadable message from a worker ({e}): {}", String::from_utf8_lossy(&line[..line.len().min(200)]));
                }
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        // dropping the writer closes the worker's stdin
        let w = self.writer.clone();
        async move {
            drop(w.lock().await.take());
            Ok(())
        }
    }
}

/// The front's transport to its client: rmcp gets every message except a
/// `tools/call` after the handshake, which the fast lane runs straight
/// through [`crate::Front::handle_call`] and answers on the same writer (a
/// [`RawWriter`], so a worker's answer goes out as its own bytes). A client's
/// `notifications/cancelled` for such a call cancels it.
pub struct ClientTransport<R, W> {
    reader: BufReader<R>,
    writer: Arc<tokio::sync::Mutex<RawWriter<W>>>,
    line: Vec<u8>,
    front: Arc<crate::Front>,
    inflight: Arc<
        std::sync::Mutex<std::collections::HashMap<String, tokio_util::sync::CancellationToken>>,
    >,
}

impl<R: AsyncRead, W> ClientTransport<R, W> {
    pub fn new(reader: R, writer: W, front: Arc<crate::Front>) -> Self {
        ClientTransport {
            reader: BufReader::with_capacity(64 * 1024, reader),
            writer: Arc::new(tokio::sync::Mutex::new(RawWriter::new(writer))),
            line: Vec::with_capacity(8 * 1024),
            front,
            inflight: Default::default(),
        }
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

async fn write_line<W: AsyncWrite + Unpin>(
    w: &tokio::sync::Mutex<W>,
    line: &[u8],
) -> std::io::Result<()> {
    let mut w = w.lock().await;
    w.write_all(line).await?;
    w.flush().await
}

impl<R, W> Transport<rmcp::RoleServer> for ClientTransport<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<rmcp::RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let w = self.writer.clone();
        async move {
            let mut buf = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            write_line(&w, &buf).await
        }
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .await
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            let mut line = self.line.trim_ascii();
            line = line
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let head: Option<Incoming> = serde_json::from_slice(line).ok();
            if let Some(inc) = &head {
                match (inc.method.as_deref(), inc.id, inc.params) {
                    (Some("tools/call"), Some(id), Some(params))
                        if self.front.initialized.load(Ordering::Acquire) =>
                    {
                        if let Ok(params) =
                            serde_json::from_str::<rmcp::model::CallToolRequestParams>(params.get())
                        {
                            self.spawn_call(id.get().to_string(), params);
                            continue;
                        }
                    }
                    (Some("notifications/cancelled"), None, Some(p)) => {
                        if let Ok(CancelParams {
                            request_id: Some(rid),
                        }) = serde_json::from_str(p.get())
                        {
                            let t = self
                                .inflight
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(rid.get());
                            if let Some(t) = t {
                                t.cancel();
                                continue;
                            }
                        }
                    }
                    _ => {}
                }
            }
            match serde_json::from_slice::<rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>>(line)
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
                        let _ = write_line(&self.writer, &buf).await;
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
        let w = self.writer.clone();
        async move { w.lock().await.shutdown().await }
    }
}

impl<R, W> ClientTransport<R, W>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    fn spawn_call(&self, id_raw: String, params: rmcp::model::CallToolRequestParams) {
        let ct = tokio_util::sync::CancellationToken::new();
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id_raw.clone(), ct.clone());
        let (front, writer, inflight) = (
            self.front.clone(),
            self.writer.clone(),
            self.inflight.clone(),
        );
        tokio::spawn(async move {
            let request_id = match serde_json::from_str::<serde_json::Value>(&id_raw) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(v) => v.to_string(),
                Err(_) => id_raw.clone(),
            };
            let (r, done) = front
                .handle_call_deferred(params, ct.clone(), request_id)
                .await;
            inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id_raw);
            if ct.is_cancelled() {
                // the client withdrew the request: no answer is due
                discard(&r);
                return;
            }
            let raw = token_of(&r)
                .and_then(|t| raw_table().remove(&t))
                .map(|(_, raw)| raw);
            let mut line = Vec::with_capacity(raw.as_ref().map_or(512, |r| r.bytes().len() + 64));
            line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
            line.extend_from_slice(id_raw.as_bytes());
            line.extend_from_slice(b",\"result\":");
            match raw {
                // the worker's answer, as its bytes
                Some(raw) => line.extend_from_slice(raw.bytes()),
                None => {
                    if serde_json::to_writer(&mut line, &r).is_err() {
                        return;
                    }
                }
            }
            line.extend_from_slice(b"}\n");
            let _ = write_line(&writer, &line).await;
            // bookkeeping after the answer is on its way
            if let Some(done) = done {
                front.finish_call(done, &r);
            }
        });
    }
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
