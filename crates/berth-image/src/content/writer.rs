//! Writing blobs: hash while writing into `ingest/`, verify, then publish under `blobs/`.
//!
//! The only way to a [`VerifiedBlob`] is [`BlobWriter::commit`], so code holding one knows
//! the blob is stored complete and matches its digest; a download in progress is a
//! [`BlobWriter`] and cannot be mistaken for it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_types::Digest;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};
use tracing::{debug, warn};

use super::{sync_dir, ContentError, ContentStore, Result, IO_BUFFER};

/// Makes ingest file names unique within this process; the pid in the name separates
/// processes. A leftover from a dead process with the same pid is skipped by `create_new`.
static NEXT_INGEST: AtomicU64 = AtomicU64::new(0);

/// A blob that is stored complete under its digest: produced only by a successful
/// [`BlobWriter::commit`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifiedBlob {
    digest: Digest,
    size: u64,
}

impl VerifiedBlob {
    /// The digest the content was verified against.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A blob being written. Hashes and counts what is written; [`BlobWriter::commit`] checks
/// and publishes it. Dropped without a commit (an aborted download, an error), it removes
/// its temporary file and stores nothing.
pub struct BlobWriter {
    file: File,
    /// The ingest file, until `published`.
    temp: PathBuf,
    /// The ingest file was renamed into place: nothing left to clean up.
    published: bool,
    blobs: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    /// A shared lock on `ingest/` held while the ingest file exists, so that
    /// [`ContentStore::check`] (which takes it exclusively) never deletes a live writer's
    /// file. Declared last: fields drop in order, and the lock must outlive the file.
    _ingest_lock: Flock<File>,
}

impl ContentStore {
    /// Starts writing a blob. `expected` and `expected_size` (from the descriptor) are
    /// checked: writing stops as soon as the content exceeds `expected_size`, and the
    /// commit fails unless the content matches both.
    pub fn writer(
        &self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter> {
        let ingest_dir =
            File::open(&self.ingest).map_err(ContentError::io("cannot open", &self.ingest))?;
        let ingest_lock = Flock::lock(ingest_dir, FlockArg::LockShared).map_err(|(_, errno)| {
            ContentError::io("cannot lock", &self.ingest)(io::Error::from(errno))
        })?;
        let (file, temp) = loop {
            let seq = NEXT_INGEST.fetch_add(1, Ordering::Relaxed);
            let temp = self.ingest.join(format!("{}-{seq}", process::id()));
            // Read-only from birth, like the blob it becomes; the descriptor opened here is
            // the only one that ever writes it.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&temp)
            {
                Ok(file) => break (file, temp),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(ContentError::io("cannot create ingest file", &temp)(source))
                }
            }
        };
        Ok(BlobWriter {
            file,
            temp,
            published: false,
            blobs: self.blobs.clone(),
            hasher: Sha256::new(),
            written: 0,
            expected: expected.cloned(),
            expected_size,
            _ingest_lock: ingest_lock,
        })
    }

    /// Stores `data` and returns its digest.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest> {
        let mut writer = self.writer(None, Some(data.len() as u64))?;
        writer.write_all_checked(data)?;
        Ok(writer.commit()?.digest)
    }

    /// Stores everything `reader` yields, checked against `expected` and `expected_size`
    /// as in [`ContentStore::writer`].
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<VerifiedBlob> {
        let mut writer = self.writer(expected, expected_size)?;
        let mut buffer = vec![0; IO_BUFFER];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => writer.write_all_checked(&buffer[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ContentError::Source {
                        digest: expected.cloned(),
                        source,
                    })
                }
            }
        }
        writer.commit()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies size and digest, makes the data durable and publishes the blob under its
    /// digest. On a mismatch nothing is stored and the ingest file is removed.
    ///
    /// If the blob is already stored (another writer got there first), the stored file is
    /// kept and this one discarded: both callers succeed, and readers that opened the blob
    /// are undisturbed.
    pub fn commit(mut self) -> Result<VerifiedBlob> {
        let size = self.written;
        if let Some(expected) = self.expected_size {
            if size != expected {
                return Err(ContentError::SizeMismatch {
                    digest: self.expected.take(),
                    expected,
                    actual: size,
                });
            }
        }
        let digest = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        if let Some(expected) = self.expected.take() {
            if expected != digest {
                return Err(ContentError::DigestMismatch {
                    expected,
                    actual: digest,
                });
            }
        }
        let target = self.blobs.join(digest.hex());
        match fs::symlink_metadata(&target) {
            Ok(existing) if existing.is_file() && existing.len() == size => {
                debug!(%digest, "blob already stored, discarding the new copy");
                // The other writer may not have synced the directory yet; our caller is
                // about to rely on the blob, so make its entry durable too.
                sync_dir(&self.blobs)?;
                return Ok(VerifiedBlob { digest, size });
            }
            // Something that cannot be this blob sits under its name (truncated by disk
            // damage, or not a file): the verified copy replaces it, atomically.
            Ok(_) => warn!(%digest, path = %target.display(), "replacing a damaged blob"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(ContentError::io("cannot inspect blob", &target)(source)),
        }
        self.file
            .sync_all()
            .map_err(ContentError::io("cannot sync ingest file", &self.temp))?;
        fs::rename(&self.temp, &target).map_err(ContentError::io(
            "cannot move ingest file into place as",
            &target,
        ))?;
        self.published = true;
        sync_dir(&self.blobs)?;
        debug!(%digest, size, "blob stored");
        Ok(VerifiedBlob { digest, size })
    }

    /// Writes all of `data`, as [`Write::write_all`] but keeping the content store's error.
    fn write_all_checked(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            match self.write_checked(data) {
                Ok(n) => data = &data[n..],
                Err(ContentError::Io { source, .. })
                    if source.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_checked(&mut self, data: &[u8]) -> Result<usize> {
        if let Some(expected) = self.expected_size {
            if self.written + data.len() as u64 > expected {
                return Err(ContentError::SizeExceeded {
                    digest: self.expected.clone(),
                    expected,
                });
            }
        }
        let n = self
            .file
            .write(data)
            .map_err(ContentError::io("cannot write ingest file", &self.temp))?;
        self.hasher.update(&data[..n]);
        self.written += n as u64;
        Ok(n)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_checked(data).map_err(|e| {
            // Keep the kind of an I/O failure (ENOSPC stays StorageFull) for callers that
            // match on it; our own refusal is invalid data.
            let kind = match &e {
                ContentError::Io { source, .. } => source.kind(),
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, e)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        // Nothing is buffered here; durability is `commit`'s job.
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.published {
            if let Err(e) = fs::remove_file(&self.temp) {
                // `check` removes it at the next start.
                debug!(path = %self.temp.display(), error = %e, "cannot remove ingest file");
            }
        }
    }
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.temp)
            .field("written", &self.written)
            .field("expected", &self.expected)
            .field("expected_size", &self.expected_size)
            .finish_non_exhaustive()
    }
}
