//! Running shell commands in the workspace: own process group, timeout that
//! kills the whole group, stdout/stderr captured with a byte cap (head and
//! tail kept), in the sandbox (`sandbox.rs`) with a clean environment.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use vane_core::{ErrorCode, VaneError};

/// Keeps the first and last `cap / 2` bytes of a stream.
#[derive(Debug, Default)]
pub struct HeadTail {
    cap: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    total: usize,
}

impl HeadTail {
    pub fn new(cap: usize) -> Self {
        HeadTail {
            cap,
            ..Default::default()
        }
    }
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len();
        let half = self.cap / 2;
        let mut rest = data;
        if self.head.len() < half {
            let n = (half - self.head.len()).min(rest.len());
            self.head.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        let keep = self.cap - half;
        if rest.len() >= keep {
            self.tail.clear();
            self.tail.extend(&rest[rest.len() - keep..]);
        } else {
            self.tail.extend(rest);
            while self.tail.len() > keep {
                self.tail.pop_front();
            }
        }
    }
    pub fn truncated(&self) -> bool {
        self.total > self.head.len() + self.tail.len()
    }
    pub fn total(&self) -> usize {
        self.total
    }
    pub fn render(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.truncated() {
            let omitted = self.total - self.head.len() - self.tail.len();
            out.push_str(&format!("\n…[{omitted} bytes omitted]…\n"));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CmdOutput {
    pub exit_code: Option<i32>,
    /// signal that ended the command, if any
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    pub stdout_bytes: usize,
    pub stderr_bytes: usize,
    pub truncated: bool,
    /// `bwrap` or `none`
    pub sandbox: String,
}

pub use crate::sandbox::{detect_bwrap, Sandbox};

fn shell() -> &'static str {
    if Path::new("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    }
}

/// Runs `cmdline` with a shell in `cwd`.
pub async fn run(
    cmdline: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
    cap: usize,
    sandbox: &Sandbox,
) -> Result<CmdOutput, VaneError> {
    let wrapper = sandbox.wrapper(cwd)?;
    // a turn among the worker's commands is taken by the caller; the
    // command's own memory and process limits are set here
    let slot = crate::limits::Slot::new(sandbox.limits);
    let mut argv: Vec<String> = slot.prefix();
    argv.extend(wrapper.clone().unwrap_or_default());
    argv.extend([shell().to_string(), "-c".into(), cmdline.to_string()]);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .env_clear()
        .envs(crate::sandbox::command_env(
            std::env::vars(),
            &sandbox.env_allow,
        ));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        VaneError::new(
            ErrorCode::IoError,
            format!("cannot start `{}`: {e}", argv[0]),
        )
    })?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let (otx, orx) = tokio::sync::oneshot::channel();
    let (etx, erx) = tokio::sync::oneshot::channel();
    async fn pump(
        r: Option<impl tokio::io::AsyncRead + Unpin>,
        cap: usize,
        tx: tokio::sync::oneshot::Sender<HeadTail>,
    ) {
        let mut ht = HeadTail::new(cap);
        if let Some(mut r) = r {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => ht.push(&buf[..n]),
                }
            }
        }
        let _ = tx.send(ht);
    }
    let out_task = tokio::spawn(pump(out.take(), cap, otx));
    let err_task = tokio::spawn(pump(err.take(), cap, etx));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let timed_out = status.is_err();
    let kill_group = |sig| {
        if let Some(p) = pgid {
            let _ = killpg(p, sig);
        }
    };
    let status = match status {
        Ok(s) => s.ok(),
        Err(_) => {
            kill_group(Signal::SIGTERM);
            match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    kill_group(Signal::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    // Background children that keep the pipes open must not hold us up.
    let grace = tokio::time::sleep(Duration::from_millis(200));
    tokio::pin!(grace);
    let mut stdout = None;
    let mut stderr = None;
    let (mut orx, mut erx) = (orx, erx);
    loop {
        tokio::select! {
            r = &mut orx, if stdout.is_none() => stdout = Some(r.unwrap_or_default()),
            r = &mut erx, if stderr.is_none() => stderr = Some(r.unwrap_or_default()),
            _ = &mut grace => {
                kill_group(Signal::SIGKILL);
                break;
            }
        }
        if stdout.is_some() && stderr.is_some() {
            break;
        }
    }
    // the group is gone or killed; collect what was read
    kill_group(Signal::SIGKILL);
    let stdout = match stdout {
        Some(s) => s,
        None => out_task
            .await
            .ok()
            .and_then(|_| orx.try_recv().ok())
            .unwrap_or_default(),
    };
    let stderr = match stderr {
        Some(s) => s,
        None => err_task
            .await
            .ok()
            .and_then(|_| erx.try_recv().ok())
            .unwrap_or_default(),
    };
    // the groups go once the command is gone (off the event loop: removal
    // may wait for the kernel to finish with the last process)
    tokio::task::spawn_blocking(move || drop(slot));
    use std::os::unix::process::ExitStatusExt;
    Ok(CmdOutput {
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        duration_ms: start.elapsed().as_millis() as u64,
        truncated: stdout.truncated() || stderr.truncated(),
        stdout_bytes: stdout.total(),
        stderr_bytes: stderr.total(),
        stdout: stdout.render(),
        stderr: stderr.render(),
        sandbox: if wrapper.is_some() {
            "bwrap".into()
        } else {
            "none".into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tail_keeps_both_ends() {
        let mut h = HeadTail::new(10);
        h.push(b"0123456789abcdefghij");
        assert!(h.truncated());
        let r = h.render();
        assert!(r.starts_with("01234") && r.ends_with("fghij"), "{r}");
        let mut s = HeadTail::new(10);
        s.push(b"abc");
        assert_eq!(s.render(), "abc");
    }
}
