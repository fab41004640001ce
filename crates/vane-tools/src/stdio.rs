//! The process's own stdin/stdout as an MCP transport.
//!
//! `tokio::io::stdin()/stdout()` do every read and write on the blocking
//! thread pool: two thread hops per message. When stdin and stdout are pipes
//! (as under Claude Code, Codex, or a front), they are used directly as
//! non-blocking pipes on the event loop instead — the difference is most of
//! a front's per-call overhead. Anything else (a terminal, a file, a socket)
//! falls back to tokio's stdio.

use std::os::fd::AsFd;

use tokio::io::{AsyncRead, AsyncWrite};

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// (stdin, stdout) for `rmcp`'s `(R, W)` transport.
pub fn transport() -> (Reader, Writer) {
    let pipes = || -> std::io::Result<(Reader, Writer)> {
        use std::os::unix::fs::FileTypeExt;
        let r = std::io::stdin().as_fd().try_clone_to_owned()?;
        let w = std::io::stdout().as_fd().try_clone_to_owned()?;
        // Both or neither: converting one makes its file description
        // non-blocking, which tokio's blocking stdio could not read from.
        let fifo = |fd: &std::os::fd::OwnedFd| -> std::io::Result<bool> {
            let f = std::fs::File::from(fd.try_clone()?);
            Ok(f.metadata()?.file_type().is_fifo())
        };
        if !fifo(&r)? || !fifo(&w)? {
            return Err(std::io::Error::other("stdin and stdout are not both pipes"));
        }
        let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
        let w = tokio::net::unix::pipe::Sender::from_owned_fd(w)?;
        Ok((Box::new(r), Box::new(w)))
    };
    match pipes() {
        Ok(p) => p,
        Err(_) => (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout())),
    }
}
