//! The start-up self-check: clears what a crash left behind and sets aside damaged blobs.
//!
//! Nothing valid is ever touched, and nothing under `blobs/` is ever deleted: a file that
//! is not the blob its name claims is moved to `quarantine/` for someone to look at, since
//! it may be the only copy of data a user cares about.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use berth_types::Digest;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};
use tracing::{debug, info, info_span, warn};

use super::{digest_from_file_name, hash_file, ContentError, ContentStore, Result};

/// How thoroughly [`ContentStore::check`] looks at blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Names, file types and sizes only: fast enough for every start, whatever the store's
    /// size. Catches misnamed files and blobs truncated to nothing.
    Quick,
    /// Also rehashes every blob: reads the whole store, for when damage is suspected.
    Full,
}

/// What [`ContentStore::check`] found and did.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Blobs that passed and were left as they are.
    pub blobs_ok: usize,
    /// Incomplete ingest files (from writers that crashed or were killed) that were removed.
    pub removed_ingest: Vec<PathBuf>,
    /// A writer was active, so `ingest/` was left alone: its files may still be committed.
    pub ingest_in_use: bool,
    /// Files moved out of `blobs/`.
    pub quarantined: Vec<Quarantined>,
}

/// A file moved from `blobs/sha256/` to `quarantine/`.
#[derive(Debug)]
pub struct Quarantined {
    /// Its name under `blobs/sha256/`.
    pub name: OsString,
    /// Where it is now.
    pub moved_to: PathBuf,
    pub reason: QuarantineReason,
}

/// Why a file under `blobs/sha256/` is not a valid blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineReason {
    /// The name is not 64 lowercase hex digits.
    InvalidName,
    /// A directory, symlink or other non-regular file.
    NotAFile,
    /// Empty, but named for non-empty content: a write the file system lost.
    Empty,
    /// The content hashes to another digest than its name.
    ContentMismatch { actual: Digest },
}

impl fmt::Display for QuarantineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuarantineReason::InvalidName => f.write_str("name is not a sha256 digest"),
            QuarantineReason::NotAFile => f.write_str("not a regular file"),
            QuarantineReason::Empty => f.write_str("empty, but named for non-empty content"),
            QuarantineReason::ContentMismatch { actual } => {
                write!(f, "content hashes to {actual}")
            }
        }
    }
}

impl ContentStore {
    /// Checks the store, as the daemon does at start-up: removes leftover ingest files and
    /// quarantines every file under `blobs/` that is not the blob its name claims.
    ///
    /// Safe to run while writers are active (their ingest files are then left alone, see
    /// [`CheckReport::ingest_in_use`]), though a start-up check, before any pull, is what
    /// it is for.
    pub fn check(&self, mode: CheckMode) -> Result<CheckReport> {
        let _span = info_span!("content_check", ?mode).entered();
        let mut report = CheckReport::default();
        self.remove_ingest_leftovers(&mut report)?;

        let empty = Digest::from_sha256(Sha256::digest([]).into());
        let entries = fs::read_dir(&self.blobs)
            .map_err(ContentError::io("cannot list blobs in", &self.blobs))?;
        for entry in entries {
            let entry = entry.map_err(ContentError::io("cannot list blobs in", &self.blobs))?;
            let name = entry.file_name();
            let path = entry.path();
            let problem = match digest_from_file_name(&name) {
                None => Some(QuarantineReason::InvalidName),
                Some(digest) => self.check_blob(&digest, &path, mode, &empty)?,
            };
            match problem {
                None => report.blobs_ok += 1,
                Some(reason) => {
                    let moved_to = self.quarantine_file(&path, &name)?;
                    warn!(path = %path.display(), moved_to = %moved_to.display(), %reason,
                        "quarantined an invalid blob");
                    report.quarantined.push(Quarantined {
                        name,
                        moved_to,
                        reason,
                    });
                }
            }
        }
        info!(
            blobs_ok = report.blobs_ok,
            quarantined = report.quarantined.len(),
            removed_ingest = report.removed_ingest.len(),
            "content store checked"
        );
        Ok(report)
    }

    /// What is wrong with the file `path`, named for `digest`, if anything.
    fn check_blob(
        &self,
        digest: &Digest,
        path: &Path,
        mode: CheckMode,
        empty: &Digest,
    ) -> Result<Option<QuarantineReason>> {
        let metadata =
            fs::symlink_metadata(path).map_err(ContentError::io("cannot inspect blob", path))?;
        if !metadata.is_file() {
            return Ok(Some(QuarantineReason::NotAFile));
        }
        // The empty blob is legitimate (and has a well-known digest); any other empty file
        // is what a crash on a file system without ordered data leaves behind.
        if metadata.len() == 0 && digest != empty {
            return Ok(Some(QuarantineReason::Empty));
        }
        if mode == CheckMode::Full {
            let actual = hash_file(self.open_blob(digest)?, path)?;
            if actual != *digest {
                return Ok(Some(QuarantineReason::ContentMismatch { actual }));
            }
        }
        Ok(None)
    }

    /// Removes everything in `ingest/`, unless a writer is active.
    fn remove_ingest_leftovers(&self, report: &mut CheckReport) -> Result<()> {
        let dir =
            File::open(&self.ingest).map_err(ContentError::io("cannot open", &self.ingest))?;
        // Every writer holds a shared lock on `ingest/` from before it creates its file
        // until after it is gone; the kernel drops the lock of a killed writer. So holding
        // the exclusive lock means every file here is an orphan.
        let _exclusive = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                debug!("writers active, leaving ingest files alone");
                report.ingest_in_use = true;
                return Ok(());
            }
            Err((_, errno)) => {
                return Err(ContentError::io("cannot lock", &self.ingest)(
                    io::Error::from(errno),
                ))
            }
        };
        let entries = fs::read_dir(&self.ingest).map_err(ContentError::io(
            "cannot list ingest files in",
            &self.ingest,
        ))?;
        for entry in entries {
            let path = entry
                .map_err(ContentError::io(
                    "cannot list ingest files in",
                    &self.ingest,
                ))?
                .path();
            let removed = if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(ContentError::io(
                "cannot remove leftover ingest file",
                &path,
            ))?;
            debug!(path = %path.display(), "removed leftover ingest file");
            report.removed_ingest.push(path);
        }
        Ok(())
    }

    /// Moves `path` into `quarantine/` under its own name, or the first free `<name>.<n>`
    /// if an earlier check already quarantined a file of that name.
    fn quarantine_file(&self, path: &Path, name: &OsString) -> Result<PathBuf> {
        let mut target = self.quarantine.join(name);
        let mut n = 0u32;
        while fs::symlink_metadata(&target).is_ok() {
            n += 1;
            let mut numbered = name.clone();
            numbered.push(format!(".{n}"));
            target = self.quarantine.join(numbered);
        }
        // No directory fsync: if a crash undoes the move, the next check moves it again.
        fs::rename(path, &target).map_err(ContentError::io("cannot quarantine", path))?;
        Ok(target)
    }
}
