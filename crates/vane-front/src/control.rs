//! The control socket: `STATE_DIR/run/front-PID.sock` (directory 0700,
//! socket 0600). One JSON request per line, one JSON answer per line; the
//! requests and answers are the types of `vane_core::contract::control`
//! (`{"op": "workers"}`, `{"op": "promote"}`, `{"op": "canary_start",
//! "binary": PATH}`, `{"op": "probe", "tool": NAME, "arguments": {…}}`, …;
//! `{"ok": true, "result": …}` or `{"ok": false, "error": {code, message}}`).
//!
//! Every request carries `"token"`: the contents of `front-PID.token` beside
//! the socket (0600, 32 random bytes, written before the socket is bound).
//! Connecting to a Unix socket needs no write access, so file permissions
//! alone do not keep a process of the same user out; the token does, and the
//! sandbox hides the whole state directory from commands besides (an agent
//! never sees socket or token). Without the token a request is refused with
//! `unauthorized` — the control socket is the operator's, not the agent's:
//! it can start executables as workers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use vane_core::contract::control::{ControlAnswer, ControlEnvelope, ControlRequest};
use vane_core::contract::health::HealthView;
use vane_core::{ErrorCode, VaneError};

use crate::front::Front;

pub fn run_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("run")
}

/// Binds the socket and answers requests until the process ends.
pub fn serve(front: Arc<Front>, state_dir: &Path) -> Result<PathBuf, VaneError> {
    let dir = run_dir(state_dir);
    let io = |e: std::io::Error| {
        VaneError::new(
            ErrorCode::IoError,
            format!("control socket in {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let path = dir.join(format!("front-{}.sock", std::process::id()));
    let token = new_token().map_err(io)?;
    write_token(&token_path(&path), &token).map_err(io)?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let f = front.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = match authorised(&line, &token) {
                        Err(e) => Err(e),
                        Ok(req) => handle(&f, req).await,
                    };
                    let answer = ControlAnswer::from(answer);
                    let mut out = serde_json::to_string(&answer).unwrap_or_else(|e| {
                        format!(r#"{{"ok":false,"error":{{"code":"internal","message":"{e}"}}}}"#)
                    });
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(path)
}

/// The token file of a socket: `front-PID.token` beside `front-PID.sock`.
pub fn token_path(socket: &Path) -> PathBuf {
    socket.with_extension("token")
}

fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())
}

/// Checks a request's `token` against the front's, in constant time, then
/// reads the request.
fn authorised(line: &str, token: &str) -> Result<ControlRequest, VaneError> {
    let given = serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
        .unwrap_or_default();
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    if !same {
        return Err(VaneError::new(
            ErrorCode::Unauthorized,
            "control requests need the front's token (front-PID.token beside the socket, readable by its owner only)",
        ));
    }
    serde_json::from_str::<ControlEnvelope>(line)
        .map(|e| e.request)
        .map_err(|e| {
            VaneError::invalid_input(format!(
                "not a control request ({e}); ops: {}",
                ControlRequest::OPS.join(", ")
            ))
        })
}

async fn handle(front: &Arc<Front>, req: ControlRequest) -> Result<Value, VaneError> {
    let actor = "control-socket";
    let value = |v| {
        serde_json::to_value(v).map_err(|e| VaneError::internal(format!("control answer: {e}")))
    };
    match req {
        ControlRequest::Workers => value(front.health()),
        ControlRequest::Promote => front.promote(actor).await,
        ControlRequest::Rollback => front.rollback(None, actor).await,
        ControlRequest::CanaryStart { binary } => front.canary_start(Path::new(&binary)).await,
        ControlRequest::CanaryStop => front.canary_stop().await,
        ControlRequest::Call { tool, arguments } => front.call_active(&tool, arguments).await,
        ControlRequest::CanaryCall { tool, arguments } => front.call_canary(&tool, arguments).await,
        ControlRequest::Probe { tool, arguments } => front.probe(&tool, arguments).await,
    }
}

/// The live fronts of a state directory (stale sockets are removed).
pub async fn fronts(state_dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(run_dir(state_dir)) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Some(pid) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("front-"))
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if UnixStream::connect(&p).await.is_ok() {
            out.push((pid, p));
        } else {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(token_path(&p));
        }
    }
    out.sort();
    out
}

/// Sends one request to a front and returns its result.
pub async fn request(
    socket: &Path,
    req: &ControlRequest,
    timeout: Duration,
) -> Result<Value, VaneError> {
    let io = |e: std::io::Error| {
        VaneError::new(
            ErrorCode::IoError,
            format!("control socket {}: {e}", socket.display()),
        )
    };
    let token = std::fs::read_to_string(token_path(socket)).map_err(io)?;
    let envelope = ControlEnvelope {
        request: req.clone(),
        token: token.trim().to_string(),
    };
    let go = async {
        let stream = UnixStream::connect(socket).await.map_err(io)?;
        let (r, mut w) = stream.into_split();
        let mut line = serde_json::to_string(&envelope)
            .map_err(|e| VaneError::internal(format!("control request: {e}")))?;
        line.push('\n');
        w.write_all(line.as_bytes()).await.map_err(io)?;
        let mut lines = BufReader::new(r).lines();
        let answer = lines.next_line().await.map_err(io)?.ok_or_else(|| {
            VaneError::new(ErrorCode::IoError, "the front closed the control socket")
        })?;
        serde_json::from_str::<ControlAnswer>(&answer)
            .map_err(|e| VaneError::internal(format!("bad control answer: {e}")))?
            .into_result()
    };
    tokio::time::timeout(timeout, go).await.map_err(|_| {
        VaneError::new(
            ErrorCode::Timeout,
            format!("the front did not answer within {} s", timeout.as_secs()),
        )
    })?
}

/// A front's health view ([`ControlRequest::Workers`]), typed.
pub async fn health(socket: &Path, timeout: Duration) -> Result<HealthView, VaneError> {
    let v = request(socket, &ControlRequest::Workers, timeout).await?;
    serde_json::from_value(v)
        .map_err(|e| VaneError::internal(format!("unreadable health view: {e}")))
}
