//! Which repositories exist and what each holds: its manifests (digest and media type), its
//! tags and the blobs linked into it. Blob *content* lives in the shared content store;
//! this is only the index over it that the distribution API needs.
//!
//! ```text
//! registry/
//!   lock                     held exclusively by the one server using this data root
//!   repositories/<name>      one JSON file per repository, '/' in the name written as '+'
//!   tmp/                     files being written; cleared at start
//! ```
//!
//! A blob is visible in a repository only once linked (by an upload, a mount or a
//! manifest's push), as in distribution: knowing a digest that some other repository holds
//! does not give access to it.
//!
//! Every change rewrites the repository's file atomically (temp file, fsync, rename, fsync
//! of the directory) under one mutex, after the content it points to was committed to the
//! content store. A crash therefore leaves either the old or the new file, and never an
//! entry whose content is missing; at worst a committed blob no entry points to yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use berth_types::Digest;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode, ServerError};
use super::name::RepositoryName;

/// What one repository holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRecord {
    pub name: String,
    #[serde(default)]
    pub manifests: BTreeMap<Digest, ManifestEntry>,
    #[serde(default)]
    pub tags: BTreeMap<String, Digest>,
    #[serde(default)]
    pub blobs: BTreeSet<Digest>,
}

/// A manifest in a repository; its bytes are the content store's blob of that digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
}

/// The repository files under `registry/repositories/`.
#[derive(Debug)]
pub struct Repositories {
    dir: PathBuf,
    tmp: PathBuf,
    /// Serialises read-modify-write cycles. Other processes are kept out by the server's
    /// lock on `registry/lock`, so this covers every writer.
    write: Mutex<()>,
}

/// Makes temp file names unique within the process; the lock keeps other processes out.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

impl Repositories {
    /// Opens (creating) the directories under `registry_root` and removes what an
    /// interrupted write left in `tmp/`.
    pub fn open(registry_root: &Path) -> Result<Repositories, ServerError> {
        let dir = registry_root.join("repositories");
        let tmp = registry_root.join("tmp");
        for d in [&dir, &tmp] {
            fs::create_dir_all(d).map_err(ServerError::io("cannot create directory", d))?;
        }
        let entries = fs::read_dir(&tmp).map_err(ServerError::io("cannot list", &tmp))?;
        for entry in entries {
            let path = entry.map_err(ServerError::io("cannot list", &tmp))?.path();
            fs::remove_file(&path).map_err(ServerError::io("cannot remove leftover", &path))?;
        }
        Ok(Repositories {
            dir,
            tmp,
            write: Mutex::new(()),
        })
    }

    /// The repository's record, or `None` if nothing was ever pushed to it.
    pub fn load(&self, name: &RepositoryName) -> Result<Option<RepositoryRecord>, ApiError> {
        let path = self.path(name);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ApiError::internal(
                    format!("cannot read the metadata of repository {name}"),
                    format_args!("{}: {e}", path.display()),
                ))
            }
        };
        let record: RepositoryRecord = serde_json::from_slice(&data).map_err(|e| {
            ApiError::internal(
                format!("the metadata of repository {name} is damaged"),
                format_args!("{}: {e}", path.display()),
            )
        })?;
        Ok(Some(record))
    }

    /// Applies `change` to the repository's record (an empty one if it does not exist
    /// yet) and writes the result, unless `change` fails or changed nothing.
    pub fn update<T>(
        &self,
        name: &RepositoryName,
        change: impl FnOnce(&mut RepositoryRecord) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.change(name, true, change)
    }

    /// As [`Repositories::update`], but a repository that does not exist is NAME_UNKNOWN.
    pub fn update_existing<T>(
        &self,
        name: &RepositoryName,
        change: impl FnOnce(&mut RepositoryRecord) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.change(name, false, change)
    }

    fn change<T>(
        &self,
        name: &RepositoryName,
        create: bool,
        change: impl FnOnce(&mut RepositoryRecord) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        // A poisoned lock only means another request panicked mid-change; the file on disk
        // is still whole (it is only ever replaced by rename), so carry on.
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let existing = self.load(name)?;
        if existing.is_none() && !create {
            return Err(name_unknown(name));
        }
        let mut record = existing.clone().unwrap_or_else(|| RepositoryRecord {
            name: name.to_string(),
            ..RepositoryRecord::default()
        });
        let result = change(&mut record)?;
        let unchanged = match &existing {
            Some(old) => *old == record,
            None => {
                record.manifests.is_empty() && record.tags.is_empty() && record.blobs.is_empty()
            }
        };
        if !unchanged {
            self.write_record(name, &record).map_err(|e| {
                ApiError::internal(format!("cannot save the metadata of repository {name}"), e)
            })?;
        }
        Ok(result)
    }

    /// Every repository name, sorted.
    pub fn list(&self) -> Result<Vec<String>, ApiError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| {
            ApiError::internal(
                "cannot list repositories",
                format_args!("{}: {e}", self.dir.display()),
            )
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ApiError::internal("cannot list repositories", e))?;
            // Only names this server could have written; anything else is not ours.
            let Some(name) = entry.file_name().to_str().map(|f| f.replace('+', "/")) else {
                continue;
            };
            if RepositoryName::parse(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// The repository's record, or NAME_UNKNOWN.
    pub fn load_existing(&self, name: &RepositoryName) -> Result<RepositoryRecord, ApiError> {
        self.load(name)?.ok_or_else(|| name_unknown(name))
    }

    fn path(&self, name: &RepositoryName) -> PathBuf {
        // Names never hold '+', so the mapping is reversible; and at most 255 bytes, so the
        // file name fits every Linux file system.
        self.dir.join(name.as_str().replace('/', "+"))
    }

    fn write_record(&self, name: &RepositoryName, record: &RepositoryRecord) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(record)?;
        let seq = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let temp = self.tmp.join(format!("{}-{seq}", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&temp, self.path(name))?;
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

/// NAME_UNKNOWN for `name`.
pub fn name_unknown(name: &RepositoryName) -> ApiError {
    ApiError::new(
        ErrorCode::NameUnknown,
        format!(
            "repository {name} is not known to this registry; check the name, or push to it first"
        ),
    )
    .with_detail(serde_json::json!({ "name": name.as_str() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::from_sha256([n; 32])
    }

    #[test]
    fn records_survive_reopening_and_failed_changes_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::open(dir.path()).unwrap();
        let name = RepositoryName::parse("a/b").unwrap();
        assert_eq!(repos.load(&name).unwrap(), None);

        // A change that changes nothing creates no repository.
        repos.update(&name, |_| Ok(())).unwrap();
        assert!(repos.list().unwrap().is_empty());

        repos
            .update(&name, |r| {
                r.blobs.insert(digest(1));
                Ok(())
            })
            .unwrap();
        let err = repos
            .update(&name, |r| {
                r.blobs.insert(digest(2));
                Err::<(), _>(ApiError::new(ErrorCode::Denied, "no"))
            })
            .unwrap_err();
        assert_eq!(err.code(), "DENIED");

        let reopened = Repositories::open(dir.path()).unwrap();
        let record = reopened.load(&name).unwrap().unwrap();
        assert_eq!(record.name, "a/b");
        assert_eq!(record.blobs, BTreeSet::from([digest(1)]));
        assert_eq!(reopened.list().unwrap(), ["a/b"]);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn a_damaged_record_is_an_error_not_an_empty_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repos = Repositories::open(dir.path()).unwrap();
        fs::write(dir.path().join("repositories/x"), b"{not json").unwrap();
        let name = RepositoryName::parse("x").unwrap();
        assert_eq!(repos.load(&name).unwrap_err().code(), "UNKNOWN");
        assert_eq!(
            repos.update(&name, |_| Ok(())).unwrap_err().code(),
            "UNKNOWN"
        );
    }
}
