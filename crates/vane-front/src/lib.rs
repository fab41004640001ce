//! vane's runtime: a stable front process that owns the client's MCP
//! connection and routes to `vane worker` children — blue/green switches with
//! a hot standby, a dry-run canary that shadows read-only calls, crash
//! restarts with safe retries, automatic rollback — and the control socket
//! the CLI drives it through.
#![forbid(unsafe_code)]

pub mod answer;
pub mod auth;
pub mod compare;
pub mod control;
pub mod front;
pub mod http;
pub mod pipes;
pub mod retry;
pub mod transport;
pub mod upgrades;
pub mod verdict;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use rmcp::ServiceExt;
use vane_core::VaneError;
use vane_tools::ToolCtx;

pub use front::{Front, FrontServer};

/// A started front: its first worker on the way, the supervisor, the
/// control socket and the direct path's timeout sweep running.
struct Started {
    front: Arc<Front>,
    socket: PathBuf,
}

fn start(
    ctx: &Arc<ToolCtx>,
    binary: PathBuf,
    state_dir: Option<PathBuf>,
    over: &str,
) -> Result<Started, VaneError> {
    // a promoted version stays promoted across restarts of the front
    let binary = match upgrades::current_binary(&ctx.paths.state_dir) {
        Some(b) if b != binary => {
            tracing::info!(target: "vane::front", "starting workers from the promoted {} (upgrades/current.json)", b.display());
            b
        }
        _ => binary,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let front = Front::new(ctx.clone(), binary.clone(), state_dir, tx);
    let t = ctx.telemetry.clone();
    t.emit(t.event("process").with("event", "start").with(
        "detail",
        format!("front for {} over {over}", ctx.ws.root.display()),
    ));
    tokio::spawn(front.clone().supervise(rx));
    {
        // once the first worker is ready, contracting migrations it knows may
        // run if nothing older can be using the store
        let front = front.clone();
        tokio::spawn(async move {
            front.clone().ensure_active(binary).await;
            front.contract_when_alone(None, "front_started");
        });
    }
    let socket = control::serve(front.clone(), &ctx.paths.state_dir)?;
    *front.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(socket.clone());
    tokio::spawn(Front::sweep_direct(Arc::downgrade(&front)));
    Ok(Started { front, socket })
}

async fn stop(s: Started, reason: String) {
    s.front.shutdown().await;
    let _ = std::fs::remove_file(&s.socket);
    let _ = std::fs::remove_file(control::token_path(&s.socket));
    let t = &s.front.ctx.telemetry;
    t.emit(
        t.event("process")
            .with("event", "stop")
            .with("detail", reason),
    );
}

/// Runs a front over stdio until the client closes it: starts the first
/// worker (`binary worker --workspace …`), the supervisor and the control
/// socket, then answers the client. Workers are drained and stopped on exit.
pub async fn run(
    ctx: Arc<ToolCtx>,
    binary: PathBuf,
    state_dir: Option<PathBuf>,
) -> Result<(), VaneError> {
    let started = start(&ctx, binary, state_dir, "stdio")?;
    let front = started.front.clone();
    let server = FrontServer::new(front.clone(), front::Access::Local, true);
    let client = transport::ClientTransport::stdio(front.clone())
        .map_err(|e| VaneError::internal(format!("cannot read the client's stdio: {e}")))?;
    let running = server
        .serve(client)
        .await
        .map_err(|e| VaneError::internal(format!("MCP handshake failed: {e}")));
    let reason = match running {
        Ok(running) => format!("{:?}", running.waiting().await),
        Err(e) => e.message,
    };
    stop(started, reason).await;
    Ok(())
}

/// Runs a front over Streamable HTTP (`vane serve --http`) until `ct` is
/// cancelled (SIGINT/SIGTERM): many client sessions through one front.
/// `listen`: the address from the command line, else `[http] listen`.
/// `on_bound` is told the address once the port is open.
pub async fn run_http(
    ctx: Arc<ToolCtx>,
    binary: PathBuf,
    state_dir: Option<PathBuf>,
    listen: Option<String>,
    ct: tokio_util::sync::CancellationToken,
    on_bound: impl FnOnce(&http::Endpoint),
) -> Result<(), VaneError> {
    let cfg = &ctx.config.http;
    let ep = http::Endpoint::resolve(cfg, listen.as_deref())?;
    let (listener, ep) = http::bind(ep).await?;
    let tokens = auth::Tokens::load(cfg, &ctx.ws.root, &ep.resource)?;
    if !ep.addr.ip().is_loopback() && tokens.is_empty() {
        return Err(VaneError::new(
            vane_core::ErrorCode::ConfigInvalid,
            "http: serving a non-loopback address needs tokens ([http] tokens_env or tokens_file)",
        ));
    }
    let started = start(&ctx, binary, state_dir, &format!("http {}", ep.addr))?;
    on_bound(&ep);
    let r = http::serve(started.front.clone(), listener, ep, tokens, ct).await;
    let reason = match &r {
        Ok(()) => "HTTP server stopped".to_string(),
        Err(e) => e.message.clone(),
    };
    stop(started, reason).await;
    r
}
