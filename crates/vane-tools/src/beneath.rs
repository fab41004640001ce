//! File operations that cannot leave the workspace, even while a concurrent
//! process swaps directories for symlinks.
//!
//! `Workspace::resolve` checks a path and returns its canonical form; opening
//! that path *by name* afterwards leaves a window in which a command running
//! in the sandbox can exchange a directory of it for a symlink to the outside
//! (`renameat2(RENAME_EXCHANGE)`) — a hostile round wrote, overwrote and read
//! files outside the workspace that way within tens of calls. Here every
//! operation starts from a descriptor of the workspace root opened once and
//! resolves with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: the
//! canonical path has no symlink in it, so a symlink met on the way can only
//! be a swap, and the kernel refuses it (`ELOOP`) instead of following it.
//! Writes go to a temporary file created in the directory's own descriptor
//! and renamed there (`renameat`), so a failed attempt leaves nothing outside
//! either. Reads accept regular files only, opened non-blocking: a FIFO or a
//! device is refused at once instead of blocking the worker.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, renameat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// Why an operation beneath the root failed.
#[derive(Debug)]
pub enum Refusal {
    /// a symlink or `..` on the way: the path changed under us (or leads out)
    Escapes,
    /// not a regular file (FIFO, socket, device, directory)
    NotRegular(&'static str),
    Io(std::io::Error),
}

impl From<Errno> for Refusal {
    fn from(e: Errno) -> Refusal {
        match e {
            Errno::ELOOP | Errno::EXDEV => Refusal::Escapes,
            other => Refusal::Io(std::io::Error::from(other)),
        }
    }
}

impl From<std::io::Error> for Refusal {
    fn from(e: std::io::Error) -> Refusal {
        Refusal::Io(e)
    }
}

/// The workspace root, held open.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_SYMLINKS);

fn how(flags: OFlag) -> OpenHow {
    // openat2 is strict: O_PATH takes no flags but O_DIRECTORY, O_NOFOLLOW, O_CLOEXEC
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_CLOEXEC
    } else {
        OFlag::O_CLOEXEC | OFlag::O_NOCTTY
    };
    OpenHow::new().flags(flags | extra).resolve(RESOLVE)
}

fn kind(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFLNK => "a symlink",
        _ => "not a regular file",
    }
}

impl Root {
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// `canonical` relative to the root ("." for the root itself).
    fn rel<'a>(&self, canonical: &'a Path) -> Result<&'a Path, Refusal> {
        let rel = canonical
            .strip_prefix(&self.path)
            .map_err(|_| Refusal::Escapes)?;
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Refusal::Escapes);
        }
        Ok(if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        })
    }

    /// Opens a regular file for reading (`canonical`: a path from
    /// `Workspace::resolve`).
    pub fn open_read(&self, canonical: &Path) -> Result<File, Refusal> {
        let rel = self.rel(canonical)?;
        let fd = openat2(
            self.fd.as_fd(),
            rel,
            how(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
        )?;
        regular(fd)
    }

    /// Opens (creating what is missing) the directory `canonical_dir`.
    pub fn dir(&self, canonical_dir: &Path) -> Result<Dir, Refusal> {
        let rel = self.rel(canonical_dir)?;
        let mut fd = openat2(
            self.fd.as_fd(),
            ".",
            how(OFlag::O_PATH | OFlag::O_DIRECTORY),
        )?;
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            match mkdirat(fd.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            fd = openat2(fd.as_fd(), name, how(OFlag::O_PATH | OFlag::O_DIRECTORY))?;
        }
        Ok(Dir { fd })
    }
}

fn regular(fd: OwnedFd) -> Result<File, Refusal> {
    let st = fstat(fd.as_fd())?;
    let ifmt = st.st_mode & SFlag::S_IFMT.bits();
    if ifmt != SFlag::S_IFREG.bits() {
        return Err(Refusal::NotRegular(kind(st.st_mode)));
    }
    // a regular file: blocking reads from here on
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(File::from(fd))
}

/// A directory inside the workspace, held open: names are looked up in it,
/// never through its path again.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    /// The contents of the regular file `name`, at most `max` bytes
    /// (`Ok(None)`: it does not exist; more than `max`: `Ok(Some)` of
    /// `max + 1` bytes, for the caller to refuse).
    pub fn read(&self, name: &Path, max: u64) -> Result<Option<Vec<u8>>, Refusal> {
        let fd = match openat2(
            self.fd.as_fd(),
            name,
            how(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let f = regular(fd)?;
        let mut out = Vec::new();
        f.take(max.saturating_add(1)).read_to_end(&mut out)?;
        Ok(Some(out))
    }

    /// The permission bits of `name`, when it is a regular file.
    pub fn mode_of(&self, name: &Path) -> Option<u32> {
        let fd = openat2(self.fd.as_fd(), name, how(OFlag::O_PATH)).ok()?;
        let st = fstat(fd.as_fd()).ok()?;
        (st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()).then_some(st.st_mode & 0o7777)
    }

    /// Replaces `name` with `bytes` atomically: a temporary file in this
    /// directory, synced, renamed over `name` (a symlink there is replaced,
    /// never followed).
    pub fn write_atomic(&self, name: &Path, bytes: &[u8], mode: u32) -> Result<(), Refusal> {
        use std::io::Write;
        let tmp = format!(
            ".{}.vane-tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let fd = openat2(
            self.fd.as_fd(),
            tmp.as_str(),
            how(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL)
                .mode(Mode::from_bits_truncate(mode)),
        )?;
        let _ = nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode));
        let mut f = File::from(fd);
        let done = f
            .write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(Refusal::Io)
            .and_then(|_| {
                renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name)
                    .map_err(Refusal::from)
            });
        if done.is_err() {
            let _ = nix::unistd::unlinkat(
                self.fd.as_fd(),
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_special_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ws");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(d.path().join("secret"), "outside").unwrap();
        std::fs::write(root.join("a/f"), "inside").unwrap();
        std::os::unix::fs::symlink(d.path(), root.join("out")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let r = Root::open(&root).unwrap();
        let mut s = String::new();
        r.open_read(&root.join("a/f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        assert!(matches!(
            r.open_read(&root.join("out/secret")),
            Err(Refusal::Escapes)
        ));
        assert!(matches!(
            r.open_read(&root.join("fifo")),
            Err(Refusal::NotRegular("a FIFO"))
        ));
        assert!(matches!(
            r.open_read(&d.path().join("secret")),
            Err(Refusal::Escapes)
        ));
        let dir = r.dir(&root.join("new/deep")).unwrap();
        dir.write_atomic(Path::new("x"), b"hello", 0o644).unwrap();
        assert_eq!(std::fs::read(root.join("new/deep/x")).unwrap(), b"hello");
        assert!(matches!(r.dir(&root.join("out/x")), Err(Refusal::Escapes)));
        assert!(!d.path().join("x").exists());
    }
}
