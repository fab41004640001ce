//! Workspace confinement for file paths.
//!
//! A tool path is resolved against the workspace root; `..` that climbs out,
//! absolute paths elsewhere, and symlinks (the file itself or any parent) that
//! lead out are refused with `path_outside_workspace`. The state directory,
//! `.git` internals and `vane.toml` are readable but never writable through
//! tools (`path_protected`).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::beneath::{Dir, Refusal, Root};

use serde_json::json;
use vane_core::{ErrorCode, VaneError};

/// vane's configuration file at the workspace root: never written by tools.
pub const CONFIG_FILE: &str = "vane.toml";

#[derive(Debug, Clone)]
pub struct Workspace {
    /// canonical root
    pub root: PathBuf,
    /// canonical state directory
    pub state_dir: PathBuf,
    /// the root held open: every file operation resolves beneath it
    dir: Arc<Root>,
}

fn outside(p: &str) -> VaneError {
    VaneError::new(
        ErrorCode::PathOutsideWorkspace,
        format!("`{p}` resolves outside the workspace"),
    )
    .with_details(json!({ "path": p }))
}

impl Workspace {
    pub fn new(root: &Path, state_dir: &Path) -> std::io::Result<Workspace> {
        let root = root.canonicalize()?;
        let state_dir = state_dir
            .canonicalize()
            .unwrap_or_else(|_| state_dir.to_path_buf());
        let dir = Arc::new(Root::open(&root)?);
        Ok(Workspace {
            root,
            state_dir,
            dir,
        })
    }

    fn refused(&self, shown: &str, r: Refusal) -> VaneError {
        match r {
            Refusal::Escapes => VaneError::new(
                ErrorCode::PathOutsideWorkspace,
                format!("`{shown}` leads outside the workspace (a symlink on the way, or it changed while being opened)"),
            )
            .with_details(json!({ "path": shown })),
            Refusal::NotRegular(kind) => VaneError::invalid_input(format!(
                "`{shown}` is {kind}; only regular files can be read or written"
            ))
            .with_details(json!({ "path": shown, "kind": kind })),
            Refusal::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                VaneError::new(ErrorCode::NotFound, format!("`{shown}` does not exist"))
                    .with_details(json!({ "path": shown }))
            }
            Refusal::Io(e) => VaneError::new(ErrorCode::IoError, format!("`{shown}`: {e}"))
                .with_details(json!({ "path": shown })),
        }
    }

    /// Opens a resolved path (`Workspace::resolve`) for reading, beneath the
    /// root and without following any symlink; regular files only.
    pub fn open_read(&self, resolved: &Path, shown: &str) -> Result<std::fs::File, VaneError> {
        self.dir
            .open_read(resolved)
            .map_err(|r| self.refused(shown, r))
    }

    /// The directory of a resolved path (`resolve_for_write`), created when
    /// missing, held open; and the file's name in it.
    pub fn parent_dir<'a>(
        &self,
        resolved: &'a Path,
        shown: &str,
    ) -> Result<(WsDir<'_>, &'a Path), VaneError> {
        let (Some(parent), Some(name)) = (resolved.parent(), resolved.file_name()) else {
            return Err(VaneError::invalid_input(format!("`{shown}` names no file")));
        };
        let dir = self.dir.dir(parent).map_err(|r| self.refused(shown, r))?;
        Ok((
            WsDir {
                ws: self,
                dir,
                shown: shown.to_string(),
            },
            Path::new(name),
        ))
    }

    /// Resolves `p` for reading; the result is canonical (symlinks resolved)
    /// when the path exists.
    pub fn resolve(&self, p: &str) -> Result<PathBuf, VaneError> {
        if p.is_empty() {
            return Err(VaneError::invalid_input("path is empty"));
        }
        if p.contains('\0') {
            return Err(VaneError::invalid_input("path contains a NUL byte"));
        }
        let raw = Path::new(p);
        let joined = if raw.is_absolute() {
            raw.to_path_buf()
        } else {
            self.root.join(raw)
        };
        // lexical normalisation first: `..` may not climb above the root
        let mut norm = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::ParentDir => {
                    if !norm.pop() {
                        return Err(outside(p));
                    }
                }
                Component::CurDir => {}
                other => norm.push(other.as_os_str()),
            }
        }
        if !norm.starts_with(&self.root) {
            return Err(outside(p));
        }
        // then resolve symlinks of the longest existing prefix
        let mut existing = norm.clone();
        let mut tail = Vec::new();
        while !existing.exists() && existing.symlink_metadata().is_err() {
            match (
                existing.file_name().map(|f| f.to_os_string()),
                existing.parent(),
            ) {
                (Some(name), Some(parent)) => {
                    tail.push(name);
                    existing = parent.to_path_buf();
                }
                _ => return Err(outside(p)),
            }
        }
        let mut real = match existing.canonicalize() {
            Ok(r) => r,
            // a dangling symlink: refuse rather than guess where it points
            Err(_) => return Err(outside(p)),
        };
        if !real.starts_with(&self.root) {
            return Err(outside(p));
        }
        for name in tail.into_iter().rev() {
            real.push(name);
        }
        Ok(real)
    }

    /// Resolves `p` for writing: also refuses the state directory and `.git`.
    pub fn resolve_for_write(&self, p: &str) -> Result<PathBuf, VaneError> {
        let real = self.resolve(p)?;
        if real == self.root {
            return Err(VaneError::new(
                ErrorCode::InvalidInput,
                "cannot write the workspace root itself",
            ));
        }
        let rel = real.strip_prefix(&self.root).unwrap_or(&real);
        if rel == Path::new(CONFIG_FILE) {
            return Err(VaneError::new(
                ErrorCode::PathProtected,
                format!("`{p}` is vane's own configuration, which tools may not write (edit it yourself)"),
            )
            .with_details(json!({ "path": p })));
        }
        if real.starts_with(&self.state_dir) || rel.components().any(|c| c.as_os_str() == ".git") {
            return Err(VaneError::new(
                ErrorCode::PathProtected,
                format!("`{p}` is inside vane's state directory or a .git directory, which tools may not write"),
            )
            .with_details(json!({ "path": p })));
        }
        Ok(real)
    }

    /// The workspace-relative form of a resolved path.
    pub fn relative(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }
}

/// A directory of the workspace held open, with errors in vane's terms.
pub struct WsDir<'w> {
    ws: &'w Workspace,
    dir: Dir,
    shown: String,
}

impl WsDir<'_> {
    /// The file's bytes (at most `max` + 1), or `None` when it does not exist.
    pub fn read(&self, name: &Path, max: u64) -> Result<Option<Vec<u8>>, VaneError> {
        self.dir
            .read(name, max)
            .map_err(|r| self.ws.refused(&self.shown, r))
    }

    pub fn mode_of(&self, name: &Path) -> Option<u32> {
        self.dir.mode_of(name)
    }

    pub fn write_atomic(&self, name: &Path, bytes: &[u8], mode: u32) -> Result<(), VaneError> {
        self.dir
            .write_atomic(name, bytes, mode)
            .map_err(|r| self.ws.refused(&self.shown, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ws");
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::create_dir_all(root.join(".vane")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(d.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("updir")).unwrap();
        std::os::unix::fs::symlink(root.join("src"), root.join("inner")).unwrap();
        let ws = Workspace::new(&root, &root.join(".vane")).unwrap();
        for bad in [
            "../secret",
            "/etc/passwd",
            "src/../../secret",
            "link",
            "updir/secret",
            "updir/new-file",
        ] {
            assert_eq!(
                ws.resolve(bad).unwrap_err().code,
                ErrorCode::PathOutsideWorkspace,
                "{bad}"
            );
        }
        assert!(ws.resolve("inner/x.rs").is_ok());
        assert!(ws.resolve("src/new/deep.rs").is_ok());
        assert!(ws.resolve(root.join("src").to_str().unwrap()).is_ok());
        for prot in [
            ".vane/vane.db",
            ".git/config",
            "sub/.git/HEAD",
            "vane.toml",
            "./vane.toml",
        ] {
            assert_eq!(
                ws.resolve_for_write(prot).unwrap_err().code,
                ErrorCode::PathProtected,
                "{prot}"
            );
        }
        assert_eq!(ws.resolve("").unwrap_err().code, ErrorCode::InvalidInput);
    }
}
