//! Where a workspace's state lives.

use std::path::{Path, PathBuf};

/// Paths of one workspace's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    pub workspace: PathBuf,
    pub state_dir: PathBuf,
}

impl StatePaths {
    pub fn new(workspace: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> StatePaths {
        StatePaths {
            workspace: workspace.into(),
            state_dir: state_dir.into(),
        }
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
