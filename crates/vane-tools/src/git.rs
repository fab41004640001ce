//! The git vane runs for itself (`context_snapshot`, `critics_run`'s changed
//! files, `vane preflight`, `vane upgrade`'s worktrees).
//!
//! A repository's configuration can make git execute programs: `core.fsmonitor`
//! on every `git status`, `core.hooksPath` and `.git/hooks`, filters
//! (`filter.*.clean/smudge/process`), `diff.external`, textconv, the pager,
//! `core.sshCommand`. An agent's command may have written any of them (the
//! sandbox keeps `.git/config` read-only, but a workspace can arrive with
//! them), and vane runs git unsandboxed with the server's rights — so vane's
//! git never executes repository-controlled programs:
//!
//! - every setting that names a program is overridden on the command line
//!   (`-c key=` wins over every config file), including each filter and
//!   textconv driver the configuration defines (read with `git config`,
//!   which executes nothing);
//! - system config and the environment are not inherited (`GIT_*` from the
//!   server could redirect git), no prompts, no optional locks;
//! - where bubblewrap works, read-only git runs inside the sandbox as well
//!   (workspace read-only, no network, vane's state hidden): whatever git
//!   might still run, runs confined.

use std::path::Path;
use std::process::Stdio;

use crate::sandbox::Sandbox;

/// Settings that name a program, neutralised for every call.
const FIXED: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.editor=false",
    "core.askPass=",
    "core.sshCommand=false",
    "core.untrackedCache=false",
    "diff.external=",
    "credential.helper=",
    "sequence.editor=false",
    "gpg.program=false",
    "protocol.allow=never",
    "protocol.file.allow=always",
];

fn base_env(cmd: &mut std::process::Command) {
    cmd.env_clear();
    for k in ["PATH", "HOME", "LANG", "LC_ALL", "TZ"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0");
}

/// `-c` arguments that neutralise every program-naming setting, the
/// configured filter and diff drivers included.
pub fn hardening(root: &Path) -> Vec<String> {
    let mut args: Vec<String> = FIXED
        .iter()
        .flat_map(|kv| ["-c".into(), kv.to_string()])
        .collect();
    let mut cmd = std::process::Command::new("git");
    base_env(&mut cmd);
    cmd.args(&args)
        .args(["config", "--list", "--includes", "--name-only", "-z"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let names = cmd
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for name in names.split('\0').filter(|n| !n.is_empty()) {
        let lower = name.to_ascii_lowercase();
        let (section, rest) = lower.split_once('.').unwrap_or((&lower, ""));
        let key = rest.rsplit('.').next().unwrap_or("");
        let neutral = match (section, key) {
            ("filter", "clean" | "smudge" | "process") => Some(""),
            ("filter", "required") => Some("false"),
            ("diff", "textconv" | "command") => Some(""),
            ("merge", "driver") => Some("false"),
            ("core", "fsmonitor") => Some("false"),
            _ => None,
        };
        if let Some(v) = neutral {
            args.push("-c".into());
            args.push(format!("{name}={v}"));
        }
    }
    args
}

/// A hardened `git` in `root` (not sandboxed: for the operator's own steps,
/// such as `vane upgrade`'s worktrees, which write).
pub fn command(root: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    base_env(&mut cmd);
    cmd.args(hardening(root))
        .arg("--no-pager")
        .current_dir(root)
        .stdin(Stdio::null());
    cmd
}

/// Runs a read-only git command in `root`: hardened, and inside the
/// sandbox (read-only, no network) when bubblewrap works.
pub async fn read(
    root: &Path,
    sandbox: Option<&Sandbox>,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    let root = root.to_path_buf();
    let wrapper = sandbox.and_then(Sandbox::for_vane_itself);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let inner = command(&root);
        let mut cmd = match &wrapper {
            Some(w) => {
                let mut c = std::process::Command::new(&w[0]);
                c.args(&w[1..])
                    .arg(inner.get_program())
                    .args(inner.get_args());
                c.env_clear();
                for (k, v) in inner.get_envs() {
                    if let Some(v) = v {
                        c.env(k, v);
                    }
                }
                c.current_dir(&root).stdin(Stdio::null());
                c
            }
            None => inner,
        };
        cmd.args(&args).output()
    })
    .await
    .map_err(std::io::Error::other)?
}
