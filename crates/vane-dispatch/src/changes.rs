//! Which files an attempt changed, for `SELECTIVE_TESTS=1` (critics chosen
//! by the paths they watch).
//!
//! From git: the files that differ from the commit the attempt started at,
//! plus new untracked files, minus files that were already dirty before and
//! whose content did not change. Not a git repository (or git missing):
//! unknown, and every critic runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The workspace's state before an attempt.
#[derive(Debug, Clone)]
pub struct Snapshot {
    head: String,
    /// dirty files before, with a hash of their content
    dirty: BTreeMap<String, u64>,
}

fn git(ws: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(ws)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn hash(ws: &Path, rel: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(ws.join(rel)).ok().hash(&mut h);
    h.finish()
}

fn candidates(ws: &Path, head: &str) -> Option<Vec<String>> {
    let mut files: Vec<String> = Vec::new();
    let diff = git(ws, &["diff", "--name-only", "-z", head])?;
    let untracked = git(ws, &["ls-files", "--others", "--exclude-standard", "-z"])?;
    for f in diff.split('\0').chain(untracked.split('\0')) {
        if !f.is_empty() && !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    Some(files)
}

pub fn snapshot(ws: &Path) -> Option<Snapshot> {
    let head = git(ws, &["rev-parse", "--verify", "HEAD"])?
        .trim()
        .to_string();
    let dirty = candidates(ws, &head)?
        .into_iter()
        .map(|f| {
            let h = hash(ws, &f);
            (f, h)
        })
        .collect();
    Some(Snapshot { head, dirty })
}

/// Files changed since `before` (None: unknown).
pub fn changed_since(ws: &Path, before: &Option<Snapshot>) -> Option<Vec<String>> {
    let b = before.as_ref()?;
    let mut out = Vec::new();
    for f in candidates(ws, &b.head)? {
        match b.dirty.get(&f) {
            Some(h) if *h == hash(ws, &f) => {}
            _ => out.push(f),
        }
    }
    Some(out)
}
