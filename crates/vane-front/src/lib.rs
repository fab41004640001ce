//! vane's runtime: a stable front process that owns the client's MCP
//! connection and routes to `vane worker` children — blue/green switches with
//! a hot standby, a dry-run canary that shadows read-only calls, crash
//! restarts with safe retries, automatic rollback — and the control socket
//! the CLI drives it through.
#![forbid(unsafe_code)]

pub mod answer;
pub mod compare;
pub mod control;
pub mod front;
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

/// Runs a front over stdio until the client closes it: starts the first
/// worker (`binary worker --workspace …`), the supervisor and the control
/// socket, then answers the client. Workers are drained and stopped on exit.
pub async fn run(
    ctx: Arc<ToolCtx>,
    binary: PathBuf,
    state_dir: Option<PathBuf>,
) -> Result<(), VaneError> {
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
        format!("front for {} over stdio", ctx.ws.root.display()),
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
    front.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(control::token_path(&socket));
    t.emit(
        t.event("process")
            .with("event", "stop")
            .with("detail", reason),
    );
    Ok(())
}
