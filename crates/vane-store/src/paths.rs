//! Where a workspace's state lives.

use std::path::{Path, PathBuf};

use crate::pg::PgTarget;

/// Paths of one workspace's state directory, and where its store is: the
/// SQLite file in the state directory, or a PostgreSQL database (`store`)
/// that fronts on several hosts share — exports, logs and artifacts stay in
/// each checkout's own state directory either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    pub workspace: PathBuf,
    pub state_dir: PathBuf,
    pub store: Option<PgTarget>,
}

impl StatePaths {
    pub fn new(workspace: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> StatePaths {
        StatePaths {
            workspace: workspace.into(),
            state_dir: state_dir.into(),
            store: None,
        }
    }
    /// The same paths with the store in PostgreSQL.
    pub fn with_store(mut self, store: Option<PgTarget>) -> StatePaths {
        self.store = store;
        self
    }
    pub fn db(&self) -> PathBuf {
        self.state_dir.join("vane.db")
    }
    pub fn roadmap_export(&self) -> PathBuf {
        self.state_dir.join("roadmap.yaml")
    }
    pub fn context_export(&self) -> PathBuf {
        self.state_dir.join("context.md")
    }
    pub fn checkpoint_export(&self) -> PathBuf {
        self.state_dir.join("checkpoint.json")
    }
    pub fn critics_dir(&self) -> PathBuf {
        self.state_dir.join("critics")
    }
    pub fn artifacts_dir(&self) -> PathBuf {
        self.state_dir.join("artifacts")
    }
    pub fn export_lock(&self) -> PathBuf {
        self.state_dir.join("export.lock")
    }
    pub fn export_revs(&self) -> PathBuf {
        self.state_dir.join("export-revs.json")
    }
    pub fn gitignore(&self) -> PathBuf {
        self.state_dir.join(".gitignore")
    }
    pub fn is_inside_state(&self, p: &Path) -> bool {
        p.starts_with(&self.state_dir)
    }
}
