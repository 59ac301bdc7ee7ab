//! The content store: immutable blobs (layers, manifests, configs) addressed by their sha256
//! digest, under `<data root>/content`.
//!
//! ```text
//! content/
//!   blobs/sha256/<hex>   verified blobs, read-only, never modified in place
//!   ingest/              blobs being written; anything here after a crash is incomplete
//!   quarantine/          blobs that failed the self-check, kept for inspection
//! ```
//!
//! A blob only appears under `blobs/` after its size and digest were checked and its data
//! reached the disk ([`BlobWriter::commit`]): it is written to `ingest/`, fsynced, renamed
//! into place (atomic, because `ingest/` is on the same filesystem) and the directory is
//! fsynced. So a crash leaves at most an orphan in `ingest/`, never a torn blob, and
//! [`ContentStore::check`] clears those orphans at start-up.
//!
//! This module knows nothing about what a blob means (manifest, layer); which blobs are
//! still referenced, and so garbage collection, is decided by the image metadata above it.

mod check;
mod error;
mod writer;

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod tests;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_types::Digest;
use sha2::{Digest as _, Sha256};

pub use check::{CheckMode, CheckReport, QuarantineReason, Quarantined};
pub use error::{ContentError, Result};
pub use writer::{BlobWriter, VerifiedBlob};

/// Buffer for hashing and copying blobs: large enough that a 100 MB layer costs a few
/// hundred system calls, small enough to allocate per call.
const IO_BUFFER: usize = 256 * 1024;

/// The content store under one data root. Cheap to clone; all clones share the directory.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
    quarantine: PathBuf,
}

impl ContentStore {
    /// Opens the store at `<data_root>/content`, creating its directories if needed.
    ///
    /// The store's root is made mode 0700 even if it already existed: layers hold whole
    /// image filesystems, including files such as `/etc/shadow` that other users of the
    /// host must not read.
    pub fn open(data_root: &Path) -> Result<ContentStore> {
        let root = data_root.join("content");
        let store = ContentStore {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
            quarantine: root.join("quarantine"),
            root,
        };
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [&store.root, &store.blobs, &store.ingest, &store.quarantine] {
            builder
                .create(dir)
                .map_err(ContentError::io("cannot create directory", dir))?;
        }
        fs::set_permissions(&store.root, fs::Permissions::from_mode(0o700))
            .map_err(ContentError::io("cannot set mode 0700 on", &store.root))?;
        store.ensure_same_filesystem()?;
        Ok(store)
    }

    /// `<data_root>/content`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens a blob for reading. (`open_blob`, because [`ContentStore::open`] opens the
    /// store.)
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        // O_NOFOLLOW: the store only ever creates regular files, so a symlink here was
        // planted by someone else and must not lead a reader out of the store.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(ContentError::lookup("cannot open blob", digest, &path))
    }

    /// Reads a whole blob into memory and checks its digest, for manifests, indexes and
    /// configs. Refuses blobs larger than `max_size` rather than allocating whatever a
    /// registry sent.
    pub fn read_all(&self, digest: &Digest, max_size: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let size = file
            .metadata()
            .map_err(ContentError::io("cannot inspect blob", &path))?
            .len();
        let too_large = |size| ContentError::TooLarge {
            digest: digest.clone(),
            size,
            max: max_size,
        };
        if size > max_size {
            return Err(too_large(size));
        }
        // `size` bounds the allocation; `take` bounds the read even if the file grew.
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max_size.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(ContentError::io("cannot read blob", &path))?;
        if data.len() as u64 > max_size {
            return Err(too_large(data.len() as u64));
        }
        // Hashing a manifest or config costs microseconds, and these small blobs decide
        // what gets unpacked and run, so damage on disk is caught here, not later.
        let actual = Digest::from_sha256(Sha256::digest(&data).into());
        if actual != *digest {
            return Err(ContentError::Corrupt {
                digest: digest.clone(),
                path,
                actual,
            });
        }
        Ok(data)
    }

    /// The size of a stored blob in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        let metadata = fs::symlink_metadata(&path).map_err(ContentError::lookup(
            "cannot inspect blob",
            digest,
            &path,
        ))?;
        // Only regular files are blobs, as in `contains`.
        if !metadata.is_file() {
            return Err(ContentError::NotFound {
                digest: digest.clone(),
            });
        }
        Ok(metadata.len())
    }

    /// Whether the blob is stored.
    pub fn contains(&self, digest: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file())
    }

    /// Removes a blob. Readers that already opened it keep reading the old content.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        // No directory fsync: if a crash undoes the unlink, the blob is merely garbage
        // again, and the next garbage collection removes it.
        fs::remove_file(&path).map_err(ContentError::lookup("cannot delete blob", digest, &path))
    }

    /// Every stored blob with its size, sorted by digest. Files whose name is not a digest
    /// are skipped here; [`ContentStore::check`] quarantines them.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let entries = fs::read_dir(&self.blobs)
            .map_err(ContentError::io("cannot list blobs in", &self.blobs))?;
        let mut blobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(ContentError::io("cannot list blobs in", &self.blobs))?;
            let Some(digest) = digest_from_file_name(&entry.file_name()) else {
                continue;
            };
            let metadata = entry
                .metadata()
                .map_err(ContentError::io("cannot inspect blob", &entry.path()))?;
            if metadata.is_file() {
                blobs.push((digest, metadata.len()));
            }
        }
        blobs.sort_unstable();
        Ok(blobs)
    }

    /// Hashes a stored blob again and fails with [`ContentError::Corrupt`] if its content no
    /// longer matches its digest.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let actual = hash_file(self.open_blob(digest)?, &path)?;
        if actual != *digest {
            return Err(ContentError::Corrupt {
                digest: digest.clone(),
                path,
                actual,
            });
        }
        Ok(())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Commits rename from `ingest/` to `blobs/`; across filesystems that fails with EXDEV
    /// on the first pull, so a data root assembled from several mounts is refused up front.
    fn ensure_same_filesystem(&self) -> Result<()> {
        let device = |dir: &Path| {
            fs::metadata(dir)
                .map(|m| m.dev())
                .map_err(ContentError::io("cannot inspect directory", dir))
        };
        if device(&self.ingest)? != device(&self.blobs)? {
            return Err(ContentError::CrossDevice {
                ingest: self.ingest.clone(),
                blobs: self.blobs.clone(),
            });
        }
        Ok(())
    }
}

/// The digest a file under `blobs/sha256/` claims by its name, if the name is canonical.
fn digest_from_file_name(name: &std::ffi::OsStr) -> Option<Digest> {
    format!("sha256:{}", name.to_str()?).parse().ok()
}

/// The sha256 digest of everything `file` still has to read.
fn hash_file(mut file: File, path: &Path) -> Result<Digest> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; IO_BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(Digest::from_sha256(hasher.finalize().into())),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ContentError::io("cannot read blob", path)(source)),
        }
    }
}

/// Makes a rename or new entry in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ContentError::io("cannot sync directory", dir))
}
