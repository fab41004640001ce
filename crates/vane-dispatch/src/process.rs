//! Running an agent as a child process: its own process group, only the
//! environment vane hands it, the prompt on stdin, stdout read line by line
//! as it comes, a wall-clock limit.
//!
//! Why a process group: an agent CLI starts children of its own (vane's MCP
//! server, shells, node helpers). Stopping the CLI alone would leave them
//! running; `killpg` stops the whole tree. The group is killed when the
//! attempt times out, when it ends (stragglers), and when the future running
//! it is dropped (`vane run` stopped) — [`GroupGuard`] does the last.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The most of an agent's stdout kept for its transcript; the stream is
/// still parsed to its end.
pub const TRANSCRIPT_MAX: usize = 8 << 20;
/// The tail of stderr kept.
pub const STDERR_MAX: usize = 64 << 10;
/// The longest stdout line parsed (a longer one is cut; a stream-json line
/// of a whole file's content is far below this).
pub const LINE_MAX: usize = 4 << 20;

/// What to start.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub program: String,
    pub args: Vec<String>,
    /// the child's whole environment (nothing else is inherited)
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// written to stdin, which is then closed
    pub stdin: Vec<u8>,
    pub timeout: Duration,
}

/// How the process ended.
#[derive(Debug, Clone, Default)]
pub struct Exit {
    /// the exit code, or 128 + the signal that ended it
    pub status: Option<i32>,
    pub timed_out: bool,
    /// the program could not be started (not found, not executable …)
    pub spawn_error: Option<String>,
    /// stdout as printed (capped at [`TRANSCRIPT_MAX`])
    pub stdout: Vec<u8>,
    /// the tail of stderr
    pub stderr: Vec<u8>,
    /// stdout ended with a line that had no newline (a cut stream)
    pub cut_line: bool,
}

impl Exit {
    pub fn stderr_tail(&self, max_chars: usize) -> String {
        vane_core::text::tail(&String::from_utf8_lossy(&self.stderr), max_chars)
    }
}

/// Kills a process group when dropped, unless disarmed.
pub struct GroupGuard(Option<i32>);

impl GroupGuard {
    pub fn kill(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Runs the process to its end or its timeout; `on_line` sees every stdout
/// line as it arrives (lossy UTF-8, without the newline) and returns true
/// to end the run early (the adapter has seen enough: the group is killed).
/// `on_spawn` gets the process group id once the agent started.
pub async fn run(
    spec: &Spawn,
    on_spawn: &(dyn Fn(i32) + Send + Sync),
    mut on_line: impl FnMut(&str) -> bool,
) -> Exit {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Exit {
                spawn_error: Some(format!("cannot start `{}`: {e}", spec.program)),
                ..Exit::default()
            }
        }
    };
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    if let Some(pgid) = guard.0 {
        on_spawn(pgid);
    }
    let stdin = child.stdin.take();
    let input = spec.stdin.clone();
    let writer = tokio::spawn(async move {
        if let Some(mut s) = stdin {
            // an agent that never reads its stdin must not block us
            let _ = s.write_all(&input).await;
            let _ = s.shutdown().await;
        }
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = tokio::spawn(async move {
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * STDERR_MAX {
                        tail.drain(..tail.len() - STDERR_MAX);
                    }
                }
            }
        }
        if tail.len() > STDERR_MAX {
            tail.drain(..tail.len() - STDERR_MAX);
        }
        tail
    });
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut transcript = Vec::new();
    let mut cut_line = false;
    let mut early = false;
    let read_all = async {
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut out)
                .take(LINE_MAX as u64)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if transcript.len() < TRANSCRIPT_MAX {
                        let room = TRANSCRIPT_MAX - transcript.len();
                        transcript.extend_from_slice(&line[..line.len().min(room)]);
                    }
                    let complete = line.last() == Some(&b'\n');
                    cut_line = !complete;
                    let text = String::from_utf8_lossy(&line);
                    if on_line(text.trim_end_matches(['\n', '\r'])) {
                        early = true;
                        break;
                    }
                }
            }
        }
    };
    let timed_out = tokio::time::timeout(spec.timeout, read_all).await.is_err();
    let status = if timed_out || early {
        // ask first, then make sure
        guard.kill(nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                guard.kill(nix::sys::signal::Signal::SIGKILL);
                child.wait().await.ok()
            }
        }
    } else {
        // stdout closed: the agent is ending; give it a moment to exit
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                guard.kill(nix::sys::signal::Signal::SIGKILL);
                child.wait().await.ok()
            }
        }
    };
    // whatever the agent left behind in its group goes with it
    guard.kill(nix::sys::signal::Signal::SIGKILL);
    writer.abort();
    let stderr = tokio::time::timeout(Duration::from_secs(2), err_reader)
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    use std::os::unix::process::ExitStatusExt;
    Exit {
        status: status.map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))),
        timed_out,
        spawn_error: None,
        stdout: transcript,
        stderr,
        cut_line,
    }
}

/// The environment an agent gets: a fixed base (PATH, HOME, LANG, TERM,
/// TMPDIR, USER, SHELL, when set), the names the provider lists in
/// `env_pass` and its `api_key_env`, and vane's own additions. Nothing else
/// of vane's environment reaches it.
pub fn agent_env(pass: &[String], extra: &[(String, String)]) -> Vec<(String, String)> {
    const BASE: &[&str] = &[
        "PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL",
    ];
    let mut env: Vec<(String, String)> = Vec::new();
    for name in BASE.iter().copied().chain(pass.iter().map(String::as_str)) {
        if env.iter().any(|(k, _)| k == name) {
            continue;
        }
        if let Ok(v) = std::env::var(name) {
            env.push((name.to_string(), v));
        }
    }
    for (k, v) in extra {
        env.retain(|(n, _)| n != k);
        env.push((k.clone(), v.clone()));
    }
    env
}
