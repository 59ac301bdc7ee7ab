//! `docker cp`: `HEAD`/`GET`/`PUT /containers/{id}/archive`.
//!
//! The files belong to the container, so every path is untrusted: a process inside may have
//! planted `/etc -> /` or swap a directory for a symlink while a copy runs. Nothing here
//! ever resolves a container path with the host's lookup. The directory part of a request is
//! opened with `openat2(RESOLVE_IN_ROOT)` against a descriptor for the container's root (the
//! running container's `/proc/<pid>/root`, so its volumes and bind mounts are seen as the
//! container sees them, or the mounted root filesystem of a stopped one); below it every step
//! is an `*at` call on a descriptor with `O_NOFOLLOW`. Symlinks are copied as symlinks and
//! only ever followed inside the container's root.
//!
//! Semantics follow Docker's: the last element of the requested path is not followed (a
//! trailing `/` or `/.` makes it a directory to enter), archives are rooted at the requested
//! base name, extraction goes into an existing directory, and without `copyUIDGID` extracted
//! files belong to the container's root user.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::process::{Gid, Uid};

use crate::error::{EngineError, Result};

/// How many symlinks a lookup may follow before giving up (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// What `X-Docker-Container-Path-Stat` carries (base64 of this JSON).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits, which is what docker clients decode.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & GO_DIR != 0
    }
}

const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_PIPE: u32 = 1 << 25;
const GO_SOCKET: u32 = 1 << 24;
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_CHARDEV: u32 = 1 << 21;
const GO_STICKY: u32 = 1 << 20;

/// Unix `st_mode` to Go's `os.FileMode`.
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match FileType::from_raw_mode(st_mode) {
        FileType::Directory => GO_DIR,
        FileType::Symlink => GO_SYMLINK,
        FileType::Fifo => GO_PIPE,
        FileType::Socket => GO_SOCKET,
        FileType::BlockDevice => GO_DEVICE,
        FileType::CharacterDevice => GO_DEVICE | GO_CHARDEV,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        m |= GO_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= GO_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= GO_STICKY;
    }
    m
}

/// A request path taken apart the way Docker does.
#[derive(Debug, PartialEq)]
struct Target {
    /// The absolute, lexically cleaned path.
    clean: PathBuf,
    /// The directory to open in the root.
    dir: PathBuf,
    /// The entry inside `dir` that is not followed; `.` when the path asked for the
    /// directory itself (a trailing `/` or `/.`).
    base: OsString,
    /// The name archives are rooted at: the path's last element, or `.` for `dir/.`.
    name: String,
}

fn target(path: &str) -> Target {
    let mut clean = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => clean.push(n),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    let dot = path == "." || path.ends_with("/.");
    let enter = dot || path.ends_with('/') || clean == Path::new("/");
    let last = clean.file_name().map(|n| n.to_string_lossy().into_owned());
    if enter {
        Target {
            dir: clean.clone(),
            base: ".".into(),
            name: if dot {
                ".".into()
            } else {
                last.unwrap_or_else(|| ".".into())
            },
            clean,
        }
    } else {
        Target {
            dir: clean.parent().unwrap_or(Path::new("/")).to_path_buf(),
            base: clean.file_name().unwrap_or(OsStr::new(".")).to_owned(),
            name: last.unwrap_or_else(|| ".".into()),
            clean,
        }
    }
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EngineError::internal(format!("opening the container's root filesystem: {e}")))
}

/// Open a directory of the container, resolving `dir` inside the root.
fn open_dir(root: BorrowedFd<'_>, dir: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    berth_runtime::sys::openat2::open_in_root(
        root,
        dir,
        (flags | OFlags::DIRECTORY).bits() as libc::c_int,
        0,
    )
}

fn missing(path: &str) -> EngineError {
    EngineError::not_found(format!("Could not find the file {path} in container"))
}

fn io_err(what: &str, path: &str, e: io::Error) -> EngineError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => missing(path),
        Some(libc::ENOTDIR) => EngineError::invalid(format!("{path}: not a directory")),
        Some(libc::EROFS) => EngineError::invalid(format!(
            "{path} is on a read-only file system: the container's root filesystem is \
             read-only (--read-only); copy into a volume or a tmpfs instead"
        )),
        Some(libc::ELOOP) => {
            EngineError::invalid(format!("{path}: too many levels of symbolic links"))
        }
        _ => EngineError::internal(format!("{what} {path}: {e}")),
    }
}

fn rfc3339(sec: i64, nsec: i64) -> String {
    chrono::DateTime::from_timestamp(sec, nsec as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// `HEAD /containers/{id}/archive`: what is at `path` (not following a final symlink;
/// `linkTarget` says where it leads inside the container).
pub fn stat(root: &Path, path: &str) -> Result<PathStat> {
    let rootfd = open_root(root)?;
    let t = target(path);
    let dir =
        open_dir(rootfd.as_fd(), &t.dir, OFlags::PATH).map_err(|e| io_err("opening", path, e))?;
    let st = rfs::statat(&dir, &t.base, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("inspecting", path, e.into()))?;
    let link_target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        resolve_in_root(rootfd.as_fd(), &t.clean)
            .map_err(|e| io_err("resolving", path, e))?
            .display()
            .to_string()
    } else {
        String::new()
    };
    Ok(PathStat {
        name: t.name,
        size: st.st_size,
        mode: go_file_mode(st.st_mode),
        mtime: rfc3339(st.st_mtime, st.st_mtime_nsec as i64),
        link_target,
    })
}

/// Follow every symlink in `abs` as the container would see it; the result is an absolute
/// container path (which need not exist).
fn resolve_in_root(root: BorrowedFd<'_>, abs: &Path) -> io::Result<PathBuf> {
    let mut todo: Vec<OsString> = abs
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut done = PathBuf::from("/");
    let mut followed = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let dir = match open_dir(root, &done, OFlags::PATH) {
            Ok(d) => d,
            Err(_) => {
                done.push(&c);
                continue;
            }
        };
        match rfs::statat(&dir, &c, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let link = rfs::readlinkat(&dir, &c, Vec::new())?;
                let link = Path::new(OsStr::from_bytes(link.as_bytes()));
                if link.is_absolute() {
                    done = PathBuf::from("/");
                }
                for part in link.components().rev() {
                    match part {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => done.push(&c),
        }
    }
    Ok(done)
}

/// `GET /containers/{id}/archive`: `path` as a tar rooted at its base name.
pub fn get(root: &Path, path: &str, out: impl Write) -> Result<()> {
    let rootfd = open_root(root)?;
    let t = target(path);
    let dir =
        open_dir(rootfd.as_fd(), &t.dir, OFlags::RDONLY).map_err(|e| io_err("opening", path, e))?;
    let st = rfs::statat(&dir, &t.base, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("inspecting", path, e.into()))?;
    let mut b = tar::Builder::new(out);
    let mut w = Walker {
        hardlinks: HashMap::new(),
    };
    w.entry(&mut b, dir.as_fd(), &t.base, Path::new(&t.name), &st)
        .map_err(|e| io_err("archiving", path, e))?;
    b.into_inner()
        .and_then(|mut o| o.flush())
        .map_err(|e| io_err("archiving", path, e))
}

/// `docker export`: the whole tree at `root` (a container's mounted root filesystem), its
/// entries named without a leading `./` as Docker's are, hard links kept as links.
pub fn export(root: &Path, out: impl Write) -> Result<()> {
    let fail =
        |e: io::Error| EngineError::internal(format!("exporting the container's files: {e}"));
    let dir = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let mut b = tar::Builder::new(out);
    let mut w = Walker {
        hardlinks: HashMap::new(),
    };
    for name in sorted_names(dir.as_fd()).map_err(fail)? {
        match rfs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => w
                .entry(&mut b, dir.as_fd(), &name, Path::new(&name), &st)
                .map_err(fail)?,
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(fail(e.into())),
        }
    }
    b.into_inner().and_then(|mut o| o.flush()).map_err(fail)
}

/// Open directory `name` in `dir` for reading, never through a symlink.
fn open_subdir(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The entries of an open directory, without `.` and `..`, in name order.
fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in rfs::Dir::read_from(dir)? {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

struct Walker {
    /// (device, inode) of multiply-linked files already written, and the name they got,
    /// so later names become hard links as in Docker's archives.
    hardlinks: HashMap<(u64, u64), PathBuf>,
}

impl Walker {
    fn entry<W: Write>(
        &mut self,
        b: &mut tar::Builder<W>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        tar_path: &Path,
        st: &rfs::Stat,
    ) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                append(b, &mut h, tar_path, None, io::empty())?;
                let fd = open_subdir(dir, name)?;
                for n in sorted_names(fd.as_fd())? {
                    match rfs::statat(&fd, &n, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(cst) => self.entry(b, fd.as_fd(), &n, &tar_path.join(&n), &cst)?,
                        // Removed while we were copying: skip it, as tar does.
                        Err(rustix::io::Errno::NOENT) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.hardlinks.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return append(b, &mut h, tar_path, Some(first.as_os_str()), io::empty());
                    }
                    self.hardlinks.insert(key, tar_path.to_path_buf());
                }
                let f = File::from(rfs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?);
                let size = f.metadata()?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                append(
                    b,
                    &mut h,
                    tar_path,
                    None,
                    Exact {
                        inner: f,
                        left: size,
                    },
                )
            }
            FileType::Symlink => {
                let link = rfs::readlinkat(dir, name, Vec::new())?;
                h.set_entry_type(tar::EntryType::Symlink);
                append(
                    b,
                    &mut h,
                    tar_path,
                    Some(OsStr::from_bytes(link.as_bytes())),
                    io::empty(),
                )
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                h.set_entry_type(match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if kind != FileType::Fifo {
                    h.set_device_major(rfs::major(st.st_rdev))?;
                    h.set_device_minor(rfs::minor(st.st_rdev))?;
                }
                append(b, &mut h, tar_path, None, io::empty())
            }
            // Sockets cannot be archived; Docker skips them too.
            _ => Ok(()),
        }
    }
}

/// Write one entry with its name (and link target) exactly as given. The tar crate's own
/// path setters drop a leading `./`, which the docker CLI needs to rebase `dir/.` copies;
/// names longer than the header's fields go in GNU long-name entries, as GNU tar does.
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    path: &Path,
    link: Option<&OsStr>,
    data: impl Read,
) -> io::Result<()> {
    let mut name = path.as_os_str().as_bytes().to_vec();
    if h.entry_type().is_dir() && !name.ends_with(b"/") {
        name.push(b'/');
    }
    set_field(
        b,
        &mut h.as_old_mut().name,
        &name,
        tar::EntryType::GNULongName,
    )?;
    if let Some(link) = link {
        set_field(
            b,
            &mut h.as_old_mut().linkname,
            link.as_bytes(),
            tar::EntryType::GNULongLink,
        )?;
    }
    h.set_cksum();
    b.append(h, data)
}

fn set_field<W: Write>(
    b: &mut tar::Builder<W>,
    field: &mut [u8; 100],
    value: &[u8],
    long_kind: tar::EntryType,
) -> io::Result<()> {
    if value.len() > field.len() {
        let mut long = tar::Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_mode(0o644);
        long.set_entry_type(long_kind);
        long.set_size(value.len() as u64 + 1);
        long.set_cksum();
        b.append(&long, value.chain(&[0u8][..]))?;
    }
    let n = value.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
    Ok(())
}

/// A file's bytes, exactly `left` of them: padded with zeros if it shrank while being
/// read, cut if it grew, so the tar stays well formed.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// `PUT /containers/{id}/archive`: extract `tar` into the existing directory `path`.
pub fn put(
    root: &Path,
    path: &str,
    tar: impl Read,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
) -> Result<()> {
    let rootfd = open_root(root)?;
    let t = target(path);
    let dest =
        open_dir(rootfd.as_fd(), &t.clean, OFlags::PATH).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => {
                EngineError::invalid(format!("extraction point is not a directory: {path}"))
            }
            _ => io_err("opening", path, e),
        })?;
    // Work relative to the destination from here on, resolved once: a directory the
    // archive creates is entered through the descriptor of its parent.
    let dest_path =
        resolve_in_root(rootfd.as_fd(), &t.clean).map_err(|e| io_err("resolving", path, e))?;
    let mut x = Extractor {
        root: rootfd.as_fd(),
        dest: dest_path,
        no_overwrite: no_overwrite_dir_non_dir,
        copy_ids: copy_uid_gid,
        dir_times: Vec::new(),
    };
    drop(dest);
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| EngineError::invalid(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| EngineError::invalid(format!("reading the archive: {e}")))?;
        x.extract(&mut entry)?;
    }
    x.finish();
    Ok(())
}

struct Extractor<'a> {
    root: BorrowedFd<'a>,
    /// The destination directory as an absolute container path with no symlinks.
    dest: PathBuf,
    no_overwrite: bool,
    copy_ids: bool,
    /// Directories whose times are set last (writing into them changes their mtime).
    dir_times: Vec<(PathBuf, i64)>,
}

/// An archive entry's name as a path relative to the destination; `..` is refused.
fn relative(name: &Path) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::ParentDir => {
                return Err(EngineError::invalid(format!(
                    "the archive entry {} points outside the destination (it contains ..)",
                    name.display()
                )))
            }
            _ => {}
        }
    }
    Ok(rel)
}

impl Extractor<'_> {
    fn extract<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(|e| EngineError::invalid(format!("an archive entry has a bad name: {e}")))?
            .into_owned();
        let shown = raw.display().to_string();
        let rel = relative(&raw)?;
        let kind = entry.header().entry_type();
        let full = self.dest.join(&rel);
        let fail = |what: &str, e: io::Error| io_err(what, &full.display().to_string(), e);
        if rel.as_os_str().is_empty() {
            // The destination itself ("." in the archive): only its metadata.
            if kind.is_dir() {
                self.dir_times
                    .push((full.clone(), entry.header().mtime().unwrap_or(0) as i64));
            }
            return Ok(());
        }
        let (parent, name) = (
            full.parent().unwrap_or(Path::new("/")).to_path_buf(),
            full.file_name().unwrap_or_default().to_owned(),
        );
        let pfd = self
            .dir_creating(&parent)
            .map_err(|e| fail("creating", e))?;
        let h = entry.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = if self.copy_ids {
            (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)
        } else {
            (0, 0)
        };
        let mtime = h.mtime().unwrap_or(0) as i64;

        // What is there already.
        if let Ok(old) = rfs::statat(&pfd, &name, AtFlags::SYMLINK_NOFOLLOW) {
            let old_is_dir = FileType::from_raw_mode(old.st_mode) == FileType::Directory;
            if self.no_overwrite && old_is_dir && !kind.is_dir() {
                return Err(EngineError::invalid(format!(
                    "cannot overwrite directory {} with non-directory {shown}",
                    full.display()
                )));
            }
            if self.no_overwrite && !old_is_dir && kind.is_dir() {
                return Err(EngineError::invalid(format!(
                    "cannot overwrite non-directory {} with directory {shown}",
                    full.display()
                )));
            }
            if !(old_is_dir && kind.is_dir()) {
                remove_all(pfd.as_fd(), &name).map_err(|e| fail("replacing", e))?;
            }
        }

        let ids = (
            Some(Uid::from_raw_unchecked(uid)),
            Some(Gid::from_raw_unchecked(gid)),
        );
        match kind {
            tar::EntryType::Directory => {
                match rfs::mkdirat(&pfd, &name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(fail("creating", e.into())),
                }
                let fd = open_subdir(&pfd, &name).map_err(|e| fail("opening", e.into()))?;
                rfs::fchown(&fd, ids.0, ids.1).map_err(|e| fail("chown", e.into()))?;
                rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| fail("chmod", e.into()))?;
                self.dir_times.push((full.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = rfs::openat(
                    &pfd,
                    &name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| fail("creating", e.into()))?;
                let mut f = File::from(fd);
                io::copy(entry, &mut f).map_err(|e| fail("writing", e))?;
                rfs::fchown(&f, ids.0, ids.1).map_err(|e| fail("chown", e.into()))?;
                // After chown, which clears set-id bits.
                rfs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(|e| fail("chmod", e.into()))?;
                let ts = times(mtime);
                rfs::futimens(&f, &ts).map_err(|e| fail("setting times of", e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().ok().flatten().ok_or_else(|| {
                    EngineError::invalid(format!("symlink {shown} has no target"))
                })?;
                rfs::symlinkat(target.as_os_str(), &pfd, &name)
                    .map_err(|e| fail("creating", e.into()))?;
                rfs::chownat(&pfd, &name, ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fail("chown", e.into()))?;
                let _ = rfs::utimensat(&pfd, &name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            tar::EntryType::Link => {
                let target = entry.link_name().ok().flatten().ok_or_else(|| {
                    EngineError::invalid(format!("hard link {shown} has no target"))
                })?;
                let trel = relative(&target)?;
                let tfull = self.dest.join(&trel);
                let tparent = open_dir(
                    self.root,
                    tfull.parent().unwrap_or(Path::new("/")),
                    OFlags::PATH,
                )
                .map_err(|e| fail("linking", e))?;
                rfs::linkat(
                    &tparent,
                    tfull.file_name().unwrap_or_default(),
                    &pfd,
                    &name,
                    AtFlags::empty(),
                )
                .map_err(|e| fail("linking", e.into()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ft, dev) = match kind {
                    tar::EntryType::Char => (FileType::CharacterDevice, true),
                    tar::EntryType::Block => (FileType::BlockDevice, true),
                    _ => (FileType::Fifo, false),
                };
                let rdev = if dev {
                    rfs::makedev(
                        h.device_major().ok().flatten().unwrap_or(0),
                        h.device_minor().ok().flatten().unwrap_or(0),
                    )
                } else {
                    0
                };
                rfs::mknodat(&pfd, &name, ft, Mode::from_raw_mode(mode & 0o777), rdev)
                    .map_err(|e| fail("creating", e.into()))?;
                rfs::chownat(&pfd, &name, ids.0, ids.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| fail("chown", e.into()))?;
            }
            // Global and per-file PAX headers and GNU long names are folded into the
            // entries by the tar reader; anything else has no place in a file system.
            _ => {}
        }
        Ok(())
    }

    /// Open directory `abs` (a container path under the destination), creating missing
    /// directories on the way as Docker's extraction does.
    fn dir_creating(&self, abs: &Path) -> io::Result<OwnedFd> {
        match open_dir(self.root, abs, OFlags::PATH) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && abs != self.dest => {
                let parent = abs.parent().unwrap_or(Path::new("/"));
                let pfd = self.dir_creating(parent)?;
                let name = abs.file_name().unwrap_or_default();
                match rfs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_dir(self.root, abs, OFlags::PATH)
            }
            r => r,
        }
    }

    /// Directory times last, deepest first, so writing their contents does not undo them.
    fn finish(&mut self) {
        self.dir_times
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, mtime) in &self.dir_times {
            if let Ok(fd) = open_dir(self.root, p, OFlags::RDONLY) {
                let _ = rfs::futimens(&fd, &times(*mtime));
            }
        }
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Remove `name` in `dir`, a whole tree if it is a directory, never following a symlink.
fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = open_subdir(dir, name)?;
    for n in sorted_names(fd.as_fd())? {
        remove_all(fd.as_fd(), &n)?;
    }
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_like_docker() {
        let t = target("/etc/hosts");
        assert_eq!(
            (t.dir.as_path(), t.base.as_os_str(), t.name.as_str()),
            (Path::new("/etc"), OsStr::new("hosts"), "hosts")
        );
        let t = target("data/.");
        assert_eq!(
            (t.dir.as_path(), t.base.as_os_str(), t.name.as_str()),
            (Path::new("/data"), OsStr::new("."), ".")
        );
        let t = target("/data/");
        assert_eq!(
            (t.dir.as_path(), t.base.as_os_str(), t.name.as_str()),
            (Path::new("/data"), OsStr::new("."), "data")
        );
        let t = target("/../../etc/../tmp/x");
        assert_eq!(t.clean, Path::new("/tmp/x"));
        assert_eq!(target("/").dir, Path::new("/"));
    }

    #[test]
    fn go_modes() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), GO_DIR | 0o755);
        assert_eq!(go_file_mode(libc::S_IFREG | 0o4755), GO_SETUID | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), GO_SYMLINK | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            GO_DEVICE | GO_CHARDEV | 0o666
        );
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/conf")).unwrap();
        std::fs::write(r.join("etc/conf/a"), "alpha").unwrap();
        std::fs::hard_link(r.join("etc/conf/a"), r.join("etc/conf/b")).unwrap();
        // Planted by the container: absolute links that would reach the host if followed
        // with the host's lookup.
        std::os::unix::fs::symlink("/", r.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc/conf", r.join("conf")).unwrap();
        d
    }

    fn names(tarball: &[u8]) -> Vec<(String, tar::EntryType)> {
        tar::Archive::new(tarball)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn get_roots_the_archive_at_the_base_name_and_keeps_links() {
        let d = tree();
        let mut out = Vec::new();
        get(d.path(), "/etc/conf", &mut out).unwrap();
        let n = names(&out);
        assert_eq!(n[0], ("conf/".into(), tar::EntryType::Directory));
        assert!(n.contains(&("conf/a".into(), tar::EntryType::Regular)));
        assert!(n.contains(&("conf/b".into(), tar::EntryType::Link)));
        // Through a symlinked directory the lookup stays in the root: /conf/ is /etc/conf.
        let mut out = Vec::new();
        get(d.path(), "/conf/", &mut out).unwrap();
        assert!(names(&out).contains(&("conf/a".into(), tar::EntryType::Regular)));
        // The final element is not followed.
        let mut out = Vec::new();
        get(d.path(), "/escape", &mut out).unwrap();
        assert_eq!(
            names(&out),
            vec![("escape".into(), tar::EntryType::Symlink)]
        );
        // "/escape/" enters the link, which leads to the container's root, not the host's.
        let mut out = Vec::new();
        get(d.path(), "/escape/etc/conf/a", &mut out).unwrap();
        assert_eq!(names(&out), vec![("a".into(), tar::EntryType::Regular)]);
        // "dir/." keeps the "./" prefix the docker CLI rebases on; long names survive.
        let long = "n".repeat(150);
        std::fs::write(d.path().join("etc/conf").join(&long), "z").unwrap();
        let mut out = Vec::new();
        get(d.path(), "/etc/conf/.", &mut out).unwrap();
        let n = names(&out);
        assert_eq!(n[0].0, "./");
        assert!(
            n.contains(&("./a".into(), tar::EntryType::Regular)),
            "{n:?}"
        );
        assert!(
            n.contains(&(format!("./{long}"), tar::EntryType::Regular)),
            "{n:?}"
        );
        let st = stat(d.path(), "/escape/etc/passwd");
        assert_eq!(st.unwrap_err().kind, crate::error::ErrorKind::NotFound);
    }

    #[test]
    fn export_names_entries_like_docker_and_keeps_hard_links() {
        let d = tree();
        let mut out = Vec::new();
        export(d.path(), &mut out).unwrap();
        let n = names(&out);
        assert!(
            n.contains(&("etc/".into(), tar::EntryType::Directory)),
            "{n:?}"
        );
        assert!(
            n.contains(&("etc/conf/a".into(), tar::EntryType::Regular)),
            "{n:?}"
        );
        assert!(
            n.contains(&("etc/conf/b".into(), tar::EntryType::Link)),
            "{n:?}"
        );
        assert!(
            n.contains(&("escape".into(), tar::EntryType::Symlink)),
            "{n:?}"
        );
        // One copy of the shared content: 5 bytes of "alpha" in one data block.
        assert!(out.len() < 512 * 16, "{} bytes", out.len());
    }

    #[test]
    fn stat_reports_link_targets_inside_the_root() {
        let d = tree();
        let st = stat(d.path(), "/conf").unwrap();
        assert_eq!(st.link_target, "/etc/conf");
        assert_ne!(st.mode & GO_SYMLINK, 0);
        let st = stat(d.path(), "/etc/conf/a").unwrap();
        assert_eq!(
            (st.size, st.name.as_str(), st.mode & 0o777),
            (5, "a", 0o644 & st.mode)
        );
        assert!(stat(d.path(), "/etc/").unwrap().is_dir());
    }

    fn tarball(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o640);
            h.set_uid(1234);
            h.set_gid(1234);
            h.set_mtime(1_000_000_000);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                b.append_link(&mut h, name, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn put_extracts_inside_the_root_even_through_planted_links() {
        let d = tree();
        let t = tarball(&[
            ("new", tar::EntryType::Directory, ""),
            ("new/file", tar::EntryType::Regular, "hello"),
            ("new/link", tar::EntryType::Symlink, "/etc/passwd"),
        ]);
        // The destination is a symlink to "/": it means the container's root.
        put(d.path(), "/escape", &t[..], false, false).unwrap();
        let f = d.path().join("new/file");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "hello");
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(
            (m.uid(), m.mode() & 0o777, m.mtime()),
            (0, 0o640, 1_000_000_000)
        );
        // A second archive writes through the symlink it planted: the link is replaced,
        // the host's /etc/passwd is never touched.
        let t = tarball(&[("new/link", tar::EntryType::Regular, "x")]);
        put(d.path(), "/", &t[..], false, true).unwrap();
        let m = std::fs::symlink_metadata(d.path().join("new/link")).unwrap();
        assert!(m.is_file() && m.uid() == 1234);
        // ".." is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../../outside";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let e = put(d.path(), "/etc", &t[..], false, false).unwrap_err();
        assert!(e.message.contains(".."), "{}", e.message);
        // Files are not directories to extract into, and no-overwrite is honoured.
        let e = put(d.path(), "/etc/conf/a", &tarball(&[])[..], false, false).unwrap_err();
        assert!(e.message.contains("not a directory"), "{}", e.message);
        let t = tarball(&[("conf", tar::EntryType::Regular, "x")]);
        let e = put(d.path(), "/etc", &t[..], true, false).unwrap_err();
        assert!(
            e.message.contains("cannot overwrite directory"),
            "{}",
            e.message
        );
    }
}
