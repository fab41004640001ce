//! The front's transport to a worker: newline-delimited JSON-RPC over the
//! worker's stdin/stdout, for the rmcp client — with a fast path for the
//! message that dominates, a `tools/call` answer.
//!
//! rmcp decodes every incoming line as the untagged `ServerResult` enum: serde
//! buffers the whole message into its generic `Content` tree and tries the
//! variants in turn, building an error for each miss. For a tool answer of a
//! few kilobytes that was most of the front's CPU per call (measured with
//! `perf`). A line that is a response whose `result` has `content` is decoded
//! straight into `CallToolResult` instead; anything else takes rmcp's own path.

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{CallToolResult, JsonRpcMessage, RequestId, ServerResult};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::RoleClient;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

pub struct WorkerTransport<R, W> {
    reader: BufReader<R>,
    writer: Arc<tokio::sync::Mutex<W>>,
    line: Vec<u8>,
}

impl<R, W> WorkerTransport<R, W> {
    pub fn new(reader: R, writer: W) -> Self
    where
        R: AsyncRead,
    {
        WorkerTransport {
            reader: BufReader::with_capacity(64 * 1024, reader),
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            line: Vec::with_capacity(8 * 1024),
        }
    }
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
struct Probe<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

/// A `tools/call` answer decoded directly; `None` for anything else.
pub fn fast_decode(line: &[u8]) -> Option<RxJsonRpcMessage<RoleClient>> {
    let env: Envelope = serde_json::from_slice(line).ok()?;
    if env.method.is_some() {
        return None;
    }
    let (id, result) = (env.id?, env.result?);
    let probe: Probe = serde_json::from_str(result.get()).ok()?;
    probe.content?;
    let r: CallToolResult = serde_json::from_str(result.get()).ok()?;
    Some(JsonRpcMessage::response(ServerResult::CallToolResult(r), id))
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
            w.write_all(&buf).await?;
            w.flush().await
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        async move {
            loop {
                self.line.clear();
                let n = self.reader.read_until(b'\n', &mut self.line).await.ok()?;
                if n == 0 {
                    return None;
                }
                let line = self.line.trim_ascii();
                if line.is_empty() {
                    continue;
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
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let w = self.writer.clone();
        async move { w.lock().await.shutdown().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_answers_take_the_fast_path_and_agree_with_rmcp() {
        let lines = [
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"{\"a\":1}"}],"structuredContent":{"a":1},"isError":false}}"#,
            r#"{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"error"}],"structuredContent":{"error":{"code":"internal"}},"isError":true,"_meta":{"vane/idempotent_replay":true}}}"#,
        ];
        for l in lines {
            let fast = fast_decode(l.as_bytes()).expect("fast path");
            let slow: RxJsonRpcMessage<RoleClient> = serde_json::from_str(l).unwrap();
            assert_eq!(serde_json::to_value(&fast).unwrap(), serde_json::to_value(&slow).unwrap());
        }
        // everything else is left to rmcp
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
    }
}
