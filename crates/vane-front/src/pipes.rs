//! Pipe I/O for the front's direct path: blocking reader threads and a
//! writer that both threads and the event loop can share.
//!
//! A `tools/call` through the front crosses two pipes each way. On an event
//! loop every crossing costs an `epoll_wait` wake-up, a read, and a return to
//! the loop; measured, that machinery alone (a tokio relay that copies lines)
//! cost more than the front's whole latency budget. So the hot path runs on
//! plain threads blocked in `read` — one for the client's stdin, one per
//! worker's stdout — which forward a call and its answer themselves, and hand
//! everything else to the event loop.
//!
//! Writes must stay whole lines even when a thread and the event loop write
//! to the same pipe, and the event loop must never block. [`Out`] keeps the
//! pipe non-blocking: a write that the pipe takes at once (nearly all) is one
//! syscall; the rest waits in a buffer that every later writer appends to, so
//! lines never interleave, and is pushed out by a thread that may block
//! ([`Out::flush_blocking`], from the event loop through `spawn_blocking`).

use std::fs::File;
use std::io::{BufRead, ErrorKind, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// How long a blocked writer waits before it asks whether to give up.
const POLL_SLICE: Duration = Duration::from_millis(50);

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.insert(OFlag::O_NONBLOCK);
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// A pipe or a socket (Node's `child_process` gives a child socketpairs
/// for its stdio): something that can be non-blocking and polled.
fn is_stream(fd: &OwnedFd) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fd.try_clone()
        .ok()
        .map(File::from)
        .and_then(|f| f.metadata().ok())
        .is_some_and(|m| m.file_type().is_fifo() || m.file_type().is_socket())
}

/// Waits until `fd` is ready for `what`, at most `slice`.
fn wait(fd: &File, what: PollFlags, slice: Duration) {
    let mut fds = [PollFd::new(fd.as_fd(), what)];
    let ms = slice.as_millis().min(u16::MAX as u128) as u16;
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

#[derive(Default)]
struct OutState {
    file: Option<Arc<File>>,
    /// bytes written by someone but not yet taken by the pipe; they go
    /// before anything else
    pending: Vec<u8>,
    /// a thread is draining `pending` ([`Out::line_queued`])
    flusher: bool,
}

/// The writing end of a pipe shared by threads and the event loop; see the
/// module's documentation.
pub struct Out {
    state: Mutex<OutState>,
}

impl Out {
    /// Takes over `fd`; a pipe or socket is made non-blocking (anything
    /// else — a terminal, a file — is written as it is).
    pub fn new(fd: OwnedFd) -> Arc<Out> {
        if is_stream(&fd) {
            let _ = set_nonblocking(&fd);
        }
        Arc::new(Out {
            state: Mutex::new(OutState {
                file: Some(Arc::new(File::from(fd))),
                pending: Vec::new(),
                flusher: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `buf` as far as the pipe takes it now; returns what is left.
    fn push(file: &File, mut buf: &[u8]) -> std::io::Result<usize> {
        while !buf.is_empty() {
            match (&*file).write(buf) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(buf.len())
    }

    /// Writes one whole line without blocking: `Ok(true)` when the pipe took
    /// all of it, `Ok(false)` when (part of) it waits in the buffer and
    /// someone must call [`Out::flush_blocking`].
    pub fn try_line(&self, line: &[u8]) -> std::io::Result<bool> {
        let mut s = self.state();
        let Some(file) = s.file.clone() else {
            return Err(ErrorKind::BrokenPipe.into());
        };
        if !s.pending.is_empty() {
            s.pending.extend_from_slice(line);
            return Ok(false);
        }
        match Self::push(&file, line) {
            Ok(0) => Ok(true),
            Ok(left) => {
                s.pending.extend_from_slice(&line[line.len() - left..]);
                Ok(false)
            }
            Err(e) => {
                s.file = None;
                Err(e)
            }
        }
    }

    /// Blocks until the buffer is written. `give_up` is asked every 50 ms
    /// while the pipe is full; when it says so the pipe is closed (a line cut
    /// in two would corrupt the stream) and the write fails.
    pub fn flush_blocking(&self, give_up: &dyn Fn() -> bool) -> std::io::Result<()> {
        loop {
            let file = {
                let mut s = self.state();
                let Some(file) = s.file.clone() else {
                    return Err(ErrorKind::BrokenPipe.into());
                };
                if s.pending.is_empty() {
                    return Ok(());
                }
                match Self::push(&file, &s.pending) {
                    Ok(left) => {
                        let done = s.pending.len() - left;
                        s.pending.drain(..done);
                        if left == 0 {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        s.file = None;
                        return Err(e);
                    }
                }
                file
            };
            if give_up() {
                self.close();
                return Err(ErrorKind::TimedOut.into());
            }
            wait(&file, PollFlags::POLLOUT, POLL_SLICE);
        }
    }

    /// One whole line from a thread that may block.
    pub fn line_blocking(&self, line: &[u8], give_up: &dyn Fn() -> bool) -> std::io::Result<()> {
        if self.try_line(line)? {
            return Ok(());
        }
        self.flush_blocking(give_up)
    }

    /// One whole line from a thread that must never wait for the reader (a
    /// worker's reader thread writing an answer to the client): what the
    /// pipe does not take now waits in the buffer, drained by a flusher
    /// thread started for the occasion. A client that stops reading then
    /// holds up nobody — its own reader applies the backpressure
    /// ([`Out::pending_len`]).
    pub fn line_queued(self: &Arc<Self>, line: &[u8]) -> std::io::Result<()> {
        if self.try_line(line)? {
            return Ok(());
        }
        let mut s = self.state();
        if s.flusher {
            return Ok(());
        }
        s.flusher = true;
        drop(s);
        let me = self.clone();
        std::thread::Builder::new()
            .name("vane-out-flush".into())
            .spawn(move || loop {
                let r = me.flush_blocking(&|| false);
                let mut s = me.state();
                // decided under the lock appends take: nothing is stranded
                if r.is_err() || s.pending.is_empty() || s.file.is_none() {
                    s.flusher = false;
                    return;
                }
            })
            .map(|_| ())
    }

    /// Bytes written but not yet taken by the reader.
    pub fn pending_len(&self) -> usize {
        self.state().pending.len()
    }

    /// One whole line from the event loop: one non-blocking write, and only
    /// when the pipe is full a blocking-pool thread to finish it.
    pub async fn line_async(
        self: &Arc<Self>,
        line: Vec<u8>,
        give_up: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> std::io::Result<()> {
        if self.try_line(&line)? {
            return Ok(());
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.flush_blocking(&*give_up))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Closes our end (the reader sees EOF once every writer let go).
    pub fn close(&self) {
        let mut s = self.state();
        s.file = None;
        s.pending.clear();
    }

    pub fn is_closed(&self) -> bool {
        self.state().file.is_none()
    }
}

/// The reading end of a pipe, for a thread: blocking reads of whole lines.
/// What [`LineReader::next_line_capped`] read.
#[derive(Debug, PartialEq)]
pub enum Capped {
    Line,
    /// a line of this many bytes, over the cap (its head is in the buffer)
    TooLong(usize),
    End,
}

pub struct LineReader {
    inner: std::io::BufReader<File>,
}

impl LineReader {
    /// Takes over `fd` with its flags as they are: a non-blocking one (it
    /// may share its file description with the writing side, a socket as
    /// both stdin and stdout) is waited on with `poll`.
    pub fn new(fd: OwnedFd) -> LineReader {
        LineReader {
            inner: std::io::BufReader::with_capacity(64 * 1024, File::from(fd)),
        }
    }

    /// Replaces `buf` with the next line (with its `\n`, if any); `false`
    /// at the end of input or on a read error.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        matches!(self.read_line(buf), Ok(n) if n > 0)
    }

    /// Replaces `buf` with the next line of at most `max` bytes. A longer
    /// line is not kept: its first `keep` bytes stay in `buf`, the rest is
    /// read and dropped, and the answer is `Capped::TooLong(total)`.
    pub fn next_line_capped(&mut self, buf: &mut Vec<u8>, max: usize, keep: usize) -> Capped {
        buf.clear();
        let mut total = 0usize;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    wait(
                        self.inner.get_ref(),
                        PollFlags::POLLIN,
                        Duration::from_secs(1),
                    );
                    continue;
                }
                Err(_) => return Capped::End,
            };
            if chunk.is_empty() {
                return match total {
                    0 => Capped::End,
                    n if n > max => Capped::TooLong(n),
                    _ => Capped::Line,
                };
            }
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if total + take <= max {
                buf.extend_from_slice(&chunk[..take]);
            } else {
                // over the cap: only the head is kept, for the error's id
                buf.truncate(keep.min(buf.len()));
                let n = keep.saturating_sub(buf.len()).min(take);
                buf.extend_from_slice(&chunk[..n]);
            }
            total += take;
            self.inner.consume(take);
            if done {
                return if total > max {
                    Capped::TooLong(total)
                } else {
                    Capped::Line
                };
            }
        }
    }

    /// Appends the next line (with its `\n`, if any) to `buf`; `Ok(0)` at
    /// the end of input.
    pub fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let start = buf.len();
        loop {
            match self.inner.read_until(b'\n', buf) {
                Ok(_) => return Ok(buf.len() - start),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    wait(
                        self.inner.get_ref(),
                        PollFlags::POLLIN,
                        Duration::from_secs(1),
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stay_whole_when_the_pipe_is_full_and_two_threads_write() {
        let (r, w) = std::io::pipe().unwrap();
        let out = Out::new(OwnedFd::from(w));
        let line_a = [b'a'; 3000]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        let line_b = [b'b'; 5000]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        let writers: Vec<_> = [line_a.clone(), line_b.clone()]
            .into_iter()
            .map(|line| {
                let out = out.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        out.line_blocking(&line, &|| false).unwrap();
                    }
                })
            })
            .collect();
        // read slowly at first so the pipe fills and the buffer is used
        std::thread::sleep(Duration::from_millis(100));
        let mut reader = LineReader::new(OwnedFd::from(r));
        let (mut a, mut b) = (0, 0);
        let mut buf = Vec::new();
        while a + b < 400 {
            buf.clear();
            assert!(reader.read_line(&mut buf).unwrap() > 0);
            if buf == line_a {
                a += 1;
            } else if buf == line_b {
                b += 1;
            } else {
                panic!("a line was cut: {} bytes", buf.len());
            }
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!((a, b), (200, 200));
    }

    #[test]
    fn a_socketpair_works_as_stdio_too() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let out = Out::new(OwnedFd::from(a));
        let big = [b'z'; 300_000]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        // more than the socket takes at once: the rest waits in the buffer
        assert!(!out.try_line(&big).unwrap());
        assert!(!out.try_line(b"after\n").unwrap());
        let reader = std::thread::spawn(move || {
            let mut r = LineReader::new(OwnedFd::from(b));
            let mut buf = Vec::new();
            assert!(r.next_line(&mut buf));
            let first = buf.len();
            assert!(r.next_line(&mut buf));
            (first, buf)
        });
        out.flush_blocking(&|| false).unwrap();
        let (first, second) = reader.join().unwrap();
        assert_eq!(first, big.len());
        assert_eq!(second, b"after\n");
    }

    #[test]
    fn a_writer_that_gives_up_closes_the_pipe() {
        let (_r, w) = std::io::pipe().unwrap();
        let out = Out::new(OwnedFd::from(w));
        let line = vec![b'x'; 200_000];
        let err = out.line_blocking(&line, &|| true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(out.is_closed());
        assert_eq!(
            out.try_line(b"more\n").unwrap_err().kind(),
            ErrorKind::BrokenPipe
        );
    }
}
