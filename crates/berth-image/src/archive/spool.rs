//! The streaming spool: an archive's entries read once, in order, into the content store (or
//! memory, for small files), with its links resolved, ready to be looked up by name.

use std::collections::HashMap;
use std::io::Read;

use berth_types::Digest;

use crate::content::VerifiedBlob;
use crate::store::{ImageStore, MAX_JSON};

use super::load::BlobSource;
use super::{
    archive_path, blob_error, blob_path, claimed_digest, io_err, parent_dir, sha256, ArchiveError,
    Result, MAX_LINK_HOPS, MEMORY_BUDGET, METADATA_FILES, SMALL_FILE,
};

/// A file of an archive being loaded.
enum SpooledFile {
    /// A small file, until something refers to it.
    Memory {
        bytes: Vec<u8>,
        digest: Digest,
    },
    Stored(VerifiedBlob),
}

/// An archive read into the content store, by entry name.
pub(super) struct Spool<'a> {
    store: &'a ImageStore,
    files: HashMap<String, SpooledFile>,
    /// Symbolic and hard links, to the clean archive path they point to.
    links: HashMap<String, String>,
}

impl<'a> Spool<'a> {
    pub(super) fn read(store: &'a ImageStore, input: impl Read) -> Result<Spool<'a>> {
        let mut spool = Spool {
            store,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut memory_left = MEMORY_BUDGET;
        let mut archive = tar::Archive::new(input);
        for entry in archive
            .entries()
            .map_err(io_err("reading the archive's tar stream"))?
        {
            let mut entry = entry.map_err(io_err("reading the archive's tar stream"))?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                continue;
            }
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = archive_path("", &raw_name, &raw_name)?;
            if name.is_empty() {
                continue;
            }
            // A later entry of the same name replaces an earlier one, as when unpacking.
            spool.files.remove(&name);
            spool.links.remove(&name);
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    let claimed = claimed_digest(&name);
                    let metadata = METADATA_FILES.contains(&name.as_str());
                    if metadata || (size <= SMALL_FILE && size <= memory_left) {
                        if size > MAX_JSON {
                            return Err(ArchiveError::Malformed {
                                file: name,
                                message: format!("{size} bytes, more than the {MAX_JSON} accepted"),
                            });
                        }
                        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                        (&mut entry)
                            .take(size)
                            .read_to_end(&mut bytes)
                            .map_err(io_err(format!("reading {name} from the archive")))?;
                        let digest = sha256(&bytes);
                        if let Some(expected) = claimed.filter(|c| *c != digest) {
                            return Err(ArchiveError::DigestMismatch {
                                entry: name,
                                expected,
                                actual: digest,
                            });
                        }
                        if !metadata {
                            memory_left -= size;
                        }
                        spool
                            .files
                            .insert(name, SpooledFile::Memory { bytes, digest });
                    } else {
                        let blob = store
                            .content
                            .put_reader(&mut entry, claimed.as_ref(), Some(size))
                            .map_err(blob_error(&name))?;
                        spool.files.insert(name, SpooledFile::Stored(blob));
                    }
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    // A symlink is relative to its directory, a hard link to the root.
                    let base = if kind == tar::EntryType::Symlink {
                        parent_dir(&name)
                    } else {
                        ""
                    };
                    let target = archive_path(base, &target, &raw_name)?;
                    spool.links.insert(name, target);
                }
                other => {
                    tracing::debug!(entry = %name, kind = ?other, "ignoring an archive entry that is not a file or link");
                }
            }
        }
        Ok(spool)
    }

    /// The name of the file `path` refers to, links followed, if the archive has it.
    fn resolve(&self, path: &str) -> Result<Option<String>> {
        let mut current = path;
        for _ in 0..=MAX_LINK_HOPS {
            match self.links.get(current) {
                Some(target) => current = target,
                None => return Ok(self.files.contains_key(current).then(|| current.to_owned())),
            }
        }
        Err(ArchiveError::UnsafePath {
            name: path.to_owned(),
            reason: "too many levels of links (a link loop?)",
        })
    }

    /// The content of a small file (manifest.json, a config) if the archive has it.
    pub(super) fn small_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let file = self.resolve(path)?.and_then(|name| self.files.get(&name));
        match file {
            None => Ok(None),
            Some(SpooledFile::Memory { bytes, .. }) => Ok(Some(bytes.clone())),
            Some(SpooledFile::Stored(blob)) => {
                Ok(Some(self.store.content.read_all(blob.digest(), MAX_JSON)?))
            }
        }
    }

    /// The entry at `path` in the content store.
    pub(super) fn ingest(&mut self, path: &str, what: &str) -> Result<VerifiedBlob> {
        let missing = || ArchiveError::Missing {
            what: what.to_owned(),
            path: path.to_owned(),
        };
        let name = self.resolve(path)?.ok_or_else(missing)?;
        let file = self.files.get_mut(&name).ok_or_else(missing)?;
        let blob = match file {
            SpooledFile::Stored(blob) => return Ok(blob.clone()),
            SpooledFile::Memory { bytes, digest } => self
                .store
                .content
                .put_reader(&bytes[..], Some(digest), Some(bytes.len() as u64))
                .map_err(blob_error(&name))?,
        };
        *file = SpooledFile::Stored(blob.clone());
        Ok(blob)
    }
}

impl BlobSource for Spool<'_> {
    fn blob(&mut self, digest: &Digest, size: u64, what: &str) -> Result<VerifiedBlob> {
        let path = blob_path(digest);
        let blob = self.ingest(&path, what)?;
        // Checked on arrival when the entry itself had this name; not when a link did.
        if blob.digest() != digest {
            return Err(ArchiveError::DigestMismatch {
                entry: path,
                expected: digest.clone(),
                actual: blob.digest().clone(),
            });
        }
        if blob.size() != size {
            return Err(ArchiveError::SizeMismatch {
                entry: path,
                expected: size,
            });
        }
        Ok(blob)
    }

    fn document(&mut self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        let path = blob_path(digest);
        let bytes = self
            .small_file(&path)?
            .ok_or_else(|| ArchiveError::Missing {
                what: what.to_owned(),
                path: path.clone(),
            })?;
        let actual = sha256(&bytes);
        if actual != *digest {
            return Err(ArchiveError::DigestMismatch {
                entry: path,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}
