//! Everything a handler may use: the workspace, the store, the configuration,
//! the command policy and the sandbox.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vane_core::config::Config;
use vane_core::{ErrorCode, VaneError};
use vane_store::{StatePaths, Store};

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
    bwrap: OnceLock<Option<PathBuf>>,
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
pub fn state_paths(workspace: &Path, explicit: Option<&Path>, config: &Config) -> StatePaths {
    let dir = match explicit {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => workspace.join(d),
        None => workspace.join(config.state_dir.as_deref().unwrap_or(".vane")),
    };
    StatePaths::new(workspace, dir)
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
        let root = workspace.canonicalize().map_err(|e| {
            VaneError::new(
                ErrorCode::InvalidInput,
                format!("workspace {}: {e}", workspace.display()),
            )
        })?;
        let config = load_config(&root)?;
        let paths = state_paths(&root, state_dir, &config);
        let store = if read_only {
            Store::open_read_only(&paths)?
        } else {
            Store::open(&paths)?
        };
        let ws = Workspace::new(&root, &paths.state_dir)
            .map_err(|e| VaneError::new(ErrorCode::IoError, format!("workspace: {e}")))?;
        let policy = Policy::new(
            &ws.root,
            config.commands.builtin_deny,
            &config.commands.deny,
        );
        Ok(ToolCtx {
            ws,
            paths,
            store: Arc::new(store),
            config,
            policy,
            started: Instant::now(),
            bwrap: OnceLock::new(),
        })
    }

    /// The sandbox, detecting bubblewrap on first use.
    pub fn sandbox(&self) -> Sandbox {
        let bwrap = self.bwrap.get_or_init(detect_bwrap).clone();
        Sandbox {
            mode: self.config.commands.sandbox,
            bwrap,
            network: self.config.commands.network,
            workspace: self.ws.root.clone(),
            state_dir: self.ws.state_dir.clone(),
        }
    }
}
