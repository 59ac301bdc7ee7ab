//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`.
//!
//! Blobs are streamed from the content store's file, never read into memory, with single
//! byte ranges (`206`) so interrupted pulls resume. Deleting unlinks the blob from the
//! repository only: the content store is shared with the image store and other
//! repositories, which may still use the same content.

use std::io::SeekFrom;

use axum::body::Body;
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::content::ContentError;
use berth_types::Digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{header, set, DOCKER_CONTENT_DIGEST};
use crate::server::error::{ApiError, ErrorCode};
use crate::server::name::{parse_digest, RepositoryName};
use crate::server::RegistryState;

/// Read size when streaming a blob: few system calls per megabyte, little memory per client.
const STREAM_CHUNK: usize = 64 * 1024;

pub async fn get(
    state: &RegistryState,
    name: RepositoryName,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let digest = parse_digest(digest)?;
    let lookup = digest.clone();
    let (file, size) = state
        .blocking(move |inner| {
            let linked = inner
                .repositories
                .load(&name)?
                .is_some_and(|r| r.blobs.contains(&lookup));
            if !linked {
                return Err(blob_unknown(&name, &lookup));
            }
            let file = match inner.content.open_blob(&lookup) {
                Ok(file) => file,
                // Linked, but gone from the store (a garbage collection of the image store):
                // as unknown to the client as if never pushed.
                Err(ContentError::NotFound { .. }) => return Err(blob_unknown(&name, &lookup)),
                Err(e) => return Err(ApiError::internal(format!("cannot open blob {lookup}"), e)),
            };
            let size = file
                .metadata()
                .map_err(|e| ApiError::internal(format!("cannot open blob {lookup}"), e))?
                .len();
            Ok((file, size))
        })
        .await?;

    let (status, start, len) = match ByteRange::parse(header(headers, &RANGE), size) {
        ByteRange::Whole => (StatusCode::OK, 0, size),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                format!("the requested range is outside the blob's {size} bytes"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(CONTENT_RANGE, format!("bytes */{size}")))
        }
    };
    let body = if head {
        Body::empty()
    } else {
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format!("cannot read blob {digest}"), e))?;
        Body::from_stream(ReaderStream::with_capacity(file.take(len), STREAM_CHUNK))
    };
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    set(out, CONTENT_LENGTH, &len.to_string());
    set(out, CONTENT_TYPE, "application/octet-stream");
    set(out, DOCKER_CONTENT_DIGEST, &digest.to_string());
    set(out, ACCEPT_RANGES, "bytes");
    set(out, ETAG, &format!("\"{digest}\""));
    // Content under a digest never changes.
    set(out, CACHE_CONTROL, "max-age=31536000");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            out,
            CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(response)
}

pub async fn delete(
    state: &RegistryState,
    name: RepositoryName,
    digest: &str,
) -> Result<Response, ApiError> {
    let digest = parse_digest(digest)?;
    state
        .blocking(move |inner| {
            inner.repositories.update(&name, |record| {
                if record.blobs.remove(&digest) {
                    Ok(())
                } else {
                    Err(blob_unknown(&name, &digest))
                }
            })
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub fn blob_unknown(name: &RepositoryName, digest: &Digest) -> ApiError {
    ApiError::new(
        ErrorCode::BlobUnknown,
        format!("blob {digest} is not in repository {name}"),
    )
    .with_detail(serde_json::json!({ "digest": digest.to_string() }))
}

/// What a `Range` header asks of a blob of known size.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Whole,
    /// Inclusive, within the blob.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

impl ByteRange {
    /// One `bytes=` range (`a-b`, `a-` or `-suffix`). Anything else, several ranges
    /// included, is answered with the whole blob, as HTTP allows a server to.
    fn parse(header: Option<&str>, size: u64) -> ByteRange {
        let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
            return ByteRange::Whole;
        };
        let Some((first, last)) = spec.trim().split_once('-') else {
            return ByteRange::Whole;
        };
        let number = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (number(first), number(last)) {
            // Suffix: the last `n` bytes.
            (None, Some(n)) if first.is_empty() => {
                if n == 0 || size == 0 {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Part {
                        start: size.saturating_sub(n),
                        end: size - 1,
                    }
                }
            }
            (Some(start), None) if last.is_empty() => {
                if start >= size {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Part {
                        start,
                        end: size - 1,
                    }
                }
            }
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Part {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => ByteRange::Whole,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange::{self, *};

    #[test]
    fn ranges() {
        let r = |h: &str| ByteRange::parse(Some(h), 100);
        assert_eq!(ByteRange::parse(None, 100), Whole);
        assert_eq!(r("bytes=0-9"), Part { start: 0, end: 9 });
        assert_eq!(r("bytes=90-200"), Part { start: 90, end: 99 });
        assert_eq!(r("bytes=50-"), Part { start: 50, end: 99 });
        assert_eq!(r("bytes=-10"), Part { start: 90, end: 99 });
        assert_eq!(r("bytes=-1000"), Part { start: 0, end: 99 });
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=100-200"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Whole);
        assert_eq!(r("bytes=0-1,5-6"), Whole);
        assert_eq!(r("items=0-1"), Whole);
        assert_eq!(r("bytes=x-1"), Whole);
        assert_eq!(r("bytes=99999999999999999999999-"), Whole);
        assert_eq!(ByteRange::parse(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
