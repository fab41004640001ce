//! Exports for people and git, rewritten atomically after each change.
//!
//! Each export kind has a revision in the store (`meta.rev_<kind>`), bumped by
//! the transaction that changed it. A refresh takes the export lock, reads the
//! revision and the data in one read transaction, and writes only if that
//! revision is newer than the one recorded in `export-revs.json`; so with
//! several processes an older export never overwrites a newer one, and a
//! reader of the files sees either the old or the new content, never a mix.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use fs4::fs_std::FileExt;
use serde_json::json;
use vane_core::{ErrorCode, VaneError};

use crate::store::{self, Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Roadmap,
    Context,
    Checkpoint,
    Critics,
}

impl ExportKind {
    pub const ALL: [ExportKind; 4] = [
        ExportKind::Roadmap,
        ExportKind::Context,
        ExportKind::Checkpoint,
        ExportKind::Critics,
    ];

    pub(crate) fn meta_key(self) -> &'static str {
        match self {
            ExportKind::Roadmap => "rev_roadmap",
            ExportKind::Context => "rev_context",
            ExportKind::Checkpoint => "rev_checkpoint",
            ExportKind::Critics => "rev_critics",
        }
    }
}

fn io_err(what: &Path, e: std::io::Error) -> VaneError {
    VaneError::new(ErrorCode::IoError, format!("{}: {e}", what.display()))
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, then rename over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".vane-tmp-")
        .tempfile_in(dir)
        .map_err(|e| io_err(dir, e))?;
    tmp.write_all(bytes).map_err(|e| io_err(path, e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    tmp.persist(path).map_err(|e| io_err(path, e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) fn refresh(store: &Store, kind: ExportKind) -> Result<bool> {
    let paths = store.paths().clone();
    let lock_path = paths.export_lock();
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    lock.lock_exclusive().map_err(|e| io_err(&lock_path, e))?;
    let revs_path = paths.export_revs();
    let mut revs: BTreeMap<String, i64> = std::fs::read(&revs_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let done = revs.get(kind.meta_key()).copied().unwrap_or(-1);

    // Revision and data from one snapshot.
    let rendered = store.read_snapshot(|tx| {
        let rev: i64 = crate::sql::one(tx, "SELECT value FROM meta WHERE key = ?1", crate::sql::p![kind.meta_key()])?;
        if rev <= done {
            return Ok(None);
        }
        let files: Vec<(std::path::PathBuf, Vec<u8>)> = match kind {
            ExportKind::Roadmap => {
                let r = store::load_roadmap(tx)?;
                vec![(paths.roadmap_export(), vane_core::roadmap::to_yaml(&r).into_bytes())]
            }
            ExportKind::Context => {
                let mut md = String::from("# Running context\n\n<!-- written by vane from its store; edit through the context_write tool -->\n");
                for s in store::context_sections(tx)? {
                    md.push_str(&format!("\n## {}\n\n{}\n", s.name, s.content.trim_end()));
                }
                let decisions = store::decisions(tx, 50)?;
                if !decisions.is_empty() {
                    md.push_str("\n## Decisions\n");
                    for d in decisions.iter().rev() {
                        md.push_str(&format!(
                            "\n- **{}** ({}{}): {}{}\n",
                            d.title,
                            d.created_at,
                            d.task_id.as_ref().map(|t| format!(", task {t}")).unwrap_or_default(),
                            d.summary,
                            d.impact.as_ref().map(|i| format!(" — impact: {i}")).unwrap_or_default()
                        ));
                    }
                }
                vec![(paths.context_export(), md.into_bytes())]
            }
            ExportKind::Checkpoint => match store::latest_checkpoint(tx)? {
                Some(c) => vec![(
                    paths.checkpoint_export(),
                    serde_json::to_vec_pretty(&c).unwrap_or_default(),
                )],
                None => Vec::new(),
            },
            ExportKind::Critics => store::latest_critic_runs(tx)?
                .into_iter()
                .map(|run| {
                    (
                        paths.critics_dir().join(format!("{}.json", run.name)),
                        serde_json::to_vec_pretty(&json!(run)).unwrap_or_default(),
                    )
                })
                .collect(),
        };
        Ok(Some((rev, files)))
    })?;
    let Some((rev, files)) = rendered else {
        return Ok(false);
    };
    for (path, bytes) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        // exports are files people commit and share: secrets masked
        let bytes = match vane_core::redact::redact(&String::from_utf8_lossy(&bytes)) {
            std::borrow::Cow::Owned(r) => r.into_bytes(),
            std::borrow::Cow::Borrowed(_) => bytes,
        };
        write_atomic(&path, &bytes)?;
    }
    revs.insert(kind.meta_key().to_string(), rev);
    write_atomic(&revs_path, &serde_json::to_vec(&revs).unwrap_or_default())?;
    drop(lock);
    Ok(true)
}
