//! A tool call's answer as the front carries it, as an owned value: either
//! a worker's answer in the bytes it arrived in ([`WorkerAnswer`], skimmed
//! for what the front decides by and otherwise never decoded), or an answer
//! the front made itself (a timeout, a cancellation, its own tools). The
//! client gets a worker's answer byte for byte ([`Answer::line`]); the front
//! decodes one only where it must look inside (shadow comparisons, probes,
//! a client path that needs the typed result).

use rmcp::model::CallToolResult;
use serde::Deserialize;
use serde_json::value::RawValue;

/// A lane answer's bytes: the buffer it arrived in (usually the worker's
/// whole line, moved, never copied) and where its `result` value lies; an
/// empty range means the line is something else (an error answer) and is
/// read the general way.
pub struct RawAnswer {
    pub(crate) buf: Vec<u8>,
    pub(crate) result: std::ops::Range<usize>,
}

impl RawAnswer {
    pub(crate) fn whole(raw: &RawValue) -> RawAnswer {
        let buf = raw.get().as_bytes().to_vec();
        let n = buf.len();
        RawAnswer { buf, result: 0..n }
    }

    /// The `result` value's JSON text.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.result.clone()]
    }
}

/// A worker's answer to a `tools/call`: its bytes and what the front
/// decides by.
pub struct WorkerAnswer {
    raw: RawAnswer,
    is_error: bool,
    code: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
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

impl WorkerAnswer {
    /// Reads a lane answer: a tool result (skimmed), or `Err` with why —
    /// the worker's JSON-RPC error as it wrote it, or what else it is.
    pub fn read(raw: RawAnswer) -> Result<WorkerAnswer, String> {
        let raw = if raw.result.is_empty() {
            let a: Envelope =
                serde_json::from_slice(&raw.buf).map_err(|e| format!("unreadable answer: {e}"))?;
            match (a.result, a.error) {
                (Some(r), _) => RawAnswer::whole(r),
                (None, Some(e)) => return Err(e.get().to_string()),
                _ => return Err("an answer with neither result nor error".into()),
            }
        } else {
            raw
        };
        let (is_error, code) = skim(&raw)?;
        Ok(WorkerAnswer {
            raw,
            is_error,
            code,
        })
    }

    pub fn is_error(&self) -> bool {
        self.is_error
    }

    /// The error code of an `isError` answer.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The answer decoded (for the front's own look inside).
    pub fn decode(&self) -> Result<CallToolResult, String> {
        serde_json::from_slice(self.raw.bytes()).map_err(|e| format!("unreadable answer: {e}"))
    }

    /// The line that answers the client's request `id_raw` with these bytes.
    pub fn line(&self, id_raw: &str) -> Vec<u8> {
        raw_answer_line(id_raw, &self.raw)
    }
}

/// What the front answers a client's `tools/call` with.
pub enum Answer {
    Worker(WorkerAnswer),
    Front(CallToolResult),
}

impl From<CallToolResult> for Answer {
    fn from(r: CallToolResult) -> Self {
        Answer::Front(r)
    }
}

impl Answer {
    pub fn is_error(&self) -> bool {
        match self {
            Answer::Worker(w) => w.is_error,
            Answer::Front(r) => r.is_error == Some(true),
        }
    }

    /// The error code of an `isError` answer.
    pub fn code(&self) -> Option<&str> {
        match self {
            Answer::Worker(w) => w.code(),
            Answer::Front(r) if r.is_error == Some(true) => r
                .structured_content
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str()),
            Answer::Front(_) => None,
        }
    }

    /// The typed result (a worker's answer decoded; one that cannot be is
    /// an `internal` error, said as such).
    pub fn into_result(self) -> CallToolResult {
        match self {
            Answer::Front(r) => r,
            Answer::Worker(w) => w.decode().unwrap_or_else(|why| {
                vane_tools::server::error_result(&vane_core::VaneError::internal(why))
            }),
        }
    }

    /// The structured content and `isError`, for comparing answers.
    pub fn structured(&self) -> (Option<serde_json::Value>, bool) {
        match self {
            Answer::Front(r) => (r.structured_content.clone(), r.is_error == Some(true)),
            Answer::Worker(w) => match w.decode() {
                Ok(r) => (r.structured_content, w.is_error),
                Err(_) => (None, w.is_error),
            },
        }
    }

    /// The line that answers the client's request `id_raw`.
    pub fn line(&self, id_raw: &str) -> Option<Vec<u8>> {
        match self {
            Answer::Worker(w) => Some(w.line(id_raw)),
            Answer::Front(r) => {
                let mut line = Vec::with_capacity(512);
                line.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
                line.extend_from_slice(id_raw.as_bytes());
                line.extend_from_slice(b",\"result\":");
                serde_json::to_writer(&mut line, r).ok()?;
                line.extend_from_slice(b"}\n");
                Some(line)
            }
        }
    }
}

/// The line answering `id_raw` with an answer still in its worker's bytes.
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
        let a: Envelope =
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

    fn shaped(l: &[u8]) -> RawAnswer {
        let (_, result) = crate::transport::lane_answer_shape(l).unwrap();
        RawAnswer {
            buf: l.to_vec(),
            result,
        }
    }

    #[test]
    fn skim_reads_only_what_the_front_decides_by() {
        // a success, with look-alikes inside the content and the structure
        let ok = shaped(br#"{"jsonrpc":"2.0","id":"f:1","result":{"content":[{"type":"text","text":"\"isError\":true"}],"structuredContent":{"isError":true},"isError":false}}"#);
        assert_eq!(skim(&ok).unwrap(), (false, None));
        let e = shaped(br#"{"jsonrpc":"2.0","id":"f:2","result":{"content":[],"structuredContent":{"error":{"code":"internal"}},"isError":true,"_meta":{"vane/idempotent_replay":true}}}"#);
        assert_eq!(skim(&e).unwrap(), (true, Some("internal".to_string())));
        let not_a_tool = shaped(br#"{"jsonrpc":"2.0","id":"f:3","result":{"tools":[]}}"#);
        assert!(skim(&not_a_tool).is_err());
        let rpc_error = RawAnswer {
            buf:
                br#"{"jsonrpc":"2.0","id":"f:4","error":{"code":-32602,"message":"no such tool"}}"#
                    .to_vec(),
            result: 0..0,
        };
        assert!(skim(&rpc_error).unwrap_err().contains("no such tool"));
    }

    /// A worker's answer reaches the client byte for byte, and is decoded
    /// only when the front asks to look inside.
    #[test]
    fn worker_answers_pass_through_as_bytes_and_decode_on_demand() {
        let result = r#"{"content":[{"type":"text","text":"{\"error\":{\"code\":\"internal\"}}"}],"structuredContent":{"error":{"code":"internal","message":"x \"q\""}},"isError":true,"_meta":{"vane/idempotent_replay":true}}"#;
        let line = format!(r#"{{"jsonrpc":"2.0","id":"f:7","result":{result}}}"#);
        let a = Answer::Worker(WorkerAnswer::read(shaped(line.as_bytes())).unwrap());
        assert!(a.is_error());
        assert_eq!(a.code(), Some("internal"));
        let out = a.line("\"client-1\"").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["id"], "client-1");
        assert_eq!(
            v["result"],
            serde_json::from_str::<serde_json::Value>(result).unwrap()
        );
        let (structured, is_error) = a.structured();
        assert!(is_error);
        assert_eq!(structured.unwrap()["error"]["message"], "x \"q\"");
        assert_eq!(a.into_result().is_error, Some(true));
    }

    #[test]
    fn other_shapes_are_read_the_general_way() {
        // a result with its fields in another order: found and skimmed
        let odd = RawAnswer {
            buf: br#"{"id":"f:1","jsonrpc":"2.0","result":{"isError":false,"content":[]}}"#
                .to_vec(),
            result: 0..0,
        };
        let w = WorkerAnswer::read(odd).unwrap();
        assert!(!w.is_error());
        // the worker's JSON-RPC error, as it wrote it
        let e = WorkerAnswer::read(RawAnswer {
            buf: br#"{"jsonrpc":"2.0","id":"f:1","error":{"code":-32602,"message":"bad"}}"#
                .to_vec(),
            result: 0..0,
        })
        .err()
        .unwrap();
        assert!(e.contains("bad"), "{e}");
        // the front's own answers are encoded when written
        let own = Answer::from(vane_tools::server::error_result(
            &vane_core::VaneError::new(vane_core::ErrorCode::Cancelled, "c"),
        ));
        assert_eq!(own.code(), Some("cancelled"));
        let v: serde_json::Value = serde_json::from_slice(&own.line("3").unwrap()).unwrap();
        assert_eq!(v["id"], 3);
        assert_eq!(v["result"]["isError"], true);
    }
}
