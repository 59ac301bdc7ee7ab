//! What a container changed: `docker diff` from its writable overlay layer, and the same
//! changes written as a new layer (the heart of `commit`).
//!
//! The writable layer already holds exactly the changes, in overlayfs's encoding: new and
//! copied-up files, 0:0 character devices for deletions, `trusted.overlay.opaque` on
//! directories whose lower contents are hidden. Whether a file is Added or Changed depends
//! on whether the image's layers (the lowers, top-most first) show something at its path.
//! A layer is written with the OCI encoding instead: `.wh.name` for deletions and
//! `.wh..wh..opq` for opaque directories, which [`crate::unpack`] turns back into overlay's.

use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_types::Digest;
use sha2::{Digest as _, Sha256};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The kind of a change, as `docker diff` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// `C`
    Modified,
    /// `A`
    Added,
    /// `D`
    Deleted,
}

impl ChangeKind {
    /// The letter `docker diff` prints; the Engine API's `Kind` is 0, 1, 2 in this order.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path (absolute, as seen inside the container).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    matches!(xattr::get(path, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

/// Whether the image's layers (top-most first) show anything at `rel`.
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for lower in lowers {
        // A whiteout or an opaque ancestor in this layer hides everything below it.
        let mut ancestor = PathBuf::new();
        let parents: Vec<_> = rel
            .parent()
            .into_iter()
            .flat_map(Path::components)
            .collect();
        for comp in parents {
            ancestor.push(comp);
            match std::fs::symlink_metadata(lower.join(&ancestor)) {
                Ok(m) if is_whiteout(&m) || !m.is_dir() => return false,
                Ok(_) if is_opaque(&lower.join(&ancestor)) => {
                    return std::fs::symlink_metadata(lower.join(rel))
                        .is_ok_and(|m| !is_whiteout(&m));
                }
                _ => {}
            }
        }
        match std::fs::symlink_metadata(lower.join(rel)) {
            Ok(m) => return !is_whiteout(&m),
            Err(_) => continue,
        }
    }
    false
}

/// The changes recorded in `upper` relative to `lowers` (top-most first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> io::Result<Vec<Change>> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(upper.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let meta = entry.metadata()?;
        let path = Path::new("/").join(&rel);
        if is_whiteout(&meta) {
            out.push(Change {
                path,
                kind: ChangeKind::Deleted,
            });
            continue;
        }
        let kind = if in_lowers(lowers, &rel) {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        out.push(Change { path, kind });
        if meta.is_dir() {
            walk(upper, &rel, lowers, out)?;
        }
    }
    Ok(())
}

/// What writing a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenLayer {
    /// sha256 of the tar stream written.
    pub diff_id: Digest,
    pub size: u64,
}

/// Hashes and counts what passes through to the inner writer.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write the changes in `upper` as an uncompressed OCI layer tar to `to`. Entries keep
/// ownership, modes, times, xattrs (except overlay's own) and hard links; deletions become
/// `.wh.` files and opaque directories get `.wh..wh..opq`.
pub fn write_layer(upper: &Path, to: impl Write) -> io::Result<WrittenLayer> {
    let mut hashing = HashingWriter {
        inner: to,
        hasher: Sha256::new(),
        bytes: 0,
    };
    {
        let mut builder = tar::Builder::new(&mut hashing);
        builder.follow_symlinks(false);
        let mut links = std::collections::HashMap::new();
        add_dir(&mut builder, upper, Path::new(""), &mut links)?;
        builder.finish()?;
    }
    hashing.flush()?;
    Ok(WrittenLayer {
        diff_id: Digest::from_sha256(hashing.hasher.finalize().into()),
        size: hashing.bytes,
    })
}

fn add_dir<W: Write>(
    b: &mut tar::Builder<W>,
    upper: &Path,
    rel: &Path,
    links: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(upper.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let rel = rel.join(&name);
        let full = upper.join(&rel);
        let meta = std::fs::symlink_metadata(&full)?;
        if is_whiteout(&meta) {
            let mut wh = std::ffi::OsString::from(".wh.");
            wh.push(&name);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o600);
            h.set_mtime(meta.mtime().max(0) as u64);
            b.append_data(&mut h, rel.with_file_name(wh), io::empty())?;
            continue;
        }
        // Hard links inside the layer are kept as links.
        if !meta.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                let mut h = header_for(&meta);
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, &rel, first)?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), rel.clone());
        }
        add_xattrs(b, &full)?;
        let mut h = header_for(&meta);
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, &rel, io::empty())?;
            if is_opaque(&full) {
                let mut o = tar::Header::new_gnu();
                o.set_size(0);
                o.set_mode(0o600);
                b.append_data(&mut o, rel.join(".wh..wh..opq"), io::empty())?;
            }
            add_dir(b, upper, &rel, links)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &rel, std::fs::read_link(&full)?)?;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, &rel, std::fs::File::open(&full)?)?;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets do not belong in a layer
            };
            h.set_entry_type(kind);
            h.set_size(0);
            h.set_device_major(nix::sys::stat::major(meta.rdev()) as u32)?;
            h.set_device_minor(nix::sys::stat::minor(meta.rdev()) as u32)?;
            b.append_data(&mut h, &rel, io::empty())?;
        }
    }
    Ok(())
}

fn header_for(meta: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid().into());
    h.set_gid(meta.gid().into());
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(meta.len());
    h
}

/// Extended attributes travel as PAX `SCHILY.xattr.*` records, except overlayfs's own.
fn add_xattrs<W: Write>(b: &mut tar::Builder<W>, full: &Path) -> io::Result<()> {
    let mut records = Vec::new();
    for name in xattr::list(full)? {
        let Some(n) = name.to_str() else { continue };
        if n.starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(value) = xattr::get(full, &name)? {
            records.push((format!("SCHILY.xattr.{n}"), value));
        }
    }
    if !records.is_empty() {
        b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
