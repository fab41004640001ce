//! Argument parsing and dispatch.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vane_core::contract::control::ControlRequest;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use vane_core::{ErrorCode, VaneError};
use vane_tools::ctx::{load_config, state_paths};
use vane_tools::{ToolCtx, VaneServer};

use crate::render;

#[derive(Parser)]
#[command(name = "vane", version, about = "The MCP orchestrator server for AI coding agents", long_about = None)]
struct Cli {
    /// Workspace directory (default: the current directory)
    #[arg(long, short = 'w', global = true, env = "VANE_WORKSPACE")]
    workspace: Option<PathBuf>,
    /// State directory (default: WORKSPACE/.vane, or state_dir in vane.toml)
    #[arg(long, global = true, env = "VANE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create vane.toml and the state directory (optionally importing a roadmap)
    Init {
        #[arg(long)]
        roadmap: Option<PathBuf>,
        /// Keep the store in this PostgreSQL database (postgres://USER@HOST:PORT/DB; its
        /// password in VANE_STORE_PASSWORD), shared by fronts on several hosts, instead
        /// of the state directory's SQLite file. Written to vane.toml as [store] url.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The store itself: where it is (info), moving a SQLite store into PostgreSQL (copy)
    #[command(subcommand)]
    Store(crate::store_cli::StoreCmd),
    /// Serve MCP over stdio (what `claude mcp add` and Codex run), or over
    /// Streamable HTTP to many clients at once (`--http`)
    Serve(ServeArgs),
    /// Serve MCP over stdio as a worker (the tool server itself; a front drives it)
    Worker(ServeArgs),
    /// The running fronts' workers: role, version, pid, memory, calls, circuit, shadow results
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Move a running front's traffic: promote the canary, or roll back to the standby
    Route {
        #[arg(value_parser = ["promote", "rollback"])]
        action: String,
        /// Only the front with this pid (default: every front of the workspace)
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Start or stop a dry-run canary in a running front
    #[command(subcommand)]
    Canary(CanaryCmd),
    /// Check that an upgrade may start: git clean, toolchain, disk, store, sandbox, secrets, front, lock
    Preflight {
        #[arg(long)]
        json: bool,
    },
    /// Upgrade the running front to a new vane build (or: upgrade status | abort)
    Upgrade(UpgradeCli),
    /// Secrets and credential hygiene: workspace files (tracked and untracked), git history
    /// (--history), vane's state, vane.toml, credential files, permissions, what commands'
    /// environment holds. Exits 3 at or above --fail-on.
    Audit {
        /// Also scan every line ever added in git history
        #[arg(long)]
        history: bool,
        /// Lowest severity that fails: critical, high, medium, low (default: [audit] fail_on, high)
        #[arg(long, value_parser = ["critical", "high", "medium", "low"])]
        fail_on: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Store schema: apply this vane's expand migrations (default), show where the store
    /// stands, validate a private copy, or apply contracting migrations
    Migrate {
        /// Only show where the store stands (nothing is changed)
        #[arg(long, conflicts_with_all = ["contract", "check"])]
        status: bool,
        /// Also apply contracting migrations (refused while a front runs: it does this
        /// itself once no older worker can be left)
        #[arg(long, conflicts_with = "check")]
        contract: bool,
        /// Migrate this database file (a private copy named vane.db), contract migrations
        /// included, then check it and read it back through the store
        #[arg(long, value_name = "DB")]
        check: Option<PathBuf>,
        /// Try every pending migration (contract included) on the live store and undo it:
        /// on PostgreSQL in one transaction rolled back, on SQLite on a private copy
        #[arg(long, conflicts_with_all = ["status", "contract", "check"])]
        rehearse: bool,
        /// The front asking for the contract step (its own socket is not a blocker)
        #[arg(long, hide = true)]
        front_pid: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// The operations log: summary and live tail
    #[command(subcommand)]
    Telemetry(TelemetryCmd),
    /// Live flags: every running vane process sees a change on its next call
    #[command(subcommand)]
    Flags(FlagsCmd),
    /// Bearer tokens for `vane serve --http`
    #[command(subcommand, name = "http-token")]
    HttpToken(HttpTokenCmd),
    /// Workspace status: progress, claims, checkpoint, failing critics
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Ready tasks in plan order (optionally claim one)
    Next {
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long)]
        epic: Option<String>,
        #[arg(long)]
        milestone: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// Claim the first ready task for this agent
        #[arg(long)]
        claim: Option<String>,
        #[arg(long)]
        ttl: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Tasks
    #[command(subcommand)]
    Task(TaskCmd),
    /// Critics
    #[command(subcommand)]
    Critics(CriticsCmd),
    /// Roadmap import, export, show
    #[command(subcommand)]
    Roadmap(RoadmapCmd),
    /// The tool manifest (schemas, annotations)
    Tools {
        #[arg(long)]
        json: bool,
    },
    /// Dispatch ready tasks to agent providers: claim, prompt, run, critics, done
    Run {
        /// One task, then stop
        #[arg(long)]
        once: bool,
        /// Stop after this many tasks
        #[arg(long)]
        max_tasks: Option<usize>,
        /// Runners working at once (default: [dispatch] parallel)
        #[arg(long)]
        parallel: Option<usize>,
        /// Only this provider
        #[arg(long)]
        provider: Option<String>,
        /// Only tasks of this epic
        #[arg(long)]
        epic: Option<String>,
        /// Assemble prompts and choose providers; claim, call and change nothing
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Dispatch providers: configuration and health (or: providers reset NAME)
    Providers {
        #[command(subcommand)]
        cmd: Option<ProvidersCmd>,
        #[arg(long)]
        json: bool,
    },
    /// The cost ledger
    #[command(subcommand)]
    Cost(CostCmd),
    /// Build a sample workspace, start `vane serve`, and walk through a session as an MCP client
    Demo {
        /// Keep the sample workspace instead of deleting it
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Subcommand)]
enum ProvidersCmd {
    /// Put a provider back in rotation now (after fixing its login or configuration)
    Reset { name: String },
}

#[derive(Subcommand)]
enum CostCmd {
    /// Spend by provider, model, task, day or outcome (this VANE_ENV unless --all-envs)
    Summary {
        /// Only attempts started within this long (30m, 24h, 7d)
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value = "provider", value_parser = ["provider", "model", "task", "day", "outcome"])]
        by: String,
        #[arg(long)]
        all_envs: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464)
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Serve MCP over Streamable HTTP at ADDR (default: [http] listen,
    /// 127.0.0.1:8731) instead of stdio; the endpoint is http://ADDR/mcp
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "")]
    http: Option<String>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct UpgradeCli {
    #[command(subcommand)]
    cmd: Option<UpgradeSub>,
    /// The new vane executable
    #[arg(long, conflicts_with_all = ["git", "patch"])]
    binary: Option<PathBuf>,
    /// A git revision of this repository to build (in a worktree) and test
    #[arg(long, conflicts_with = "patch")]
    git: Option<String>,
    /// A patch to apply to HEAD (in a worktree), then build and test
    #[arg(long)]
    patch: Option<PathBuf>,
    /// Shadow window (e.g. 60s, 2m; default [upgrade] shadow_s)
    #[arg(long)]
    shadow: Option<String>,
    /// Observation window after promotion (e.g. 10m; default [upgrade] observe_s)
    #[arg(long)]
    observe: Option<String>,
    /// Shadow samples needed to promote (default [upgrade] min_shadow_samples)
    #[arg(long)]
    min_samples: Option<u64>,
    /// Flag to flip after promotion, KEY=VALUE (repeatable, applied in order)
    #[arg(long = "flip")]
    flips: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum UpgradeSub {
    /// The newest upgrade's progress or report
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Ask the running upgrade to stop (it rolls back if it already promoted)
    Abort,
}

#[derive(Subcommand)]
enum CanaryCmd {
    /// Start `BINARY worker` with VANE_DRY_RUN=1 and shadow read-only calls to it
    Start {
        #[arg(long)]
        binary: PathBuf,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Stop the canary
    Stop {
        #[arg(long)]
        pid: Option<u32>,
    },
}

#[derive(Subcommand)]
enum HttpTokenCmd {
    /// A new random token: its SHA-256 is appended to [http] tokens_file
    /// (only the hash is stored); the token is printed once
    New {
        /// grant the admin scope (admin tools; the ADMIN_TOOLS flag still decides)
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum FlagsCmd {
    /// Every flag: effective and stored value, allowed values, last change
    List {
        #[arg(long)]
        json: bool,
    },
    /// One flag's effective value
    Get { key: String },
    /// Set a flag (validated)
    Set { key: String, value: String },
    /// Remove a flag (back to its default)
    Unset { key: String },
    /// DISABLE_NEW: `on` makes every flag fall back to its safe value
    KillSwitch {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(Subcommand)]
enum TelemetryCmd {
    /// Aggregate the operations log (rotated files included) into metrics_summary.json
    Summary {
        /// Only events newer than this (90s, 15m, 1h, 2d)
        #[arg(long)]
        since: Option<String>,
        /// Where to write the summary (default: STATE_DIR/telemetry/metrics_summary.json)
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Follow events as they are written
    Tail {
        /// Only these kinds (tool_call, task, critic, flag, process, alert); repeatable
        #[arg(long = "kind")]
        kinds: Vec<String>,
        #[arg(long)]
        tool: Option<String>,
        /// Replay the current log file first
        #[arg(long)]
        from_start: bool,
        /// Stop after this many seconds (default: follow until interrupted)
        #[arg(long = "for")]
        for_s: Option<u64>,
        /// Raw JSON lines instead of a readable form
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TaskCmd {
    /// Change status, notes, owner or priority of a task
    Update(TaskUpdateArgs),
    /// Show one task with its history
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TaskUpdateArgs {
    id: String,
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    notes: Option<String>,
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    priority: Option<String>,
    #[arg(long)]
    expected_version: Option<i64>,
    #[arg(long)]
    force: bool,
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CriticsCmd {
    /// Run critics: by name, --all, --paths, or those matching git changes
    Run {
        names: Vec<String>,
        #[arg(long)]
        all: bool,
        #[arg(long, num_args = 1..)]
        paths: Vec<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RoadmapCmd {
    /// Import a roadmap file (upstream YAML format); reports dangling dependencies and cycles
    Import {
        file: PathBuf,
        /// Remove tasks that are not in the file
        #[arg(long)]
        prune: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the roadmap in the upstream YAML format (stdout or --out)
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show the roadmap as a table
    Show {
        #[arg(long)]
        json: bool,
    },
}

/// stderr, with secrets masked: the fmt layer writes each event in one call.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(vane_telemetry::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // rmcp logs whole messages (tool arguments and results) at debug: only
    // when asked for by name (`VANE_LOG=debug,rmcp=debug`)
    let spec = std::env::var("VANE_LOG").unwrap_or_else(|_| "warn".into());
    let spec = if spec.contains("rmcp") {
        spec
    } else {
        format!("{spec},rmcp=info")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // stdout belongs to the protocol: every log goes to stderr, through the
    // same redaction as every other writer
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        .with_target(false)
        .init();
    // One thread is enough for a stdio server whose store work is sub-millisecond
    // and whose slow work (commands, critics) is async; it keeps memory low.
    // An HTTP front serves many clients at once: a thread per core.
    let http = matches!(&cli.cmd, Cmd::Serve(a) if a.http.is_some());
    let built = if http {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The OTLP exporter's HTTP client is blocking: start it outside the runtime.
    let otel = match &cli.cmd {
        Cmd::Serve(_) | Cmd::Worker(_) => {
            let endpoint = load_config(&workspace(&cli)).ok().and_then(|c| {
                c.telemetry
                    .otlp_endpoint
                    .clone()
                    .map(|e| (e, c.telemetry.service_name.clone()))
            });
            let service = endpoint
                .as_ref()
                .map(|e| e.1.clone())
                .unwrap_or_else(|| "vane".into());
            match vane_telemetry::otel::Otel::init(
                endpoint.as_ref().map(|e| e.0.as_str()),
                &service,
                vane_tools::ctx::VERSION,
                "server",
            ) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "OpenTelemetry export disabled");
                    vane_telemetry::otel::Otel::disabled()
                }
            }
        }
        _ => vane_telemetry::otel::Otel::disabled(),
    };
    let code = match rt.block_on(run(cli, otel)) {
        Ok(code) => code,
        Err(e) => {
            render::print_error(&e);
            ExitCode::from(1)
        }
    };
    drop(rt);
    if let Some(t) = TELEMETRY.get() {
        t.shutdown();
    }
    code
}

/// The process's telemetry, flushed after the runtime stops.
static TELEMETRY: std::sync::OnceLock<Arc<vane_telemetry::Telemetry>> = std::sync::OnceLock::new();

fn workspace(cli: &Cli) -> PathBuf {
    cli.workspace.clone().unwrap_or_else(|| PathBuf::from("."))
}

fn open(cli: &Cli) -> Result<Arc<ToolCtx>, VaneError> {
    open_as(cli, "cli", vane_telemetry::otel::Otel::disabled())
}

fn open_as(
    cli: &Cli,
    role: &str,
    otel: vane_telemetry::otel::Otel,
) -> Result<Arc<ToolCtx>, VaneError> {
    open_with(cli, role, otel, vane_store::OpenMode::Write)
}

fn open_with(
    cli: &Cli,
    role: &str,
    otel: vane_telemetry::otel::Otel,
    mode: vane_store::OpenMode,
) -> Result<Arc<ToolCtx>, VaneError> {
    let ctx = ToolCtx::open_mode(&workspace(cli), cli.state_dir.as_deref(), mode)?;
    let t = vane_tools::ctx::open_telemetry(&ctx.config, &ctx.paths, role, otel);
    let ctx = ctx.with_telemetry(t);
    let _ = TELEMETRY.set(ctx.telemetry.clone());
    Ok(Arc::new(ctx))
}

async fn call(ctx: &Arc<ToolCtx>, tool: &str, args: Value) -> Result<Value, VaneError> {
    let reg = vane_tools::handlers::registry();
    let Value::Object(m) = args else {
        return Err(VaneError::internal("arguments must be an object"));
    };
    reg.call(ctx, tool, Some(m)).await.result
}

/// A call the operator makes from the command line: the same registry and
/// pipeline as an agent's call, admin tools allowed whatever the flag.
async fn operator_call(ctx: &Arc<ToolCtx>, tool: &str, args: Value) -> Result<Value, VaneError> {
    let reg = vane_tools::handlers::registry();
    let Value::Object(m) = args else {
        return Err(VaneError::internal("arguments must be an object"));
    };
    reg.call_as(ctx, tool, Some(m), vane_tools::registry::Caller::Operator)
        .await
        .result
}

fn emit(json_out: bool, v: &Value, table: impl FnOnce(&Value) -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", table(v));
    }
}

/// Writes the default `vane.toml` when the workspace has none. The sandbox
/// mounts the file read-only, so an agent's command cannot change vane's
/// settings — but it could *create* one (sandbox off, another state
/// directory) for the next worker to read; a file that exists closes that.
fn ensure_config_file(ws: &Path) -> Result<(), VaneError> {
    let p = ws.join(vane_tools::confine::CONFIG_FILE);
    if p.exists() || !ws.is_dir() {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
    {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(vane_core::config::DEFAULT_TOML.as_bytes())
                .map_err(|e| VaneError::new(ErrorCode::IoError, format!("{}: {e}", p.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(VaneError::new(
            ErrorCode::IoError,
            format!("{}: {e}", p.display()),
        )),
    }
}

/// Refuses a command that only makes sense in a vane workspace when the
/// state directory has no store: like `git status` outside a repository, a
/// look creates nothing. `init`, `serve`/`worker` (which create what they
/// need), `demo` and `tools` are the exceptions.
fn require_workspace(cli: &Cli) -> Result<(), VaneError> {
    if matches!(
        cli.cmd,
        Cmd::Init { .. } | Cmd::Serve(_) | Cmd::Worker(_) | Cmd::Demo { .. } | Cmd::Tools { .. }
    ) {
        return Ok(());
    }
    let paths = paths_of(cli)?;
    if paths.db().is_file() {
        return Ok(());
    }
    // a checkout of a workspace whose store is in PostgreSQL: `vane init`
    // made its state directory (the database itself may be anywhere)
    if paths.store.is_some() && paths.state_dir.is_dir() {
        return Ok(());
    }
    Err(VaneError::new(
        ErrorCode::NotAWorkspace,
        format!(
            "not a vane workspace: {} has no store ({} does not exist)",
            paths.workspace.display(),
            paths.db().display()
        ),
    )
    .with_details(json!({ "workspace": paths.workspace, "store": paths.db() })))
}

async fn run(cli: Cli, otel: vane_telemetry::otel::Otel) -> Result<ExitCode, VaneError> {
    let mut otel = Some(otel);
    require_workspace(&cli)?;
    match &cli.cmd {
        Cmd::Init {
            roadmap,
            store,
            json,
        } => {
            let v = init(
                &workspace(&cli),
                cli.state_dir.as_deref(),
                roadmap.as_deref(),
                store.as_deref(),
            )?;
            emit(*json, &v, render::init);
        }
        Cmd::Store(cmd) => {
            let root = workspace(&cli);
            let root = root.canonicalize().unwrap_or(root);
            let (v, ok) = crate::store_cli::run(cmd, &root, cli.state_dir.as_deref())?;
            match cmd {
                crate::store_cli::StoreCmd::Copy { json, .. } => {
                    emit(*json, &v, crate::store_cli::render_copy)
                }
                crate::store_cli::StoreCmd::Info { json } => {
                    emit(*json, &v, crate::store_cli::render_info)
                }
            }
            if !ok {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Serve(a) | Cmd::Worker(a) => {
            // VANE_DRY_RUN=1: a canary that opens the store read-only and
            // refuses every mutation
            let dry_run = std::env::var("VANE_DRY_RUN")
                .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
            if !dry_run {
                ensure_config_file(&workspace(&cli))?;
            }
            let config = load_config(&workspace(&cli))?;
            let as_front = matches!(cli.cmd, Cmd::Serve(_))
                && config.runtime.front
                && !dry_run
                && std::env::var("VANE_NO_FRONT").map_or(true, |v| v.is_empty() || v == "0");
            let role = if as_front {
                "front"
            } else if dry_run {
                "dry-run"
            } else if std::env::var_os("VANE_WORKER_ID").is_some() {
                "worker"
            } else {
                "server"
            };
            let ctx = open_with(
                &cli,
                role,
                otel.take()
                    .unwrap_or_else(vane_telemetry::otel::Otel::disabled),
                if as_front {
                    vane_store::OpenMode::Front
                } else if dry_run {
                    vane_store::OpenMode::ReadOnly
                } else {
                    vane_store::OpenMode::Write
                },
            )?;
            if let Some(addr) = a.metrics_addr {
                let t = ctx.telemetry.clone();
                let dropped: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(move || t.dropped());
                let bound =
                    vane_telemetry::metrics::serve(addr, ctx.telemetry.metrics.clone(), dropped)
                        .await
                        .map_err(|e| {
                            VaneError::new(
                                ErrorCode::IoError,
                                format!("metrics endpoint {addr}: {e}"),
                            )
                        })?;
                tracing::info!(%bound, "Prometheus metrics at http://{bound}/metrics");
            }
            if as_front || role == "server" {
                // said once per served session, by the process the client started
                match ctx.sandbox().active() {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "commands run UNCONFINED: no bubblewrap sandbox ({}); the deny policy \
                         alone cannot stop an agent's interpreter or script — see the README's \
                         Security model",
                        if ctx.sandbox().mode == vane_core::config::SandboxMode::Off {
                            "sandbox = \"off\""
                        } else {
                            "bubblewrap is not installed or cannot start"
                        }
                    ),
                    Err(e) => tracing::warn!("{}", e.message),
                }
            }
            if as_front {
                let binary = std::env::current_exe().map_err(|e| {
                    VaneError::new(
                        ErrorCode::IoError,
                        format!("cannot find the vane executable: {e}"),
                    )
                })?;
                match &a.http {
                    Some(listen) => {
                        let listen = (!listen.is_empty()).then(|| listen.clone());
                        serve_http(ctx, binary, cli.state_dir.clone(), listen).await?;
                    }
                    None => vane_front::run(ctx, binary, cli.state_dir.clone()).await?,
                }
            } else if a.http.is_some() {
                return Err(VaneError::invalid_input(
                    "--http needs the front ([runtime] front = true; not a worker, not VANE_NO_FRONT, not a dry run)",
                ));
            } else {
                serve(ctx).await?;
            }
        }
        Cmd::Migrate {
            status,
            contract,
            check,
            rehearse,
            front_pid,
            json,
        } => {
            let (v, ok) = if *rehearse {
                let paths = paths_of(&cli)?;
                let scratch = tempfile::tempdir_in(&paths.state_dir).map_err(|e| {
                    VaneError::new(
                        ErrorCode::IoError,
                        format!("{}: {e}", paths.state_dir.display()),
                    )
                })?;
                let report = vane_store::rehearse_at(&paths, scratch.path())?;
                let ok = report.ok;
                let mut v = serde_json::to_value(&report).unwrap_or_default();
                v["mode"] = json!("rehearse");
                (v, ok)
            } else {
                migrate(&cli, *status, *contract, check.as_deref(), *front_pid).await?
            };
            emit(*json, &v, render::migrate);
            if !ok {
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Preflight { json } => {
            let root = workspace(&cli);
            let config = load_config(&root)?;
            let paths = paths_of(&cli)?;
            let root = root.canonicalize().unwrap_or(root);
            let (v, ok) = crate::upgrade::run_preflight(&root, &paths, &config).await;
            emit(*json, &v, render::preflight);
            if !ok {
                return Ok(ExitCode::from(2));
            }
        }
        Cmd::Upgrade(u) => {
            let paths = paths_of(&cli)?;
            match &u.cmd {
                Some(UpgradeSub::Status { json }) => {
                    let v = crate::upgrade::status(&paths)?;
                    emit(*json, &v, render::upgrade_report);
                }
                Some(UpgradeSub::Abort) => {
                    let v = crate::upgrade::abort(&paths)?;
                    emit(false, &v, |v| format!("{v}\n"));
                }
                None => {
                    let source = match (&u.binary, &u.git, &u.patch) {
                        (Some(b), _, _) => crate::upgrade::Source::Binary(b.clone()),
                        (_, Some(g), _) => crate::upgrade::Source::Git(g.clone()),
                        (_, _, Some(p)) => crate::upgrade::Source::Patch(p.clone()),
                        _ => {
                            return Err(VaneError::invalid_input(
                                "vane upgrade needs --binary PATH, --git REF or --patch FILE (or: vane upgrade status | abort)",
                            ))
                        }
                    };
                    let root = workspace(&cli);
                    let config = load_config(&root)?;
                    let root = root.canonicalize().unwrap_or(root);
                    let dur = |v: &Option<String>,
                               default_s: u64|
                     -> Result<std::time::Duration, VaneError> {
                        match v {
                            Some(s) => vane_telemetry::summary::parse_since(s)
                                .map_err(VaneError::invalid_input),
                            None => Ok(std::time::Duration::from_secs(default_s)),
                        }
                    };
                    let mut flips = Vec::new();
                    for f in &u.flips {
                        let (k, v) = f.split_once('=').ok_or_else(|| {
                            VaneError::invalid_input(format!("--flip {f}: use KEY=VALUE"))
                        })?;
                        vane_core::flags::validate(k, v)?;
                        flips.push((k.to_string(), v.to_string()));
                    }
                    let args = crate::upgrade::UpgradeArgs {
                        source,
                        shadow: dur(&u.shadow, config.upgrade.shadow_s)?,
                        observe: dur(&u.observe, config.upgrade.observe_s)?,
                        min_samples: u.min_samples.unwrap_or(config.upgrade.min_shadow_samples),
                        flips,
                    };
                    let ctx = open(&cli)?;
                    let (v, stable) =
                        crate::upgrade::run_upgrade(&root, &paths, &config, &ctx, args, u.json)
                            .await?;
                    emit(u.json, &v, render::upgrade_report);
                    if !stable {
                        return Ok(ExitCode::from(3));
                    }
                }
            }
        }
        Cmd::Audit {
            history,
            fail_on,
            json,
        } => {
            let ctx = open(&cli)?;
            let opts = vane_tools::audit::Options {
                history: *history,
                fail_on: fail_on
                    .as_deref()
                    .and_then(vane_tools::audit::Severity::parse),
            };
            let (ws, config) = (ctx.ws.clone(), ctx.config.clone());
            let v =
                tokio::task::spawn_blocking(move || vane_tools::audit::run(&ws, &config, &opts))
                    .await
                    .map_err(|e| VaneError::internal(e.to_string()))??;
            emit(*json, &v, vane_tools::audit::render);
            if v["failed"] == true {
                return Ok(ExitCode::from(3));
            }
        }
        Cmd::Workers { json } => {
            let v = control(&cli, None, ControlRequest::Workers).await?;
            emit(*json, &v, render::workers);
        }
        Cmd::Route { action, pid } => {
            let req = match action.as_str() {
                "promote" => ControlRequest::Promote,
                _ => ControlRequest::Rollback,
            };
            let v = control(&cli, *pid, req).await?;
            emit(false, &v, render::control_result);
        }
        Cmd::Canary(c) => {
            let (pid, req) = match c {
                CanaryCmd::Start { binary, pid } => {
                    let bin = binary.canonicalize().map_err(|e| {
                        VaneError::invalid_input(format!("canary binary {}: {e}", binary.display()))
                    })?;
                    let binary = bin.display().to_string();
                    (*pid, ControlRequest::CanaryStart { binary })
                }
                CanaryCmd::Stop { pid } => (*pid, ControlRequest::CanaryStop),
            };
            let v = control(&cli, pid, req).await?;
            emit(false, &v, render::control_result);
        }
        Cmd::HttpToken(HttpTokenCmd::New { admin }) => {
            let root = workspace(&cli);
            let config = load_config(&root)?;
            let Some(file) = config.http.tokens_file.clone() else {
                return Err(VaneError::new(
                    ErrorCode::ConfigInvalid,
                    "[http] tokens_file is not set; add `tokens_file = \".vane/http-tokens\"` under [http] in vane.toml",
                ));
            };
            let path = root.join(&file);
            let (token, line) = vane_front::auth::Tokens::generate(*admin)?;
            {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        VaneError::new(ErrorCode::IoError, format!("{}: {e}", dir.display()))
                    })?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| {
                        VaneError::new(ErrorCode::IoError, format!("{}: {e}", path.display()))
                    })?;
                writeln!(f, "{line}").map_err(|e| {
                    VaneError::new(ErrorCode::IoError, format!("{}: {e}", path.display()))
                })?;
            }
            eprintln!(
                "added to {} ({}); a running `vane serve --http` reads tokens at start. The token (shown once):",
                path.display(),
                if *admin { "scopes tools, admin" } else { "scope tools" }
            );
            println!("{token}");
        }
        Cmd::Flags(f) => {
            let ctx = open(&cli)?;
            let actor = format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            );
            match f {
                FlagsCmd::List { json } => {
                    let v = operator_call(&ctx, "flags_list", json!({})).await?;
                    emit(*json, &v, render::flags);
                }
                FlagsCmd::Get { key } => {
                    vane_core::flags::def(key)
                        .ok_or_else(|| vane_core::flags::validate(key, "").unwrap_err())?;
                    let v = operator_call(&ctx, "flags_list", json!({})).await?;
                    let f = v["flags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|f| f["key"] == key.as_str())
                        .cloned()
                        .unwrap_or_default();
                    println!("{}", f["effective"].as_str().unwrap_or_default());
                }
                FlagsCmd::Set { key, value } => {
                    let v = operator_call(
                        &ctx,
                        "flags_set",
                        json!({ "key": key, "value": value, "agent": actor }),
                    )
                    .await?;
                    println!(
                        "{key} = {} (was {})",
                        v["value"].as_str().unwrap_or_default(),
                        v["previous"].as_str().unwrap_or("unset")
                    );
                }
                FlagsCmd::Unset { key } => {
                    let v = operator_call(&ctx, "flags_set", json!({ "key": key, "agent": actor }))
                        .await?;
                    println!(
                        "{key} unset (was {})",
                        v["previous"].as_str().unwrap_or("unset")
                    );
                }
                FlagsCmd::KillSwitch { state } => {
                    let on = state == "on";
                    operator_call(
                        &ctx,
                        "flags_set",
                        json!({ "key": "DISABLE_NEW", "value": if on { "1" } else { "0" }, "agent": actor }),
                    )
                    .await?;
                    println!(
                        "kill switch {}: {}",
                        state,
                        if on {
                            "every flag is at its safe value"
                        } else {
                            "flags are back to their stored values"
                        }
                    );
                }
            }
        }
        Cmd::Telemetry(TelemetryCmd::Summary { since, out, json }) => {
            let paths = paths_of(&cli)?;
            let since = since
                .as_deref()
                .map(vane_telemetry::summary::parse_since)
                .transpose()
                .map_err(VaneError::invalid_input)?;
            let log = vane_tools::ctx::ops_log_path(&paths);
            let mut v = vane_telemetry::summary::summarize(&log, since).map_err(|e| {
                VaneError::new(ErrorCode::IoError, format!("{}: {e}", log.display()))
            })?;
            // the cost ledger of the same window, folded in
            if let Ok(store) = vane_store::Store::open_read_only(&paths) {
                v["cost"] = crate::dispatch_cli::cost_fold(&store, since)?;
            }
            let out = out
                .clone()
                .unwrap_or_else(|| log.with_file_name("metrics_summary.json"));
            if let Some(parent) = out.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            vane_store::write_atomic(
                &out,
                serde_json::to_string_pretty(&v)
                    .unwrap_or_default()
                    .as_bytes(),
            )?;
            emit(*json, &v, |v| {
                render::summary(v, &out) + &crate::dispatch_cli::render_cost_fold(&v["cost"])
            });
        }
        Cmd::Telemetry(TelemetryCmd::Tail {
            kinds,
            tool,
            from_start,
            for_s,
            json,
        }) => {
            let paths = paths_of(&cli)?;
            let log = vane_tools::ctx::ops_log_path(&paths);
            let filter = vane_telemetry::tail::TailFilter {
                kinds: kinds.clone(),
                tool: tool.clone(),
            };
            let (from_start, json, stop) = (
                *from_start,
                *json,
                for_s.map(std::time::Duration::from_secs),
            );
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout();
                vane_telemetry::tail::follow(&log, &filter, from_start, stop, &mut out, json)
            })
            .await
            .map_err(|e| VaneError::internal(e.to_string()))?
            .map_err(|e| VaneError::new(ErrorCode::IoError, e.to_string()))?;
        }
        Cmd::Status { json } => {
            let ctx = open(&cli)?;
            let mut v = call(&ctx, "status", json!({ "detail": true })).await?;
            // the CLI serves no calls itself: report every process's last
            // five minutes from the operations log instead
            let log = vane_tools::ctx::ops_log_path(&ctx.paths);
            if let Ok(s) = vane_telemetry::summary::summarize_files(
                vec![log],
                Some(std::time::Duration::from_secs(300)),
            ) {
                let all = &s["totals"]["all_tools"];
                let calls = all["calls"].as_u64().unwrap_or(0);
                v["recent_calls"] = json!({
                    "window_s": 300,
                    "calls": calls,
                    "calls_per_min": (calls as f64 / 5.0 * 1000.0).round() / 1000.0,
                    "error_rate": all["error_rate"],
                    "p95_ms": all["p95_ms"],
                    "source": "operations log, all processes",
                });
            }
            emit(*json, &v, render::status);
        }
        Cmd::Next {
            limit,
            epic,
            milestone,
            owner,
            claim,
            ttl,
            json,
        } => {
            let ctx = open(&cli)?;
            let mut args =
                json!({ "limit": limit, "epic": epic, "milestone": milestone, "owner": owner });
            if let Some(agent) = claim {
                args["claim"] = json!({ "agent": agent, "ttl_s": ttl });
                if ttl.is_none() {
                    args["claim"].as_object_mut().map(|m| m.remove("ttl_s"));
                }
            }
            strip_nulls(&mut args);
            let v = call(&ctx, "plan_next", args).await?;
            emit(*json, &v, render::next);
        }
        Cmd::Task(TaskCmd::Update(a)) => {
            let ctx = open(&cli)?;
            let mut args = json!({
                "task_id": a.id, "status": a.status, "notes": a.notes, "owner": a.owner,
                "expected_version": a.expected_version, "reason": a.reason, "agent": "cli",
            });
            if let Some(p) = &a.priority {
                args["priority"] = p
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(p.clone()));
            }
            if a.force {
                args["force"] = json!(true);
            }
            strip_nulls(&mut args);
            let v = call(&ctx, "plan_update", args).await?;
            emit(a.json, &v, render::update);
        }
        Cmd::Task(TaskCmd::Show { id, json }) => {
            let ctx = open(&cli)?;
            let t = ctx.store.get_task(id)?;
            let v = json!({ "task": t, "events": ctx.store.task_events(id, 100)? });
            emit(*json, &v, render::task);
        }
        Cmd::Critics(CriticsCmd::Run {
            names,
            all,
            paths,
            json,
        }) => {
            let ctx = open(&cli)?;
            let mut args = json!({ "all": all });
            if !names.is_empty() {
                args["critics"] = json!(names);
            }
            if !paths.is_empty() {
                args["paths"] = json!(paths);
            }
            let v = call(&ctx, "critics_run", args).await?;
            emit(*json, &v, render::critics);
            if v["failed"].as_u64().unwrap_or(0) > 0 {
                return Ok(ExitCode::from(3));
            }
        }
        Cmd::Roadmap(RoadmapCmd::Import { file, prune, json }) => {
            let ctx = open(&cli)?;
            let v = import(&ctx, file, *prune)?;
            emit(*json, &v, render::import);
        }
        Cmd::Roadmap(RoadmapCmd::Export { out }) => {
            let ctx = open(&cli)?;
            let text = vane_core::roadmap::to_yaml(&ctx.store.load_roadmap()?);
            match out {
                Some(p) => vane_store::write_atomic(p, text.as_bytes())?,
                None => print!("{text}"),
            }
        }
        Cmd::Roadmap(RoadmapCmd::Show { json }) => {
            let ctx = open(&cli)?;
            let v = call(
                &ctx,
                "plan_next",
                json!({ "limit": 500, "explain_blocked": 0 }),
            )
            .await?;
            let r = ctx.store.load_roadmap()?;
            let graph = ctx.store.plan_graph()?;
            let rows: Vec<Value> = r
                .tasks
                .iter()
                .map(|t| {
                    let item = graph.get(&t.id);
                    json!({ "id": t.id, "title": t.title, "status": t.status, "priority": t.effective_priority(),
                            "epic": item.and_then(|i| i.epic.clone()), "claimed_by": item.and_then(|i| i.claimed_by.clone()),
                            "ready": graph.is_ready(&t.id, vane_store::now_ms()) })
                })
                .collect();
            let out = json!({ "tasks": rows, "ready": v["total"] });
            emit(*json, &out, render::roadmap);
        }
        Cmd::Run {
            once,
            max_tasks,
            parallel,
            provider,
            epic,
            dry_run,
            json,
        } => {
            let ctx = if *dry_run {
                open_with(
                    &cli,
                    "runner",
                    vane_telemetry::otel::Otel::disabled(),
                    vane_store::OpenMode::ReadOnly,
                )?
            } else {
                open_as(&cli, "runner", vane_telemetry::otel::Otel::disabled())?
            };
            let opts = vane_dispatch::runner::Options {
                once: *once,
                max_tasks: *max_tasks,
                parallel: parallel.unwrap_or(0),
                provider: provider.clone(),
                epic: epic.clone(),
                dry_run: *dry_run,
            };
            return crate::dispatch_cli::run(ctx, opts, *json).await;
        }
        Cmd::Providers { cmd, json } => {
            let ctx = open(&cli)?;
            match cmd {
                Some(ProvidersCmd::Reset { name }) => {
                    let v = crate::dispatch_cli::reset_provider(&ctx, name)?;
                    emit(*json, &v, |v| {
                        format!(
                            "{} is back in rotation ({})\n",
                            name,
                            v["state"].as_str().unwrap_or("")
                        )
                    });
                }
                None => {
                    let v = crate::dispatch_cli::providers(&ctx)?;
                    emit(*json, &v, crate::dispatch_cli::render_providers);
                }
            }
        }
        Cmd::Cost(CostCmd::Summary {
            since,
            by,
            all_envs,
            json,
        }) => {
            let ctx = open(&cli)?;
            let v = crate::dispatch_cli::cost_summary(&ctx, since.as_deref(), by, *all_envs)?;
            emit(*json, &v, crate::dispatch_cli::render_cost);
        }
        Cmd::Tools { json } => {
            let v = json!({ "tools": vane_tools::handlers::registry().manifest() });
            emit(*json, &v, render::tools);
        }
        Cmd::Demo { keep } => {
            crate::demo::run(*keep)
                .await
                .map_err(|e| VaneError::new(ErrorCode::Internal, format!("demo failed: {e}")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vane migrate`: see [`Cmd::Migrate`]. Returns the report and whether it
/// is clean.
async fn migrate(
    cli: &Cli,
    status: bool,
    contract: bool,
    check: Option<&Path>,
    front_pid: Option<u32>,
) -> Result<(Value, bool), VaneError> {
    use vane_store::Reach;
    if let Some(db) = check {
        let report = vane_store::migrate_db(db, Reach::All)?;
        // read it back through the store, as a worker of this version would
        let smoke = match (db.file_name().and_then(|n| n.to_str()), db.parent()) {
            (Some("vane.db"), Some(dir)) => {
                let paths = vane_store::StatePaths::new(workspace(cli), dir);
                let smoke = (|| -> Result<Value, VaneError> {
                    let store = vane_store::Store::open(&paths)?;
                    let st = store.status(vane_store::now_ms())?;
                    let flags = store.flags()?;
                    // the plan graph reads every task with its dependencies
                    store.plan_graph()?;
                    let artifacts = store.list_artifacts(10)?;
                    Ok(json!({
                        "ok": true,
                        "tasks": st.tasks,
                        "schema_version": st.schema_version,
                        "flags": flags.len(),
                        "artifacts": artifacts.len(),
                    }))
                })();
                smoke.unwrap_or_else(|e| json!({ "ok": false, "error": e.to_json()["error"] }))
            }
            _ => json!({ "ok": true, "skipped": "the copy is not named vane.db" }),
        };
        let ok = report.ok && smoke["ok"] == true;
        let mut v = serde_json::to_value(&report).unwrap_or_default();
        v["smoke"] = smoke;
        v["ok"] = json!(ok);
        v["mode"] = json!("check");
        return Ok((v, ok));
    }
    let paths = paths_of(cli)?;
    let location = match &paths.store {
        Some(t) => t.shown().to_string(),
        None => paths.db().display().to_string(),
    };
    if status {
        let info = vane_store::schema_info_at(&paths)?;
        let ok = info.incompatible.is_none();
        let mut v = serde_json::to_value(&info).unwrap_or_default();
        v["db"] = json!(location);
        v["mode"] = json!("status");
        v["ok"] = json!(ok);
        return Ok((v, ok));
    }
    if contract {
        let others: Vec<u32> = vane_front::control::fronts(&paths.state_dir)
            .await
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| Some(*p) != front_pid)
            .collect();
        if !others.is_empty() {
            return Err(VaneError::new(
                ErrorCode::InvalidInput,
                format!(
                    "a running front (pid {}) may still route to an older worker; it applies contracting migrations itself once its standby is retired",
                    others.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    if paths.store.is_none() && !paths.db().exists() {
        // a new store: opening it creates and migrates it
        vane_store::Store::open(&paths)?;
    }
    let report = vane_store::migrate_at(&paths, if contract { Reach::All } else { Reach::Expand })?;
    let ok = report.ok;
    let mut v = serde_json::to_value(&report).unwrap_or_default();
    v["mode"] = json!(if contract { "contract" } else { "expand" });
    Ok((v, ok))
}

fn paths_of(cli: &Cli) -> Result<vane_store::StatePaths, VaneError> {
    let ws = workspace(cli);
    let root = ws.canonicalize().map_err(|e| {
        VaneError::new(
            ErrorCode::InvalidInput,
            format!("workspace {}: {e}", ws.display()),
        )
    })?;
    let config = load_config(&root)?;
    state_paths(&root, cli.state_dir.as_deref(), &config)
}

/// Sends a control request to the workspace's running fronts (or the one
/// with `pid`); the answer is `{"fronts": [{pid, result | error}]}`, or an
/// error when no front runs or every front refused.
async fn control(cli: &Cli, pid: Option<u32>, req: ControlRequest) -> Result<Value, VaneError> {
    let paths = paths_of(cli)?;
    let fronts: Vec<(u32, PathBuf)> = vane_front::control::fronts(&paths.state_dir)
        .await
        .into_iter()
        .filter(|(p, _)| pid.is_none_or(|want| want == *p))
        .collect();
    if fronts.is_empty() {
        return Err(VaneError::new(
            ErrorCode::NotFound,
            match pid {
                Some(p) => format!("no running front with pid {p} for this workspace"),
                None => "no running front for this workspace (start one with `vane serve`)".into(),
            },
        ));
    }
    let timeout = std::time::Duration::from_secs(60);
    let mut out = Vec::new();
    let mut last_err = None;
    for (p, sock) in &fronts {
        match vane_front::control::request(sock, &req, timeout).await {
            Ok(v) => out.push(json!({ "pid": p, "result": v })),
            Err(e) => {
                out.push(json!({ "pid": p, "error": e.to_json()["error"].clone() }));
                last_err = Some(e);
            }
        }
    }
    match last_err {
        Some(e) if out.iter().all(|o| o.get("error").is_some()) => Err(e),
        _ => Ok(json!({ "fronts": out })),
    }
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
    }
}

/// Serves MCP over stdio until the client closes stdin.
pub async fn serve(ctx: Arc<ToolCtx>) -> Result<(), VaneError> {
    use rmcp::ServiceExt;
    tracing::info!(workspace = %ctx.ws.root.display(), "vane serving MCP over stdio");
    let t = ctx.telemetry.clone();
    t.emit(t.event("process").with("event", "start").with(
        "detail",
        format!("serving {} over stdio", ctx.ws.root.display()),
    ));
    let hook_t = t.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        hook_t.emit(
            hook_t
                .event("process")
                .with("event", "crash")
                .with("detail", info.to_string()),
        );
        if let Some(l) = &hook_t.log {
            l.flush();
        }
        previous(info);
    }));
    let watched = ctx.clone();
    let server = VaneServer::new(ctx);
    let running = server
        .serve(vane_tools::stdio::transport())
        .await
        .map_err(|e| VaneError::internal(format!("MCP handshake failed: {e}")))?;
    // Flags change the tool set (ADMIN_TOOLS): tell the client within 250 ms,
    // even while it is idle.
    let peer = running.peer().clone();
    let watcher = tokio::spawn(async move {
        let mut admin = watched.flags().admin_tools;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let now = watched.flags().admin_tools;
            if now != admin {
                admin = now;
                if peer.notify_tool_list_changed().await.is_err() {
                    break;
                }
            }
        }
    });
    let reason = running.waiting().await;
    watcher.abort();
    t.emit(
        t.event("process")
            .with("event", "stop")
            .with("detail", format!("{reason:?}")),
    );
    Ok(())
}

/// `vane serve --http`: until SIGINT or SIGTERM, then a graceful stop
/// (sessions closed, open requests finished, workers drained).
async fn serve_http(
    ctx: Arc<ToolCtx>,
    binary: PathBuf,
    state_dir: Option<PathBuf>,
    listen: Option<String>,
) -> Result<(), VaneError> {
    let ct = tokio_util::sync::CancellationToken::new();
    let stop = ct.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        stop.cancel();
    });
    vane_front::run_http(ctx, binary, state_dir, listen, ct, |ep| {
        // the one line a supervisor (or a test) waits for
        eprintln!("vane: serving MCP at http://{}{}", ep.addr, ep.path);
    })
    .await
}

fn import(ctx: &Arc<ToolCtx>, file: &Path, prune: bool) -> Result<Value, VaneError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| VaneError::new(ErrorCode::IoError, format!("{}: {e}", file.display())))?;
    let (roadmap, report) = vane_core::roadmap::parse_yaml(&text)?;
    let summary = ctx.store.import_roadmap(&roadmap, prune, "cli")?;
    Ok(json!({ "file": file.display().to_string(), "report": report, "summary": summary }))
}

fn init(
    ws: &Path,
    state_dir: Option<&Path>,
    roadmap: Option<&Path>,
    store: Option<&str>,
) -> Result<Value, VaneError> {
    std::fs::create_dir_all(ws)
        .map_err(|e| VaneError::new(ErrorCode::IoError, format!("{}: {e}", ws.display())))?;
    let toml = ws.join("vane.toml");
    let created_toml = if toml.exists() {
        load_config(ws)?; // an existing config must at least be valid
        false
    } else {
        vane_store::write_atomic(&toml, vane_core::config::DEFAULT_TOML.as_bytes())?;
        true
    };
    if let Some(url) = store {
        crate::store_cli::set_store_url(ws, url)?;
    }
    let config = load_config(ws)?;
    let paths = state_paths(
        &ws.canonicalize().unwrap_or(ws.to_path_buf()),
        state_dir,
        &config,
    )?;
    let ctx = Arc::new(ToolCtx::open(ws, state_dir)?);
    ctx.store.export_all()?;
    let imported = match roadmap {
        Some(r) => Some(import(&ctx, r, false)?),
        None => None,
    };
    Ok(json!({
        "workspace": ctx.ws.root.display().to_string(),
        "config": toml.display().to_string(),
        "config_created": created_toml,
        "state_dir": paths.state_dir.display().to_string(),
        "store": { "engine": ctx.store.engine().as_str(), "location": ctx.store.location() },
        "import": imported,
    }))
}
