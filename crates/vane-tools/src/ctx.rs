//! Everything a handler may use: the workspace, the store, the configuration,
//! the command policy and the sandbox.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vane_core::config::Config;
use vane_core::{ErrorCode, VaneError};
use vane_store::{StatePaths, Store};
use vane_telemetry::opslog::LogConfig;
use vane_telemetry::{OpsLog, ProcessInfo, Telemetry};

use crate::confine::Workspace;
use crate::exec::{detect_bwrap, Sandbox};
use crate::policy::Policy;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub struct ToolCtx {
    pub ws: Workspace,
    pub paths: StatePaths,
    pub store: Arc<Store>,
    pub config: Config,
    pub policy: Policy,
    pub started: Instant,
    pub telemetry: Arc<Telemetry>,
    bwrap: OnceLock<Option<PathBuf>>,
    /// turns for commands and critics (`[limits] cmd_max_concurrent`)
    pub cmd_slots: Arc<tokio::sync::Semaphore>,
    /// calls per client session and tool (`[rate_limits]`)
    pub rate: crate::rate::Limiter,
    /// effective flags and the store's flags revision they were read at
    flags: std::sync::Mutex<(i64, vane_core::flags::Flags)>,
}

/// `[tools] enable/disable` may name only tools vane has.
fn check_tool_names(config: &Config) -> Result<(), VaneError> {
    let t = &config.tools;
    if t.enable.is_empty() && t.disable.is_empty() {
        return Ok(());
    }
    let reg = crate::handlers::registry();
    let mut known: Vec<&str> = reg.tools().iter().map(|d| d.name).collect();
    known.extend(crate::front_tools::names());
    let unknown = t.unknown(&known);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(VaneError::new(
        ErrorCode::ConfigInvalid,
        format!(
            "vane.toml [tools]: no tool named {}; tools: {}",
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        ),
    )
    .with_details(serde_json::json!({ "unknown": unknown, "tools": known })))
}

/// The operations log path of a state directory.
pub fn ops_log_path(paths: &StatePaths) -> PathBuf {
    paths.state_dir.join("telemetry").join("operations.jsonl")
}

/// Telemetry for a process of `role`: the operations log when enabled in
/// vane.toml, metrics, and the given OpenTelemetry exporter.
pub fn open_telemetry(
    config: &Config,
    paths: &StatePaths,
    role: &str,
    otel: vane_telemetry::otel::Otel,
) -> Telemetry {
    let process = ProcessInfo::current(role, VERSION);
    let mut t = Telemetry::disabled(process.clone());
    t.otel = otel;
    t.enabled = config.telemetry.enabled || t.otel.enabled();
    if config.telemetry.enabled {
        let cfg = LogConfig {
            path: ops_log_path(paths),
            max_bytes: config.telemetry.log_max_bytes,
            retention: config.telemetry.log_retention,
            queue_capacity: config.telemetry.queue_capacity,
        };
        match OpsLog::open(cfg, process) {
            Ok(log) => t.log = Some(log),
            Err(e) => {
                tracing::warn!(error = %e, "operations log unavailable; continuing without it")
            }
        }
    }
    t
}

/// Reads `vane.toml` of a workspace (defaults when absent).
pub fn load_config(workspace: &Path) -> Result<Config, VaneError> {
    let p = workspace.join("vane.toml");
    match std::fs::read_to_string(&p) {
        Ok(text) => Config::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(VaneError::new(
            ErrorCode::ConfigInvalid,
            format!("{}: {e}", p.display()),
        )),
    }
}

/// The state directory: explicit > `VANE_STATE_DIR` (handled by the CLI) >
/// `state_dir` of vane.toml > `.vane`.
///
/// The store is the SQLite file there, unless `VANE_STORE_URL` or
/// `[store] url` names a PostgreSQL database (see [`store_target`]).
pub fn state_paths(
    workspace: &Path,
    explicit: Option<&Path>,
    config: &Config,
) -> Result<StatePaths, VaneError> {
    let dir = match explicit {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => workspace.join(d),
        None => workspace.join(config.state_dir.as_deref().unwrap_or(".vane")),
    };
    Ok(StatePaths::new(workspace, dir).with_store(store_target(workspace, config)?))
}

/// The PostgreSQL database of the store, if one is configured:
/// `VANE_STORE_URL` > `[store] url`; its password from
/// `VANE_STORE_PASSWORD` > `[store] password_file` (> the URL, for the
/// environment variable only). `None`: the SQLite file.
pub fn store_target(
    workspace: &Path,
    config: &Config,
) -> Result<Option<vane_store::PgTarget>, VaneError> {
    use vane_core::config::store::{check_url, PASSWORD_ENV, URL_ENV};
    let url = match std::env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty()) {
        Some(u) => {
            check_url(u.trim(), URL_ENV)?;
            u.trim().to_string()
        }
        None => match &config.store.url {
            Some(u) => u.clone(),
            None => return Ok(None),
        },
    };
    let password = match std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()) {
        Some(p) => Some(p),
        None => match &config.store.password_file {
            Some(f) => {
                let p = workspace.join(f);
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    VaneError::new(
                        ErrorCode::ConfigInvalid,
                        format!("store.password_file {}: {e}", p.display()),
                    )
                })?;
                Some(text.lines().next().unwrap_or("").trim_end().to_string())
            }
            None => None,
        },
    };
    let target = vane_store::PgTarget::parse(&url, password.as_deref())?
        .with_max_connections(config.store.max_connections);
    Ok(Some(match &config.store.ca_file {
        Some(f) => target.with_ca_file(&workspace.join(f))?,
        None => target,
    }))
}

impl ToolCtx {
    /// Opens a workspace: configuration, store (created if missing).
    pub fn open(workspace: &Path, state_dir: Option<&Path>) -> Result<ToolCtx, VaneError> {
        Self::open_with(workspace, state_dir, false)
    }

    pub fn open_with(
        workspace: &Path,
        state_dir: Option<&Path>,
        read_only: bool,
    ) -> Result<ToolCtx, VaneError> {
        Self::open_mode(
            workspace,
            state_dir,
            if read_only {
                vane_store::OpenMode::ReadOnly
            } else {
                vane_store::OpenMode::Write
            },
        )
    }

    pub fn open_mode(
        workspace: &Path,
        state_dir: Option<&Path>,
        mode: vane_store::OpenMode,
    ) -> Result<ToolCtx, VaneError> {
        let root = workspace.canonicalize().map_err(|e| {
            VaneError::new(
                ErrorCode::InvalidInput,
                format!("workspace {}: {e}", workspace.display()),
            )
        })?;
        let config = load_config(&root)?;
        check_tool_names(&config)?;
        let paths = state_paths(&root, state_dir, &config)?;
        let store = Store::open_mode(&paths, mode)?;
        let ws = Workspace::new(&root, &paths.state_dir)
            .map_err(|e| VaneError::new(ErrorCode::IoError, format!("workspace: {e}")))?;
        let policy = Policy::new(
            &ws.root,
            config.commands.builtin_deny,
            &config.commands.deny,
        );
        let telemetry = Arc::new(Telemetry::disabled(ProcessInfo::current("server", VERSION)));
        let slots = config.limits.cmd_max_concurrent.max(1);
        let rate = crate::rate::Limiter::new(&config.rate_limits);
        Ok(ToolCtx {
            ws,
            paths,
            store: Arc::new(store),
            config,
            policy,
            started: Instant::now(),
            telemetry,
            bwrap: OnceLock::new(),
            cmd_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            rate,
            flags: std::sync::Mutex::new((-1, vane_core::flags::Flags::default())),
        })
    }

    /// A dry-run worker (`VANE_DRY_RUN=1`): the store is open read-only and
    /// every mutation is refused with `dry_run_no_mutation`.
    /// Is this tool offered to clients: enabled by `[tools]`, and for an
    /// admin tool, the ADMIN_TOOLS flag on?
    pub fn offers(&self, name: &str, admin: bool) -> bool {
        self.config.tools.enabled(name) && (!admin || self.flags().admin_tools)
    }

    pub fn dry_run(&self) -> bool {
        self.store.is_read_only()
    }

    /// The effective live flags. Each call checks the store's flags revision
    /// (one cached indexed read) and re-reads the flags only when it moved, so
    /// a change made by any process applies to the next call here.
    pub fn flags(&self) -> vane_core::flags::Flags {
        let rev = match self.store.flags_revision() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the flags revision; keeping the last flags");
                return self
                    .flags
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .1
                    .clone();
            }
        };
        let mut cached = self.flags.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != rev {
            match self.store.flags() {
                Ok(stored) => {
                    let pairs: Vec<(String, String)> =
                        stored.into_iter().map(|f| (f.key, f.value)).collect();
                    *cached = (rev, vane_core::flags::Flags::resolve(&pairs));
                }
                Err(e) => tracing::warn!(error = %e, "cannot read flags; keeping the last ones"),
            }
        }
        cached.1.clone()
    }

    /// Replaces the (disabled) telemetry this context was opened with.
    pub fn with_telemetry(mut self, t: Telemetry) -> ToolCtx {
        self.telemetry = Arc::new(t);
        self
    }

    /// The sandbox, detecting bubblewrap on first use.
    pub fn sandbox(&self) -> Sandbox {
        let bwrap = self.bwrap.get_or_init(detect_bwrap).clone();
        let mode = match self.flags().sandbox_mode.as_deref() {
            Some("bwrap") => vane_core::config::SandboxMode::Bwrap,
            Some("off") => vane_core::config::SandboxMode::Off,
            Some("auto") => vane_core::config::SandboxMode::Auto,
            _ => self.config.commands.sandbox,
        };
        Sandbox {
            mode,
            bwrap,
            network: self.config.commands.network,
            workspace: self.ws.root.clone(),
            state_dir: self.ws.state_dir.clone(),
            read_only_workspace: self.dry_run(),
            hide: self
                .config
                .commands
                .hide
                .iter()
                .map(|h| self.ws.root.join(h))
                .collect(),
            env_allow: self.config.commands.env_allow.clone(),
            limits: crate::limits::Limits {
                memory_bytes: self.config.limits.cmd_max_memory_mb.saturating_mul(1 << 20),
                processes: self.config.limits.cmd_max_processes,
            },
        }
    }
}
