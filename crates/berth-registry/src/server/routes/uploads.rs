//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (a new upload, a monolithic upload with
//! `?digest=`, or a cross-repository mount with `?mount=&from=`), then `PATCH` chunks,
//! `GET` status, `PUT ?digest=` to finish and `DELETE` to cancel.
//!
//! A blob joins the repository only after the content store verified it against the
//! client's digest; a mismatch ends the upload with DIGEST_INVALID and stores nothing.

use std::io::Write as _;

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::content::{ContentError, ContentStore, VerifiedBlob};
use berth_types::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{content_length, created, discard, set, unless_refused, Query};
use crate::server::error::{ApiError, ErrorCode};
use crate::server::name::{parse_digest, RepositoryName};
use crate::server::uploads::{ChunkPlan, Upload};
use crate::server::{RegistryState, StateInner};

pub async fn start(
    state: &RegistryState,
    name: RepositoryName,
    query: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount).ok();
        let from = query
            .get("from")
            .and_then(|f| RepositoryName::parse(f).ok());
        if let (Some(digest), Some(from)) = (digest, from) {
            let target = name.clone();
            let mounted = state
                .blocking(move |inner| mount_blob(inner, &from, &target, &digest))
                .await?;
            if let Some(digest) = mounted {
                return Ok(created(format!("/v2/{name}/blobs/{digest}"), &digest));
            }
        }
        // Not mountable (unknown there, or a malformed digest or repository): as the spec
        // says, an ordinary upload starts instead.
    } else if let Some(digest) = query.get("digest") {
        let (digest, body) = unless_refused(parse_digest(digest), body).await?;
        let blob = store_body(state.inner.content.clone(), body, digest).await?;
        let digest = blob.digest().clone();
        let target = name.clone();
        let linked = digest.clone();
        state
            .blocking(move |inner| link_blob(inner, &target, linked))
            .await?;
        return Ok(created(format!("/v2/{name}/blobs/{digest}"), &digest));
    }
    // Data comes with PATCH and PUT; a body sent here is not part of the blob.
    discard(body).await;
    let upload = state
        .blocking(move |inner| inner.uploads.create(&name))
        .await?;
    Ok(progress(StatusCode::ACCEPTED, &upload, 0))
}

pub async fn patch(
    state: &RegistryState,
    name: RepositoryName,
    id: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let opened = open_with_range(state, name, id, headers).await;
    let ((upload, plan), body) = unless_refused(opened, body).await?;
    let size = upload.append(body, plan).await?;
    Ok(progress(StatusCode::ACCEPTED, &upload, size))
}

pub async fn status(
    state: &RegistryState,
    name: RepositoryName,
    id: String,
) -> Result<Response, ApiError> {
    let upload = open(state, name, id).await?;
    let size = upload.size()?;
    Ok(progress(StatusCode::NO_CONTENT, &upload, size))
}

pub async fn finish(
    state: &RegistryState,
    name: RepositoryName,
    id: String,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let opened = async {
        let digest = query.get("digest").ok_or_else(|| {
            ApiError::new(
                ErrorCode::DigestInvalid,
                "the closing PUT of an upload needs ?digest=<digest of the whole blob>",
            )
        })?;
        let digest = parse_digest(digest)?;
        let (upload, plan) = open_with_range(state, name.clone(), id, headers).await?;
        Ok((digest, upload, plan))
    }
    .await;
    let ((digest, upload, plan), body) = unless_refused(opened, body).await?;
    // The final chunk may come with the PUT.
    upload.append(body, plan).await?;
    let target = name.clone();
    let blob = state
        .blocking(move |inner| {
            let blob = upload.finish(&inner.content, &digest)?;
            link_blob(inner, &target, blob.digest().clone())?;
            Ok(blob)
        })
        .await?;
    let digest = blob.digest();
    Ok(created(format!("/v2/{name}/blobs/{digest}"), digest))
}

pub async fn cancel(
    state: &RegistryState,
    name: RepositoryName,
    id: String,
) -> Result<Response, ApiError> {
    state
        .blocking(move |inner| inner.uploads.get(&name, &id)?.remove())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn open(state: &RegistryState, name: RepositoryName, id: String) -> Result<Upload, ApiError> {
    state
        .blocking(move |inner| inner.uploads.get(&name, &id))
        .await
}

/// The upload, and where the request's body goes in it.
async fn open_with_range(
    state: &RegistryState,
    name: RepositoryName,
    id: String,
    headers: &HeaderMap,
) -> Result<(Upload, ChunkPlan), ApiError> {
    let upload = open(state, name, id).await?;
    let content_range = headers
        .get(CONTENT_RANGE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let plan = upload.plan_chunk(content_range, content_length(headers))?;
    Ok((upload, plan))
}

/// An upload's status answer: `Location`, `Range`, `Docker-Upload-UUID`, empty body.
fn progress(status: StatusCode, upload: &Upload, size: u64) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    for (name, value) in upload.progress_headers(size) {
        set(headers, name, &value);
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// Links `digest` into `to` if the repository `from` holds it. `None` if it does not.
fn mount_blob(
    inner: &StateInner,
    from: &RepositoryName,
    to: &RepositoryName,
    digest: &Digest,
) -> Result<Option<Digest>, ApiError> {
    let in_source = inner
        .repositories
        .load(from)?
        .is_some_and(|r| r.blobs.contains(digest));
    if !in_source || !inner.content.contains(digest) {
        return Ok(None);
    }
    link_blob(inner, to, digest.clone())?;
    Ok(Some(digest.clone()))
}

fn link_blob(inner: &StateInner, name: &RepositoryName, digest: Digest) -> Result<(), ApiError> {
    inner.repositories.update(name, |record| {
        record.blobs.insert(digest);
        Ok(())
    })
}

/// A chunk of a monolithic upload's body for the blocking writer, or the news that the
/// body ended whole.
enum Piece {
    Data(Bytes),
    End,
}

/// Streams a request body straight into the content store (a monolithic upload). The
/// blob is committed only if the body arrived whole and matches `digest`.
async fn store_body(
    content: ContentStore,
    body: Body,
    digest: Digest,
) -> Result<VerifiedBlob, ApiError> {
    let (sender, mut receiver) = mpsc::channel::<Piece>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<Option<VerifiedBlob>, ApiError> {
        let io_error = |e| ApiError::internal("cannot store an upload", e);
        let mut writer = content.writer(Some(&digest), None).map_err(io_error)?;
        while let Some(piece) = receiver.blocking_recv() {
            match piece {
                Piece::Data(bytes) => writer
                    .write_all(&bytes)
                    .map_err(|e| ApiError::internal("cannot store an upload", e))?,
                Piece::End => return commit(writer.commit()).map(Some),
            }
        }
        // The body failed: dropping the writer removes what it wrote.
        Ok(None)
    });
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if sender.send(Piece::Data(bytes)).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                failure = Some(ApiError::new(
                    ErrorCode::BlobUploadInvalid,
                    format!("the request body was cut short ({e}); nothing was stored"),
                ));
                break;
            }
        }
    }
    if failure.is_none() {
        let _ = sender.send(Piece::End).await;
    }
    drop(sender);
    let stored = writer
        .await
        .map_err(|e| ApiError::internal("cannot store an upload", e))??;
    match (failure, stored) {
        (Some(failure), _) => Err(failure),
        (None, Some(blob)) => Ok(blob),
        (None, None) => Err(ApiError::internal(
            "cannot store an upload",
            "the writer stopped before the body ended",
        )),
    }
}

/// The client's view of a failed commit: a wrong digest is theirs, the rest is ours.
fn commit(result: Result<VerifiedBlob, ContentError>) -> Result<VerifiedBlob, ApiError> {
    result.map_err(|e| match e {
        ContentError::DigestMismatch { expected, actual } => ApiError::new(
            ErrorCode::DigestInvalid,
            format!("the uploaded content hashes to {actual}, not {expected}; nothing was stored"),
        )
        .with_detail(serde_json::json!({ "digest": expected.to_string() })),
        other => ApiError::internal("cannot store an upload", other),
    })
}
