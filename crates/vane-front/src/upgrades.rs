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
