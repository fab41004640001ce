//! Memory and process-count limits for the commands vane runs (`cmd_run`,
//! critics), enforced by the kernel.
//!
//! Preferred: a control group per command — cgroup v2 (`memory.max`,
//! `pids.max`) or, on hosts still on v1, the `memory` and `pids` hierarchies
//! (`memory.limit_in_bytes`, `pids.max`) — created under vane's own group,
//! joined by a small shell in front of the command before it `exec`s it
//! (`echo 0 > cgroup.procs` moves the shell itself, so nothing the command
//! starts is outside), removed when the command is over. A group limits the
//! command with everything it forks, whatever user it runs as.
//! Fallback where no group can be created: `ulimit` in that shell —
//! `-v` (address space, per process) and `-u` (processes of the user, which
//! the kernel does not enforce for root). Which one is in force is reported by
//! `status` (`sandbox.limits`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// How limits are enforced on this host.
#[derive(Debug, Clone)]
pub enum Enforcer {
    /// cgroup v2: the directory new groups are made in
    CgroupV2(PathBuf),
    /// cgroup v1: the `memory` and `pids` directories new groups are made in
    CgroupV1 { memory: PathBuf, pids: PathBuf },
    /// setrlimit in the child
    Rlimit,
}

impl Enforcer {
    pub fn name(&self) -> &'static str {
        match self {
            Enforcer::CgroupV2(_) => "cgroup-v2",
            Enforcer::CgroupV1 { .. } => "cgroup-v1",
            Enforcer::Rlimit => "rlimit",
        }
    }
}

/// The process's own group in a hierarchy (`/proc/self/cgroup`).
fn own_group(controller: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

/// A group directory can be made (and removed) under `base`.
fn usable(base: &Path, limit_file: &str) -> bool {
    let probe = base.join(format!("vane-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok() && probe.join(limit_file).exists();
    let _ = std::fs::remove_dir(&probe);
    ok
}

/// Detected once per process.
pub fn enforcer() -> &'static Enforcer {
    static E: OnceLock<Enforcer> = OnceLock::new();
    E.get_or_init(|| {
        let root = Path::new("/sys/fs/cgroup");
        if let Some(own) = own_group(None) {
            let ctrls =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            if ctrls.contains("memory") && ctrls.contains("pids") {
                let base = root.join(own.trim_start_matches('/'));
                if usable(&base, "memory.max") {
                    return Enforcer::CgroupV2(base);
                }
            }
        }
        if let (Some(m), Some(p)) = (own_group(Some("memory")), own_group(Some("pids"))) {
            let memory = root.join("memory").join(m.trim_start_matches('/'));
            let pids = root.join("pids").join(p.trim_start_matches('/'));
            if usable(&memory, "memory.limit_in_bytes") && usable(&pids, "pids.max") {
                return Enforcer::CgroupV1 { memory, pids };
            }
        }
        Enforcer::Rlimit
    })
}

/// The limits of one command: bytes of memory and number of processes
/// (0 = none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub memory_bytes: u64,
    pub processes: u64,
}

/// The groups of one running command; removed on drop (after the caller
/// killed what was left of the command).
#[derive(Debug, Default)]
pub struct Slot {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each group, for the child to join
    join: Vec<PathBuf>,
    rlimit: Option<Limits>,
}

impl Slot {
    /// Makes the groups (or plans the rlimits) for one command.
    pub fn new(limits: Limits) -> Slot {
        if limits.memory_bytes == 0 && limits.processes == 0 {
            return Slot::default();
        }
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "vane-cmd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut slot = Slot::default();
        let made = match enforcer() {
            Enforcer::CgroupV2(base) => {
                let d = base.join(&name);
                std::fs::create_dir(&d).is_ok() && {
                    slot.dirs.push(d.clone());
                    write_limit(&d, "memory.max", limits.memory_bytes)
                        && write_limit(&d, "pids.max", limits.processes)
                }
            }
            Enforcer::CgroupV1 { memory, pids } => {
                let (m, p) = (memory.join(&name), pids.join(&name));
                let ok_m = std::fs::create_dir(&m).is_ok();
                if ok_m {
                    slot.dirs.push(m.clone());
                }
                let ok_p = std::fs::create_dir(&p).is_ok();
                if ok_p {
                    slot.dirs.push(p.clone());
                }
                ok_m && ok_p
                    && write_limit(&m, "memory.limit_in_bytes", limits.memory_bytes)
                    && write_limit(&p, "pids.max", limits.processes)
            }
            Enforcer::Rlimit => false,
        };
        if made {
            slot.join = slot.dirs.iter().map(|d| d.join("cgroup.procs")).collect();
        } else {
            slot.remove();
            slot.rlimit = Some(limits);
        }
        slot
    }

    /// The argv prefix that puts a command under these limits: a shell
    /// that joins the groups (`echo 0` into `cgroup.procs` moves the shell
    /// itself, before anything else starts) or sets the rlimits (`ulimit`),
    /// then `exec`s the command. Empty when there is nothing to limit.
    pub fn prefix(&self) -> Vec<String> {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut steps: Vec<String> = self
            .join
            .iter()
            .map(|p| format!("echo 0 > {}", quote(&p.to_string_lossy())))
            .collect();
        if let Some(l) = self.rlimit {
            if l.memory_bytes > 0 {
                steps.push(format!("ulimit -v {}", l.memory_bytes / 1024));
            }
            if l.processes > 0 {
                steps.push(format!("ulimit -u {}", l.processes));
            }
        }
        if steps.is_empty() {
            return Vec::new();
        }
        steps.push("exec \"$@\"".into());
        vec![
            "/bin/sh".into(),
            "-c".into(),
            steps.join(" && "),
            "vane-limits".into(),
        ]
    }

    fn remove(&mut self) {
        for d in self.dirs.drain(..) {
            // a group empties a moment after its last process was reaped
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.remove();
    }
}

fn write_limit(dir: &Path, file: &str, v: u64) -> bool {
    if v == 0 {
        return true;
    }
    std::fs::write(dir.join(file), v.to_string()).is_ok()
}
