//! Push: an image of the store goes to a registry.
//!
//! Only what the registry lacks travels: each blob is asked for first (`HEAD`); a blob the
//! registry holds in another repository (known from [`super::sources`]) is mounted across
//! repositories instead of uploaded; the rest is uploaded, monolithically (one streamed
//! `PUT`) or in chunks (`PATCH` with `Content-Range`, then `PUT`). The manifest goes last,
//! byte for byte as stored, so the pushed digest is the one the store knows — unless the
//! layers are recompressed (`--compression zstd`), which writes a new OCI manifest.

use std::io;
use std::sync::Arc;

use berth_image::store::ImageStore;
use berth_types::{Digest, Reference};
use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::session::{http_error, Access, Session};
use super::{sources, Registry};
use crate::credentials::AuthConfig;
use crate::error::{io_err, RegistryError, Result};
use crate::manifest::{self, Descriptor, ImageManifest, Manifest};
use crate::progress::{Phase, ProgressSink, TICK};

/// How layers are compressed on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushCompression {
    /// As stored (gzip for images berth made; whatever the registry sent for pulled ones).
    #[default]
    Keep,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`): smaller and much faster to
    /// decompress; recompressed once per layer and kept in the store.
    Zstd,
}

/// What to push besides the reference.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Credentials for this push (the daemon's `X-Registry-Auth`); else the stored ones.
    pub auth: Option<AuthConfig>,
    pub compression: PushCompression,
    /// Upload in `PATCH` chunks of this many bytes instead of one streamed `PUT`.
    pub chunk_size: Option<u64>,
}

/// A finished push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub reference: Reference,
    /// The manifest's digest in the registry.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

impl Pushed {
    /// Docker's closing line: `latest: digest: sha256:… size: 528`.
    pub fn status(&self) -> String {
        format!(
            "{}: digest: {} size: {}",
            self.reference.tag().unwrap_or("latest"),
            self.digest,
            self.size
        )
    }
}

/// Push the local image `reference` (`name:tag`) to its registry.
pub async fn push(
    registry: &Registry,
    store: Arc<ImageStore>,
    reference: &Reference,
    options: &PushOptions,
    progress: &ProgressSink,
) -> Result<Pushed> {
    let reference = reference.clone().with_default_tag();
    if reference.digest().is_some() {
        return Err(RegistryError::InvalidReference {
            reference: reference.familiar_string(),
            message: "push a tag, not a digest: tag the image first (`berth tag`)".into(),
        });
    }
    let name = reference.familiar_string();
    let image =
        store
            .resolve(&reference.to_string())
            .map_err(|_| RegistryError::InvalidReference {
                reference: name.clone(),
                message: format!(
                    "an image does not exist locally with the tag: {}",
                    reference.familiar_name()
                ),
            })?;
    let stored = store
        .content()
        .read_all(&image.manifest, manifest::MAX_MANIFEST)?;
    let (media_type, parsed) = match Manifest::parse(None, &stored) {
        Ok(Manifest::Image {
            media_type,
            manifest,
        }) => (media_type, manifest),
        _ => {
            return Err(RegistryError::Invalid {
                context: format!("{name}: stored manifest {}", image.manifest),
                message: "not an image manifest".into(),
            })
        }
    };
    let (media_type, manifest_bytes, parsed) = match options.compression {
        PushCompression::Keep => (media_type, Bytes::from(stored), parsed),
        PushCompression::Zstd => {
            let store = store.clone();
            super::blocking(move || zstd_manifest(&store, parsed)).await?
        }
    };

    let session = Session::connect(
        registry,
        reference.domain(),
        reference.path(),
        Access::Push,
        options.auth.as_ref(),
    )
    .await?;
    for layer in &parsed.layers {
        progress.send(&layer.digest, Phase::Preparing);
    }
    let limit = Arc::new(Semaphore::new(
        registry.config.max_concurrent_uploads.max(1),
    ));
    let attempts = registry.config.max_download_attempts.max(1);
    let jobs = parsed.layers.iter().map(|layer| {
        let limit = limit.clone();
        let store = store.clone();
        let session = &session;
        async move {
            let _permit = limit
                .acquire()
                .await
                .map_err(|_| RegistryError::Cancelled)?;
            push_blob(
                session,
                &store,
                layer,
                options.chunk_size,
                attempts,
                Some(progress),
            )
            .await
        }
    });
    futures_util::future::try_join_all(jobs).await?;
    push_blob(
        &session,
        &store,
        &parsed.config,
        options.chunk_size,
        attempts,
        None,
    )
    .await?;

    // The manifest, under the tag.
    let tag = reference.tag().unwrap_or("latest");
    let path = format!("/v2/{}/manifests/{tag}", session.repository());
    let digest = Digest::from_sha256(Sha256::digest(&manifest_bytes).into());
    let resp = session
        .send(
            session
                .request(Method::PUT, &path)
                .header(CONTENT_TYPE, media_type.as_str())
                .body(manifest_bytes.clone()),
        )
        .await?;
    if !resp.status().is_success() {
        return Err(http_error(
            session.registry(),
            &format!("pushing the manifest of {name}"),
            resp,
        )
        .await);
    }
    if let Some(served) = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Digest>().ok())
    {
        if served != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("{name}: the pushed manifest"),
                expected: digest,
                actual: served,
            });
        }
    }

    // Record where the blobs now are, and the repository digest.
    let root = store.data_root().to_owned();
    for blob in parsed.layers.iter().chain([&parsed.config]) {
        sources::remember(&root, &blob.digest, reference.domain(), reference.path());
    }
    if options.compression == PushCompression::Keep {
        if let Ok(by_digest) = format!("{}@{digest}", reference.name()).parse::<Reference>() {
            store.tag(&image.id, &by_digest)?;
        }
    }
    tracing::info!(image = %name, %digest, "pushed");
    Ok(Pushed {
        reference,
        size: manifest_bytes.len() as u64,
        digest,
    })
}

/// Make sure the registry has blob `desc` in the session's repository. `progress` is given
/// for layers (the config is pushed silently, as Docker does).
async fn push_blob(
    session: &Session,
    store: &Arc<ImageStore>,
    desc: &Descriptor,
    chunk_size: Option<u64>,
    attempts: u32,
    progress: Option<&ProgressSink>,
) -> Result<()> {
    let report = Reporter {
        sink: progress.cloned(),
        digest: desc.digest.clone(),
    };
    let report = &report;
    let repo = session.repository().to_owned();
    let blob_path = format!("/v2/{repo}/blobs/{}", desc.digest);
    let resp = session
        .send(session.request(Method::HEAD, &blob_path))
        .await?;
    if resp.status() == StatusCode::OK {
        report.send(Phase::AlreadyExists);
        return Ok(());
    }

    // A cross-repository mount from a repository of this registry known to hold it.
    let mut location = None;
    for (reg, from) in sources::sources(store.data_root(), &desc.digest) {
        if reg != session.registry() || from == repo {
            continue;
        }
        session.add_pull_scope(&from).await?;
        let path = format!(
            "/v2/{repo}/blobs/uploads/?mount={}&from={from}",
            desc.digest
        );
        let resp = session.send(session.request(Method::POST, &path)).await?;
        match resp.status() {
            StatusCode::CREATED => {
                report.send(Phase::Mounted { from });
                return Ok(());
            }
            // The registry started an ordinary upload instead.
            StatusCode::ACCEPTED => {
                location = Some(upload_location(session, &resp)?);
                break;
            }
            _ => {}
        }
    }

    let mut attempt = 1;
    loop {
        let start = match location.take() {
            Some(l) => l,
            None => start_upload(session).await?,
        };
        match upload(session, store, desc, start, chunk_size, report).await {
            Ok(()) => {
                report.send(Phase::Pushed);
                return Ok(());
            }
            Err(e) if e.is_transient() && attempt < attempts => {
                let delay = super::session::backoff(attempt);
                tracing::warn!(blob = %desc.digest, attempt, error = %e, "upload failed; retrying");
                report.send(Phase::Retrying {
                    attempt,
                    seconds: delay.as_secs(),
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `POST …/blobs/uploads/`: the location to send the blob to.
async fn start_upload(session: &Session) -> Result<String> {
    let path = format!("/v2/{}/blobs/uploads/", session.repository());
    let resp = session.send(session.request(Method::POST, &path)).await?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(http_error(session.registry(), "starting a blob upload", resp).await);
    }
    upload_location(session, &resp)
}

fn upload_location(session: &Session, resp: &reqwest::Response) -> Result<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| RegistryError::Invalid {
            context: format!("{}: blob upload", session.registry()),
            message: "the registry gave no Location for the upload".into(),
        })
}

/// Send the blob to an upload `location`, whole or in chunks, and finish it.
async fn upload(
    session: &Session,
    store: &Arc<ImageStore>,
    desc: &Descriptor,
    mut location: String,
    chunk_size: Option<u64>,
    report: &Reporter,
) -> Result<()> {
    let file = store.content().open_blob(&desc.digest)?;
    let mut file = tokio::fs::File::from_std(file);
    let total = desc.size;
    let context = format!("uploading blob {}", desc.digest);
    let finish = match chunk_size {
        None => {
            // One streamed PUT carrying the whole blob.
            let body = progress_body(file, total, report.clone());
            session
                .request_location(Method::PUT, &location)?
                .query(&[("digest", desc.digest.to_string())])
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, total)
                .body(body)
        }
        Some(chunk) => {
            let chunk = chunk.max(1);
            let mut sent = 0u64;
            while sent < total {
                let n = chunk.min(total - sent);
                let mut buf = vec![0u8; n as usize];
                file.read_exact(&mut buf).await.map_err(io_err(&context))?;
                let resp = session
                    .send(
                        session
                            .request_location(Method::PATCH, &location)?
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_RANGE, format!("{sent}-{}", sent + n - 1))
                            .header(CONTENT_LENGTH, n)
                            .body(buf),
                    )
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(http_error(session.registry(), &context, resp).await);
                }
                location = upload_location(session, &resp)?;
                sent += n;
                report.send(Phase::Pushing {
                    current: sent,
                    total,
                });
            }
            session
                .request_location(Method::PUT, &location)?
                .query(&[("digest", desc.digest.to_string())])
                .header(CONTENT_LENGTH, 0)
        }
    };
    let resp = session.send(finish).await?;
    if resp.status() != StatusCode::CREATED {
        return Err(http_error(session.registry(), &context, resp).await);
    }
    Ok(())
}

/// Progress of one blob (nothing for the config).
#[derive(Clone)]
struct Reporter {
    sink: Option<ProgressSink>,
    digest: Digest,
}

impl Reporter {
    fn send(&self, phase: Phase) {
        if let Some(sink) = &self.sink {
            sink.send(&self.digest, phase);
        }
    }
}

/// A request body that streams `file`, reporting progress as reqwest consumes it.
fn progress_body(file: tokio::fs::File, total: u64, report: Reporter) -> reqwest::Body {
    let state = (file, 0u64, 0u64, report);
    let stream =
        futures_util::stream::unfold(state, move |(mut file, sent, shown, report)| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    let shown = if sent - shown >= TICK || sent == total {
                        report.send(Phase::Pushing {
                            current: sent,
                            total,
                        });
                        sent
                    } else {
                        shown
                    };
                    Some((
                        Ok::<_, io::Error>(Bytes::from(buf)),
                        (file, sent, shown, report),
                    ))
                }
                Err(e) => Some((Err(e), (file, sent, shown, report))),
            }
        });
    reqwest::Body::wrap_stream(stream)
}

/// The image's manifest with every layer as zstd: each layer recompressed once (kept in the
/// store, found again through a small index file) and a new OCI manifest written.
fn zstd_manifest(
    store: &ImageStore,
    parsed: ImageManifest,
) -> Result<(String, Bytes, ImageManifest)> {
    let mut layers = Vec::new();
    for layer in &parsed.layers {
        layers.push(zstd_layer(store, layer)?);
    }
    let mut config = parsed.config.clone();
    if config.media_type == manifest::DOCKER_CONFIG || config.media_type.is_empty() {
        config.media_type = manifest::OCI_CONFIG.into();
    }
    let out = ImageManifest {
        schema_version: 2,
        media_type: Some(manifest::OCI_MANIFEST.into()),
        config,
        layers,
    };
    let bytes = serde_json::to_vec(&out).map_err(|e| RegistryError::Invalid {
        context: "encoding the zstd manifest".into(),
        message: e.to_string(),
    })?;
    let content = store.content();
    let digest = Digest::from_sha256(Sha256::digest(&bytes).into());
    if !content.contains(&digest) {
        content.put_bytes(&bytes)?;
    }
    Ok((manifest::OCI_MANIFEST.into(), Bytes::from(bytes), out))
}

/// The zstd form of one layer blob.
fn zstd_layer(store: &ImageStore, layer: &Descriptor) -> Result<Descriptor> {
    if manifest::layer_compression(&layer.media_type)
        == Some(berth_image::unpack::Compression::Zstd)
    {
        return Ok(layer.clone());
    }
    let index = store
        .data_root()
        .join("distribution/zstd")
        .join(layer.digest.hex());
    if let Some((digest, size)) = std::fs::read(&index)
        .ok()
        .and_then(|b| serde_json::from_slice::<(Digest, u64)>(&b).ok())
        .filter(|(d, _)| store.content().contains(d))
    {
        return Ok(zstd_descriptor(layer, digest, size));
    }
    let content = store.content();
    let blob = content.open_blob(&layer.digest)?;
    let (mut decoded, _) =
        berth_image::unpack::decompressed(io::BufReader::with_capacity(1 << 20, blob))
            .map_err(io_err(format!("reading layer {}", layer.digest)))?;
    let writer = content.writer(None, None)?;
    let mut encoder = zstd::stream::write::Encoder::new(writer, 3).map_err(io_err("zstd"))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    encoder
        .multithread(threads)
        .map_err(io_err("zstd threads"))?;
    io::copy(&mut decoded, &mut encoder)
        .map_err(io_err(format!("recompressing layer {}", layer.digest)))?;
    let writer = encoder.finish().map_err(io_err("zstd"))?;
    let blob = writer.commit()?;
    let (digest, size) = (blob.digest().clone(), blob.size());
    if let Some(dir) = index.parent() {
        let _ = std::fs::create_dir_all(dir);
        let tmp = index.with_extension("tmp");
        if std::fs::write(
            &tmp,
            serde_json::to_vec(&(&digest, size)).unwrap_or_default(),
        )
        .is_ok()
        {
            let _ = std::fs::rename(&tmp, &index);
        }
    }
    Ok(zstd_descriptor(layer, digest, size))
}

fn zstd_descriptor(layer: &Descriptor, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: manifest::OCI_LAYER_ZSTD.into(),
        digest,
        size,
        urls: Vec::new(),
        annotations: layer.annotations.clone(),
        platform: None,
    }
}
