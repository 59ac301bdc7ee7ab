//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`.
//!
//! A pushed manifest is checked before it is stored: valid JSON of schema version 2, a
//! media type this registry serves (from `Content-Type`, else the body's `mediaType`, else
//! its shape), every config and layer already in the repository (MANIFEST_BLOB_UNKNOWN)
//! and every child of an index already pushed (MANIFEST_UNKNOWN). Its bytes are stored
//! exactly as sent, since the digest clients pull by is over those bytes.

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::content::ContentError;
use berth_types::Digest;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

use super::{content_length, created, discard, header, set, DOCKER_CONTENT_DIGEST};
use crate::server::error::{ApiError, ErrorCode};
use crate::server::metadata::{ManifestEntry, RepositoryRecord};
use crate::server::name::{parse_digest, ManifestRef, RepositoryName};
use crate::server::{RegistryState, StateInner};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// `Content-Type`s that say nothing about the manifest; the body decides then.
const GENERIC_TYPES: [&str; 4] = [
    "",
    "application/json",
    "application/octet-stream",
    "text/plain",
];

pub async fn get(
    state: &RegistryState,
    name: RepositoryName,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let reference = ManifestRef::parse(reference, ErrorCode::ManifestUnknown)?;
    let max = state
        .inner
        .max_manifest_size
        .max(crate::server::DEFAULT_MAX_MANIFEST_SIZE);
    let (digest, entry, bytes) = state
        .blocking(move |inner| {
            let record = inner.repositories.load_existing(&name)?;
            let (digest, entry) = resolve(&record, &name, &reference)?;
            let missing = || manifest_unknown(&name, &reference);
            let bytes = if head {
                if !inner.content.contains(&digest) {
                    return Err(missing());
                }
                None
            } else {
                match inner.content.read_all(&digest, max) {
                    Ok(bytes) => Some(bytes),
                    Err(ContentError::NotFound { .. }) => return Err(missing()),
                    Err(e) => {
                        return Err(ApiError::internal(
                            format!("cannot read manifest {digest}"),
                            e,
                        ))
                    }
                }
            };
            Ok((digest, entry, bytes))
        })
        .await?;
    let mut response = match bytes {
        Some(bytes) => Body::from(bytes).into_response(),
        None => Body::empty().into_response(),
    };
    let headers = response.headers_mut();
    set(headers, CONTENT_TYPE, &entry.media_type);
    set(headers, CONTENT_LENGTH, &entry.size.to_string());
    set(headers, DOCKER_CONTENT_DIGEST, &digest.to_string());
    set(headers, ETAG, &format!("\"{digest}\""));
    Ok(response)
}

pub async fn put(
    state: &RegistryState,
    name: RepositoryName,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let reference = ManifestRef::parse(reference, ErrorCode::ManifestInvalid)?;
    let max = state.inner.max_manifest_size;
    if content_length(headers).is_some_and(|len| len > max) {
        discard(body).await;
        return Err(too_large(max));
    }
    let bytes = read_limited(body, max).await?;
    let manifest = ParsedManifest::parse(&bytes, header(headers, &CONTENT_TYPE))?;
    let digest = Digest::from_sha256(Sha256::digest(&bytes).into());
    if let ManifestRef::Digest(expected) = &reference {
        if *expected != digest {
            return Err(ApiError::new(
                ErrorCode::DigestInvalid,
                format!("the manifest hashes to {digest}, not to {expected} as its URL says"),
            )
            .with_detail(serde_json::json!({ "digest": expected.to_string() })));
        }
    }
    let location = format!("/v2/{name}/manifests/{digest}");
    let stored = digest.clone();
    state
        .blocking(move |inner| {
            inner.repositories.update(&name, |record| {
                manifest.check_references(record, inner)?;
                // Content first: the record must never name a manifest the store lacks.
                // (The store hashes the same bytes, so it returns `stored` again.)
                inner
                    .content
                    .put_bytes(&bytes)
                    .map_err(|e| ApiError::internal("cannot store the manifest", e))?;
                record.manifests.insert(
                    stored.clone(),
                    ManifestEntry {
                        media_type: manifest.media_type,
                        size: bytes.len() as u64,
                    },
                );
                if let ManifestRef::Tag(tag) = reference {
                    record.tags.insert(tag, stored);
                }
                Ok(())
            })
        })
        .await?;
    Ok(created(location, &digest))
}

pub async fn delete(
    state: &RegistryState,
    name: RepositoryName,
    reference: &str,
) -> Result<Response, ApiError> {
    let reference = ManifestRef::parse(reference, ErrorCode::ManifestUnknown)?;
    state
        .blocking(move |inner| {
            inner.repositories.update_existing(&name, |record| {
                let found = match &reference {
                    // Deleting a tag leaves the manifest, pullable by digest.
                    ManifestRef::Tag(tag) => record.tags.remove(tag).is_some(),
                    // Deleting a manifest takes every tag pointing at it along.
                    ManifestRef::Digest(digest) => {
                        record.tags.retain(|_, d| d != digest);
                        record.manifests.remove(digest).is_some()
                    }
                };
                if found {
                    Ok(())
                } else {
                    Err(manifest_unknown(&name, &reference))
                }
            })
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The digest and entry `reference` names in `record`.
fn resolve(
    record: &RepositoryRecord,
    name: &RepositoryName,
    reference: &ManifestRef,
) -> Result<(Digest, ManifestEntry), ApiError> {
    let digest = match reference {
        ManifestRef::Tag(tag) => record.tags.get(tag),
        ManifestRef::Digest(digest) => Some(digest),
    };
    digest
        .and_then(|d| record.manifests.get(d).map(|e| (d.clone(), e.clone())))
        .ok_or_else(|| manifest_unknown(name, reference))
}

fn manifest_unknown(name: &RepositoryName, reference: &ManifestRef) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is not in repository {name}"),
    )
    .with_detail(serde_json::json!({ "name": name.as_str(), "reference": reference.to_string() }))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestInvalid,
        format!("the manifest is larger than the {max} bytes this registry accepts"),
    )
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// The whole body, or 413 as soon as it passes `max` bytes.
async fn read_limited(body: Body, max: u64) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("the request body was cut short ({e})"),
            )
        })?;
        if (bytes.len() + chunk.len()) as u64 > max {
            drop(bytes);
            discard(Body::from_stream(stream)).await;
            return Err(too_large(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// What the registry needs to know of a pushed manifest.
#[derive(Debug, PartialEq, Eq)]
struct ParsedManifest {
    media_type: String,
    /// Config and layers of an image manifest.
    blobs: Vec<BlobRef>,
    /// Children of an index.
    children: Vec<Digest>,
}

#[derive(Debug, PartialEq, Eq)]
struct BlobRef {
    digest: Digest,
    size: u64,
    /// Has `urls`: a non-distributable layer that clients fetch from elsewhere, so it need
    /// not have been pushed here.
    foreign: bool,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ManifestInvalid, message)
}

impl ParsedManifest {
    fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ApiError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("the manifest is not valid JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(invalid("the manifest is not a JSON object"));
        };
        let header_type = content_type
            .map(|t| t.split(';').next().unwrap_or("").trim())
            .filter(|t| !GENERIC_TYPES.contains(t));
        let body_type = match object.get("mediaType") {
            None => None,
            Some(serde_json::Value::String(t)) => Some(t.as_str()),
            Some(_) => return Err(invalid("mediaType is not a string")),
        };
        match object.get("schemaVersion").and_then(|v| v.as_u64()) {
            Some(2) => {}
            Some(1) => {
                return Err(invalid(
                    "Docker schema 1 manifests are not accepted: push the image with a \
                     current client, which sends schema 2 or OCI",
                ))
            }
            _ => return Err(invalid("schemaVersion must be 2")),
        }
        if let (Some(header), Some(body)) = (header_type, body_type) {
            if header != body {
                return Err(invalid(format!(
                    "Content-Type is {header} but the manifest's mediaType is {body}"
                )));
            }
        }
        let inferred = if object.contains_key("manifests") {
            OCI_INDEX
        } else {
            OCI_MANIFEST
        };
        let media_type = header_type.or(body_type).unwrap_or(inferred);
        if DOCKER_SCHEMA1.contains(&media_type) {
            return Err(invalid(
                "Docker schema 1 manifests are not accepted: push the image with a current \
                 client, which sends schema 2 or OCI",
            ));
        }
        let mut parsed = ParsedManifest {
            media_type: media_type.to_owned(),
            blobs: Vec::new(),
            children: Vec::new(),
        };
        match media_type {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = object
                    .get("config")
                    .ok_or_else(|| invalid("an image manifest needs a config"))?;
                parsed.blobs.push(descriptor(config, "config")?);
                let layers = array(object, "layers")?;
                for layer in layers {
                    parsed.blobs.push(descriptor(layer, "layer")?);
                }
            }
            OCI_INDEX | DOCKER_LIST => {
                for child in array(object, "manifests")? {
                    parsed.children.push(descriptor(child, "manifest")?.digest);
                }
            }
            other => {
                return Err(invalid(format!(
                    "unsupported manifest media type {other:?}; this registry stores OCI and \
                     Docker schema 2 manifests and indexes"
                )))
            }
        }
        Ok(parsed)
    }

    /// Every blob and child manifest must already be in the repository; each missing one
    /// gets its own error entry, so a client learns all of them at once.
    fn check_references(
        &self,
        record: &RepositoryRecord,
        inner: &StateInner,
    ) -> Result<(), ApiError> {
        let mut missing = Vec::new();
        for blob in self.blobs.iter().filter(|b| !b.foreign) {
            let stored = if record.blobs.contains(&blob.digest) {
                inner.content.size(&blob.digest).ok()
            } else {
                None
            };
            match stored {
                None => missing.push((
                    ErrorCode::ManifestBlobUnknown,
                    format!(
                        "blob {} is not in repository {}; push it before the manifest",
                        blob.digest, record.name
                    ),
                    serde_json::json!({ "digest": blob.digest.to_string() }),
                )),
                Some(size) if size != blob.size => {
                    return Err(invalid(format!(
                        "the manifest gives blob {} a size of {} bytes, but it has {size}",
                        blob.digest, blob.size
                    )))
                }
                Some(_) => {}
            }
        }
        for child in &self.children {
            if !record.manifests.contains_key(child) {
                missing.push((
                    ErrorCode::ManifestUnknown,
                    format!(
                        "manifest {child} is not in repository {}; push the index's \
                         manifests before the index",
                        record.name
                    ),
                    serde_json::json!({ "digest": child.to_string() }),
                ));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::many(StatusCode::BAD_REQUEST, missing))
        }
    }
}

fn array<'a>(
    object: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<&'a Vec<serde_json::Value>, ApiError> {
    object
        .get(key)
        .and_then(|v| v.as_array())
        .ok_or_else(|| invalid(format!("{key} must be an array")))
}

fn descriptor(value: &serde_json::Value, what: &str) -> Result<BlobRef, ApiError> {
    let digest = value
        .get("digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| invalid(format!("a {what} descriptor has no digest")))?;
    let digest = parse_digest(digest)?;
    let size = value
        .get("size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| invalid(format!("{what} {digest} has no valid size")))?;
    let foreign = value
        .get("urls")
        .and_then(|u| u.as_array())
        .is_some_and(|u| !u.is_empty());
    Ok(BlobRef {
        digest,
        size,
        foreign,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::from_sha256([n; 32]).to_string()
    }

    fn image(media_type: Option<&str>) -> Vec<u8> {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 10 },
            "layers": [
                { "digest": d(2), "size": 20 },
                { "digest": d(3), "size": 30, "urls": ["https://example.com/x"] }
            ]
        });
        if let Some(t) = media_type {
            m["mediaType"] = t.into();
        }
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn media_type_comes_from_header_then_body_then_shape() {
        let parsed = ParsedManifest::parse(&image(None), None).unwrap();
        assert_eq!(parsed.media_type, OCI_MANIFEST);
        assert_eq!(parsed.blobs.len(), 3);
        assert!(parsed.blobs[2].foreign);
        let parsed =
            ParsedManifest::parse(&image(Some(DOCKER_MANIFEST)), Some("application/json")).unwrap();
        assert_eq!(parsed.media_type, DOCKER_MANIFEST);
        let parsed = ParsedManifest::parse(
            &image(None),
            Some(&format!("{DOCKER_MANIFEST}; charset=utf-8")),
        )
        .unwrap();
        assert_eq!(parsed.media_type, DOCKER_MANIFEST);
        let index =
            serde_json::json!({ "schemaVersion": 2, "manifests": [{ "digest": d(4), "size": 1 }] });
        let parsed = ParsedManifest::parse(&serde_json::to_vec(&index).unwrap(), None).unwrap();
        assert_eq!(parsed.media_type, OCI_INDEX);
        assert_eq!(parsed.children, [Digest::from_sha256([4; 32])]);
    }

    #[test]
    fn malformed_manifests_are_refused() {
        let code = |bytes: &[u8], ct: Option<&str>| {
            ParsedManifest::parse(bytes, ct)
                .unwrap_err()
                .code()
                .to_owned()
        };
        assert_eq!(code(b"not json", None), "MANIFEST_INVALID");
        assert_eq!(code(b"[1]", None), "MANIFEST_INVALID");
        assert_eq!(code(b"{\"schemaVersion\":1}", None), "MANIFEST_INVALID");
        assert_eq!(
            code(&image(Some(OCI_MANIFEST)), Some(DOCKER_MANIFEST)),
            "MANIFEST_INVALID"
        );
        assert_eq!(
            code(&image(None), Some("application/x-other")),
            "MANIFEST_INVALID"
        );
        let bad_digest =
            br#"{"schemaVersion":2,"config":{"digest":"sha256:xyz","size":1},"layers":[]}"#;
        assert_eq!(code(bad_digest, None), "DIGEST_INVALID");
        let no_size = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}"}},"layers":[]}}"#,
            d(1)
        );
        assert_eq!(code(no_size.as_bytes(), None), "MANIFEST_INVALID");
        let no_layers = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}}}}"#,
            d(1)
        );
        assert_eq!(code(no_layers.as_bytes(), None), "MANIFEST_INVALID");
    }
}
