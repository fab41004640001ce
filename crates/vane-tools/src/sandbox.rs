//! The sandbox every command vane runs for an agent goes through, and the
//! environment such a command gets.
//!
//! bubblewrap, with the host's filesystem read-only and these holes closed
//! *by construction* rather than by a list of forbidden commands:
//!
//! - **No capabilities.** vane often runs as root (CI, containers); bwrap
//!   started by root keeps every capability inside the sandbox unless told
//!   otherwise, and with `CAP_SYS_ADMIN` a command can simply
//!   `mount -o remount,bind,rw /` and write the host. `--cap-drop ALL`.
//! - **No privileged endpoint.** Connecting to a Unix socket needs no write
//!   access to its directory, so a read-only bind does not protect one:
//!   vane's state directory (its control socket, store, upgrade records) is
//!   replaced by an empty tmpfs, and so are `/run` (and with it `/var/run`,
//!   the D-Bus, systemd, Docker and agent sockets), `/tmp`, `/var/tmp` and
//!   `/dev/shm`. With `network = false` the network namespace is separate too,
//!   which also cuts abstract Unix sockets.
//! - **No credentials.** The usual credential files and directories under
//!   `$HOME` (SSH, cloud CLIs, registries, git credentials, agent CLIs'
//!   logins) are hidden, plus `[commands] hide`.
//! - **What vane itself trusts is read-only.** `vane.toml` (the sandbox
//!   setting, deny rules, the state directory's place), and in `.git` the
//!   files git executes from — `config` (fsmonitor, hooksPath, filters,
//!   aliases, pager), `hooks/`, `info/`, `modules/`, `commondir` — while the
//!   rest of `.git` stays writable so an agent can still commit. `.git`
//!   itself is a mount point, so it cannot be renamed away and replaced.
//! - **A clean environment.** A command gets `PATH`, `HOME`, locale and
//!   toolchain variables and what `[commands] env_allow` names — never the
//!   server's API keys (this holds with the sandbox off too).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use vane_core::config::SandboxMode;
use vane_core::{ErrorCode, VaneError};

/// How commands are sandboxed.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub mode: SandboxMode,
    pub bwrap: Option<PathBuf>,
    pub network: bool,
    pub workspace: PathBuf,
    pub state_dir: PathBuf,
    /// bind the workspace read-only too (dry-run workers, vane's own git)
    pub read_only_workspace: bool,
    /// extra paths to hide (`[commands] hide`)
    pub hide: Vec<PathBuf>,
    /// variables a command gets besides the basics (`[commands] env_allow`)
    pub env_allow: Vec<String>,
    /// memory and process limits of one command (`[limits]`)
    pub limits: crate::limits::Limits,
}

/// Finds `bwrap` on PATH and checks that it can start (user namespaces may be
/// unavailable in containers).
pub fn detect_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let bin = std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())?;
    let ok = std::process::Command::new(&bin)
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--unshare-pid",
            "--cap-drop",
            "ALL",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(bin)
}

/// Credential locations under `$HOME` hidden from every sandboxed command.
const HOME_SECRETS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".config/anthropic",
    ".config/openai",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".yarnrc",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".claude",
    ".claude.json",
    ".codex",
    ".vault-token",
    ".terraform.d",
];

/// Files and directories in `.git` that git reads commands or a git dir from.
const GIT_EXECUTES_FROM: &[&str] = &[
    "config",
    "config.worktree",
    "hooks",
    "info",
    "modules",
    "commondir",
];

/// Places that hold sockets or shared memory of other processes.
const EPHEMERAL: &[&str] = &["/run", "/var/run", "/tmp", "/var/tmp", "/dev/shm"];

impl Sandbox {
    /// Whether commands run inside bubblewrap (`Ok(false)`: unconfined).
    pub fn active(&self) -> Result<bool, VaneError> {
        self.bwrap_for_mode().map(|b| b.is_some())
    }

    fn bwrap_for_mode(&self) -> Result<Option<&PathBuf>, VaneError> {
        match (self.mode, &self.bwrap) {
            (SandboxMode::Off, _) | (SandboxMode::Auto, None) => Ok(None),
            (SandboxMode::Bwrap, None) => Err(VaneError::new(
                ErrorCode::SandboxUnavailable,
                "sandbox = \"bwrap\" but bubblewrap is not installed or cannot start (apt-get install bubblewrap)",
            )),
            (_, Some(b)) => Ok(Some(b)),
        }
    }

    /// The bwrap argv prefix for a command in `cwd`; `Ok(None)` means run
    /// without a sandbox.
    pub fn wrapper(&self, cwd: &Path) -> Result<Option<Vec<String>>, VaneError> {
        let Some(bwrap) = self.bwrap_for_mode()? else {
            return Ok(None);
        };
        Ok(Some(self.argv(bwrap, cwd)))
    }

    /// The same confinement for a program vane runs for itself on the
    /// workspace (git): workspace read-only, no network — whatever the
    /// sandbox mode, whenever bubblewrap works.
    pub fn for_vane_itself(&self) -> Option<Vec<String>> {
        let b = self.bwrap.as_ref()?;
        let ro = Sandbox {
            read_only_workspace: true,
            network: false,
            ..self.clone()
        };
        Some(ro.argv(b, &self.workspace))
    }

    fn argv(&self, bwrap: &Path, cwd: &Path) -> Vec<String> {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        let mut a: Vec<String> = vec![s(bwrap)];
        fn push(a: &mut Vec<String>, items: &[&str]) {
            a.extend(items.iter().map(|x| x.to_string()));
        }
        push(
            &mut a,
            &["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"],
        );
        let ws = s(&self.workspace);
        let inside_ws = |p: &Path| p.starts_with(&self.workspace);
        // sockets and shared memory of the host's other processes
        for e in EPHEMERAL {
            let p = Path::new(e);
            // a symlink (/var/run → /run) is covered by its target
            if p.symlink_metadata().is_ok_and(|m| m.is_dir()) && !inside_ws(p) {
                push(&mut a, &["--tmpfs", e]);
            }
        }
        // name resolution may live under /run (systemd-resolved): keep it
        if let Ok(real) = std::fs::canonicalize("/etc/resolv.conf") {
            if EPHEMERAL.iter().any(|e| real.starts_with(e)) {
                let r = s(&real);
                a.extend(["--ro-bind".into(), r.clone(), r]);
            }
        }
        let rw = if self.read_only_workspace {
            "--ro-bind"
        } else {
            "--bind"
        };
        a.extend([rw.to_string(), ws.clone(), ws.clone()]);
        // what vane and git trust in the workspace, read-only
        let git = self.workspace.join(".git");
        if git.is_dir() {
            // a missing hooks/ or info/ could be created in the sandbox and
            // hold what the user's next commit runs: make them (empty) to
            // mount them read-only (git creates both in every new repository)
            for d in ["hooks", "info"] {
                let _ = std::fs::create_dir(git.join(d));
            }
            let g = s(&git);
            a.extend([rw.to_string(), g.clone(), g]); // a mount point: cannot be renamed
            for f in GIT_EXECUTES_FROM {
                let p = git.join(f);
                if p.symlink_metadata().is_ok() {
                    let p = s(&p);
                    a.extend(["--ro-bind".into(), p.clone(), p]);
                }
            }
        } else if git.is_file() {
            let g = s(&git);
            a.extend(["--ro-bind".into(), g.clone(), g]);
        }
        let toml = self.workspace.join("vane.toml");
        if toml.is_file() {
            let t = s(&toml);
            a.extend(["--ro-bind".into(), t.clone(), t]);
        }
        // vane's own state: store, control socket, upgrade records
        if self.state_dir.is_dir() {
            a.extend(["--tmpfs".into(), s(&self.state_dir)]);
        }
        // credentials
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let secrets = home
            .iter()
            .flat_map(|h| HOME_SECRETS.iter().map(move |x| h.join(x)))
            .chain(self.hide.iter().cloned());
        for p in secrets {
            let Ok(m) = p.symlink_metadata() else {
                continue;
            };
            if inside_ws(&p) && !self.hide.contains(&p) {
                continue;
            }
            let ps = s(&p);
            if m.is_dir() {
                a.extend(["--tmpfs".into(), ps]);
            } else {
                a.extend(["--ro-bind".into(), "/dev/null".into(), ps]);
            }
        }
        push(
            &mut a,
            &[
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
                "--die-with-parent",
                "--new-session",
                "--cap-drop",
                "ALL",
            ],
        );
        if !self.network {
            push(&mut a, &["--unshare-net"]);
        }
        a.extend(["--chdir".into(), s(cwd), "--".into()]);
        a
    }
}

/// Variables every command gets from vane's environment: the basics a shell
/// and the common toolchains need, none of them a secret.
const ENV_BASICS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "TZ",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "VIRTUAL_ENV",
    "NVM_DIR",
    "GOPATH",
    "GOROOT",
    "JAVA_HOME",
    "CI",
];

fn allowed(name: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// The part of `from` (vane's own environment) a command may see: the basics
/// plus `extra` (names or `PREFIX*`).
pub fn command_env(
    from: impl Iterator<Item = (String, String)>,
    extra: &[String],
) -> Vec<(String, String)> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    from.filter(|(k, _)| allowed(k, ENV_BASICS) || allowed(k, &extra))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_variables_pass() {
        let env = vec![
            ("PATH".to_string(), "/bin".to_string()),
            ("LC_ALL".into(), "C".into()),
            ("ANTHROPIC_API_KEY".into(), "sk-ant-x".into()),
            ("OPENAI_API_KEY".into(), "sk-x".into()),
            ("CARGO_TARGET_DIR".into(), "/t".into()),
            ("VANE_STATE_DIR".into(), "/s".into()),
        ];
        let got = command_env(env.clone().into_iter(), &[]);
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "LC_ALL"]);
        let got = command_env(env.into_iter(), &["CARGO_*".into()]);
        assert!(got.iter().any(|(k, _)| k == "CARGO_TARGET_DIR"));
        assert!(!got.iter().any(|(k, _)| k.contains("API_KEY")));
    }
}
