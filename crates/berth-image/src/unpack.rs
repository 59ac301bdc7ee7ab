//! Unpacking a layer tarball into a snapshot directory that overlayfs can stack.
//!
//! The stream is read once: decompressed (`tar`, `tar+gzip`, `tar+zstd`, detected from the
//! magic bytes), hashed to check the layer's diff ID, and written entry by entry; nothing is
//! copied to a temporary file first. The snapshot is built in a temporary directory beside
//! its final path and renamed into place only when the whole layer was written and its diff
//! ID matched, so a snapshot either exists completely or not at all.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.name` a 0:0 character device `name`, and
//! `.wh..wh..opq` the `trusted.overlay.opaque` attribute on its directory.
//!
//! A layer is untrusted input. Every path is taken relative to the snapshot (a leading `/`
//! is dropped, `..` is refused), each parent directory is opened with `O_NOFOLLOW` so no
//! symlink — planted by this layer or any other — is ever followed while writing, and a
//! hard link may only point at a file this same layer wrote. Nothing can land outside the
//! snapshot.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_types::Digest;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};

/// Where a layer came from, for error messages.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Copy buffer; also the granularity at which runs of zeros become holes.
const CHUNK: usize = 256 * 1024;

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} would be written outside the snapshot: {reason}")]
    Escape { path: PathBuf, reason: &'static str },

    #[error("layer entry {path:?}: {reason}")]
    BadEntry { path: PathBuf, reason: String },

    #[error("layer content does not match its diff ID: expected {expected}, got {actual}; the layer is corrupt or was tampered with")]
    DiffIdMismatch { expected: Digest, actual: Digest },

    #[error("snapshot {0} already exists")]
    Exists(PathBuf),

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

type Result<T, E = UnpackError> = std::result::Result<T, E>;

fn io_err<E: Into<io::Error>>(context: impl Into<String>) -> impl FnOnce(E) -> UnpackError {
    let context = context.into();
    move |e| UnpackError::Io {
        context,
        source: e.into(),
    }
}

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Tell from the first bytes of a stream (at least 4).
    pub fn detect(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Wrap `input` in the decompressor its first bytes call for (gzip, zstd, or none), and
/// say which it was.
pub fn decompressed<'a>(
    mut input: impl Read + 'a,
) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let compression = Compression::detect(&head[..got]);
    let stream = io::Cursor::new(head[..got].to_vec()).chain(input);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            stream,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
    };
    Ok((reader, compression))
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Uncompressed size of the tar stream.
    pub tar_size: u64,
    pub entries: u64,
    pub compression: Compression,
}

/// Unpack the layer read from `layer` into a new snapshot directory `target` (which must
/// not exist yet), checking the diff ID when one is expected.
pub fn unpack_layer(
    layer: impl Read + Send + 'static,
    target: &Path,
    expected_diff_id: Option<&Digest>,
) -> Result<UnpackReport> {
    if target.exists() {
        return Err(UnpackError::Exists(target.to_owned()));
    }
    let parent = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().map(OsStr::to_owned).unwrap_or_default();
    let mut tmp_name = OsString::from(".unpacking-");
    tmp_name.push(&name);
    tmp_name.push(format!("-{}", std::process::id()));
    let tmp = parent.join(tmp_name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    let result = unpack_into(layer, &tmp).and_then(|report| {
        if let Some(expected) = expected_diff_id {
            if *expected != report.diff_id {
                return Err(UnpackError::DiffIdMismatch {
                    expected: expected.clone(),
                    actual: report.diff_id,
                });
            }
        }
        std::fs::rename(&tmp, target).map_err(io_err(format!(
            "moving the snapshot to {}",
            target.display()
        )))?;
        Ok(report)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Reads the chunks the decompression thread sends.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // the sender is done: end of stream
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Unpack into the existing, empty directory `dir`.
fn unpack_into(mut layer: impl Read + Send + 'static, dir: &Path) -> Result<UnpackReport> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        let n = layer
            .read(&mut head[got..])
            .map_err(io_err("reading the layer"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let compression = Compression::detect(&head[..got]);
    // Decompression and hashing run on their own thread, feeding the writer through a
    // bounded channel: the two halves of the work overlap on two cores, as GNU tar does
    // with an external decompressor.
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(16);
    let head = head[..got].to_vec();
    let decoder = std::thread::spawn(move || -> (Digest, u64) {
        let stream = io::Cursor::new(head).chain(layer);
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let decoded: io::Result<Box<dyn Read>> = match compression {
            Compression::None => Ok(Box::new(stream)),
            Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(
                io::BufReader::with_capacity(CHUNK, stream),
            ))),
            Compression::Zstd => {
                zstd::stream::read::Decoder::new(stream).map(|d| Box::new(d) as Box<dyn Read>)
            }
        };
        match decoded {
            Ok(mut decoded) => loop {
                let mut buf = vec![0u8; CHUNK];
                match decoded.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        hasher.update(&buf);
                        total += n as u64;
                        if tx.send(Ok(buf)).is_err() {
                            break; // the writer gave up
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            },
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
        (Digest::from_sha256(hasher.finalize().into()), total)
    });
    let mut hashing = ChannelReader {
        rx,
        current: Vec::new(),
        pos: 0,
    };
    let root = nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(format!("opening {}", dir.display())))?;
    let mut writer = Writer {
        root,
        dir: dir.to_owned(),
        dir_times: Vec::new(),
        written: Default::default(),
        last_parent: None,
    };
    let mut entries = 0;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive
            .entries()
            .map_err(io_err("reading the layer's tar stream"))?
        {
            let mut entry = entry.map_err(io_err("reading the layer's tar stream"))?;
            writer.write_entry(&mut entry)?;
            entries += 1;
        }
    }
    // The diff ID covers the whole stream, including the tar's trailing padding.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err("reading the end of the layer"))?;
    writer.finish()?;
    drop(hashing);
    let (digest, tar_size) = decoder.join().map_err(|_| UnpackError::Io {
        context: "decompressing the layer".into(),
        source: io::Error::other("the decompression thread panicked"),
    })?;
    Ok(UnpackReport {
        diff_id: digest,
        tar_size,
        entries,
        compression,
    })
}

/// Writes entries under one snapshot directory.
struct Writer {
    root: OwnedFd,
    dir: PathBuf,
    /// Directories whose times are set at the end (writing into them changes their mtime).
    dir_times: Vec<(PathBuf, TimeSpec)>,
    /// Regular files this layer wrote: the only valid hard-link targets.
    written: std::collections::HashSet<PathBuf>,
    /// The directory of the previous entry: entries come grouped by directory, and walking
    /// from the root for each one costs a syscall per path component.
    last_parent: Option<(PathBuf, OwnedFd)>,
}

/// `path` made relative to the snapshot: a leading `/` or `./` is dropped; `..` refused.
fn clean_path(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnpackError::Escape {
                    path: raw.to_owned(),
                    reason: "the path contains `..`",
                })
            }
            Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    path: raw.to_owned(),
                    reason: "not a Unix path",
                })
            }
        }
    }
    Ok(out)
}

impl Writer {
    /// Open (creating as needed) the parent directory of `rel`, never following a symlink.
    fn parent_of(&mut self, rel: &Path) -> Result<(OwnedFd, OsString)> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
        if let Some((cached, fd)) = &self.last_parent {
            if *cached == parent {
                let name = rel.file_name().map(OsStr::to_owned).unwrap_or_default();
                return Ok((fd.try_clone().map_err(io_err("dup"))?, name));
            }
        }
        let (fd, name) = self.walk_parent(rel)?;
        self.last_parent = Some((parent, fd.try_clone().map_err(io_err("dup"))?));
        Ok((fd, name))
    }

    /// Open the parent of `rel` from the snapshot's root, one component at a time.
    fn walk_parent(&self, rel: &Path) -> Result<(OwnedFd, OsString)> {
        let name = rel
            .file_name()
            .map(OsStr::to_owned)
            .ok_or_else(|| UnpackError::BadEntry {
                path: rel.to_owned(),
                reason: "empty path".into(),
            })?;
        let mut fd = nix::fcntl::openat(
            self.root.as_fd(),
            ".",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("opening the snapshot"))?;
        let mut walked = PathBuf::new();
        for comp in rel.parent().into_iter().flat_map(Path::components) {
            let Component::Normal(comp) = comp else {
                continue;
            };
            walked.push(comp);
            let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let next = match nix::fcntl::openat(fd.as_fd(), comp, flags, Mode::empty()) {
                Ok(next) => next,
                Err(nix::Error::ENOENT) => {
                    // A parent the tar does not list (it comes from a lower layer): create it.
                    match nix::sys::stat::mkdirat(fd.as_fd(), comp, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(nix::Error::EEXIST) => {}
                        Err(e) => return Err(io_err(format!("creating {}", walked.display()))(e)),
                    }
                    nix::fcntl::openat(fd.as_fd(), comp, flags, Mode::empty()).map_err(io_err(format!("opening {}", walked.display())))?
                }
                Err(nix::Error::ELOOP) | Err(nix::Error::ENOTDIR) => {
                    return Err(UnpackError::Escape { path: rel.to_owned(), reason: "a parent directory is a symlink (or not a directory); refusing to write through it" })
                }
                Err(e) => return Err(io_err(format!("opening {}", walked.display()))(e)),
            };
            fd = next;
        }
        Ok((fd, name))
    }

    /// Remove whatever is at `name` in `dir` (a later entry replaces an earlier one), except
    /// a directory when `keep_dir` (a directory entry over an existing directory merges).
    fn clear(dir: BorrowedFd<'_>, name: &OsStr, keep_dir: bool) -> Result<bool> {
        match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(nix::Error::ENOENT) => Ok(false),
            Err(e) => Err(io_err("stat")(e)),
            Ok(st) => {
                let is_dir =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                if is_dir && keep_dir {
                    return Ok(false);
                }
                let flag = if is_dir {
                    nix::unistd::UnlinkatFlags::RemoveDir
                } else {
                    nix::unistd::UnlinkatFlags::NoRemoveDir
                };
                nix::unistd::unlinkat(dir, name, flag)
                    .map(|()| true)
                    .map_err(io_err(format!("replacing {}", name.to_string_lossy())))
            }
        }
    }

    fn write_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry
            .path()
            .map_err(io_err("reading an entry name"))?
            .into_owned();
        let rel = clean_path(&raw)?;
        if rel.as_os_str().is_empty() {
            return Ok(()); // "./" itself
        }
        let (dir, name) = self.parent_of(&rel)?;
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            let dir_path = self.dir.join(rel.parent().unwrap_or(Path::new("")));
            return xattr::set(&dir_path, OVERLAY_OPAQUE_XATTR, b"y").map_err(io_err(format!(
                "marking {} opaque (overlayfs needs trusted.* xattrs, i.e. root)",
                rel.display()
            )));
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Ok(()); // other AUFS metadata (.wh..wh.plnk and the like)
            }
            let hidden = OsStr::from_bytes(hidden);
            if Self::clear(dir.as_fd(), hidden, false)? {
                // A cached descriptor might name what was just removed.
                self.last_parent = None;
            }
            return nix::sys::stat::mknodat(
                dir.as_fd(),
                hidden,
                SFlag::S_IFCHR,
                Mode::empty(),
                nix::sys::stat::makedev(0, 0),
            )
            .map_err(io_err(format!("creating whiteout for {}", rel.display())));
        }

        let header = entry.header();
        let old = header.as_old();
        let mode = Mode::from_bits_truncate(
            numeric(&old.mode, header.mode().map(u64::from), "mode")? as u32 & 0o7777,
        );
        let uid = numeric(&old.uid, header.uid(), "uid")? as u32;
        let gid = numeric(&old.gid, header.gid(), "gid")? as u32;
        let mtime = numeric(&old.mtime, header.mtime(), "mtime")? as i64;
        let kind = header.entry_type();
        let is_dir = kind.is_dir();
        if Self::clear(dir.as_fd(), &name, is_dir)? {
            self.last_parent = None;
        }

        match kind {
            tar::EntryType::Directory => {
                match nix::sys::stat::mkdirat(dir.as_fd(), name.as_os_str(), mode) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => {
                        return Err(io_err(format!("creating directory {}", rel.display()))(e))
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = nix::fcntl::openat(
                    dir.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_err(format!("creating {}", rel.display())))?;
                let mut file = File::from(fd);
                copy_sparse(entry, &mut file)
                    .map_err(io_err(format!("writing {}", rel.display())))?;
                self.written.insert(rel.clone());
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err("reading a link target"))?
                    .ok_or_else(|| UnpackError::BadEntry {
                        path: rel.clone(),
                        reason: "symlink without a target".into(),
                    })?;
                // The target is stored as it is: it is only ever resolved inside the
                // container's own root, never by us.
                nix::unistd::symlinkat(target.as_ref(), dir.as_fd(), name.as_os_str())
                    .map_err(io_err(format!("creating symlink {}", rel.display())))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err("reading a link target"))?
                    .ok_or_else(|| UnpackError::BadEntry {
                        path: rel.clone(),
                        reason: "hard link without a target".into(),
                    })?;
                let target = clean_path(&target)?;
                if !self.written.contains(&target) {
                    return Err(UnpackError::Escape {
                        path: rel,
                        reason:
                            "a hard link may only point at a file written earlier in the same layer",
                    });
                }
                let (tdir, tname) = self.parent_of(&target)?;
                nix::unistd::linkat(
                    tdir.as_fd(),
                    tname.as_os_str(),
                    dir.as_fd(),
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(io_err(format!("creating hard link {}", rel.display())))?;
                return Ok(()); // a link shares the target's metadata
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let kind_flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                nix::sys::stat::mknodat(
                    dir.as_fd(),
                    name.as_os_str(),
                    kind_flag,
                    mode,
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(io_err(format!("creating device {}", rel.display())))?;
            }
            // PAX and GNU long-name headers are consumed by the tar reader itself.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => return Ok(()),
            other => {
                return Err(UnpackError::BadEntry {
                    path: rel,
                    reason: format!("unsupported tar entry type {other:?}"),
                })
            }
        }

        let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        nix::unistd::fchownat(
            dir.as_fd(),
            name.as_os_str(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nofollow,
        )
        .map_err(io_err(format!("chown {}", rel.display())))?;
        if kind != tar::EntryType::Symlink {
            // After chown, which clears set-id bits.
            nix::sys::stat::fchmodat(
                dir.as_fd(),
                name.as_os_str(),
                mode,
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(io_err(format!("chmod {}", rel.display())))?;
        }
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(io_err("reading PAX headers"))?
        {
            let full = self.dir.join(&rel);
            for ext in exts {
                let ext = ext.map_err(io_err("reading PAX headers"))?;
                if let Some(attr) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    xattr::set(&full, attr, ext.value_bytes())
                        .map_err(io_err(format!("setting {attr} on {}", rel.display())))?;
                }
            }
        }
        let t = TimeSpec::new(mtime, 0);
        if is_dir {
            self.dir_times.push((rel, t));
        } else {
            nix::sys::stat::utimensat(
                dir.as_fd(),
                name.as_os_str(),
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io_err(format!("setting times of {}", rel.display())))?;
        }
        Ok(())
    }

    /// Set directory times last: writing into a directory changes its mtime.
    fn finish(mut self) -> Result<()> {
        let times = std::mem::take(&mut self.dir_times);
        for (rel, t) in times.iter().rev() {
            let (dir, name) = self.parent_of(rel)?;
            nix::sys::stat::utimensat(
                dir.as_fd(),
                name.as_os_str(),
                t,
                t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(io_err(format!("setting times of {}", rel.display())))?;
        }
        Ok(())
    }
}

/// A numeric header field: a blank one (all NULs or spaces) reads as 0, as Go's
/// archive/tar (and so Docker) reads it; anything else unparsable is an error.
fn numeric(raw: &[u8], parsed: io::Result<u64>, what: &str) -> Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(io_err(format!("reading {what}"))(e)),
    }
}

/// Copy `from` into `to`, turning whole chunks of zeros into holes (layers of sparse files,
/// database images and the like stay sparse).
fn copy_sparse(from: &mut impl Read, to: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut len: u64 = 0;
    let mut pending_hole = false;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = from.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = &buf[..filled];
        if filled == CHUNK && chunk.iter().all(|b| *b == 0) {
            to.seek(SeekFrom::Current(filled as i64))?;
            pending_hole = true;
        } else {
            to.write_all(chunk)?;
            pending_hole = false;
        }
        len += filled as u64;
        if filled < CHUNK {
            break;
        }
    }
    if pending_hole {
        to.set_len(len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
