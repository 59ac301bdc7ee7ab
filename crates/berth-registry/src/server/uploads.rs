//! Blob uploads in progress: each is a directory `registry/uploads/<uuid>/` holding `info`
//! (which repository it is for) and `data`, the bytes received so far, appended to by
//! `PATCH` requests. Finishing an upload copies `data` into the content store, which
//! hashes and verifies it on the way; only then does the blob exist.
//!
//! Uploads are created by renaming a complete directory into place and removed by renaming
//! it aside first, so no request sees one half made or half removed. Nothing is fsynced
//! while an upload is in progress, as it is not content yet: after a crash an upload whose
//! `info` did not survive is unknown (and removed at the next start), and one whose `data`
//! lost its tail reports the bytes that did survive; a client that ignores that gets
//! DIGEST_INVALID at the end, never a wrong blob.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::header::{HeaderName, LOCATION, RANGE};
use axum::http::StatusCode;
use berth_image::content::{ContentError, ContentStore, VerifiedBlob};
use berth_types::Digest;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tracing::{debug, info};
use uuid::Uuid;

use super::error::{ApiError, ErrorCode, ServerError};
use super::name::RepositoryName;

/// Uploads untouched for this long are removed when the server starts, as distribution
/// purges abandoned uploads.
const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// Where the next chunk goes, from [`Upload::plan_chunk`].
#[derive(Debug, Clone, Copy)]
pub struct ChunkPlan {
    start: u64,
    range: Option<ChunkRange>,
}

/// The `registry/uploads` directory and which uploads a request is working on.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    busy: Arc<Mutex<HashSet<Uuid>>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadInfo {
    repository: String,
}

/// An inclusive byte range from a `Content-Range` header (`<start>-<end>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

impl ChunkRange {
    /// Parses `<start>-<end>` (optionally `bytes ` or `bytes=` first, as some clients
    /// write it). `None` if malformed or `end < start`.
    pub fn parse(value: &str) -> Option<ChunkRange> {
        let value = value.trim();
        let value = value
            .strip_prefix("bytes=")
            .or_else(|| value.strip_prefix("bytes "))
            .unwrap_or(value);
        let (start, end) = value.split_once('-')?;
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(start) || !all_digits(end) {
            return None;
        }
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        // `end < u64::MAX`, so the length `end - start + 1` never overflows.
        (start <= end && end < u64::MAX).then_some(ChunkRange { start, end })
    }

    fn len(self) -> u64 {
        self.end - self.start + 1
    }
}

impl Uploads {
    /// Opens (creating) `registry/uploads`, removing what interrupted creations and
    /// removals left and uploads untouched for a week.
    pub fn open(registry_root: &Path) -> Result<Uploads, ServerError> {
        let dir = registry_root.join("uploads");
        fs::create_dir_all(&dir).map_err(ServerError::io("cannot create directory", &dir))?;
        let entries = fs::read_dir(&dir).map_err(ServerError::io("cannot list", &dir))?;
        let now = SystemTime::now();
        for entry in entries {
            let path = entry.map_err(ServerError::io("cannot list", &dir))?.path();
            let leftover = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            let last_write = fs::metadata(path.join("data")).and_then(|m| m.modified());
            let stale = last_write.map_or(true, |t| {
                now.duration_since(t).unwrap_or_default() > STALE_AFTER
            });
            if leftover || stale || read_info(&path).is_none() {
                remove_path(&path).map_err(ServerError::io("cannot remove stale upload", &path))?;
                info!(path = %path.display(), "removed a stale or interrupted upload");
            }
        }
        Ok(Uploads {
            dir,
            busy: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Starts an upload into `name`.
    pub fn create(&self, name: &RepositoryName) -> Result<Upload, ApiError> {
        let id = Uuid::new_v4();
        let staging = self.dir.join(format!(".new-{id}"));
        let target = self.dir.join(id.hyphenated().to_string());
        let info = serde_json::to_vec(&UploadInfo {
            repository: name.to_string(),
        })
        .map_err(|e| ApiError::internal("cannot start an upload", e))?;
        let created = (|| {
            fs::create_dir(&staging)?;
            fs::write(staging.join("info"), &info)?;
            File::create(staging.join("data"))?;
            fs::rename(&staging, &target)
        })();
        if let Err(e) = created {
            let _ = remove_path(&staging);
            return Err(ApiError::internal(
                "cannot start an upload",
                format_args!("{}: {e}", staging.display()),
            ));
        }
        debug!(%id, repository = %name, "upload started");
        self.get(name, &id.hyphenated().to_string())
    }

    /// The upload `id` of repository `name`, reserved for this request until dropped.
    pub fn get(&self, name: &RepositoryName, id: &str) -> Result<Upload, ApiError> {
        let unknown = || {
            ApiError::new(
                ErrorCode::BlobUploadUnknown,
                format!(
                    "no upload {id:?} in repository {name}; it finished, was cancelled or \
                     never started: start a new one"
                ),
            )
        };
        // Only the canonical spelling, so one upload has one path.
        let uuid = match Uuid::try_parse(id) {
            Ok(uuid) if uuid.hyphenated().to_string() == id => uuid,
            _ => return Err(unknown()),
        };
        let busy = BusyGuard::acquire(&self.busy, uuid).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("another request is writing to upload {id}; wait for it to finish"),
            )
        })?;
        let dir = self.dir.join(id);
        if read_info(&dir).is_none_or(|info| info.repository != name.as_str()) {
            return Err(unknown());
        }
        Ok(Upload {
            id: uuid,
            location: format!("/v2/{name}/blobs/uploads/{id}"),
            data: dir.join("data"),
            dir,
            _busy: busy,
        })
    }
}

/// One upload, reserved for the request that opened it.
#[derive(Debug)]
pub struct Upload {
    id: Uuid,
    location: String,
    dir: PathBuf,
    data: PathBuf,
    _busy: BusyGuard,
}

impl Upload {
    /// Bytes received so far.
    pub fn size(&self) -> Result<u64, ApiError> {
        fs::metadata(&self.data)
            .map(|m| m.len())
            .map_err(|e| ApiError::internal(format!("cannot read upload {}", self.id), e))
    }

    /// The headers every answer about an upload carries: where to send the next request,
    /// and what was received (`Range: 0-<last byte>`, `0-0` when nothing was, as
    /// distribution answers).
    pub fn progress_headers(&self, size: u64) -> [(HeaderName, String); 3] {
        [
            (LOCATION, self.location.clone()),
            (RANGE, format!("0-{}", size.saturating_sub(1))),
            (DOCKER_UPLOAD_UUID, self.id.hyphenated().to_string()),
        ]
    }

    /// Where a chunk goes: the end of the upload. With a `Content-Range` (its raw text),
    /// the chunk must start there and its length agree with `Content-Length`; anything
    /// else is 416 with the state to resume from, as the spec says.
    pub fn plan_chunk(
        &self,
        content_range: Option<&str>,
        content_length: Option<u64>,
    ) -> Result<ChunkPlan, ApiError> {
        let start = self.size()?;
        let Some(text) = content_range else {
            return Ok(ChunkPlan { start, range: None });
        };
        let Some(range) = ChunkRange::parse(text) else {
            return Err(self.range_not_satisfiable(
                start,
                format!("Content-Range {text:?} is not <start>-<end>; resume at offset {start}"),
            ));
        };
        if range.start != start {
            return Err(self.range_not_satisfiable(
                start,
                format!(
                    "chunk {}-{} does not continue the upload, which has {start} bytes; \
                     resume at offset {start}",
                    range.start, range.end
                ),
            ));
        }
        if content_length.is_some_and(|len| len != range.len()) {
            return Err(self.range_not_satisfiable(
                start,
                format!(
                    "Content-Range {text} and Content-Length {} disagree; resume at offset \
                     {start}",
                    content_length.unwrap_or_default()
                ),
            ));
        }
        Ok(ChunkPlan {
            start,
            range: Some(range),
        })
    }

    /// Appends a request body as planned. A chunk that does not arrive whole (or longer
    /// than its `Content-Range`) is cut off again, so the upload is always a sequence of
    /// complete chunks. Returns the upload's new size.
    pub async fn append(&self, body: Body, plan: ChunkPlan) -> Result<u64, ApiError> {
        let ChunkPlan { start, range } = plan;
        let io_error =
            |e: io::Error| ApiError::internal(format!("cannot write upload {}", self.id), e);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&self.data)
            .await
            .map_err(io_error)?;
        file.seek(io::SeekFrom::Start(start))
            .await
            .map_err(io_error)?;
        let written = write_stream(&mut file, body, range.map(ChunkRange::len)).await;
        let written = match written {
            Ok(n) if range.is_none_or(|r| r.len() == n) => n,
            failed => {
                // Cut the partial chunk off again, so the client can resend it whole.
                file.set_len(start).await.map_err(io_error)?;
                return Err(match failed {
                    Ok(n) => ApiError::new(
                        ErrorCode::BlobUploadInvalid,
                        format!(
                            "the chunk had {n} bytes but Content-Range announced {}; it was \
                             discarded, resend it from offset {start}",
                            range.map_or(0, ChunkRange::len)
                        ),
                    ),
                    Err(e) => e,
                });
            }
        };
        // tokio writes on a blocking thread; flushing waits until the data is in the file.
        file.flush().await.map_err(io_error)?;
        Ok(start + written)
    }

    /// Verifies the upload against `digest` and stores it in the content store. The
    /// upload ends either way, except on a failure of the server's own disk, which the
    /// client may retry. Blocking.
    pub fn finish(self, content: &ContentStore, digest: &Digest) -> Result<VerifiedBlob, ApiError> {
        let file = File::open(&self.data)
            .map_err(|e| ApiError::internal(format!("cannot read upload {}", self.id), e))?;
        match content.put_reader(file, Some(digest), None) {
            Ok(blob) => {
                self.remove()?;
                Ok(blob)
            }
            Err(ContentError::DigestMismatch { expected, actual }) => {
                self.remove()?;
                Err(ApiError::new(
                    ErrorCode::DigestInvalid,
                    format!(
                        "the uploaded content hashes to {actual}, not {expected}; nothing was \
                         stored: upload the blob again"
                    ),
                )
                .with_detail(serde_json::json!({ "digest": expected.to_string() })))
            }
            Err(e) => Err(ApiError::internal(
                format!("cannot store upload {}", self.id),
                e,
            )),
        }
    }

    /// Ends the upload and drops its data. Blocking.
    pub fn remove(self) -> Result<(), ApiError> {
        let aside = self
            .dir
            .with_file_name(format!(".done-{}", self.id.hyphenated()));
        fs::rename(&self.dir, &aside)
            .and_then(|()| remove_path(&aside))
            .map_err(|e| ApiError::internal(format!("cannot remove upload {}", self.id), e))
    }

    fn range_not_satisfiable(&self, size: u64, message: String) -> ApiError {
        let mut error = ApiError::new(ErrorCode::BlobUploadInvalid, message)
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE);
        for (name, value) in self.progress_headers(size) {
            error = error.with_header(name, value);
        }
        error
    }
}

/// Writes `body` to `file`; stops with an error past `limit` bytes. Returns the count.
async fn write_stream(
    file: &mut tokio::fs::File,
    body: Body,
    limit: Option<u64>,
) -> Result<u64, ApiError> {
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::BlobUploadInvalid,
                format!("the request body was cut short ({e}); resend the chunk"),
            )
        })?;
        written += chunk.len() as u64;
        if let Some(limit) = limit {
            if written > limit {
                return Err(ApiError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!(
                        "the chunk is longer than the {limit} bytes Content-Range announced; it \
                         was discarded"
                    ),
                ));
            }
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal("cannot write an upload", e))?;
    }
    Ok(written)
}

/// An upload's `info`, if it is there and readable (a crash can leave it empty).
fn read_info(dir: &Path) -> Option<UploadInfo> {
    let bytes = fs::read(dir.join("info")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Marks an upload as in use by one request; dropping it frees the upload.
#[derive(Debug)]
struct BusyGuard {
    set: Arc<Mutex<HashSet<Uuid>>>,
    id: Uuid,
}

impl BusyGuard {
    fn acquire(set: &Arc<Mutex<HashSet<Uuid>>>, id: Uuid) -> Option<BusyGuard> {
        let inserted = set.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        inserted.then(|| BusyGuard {
            set: Arc::clone(set),
            id,
        })
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            ChunkRange::parse("0-9"),
            Some(ChunkRange { start: 0, end: 9 })
        );
        assert_eq!(
            ChunkRange::parse("bytes=10-19"),
            Some(ChunkRange { start: 10, end: 19 })
        );
        for bad in [
            "0-18446744073709551615",
            "",
            "-",
            "5-",
            "-5",
            "9-0",
            "a-b",
            "1-2-3",
            "+1-2",
            "0-99999999999999999999",
        ] {
            assert_eq!(ChunkRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_upload_belongs_to_one_repository_and_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::open(dir.path()).unwrap();
        let a = RepositoryName::parse("a").unwrap();
        let b = RepositoryName::parse("b").unwrap();
        let upload = uploads.create(&a).unwrap();
        let id = upload.id.hyphenated().to_string();
        assert_eq!(
            uploads.get(&a, &id).unwrap_err().code(),
            "BLOB_UPLOAD_INVALID"
        );
        drop(upload);
        assert_eq!(
            uploads.get(&b, &id).unwrap_err().code(),
            "BLOB_UPLOAD_UNKNOWN"
        );
        assert_eq!(
            uploads.get(&a, &id.to_uppercase()).unwrap_err().code(),
            "BLOB_UPLOAD_UNKNOWN"
        );
        assert_eq!(
            uploads.get(&a, "../../x").unwrap_err().code(),
            "BLOB_UPLOAD_UNKNOWN"
        );
        uploads.get(&a, &id).unwrap().remove().unwrap();
        assert_eq!(
            uploads.get(&a, &id).unwrap_err().code(),
            "BLOB_UPLOAD_UNKNOWN"
        );
        assert!(fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn interrupted_creations_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("uploads/.new-x")).unwrap();
        let torn = dir
            .path()
            .join("uploads/0b5d4f3e-8d3c-4c1e-9a55-4f1f4bde0a01");
        fs::create_dir_all(&torn).unwrap();
        fs::write(torn.join("info"), b"").unwrap();
        fs::write(torn.join("data"), b"partial").unwrap();
        let uploads = Uploads::open(dir.path()).unwrap();
        let kept = uploads
            .create(&RepositoryName::parse("a").unwrap())
            .unwrap();
        drop(kept);
        Uploads::open(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1);
        assert!(!left[0].to_string_lossy().starts_with('.'));
    }
}
