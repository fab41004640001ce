//! Reading upgrade runs (`STATE_DIR/upgrades/<timestamp>/`), shared by
//! `vane upgrade status` and the admin tool `upgrade_status`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vane_core::{ErrorCode, VaneError};

fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

/// The directory of the upgrade holding the lock, if its owner is alive.
pub fn locked_run(state_dir: &Path) -> Option<PathBuf> {
    let t = std::fs::read_to_string(state_dir.join("upgrade.lock")).ok()?;
    let v: Value = serde_json::from_str(&t).ok()?;
    let pid = v["pid"].as_u64()? as u32;
    if !pid_alive(pid) {
        return None;
    }
    v["dir"].as_str().map(PathBuf::from)
}

/// The running upgrade's progress, or else the newest run's report.
pub fn status(state_dir: &Path) -> Result<Value, VaneError> {
    let read = |p: PathBuf| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    if let Some(v) = locked_run(state_dir).and_then(|d| read(d.join("progress.json"))) {
        return Ok(v);
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(state_dir.join("upgrades"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("progress.json").exists() || p.join("report.json").exists())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    let last = runs.last().ok_or_else(|| {
        VaneError::new(ErrorCode::NotFound, "no upgrade has run in this workspace")
    })?;
    read(last.join("report.json"))
        .or_else(|| read(last.join("progress.json")))
        .ok_or_else(|| VaneError::internal(format!("unreadable report in {}", last.display())))
}

fn current_file(state_dir: &Path) -> PathBuf {
    state_dir.join("upgrades").join("current.json")
}

/// The worker executable a new front starts: the one the last promote or
/// rollback routed to (`STATE_DIR/upgrades/current.json`), while it is
/// still an executable file. So a promoted version stays promoted when the
/// client restarts `vane serve`, and a rolled-back one stays rolled back.
pub fn current_binary(state_dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(current_file(state_dir)).ok()?).ok()?;
    let p = PathBuf::from(v["binary"].as_str()?);
    let m = std::fs::metadata(&p).ok()?;
    (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
}

/// Records the binary traffic was just routed to (see [`current_binary`]).
pub fn record_current(state_dir: &Path, binary: &Path, version: &str, why: &str) {
    let v = serde_json::json!({
        "binary": binary.display().to_string(),
        "version": version,
        "why": why,
        "at": chrono::Utc::now().to_rfc3339(),
        "front_pid": std::process::id(),
    });
    let path = current_file(state_dir);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    let ok = std::fs::write(&tmp, serde_json::to_vec_pretty(&v).unwrap_or_default())
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = ok {
        tracing::error!(target: "vane::front", "cannot record {}: {e}", path.display());
    }
}
