//! Pull: a reference in a registry becomes an image in the store, ready to run.
//!
//! The manifest (through an index, choosing the platform) and the config are small and
//! fetched first; then the layers, up to `max_concurrent_downloads` at once. Each layer is
//! one pipeline with no temporary copy:
//!
//! ```text
//! network (tokio) ──chunks──▶ tee: sha256 + blob file ──▶ decompress ──▶ tar into a staging snapshot
//!                              (unpack's reader thread)     (thread)      (blocking thread)
//! ```
//!
//! so decompression overlaps the download and the writing, on both cores. A layer becomes
//! visible only when both checks pass: the blob's digest (by the content store's writer) and
//! the uncompressed stream's diff ID (by the unpacker); then the blob is committed and the
//! staging snapshot renamed into place. Anything else leaves nothing behind. A connection
//! that breaks mid-layer is resumed with a `Range` request after a backoff, feeding the
//! same pipeline, so the bytes already verified and unpacked are not fetched again.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_image::content::BlobWriter;
use berth_image::store::{chain_id, ImageRecord, ImageStore, LayerRecord};
use berth_image::unpack::unpack_layer;
use berth_types::{Digest, Reference};
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, Semaphore};

use super::session::{backoff, http_error, Access, Session};
use super::{blocking, sources, Registry};
use crate::credentials::AuthConfig;
use crate::error::{RegistryError, Result};
use crate::manifest::{self, Descriptor, ImageManifest, Manifest, ManifestError, Platform};
use crate::progress::{Phase, ProgressSink, TICK};

/// What to pull besides the reference.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to choose from an index (default: this machine's).
    pub platform: Option<Platform>,
    /// Credentials for this pull (the daemon's `X-Registry-Auth`); else the stored ones.
    pub auth: Option<AuthConfig>,
}

/// A finished pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The image ID (config digest).
    pub id: Digest,
    /// The digest the reference resolved to (the index's for a multi-platform image): the
    /// image's `RepoDigests` entry.
    pub digest: Digest,
    /// The reference pulled, `:latest` added when it had neither tag nor digest.
    pub reference: Reference,
    /// Whether the reference now names another image than before (Docker's "Downloaded
    /// newer image" rather than "Image is up to date").
    pub updated: bool,
}

impl Pulled {
    /// Docker's closing status line.
    pub fn status(&self) -> String {
        let name = self.reference.familiar_string();
        if self.updated {
            format!("Downloaded newer image for {name}")
        } else {
            format!("Image is up to date for {name}")
        }
    }
}

/// The parts of an image config a pull checks.
#[derive(Deserialize)]
struct ConfigView {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFsView>,
}

#[derive(Deserialize)]
struct RootFsView {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// Pull `reference` into `store`.
pub async fn pull(
    registry: &Registry,
    store: Arc<ImageStore>,
    reference: &Reference,
    options: &PullOptions,
    progress: &ProgressSink,
) -> Result<Pulled> {
    let reference = reference.clone().with_default_tag();
    let session = Session::connect(
        registry,
        reference.domain(),
        reference.path(),
        Access::Pull,
        options.auth.as_ref(),
    )
    .await?;
    let wanted = options.platform.clone().unwrap_or_else(Platform::host);
    let name = reference.familiar_string();

    // The manifest, through the index when there is one.
    let top_ref = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => unreachable!("with_default_tag gives a tag or a digest"),
    };
    let top = fetch_manifest(&session, &name, &top_ref, reference.digest()).await?;
    let (image_manifest, chosen) = match parse_manifest(&name, &top)? {
        Manifest::Image { manifest, .. } => (manifest, None),
        Manifest::Index { index, .. } => {
            let entry = manifest::select_platform(&index, &wanted).map_err(|available| {
                RegistryError::NoMatchingPlatform {
                    reference: name.clone(),
                    platform: wanted.to_string(),
                    available,
                }
            })?;
            let child = fetch_manifest(
                &session,
                &name,
                &entry.digest.to_string(),
                Some(&entry.digest),
            )
            .await?;
            match parse_manifest(&name, &child)? {
                Manifest::Image { manifest, .. } => (manifest, Some(child)),
                Manifest::Index { .. } => {
                    return Err(RegistryError::Invalid {
                        context: format!("{name}: manifest {}", entry.digest),
                        message: "an index entry for a platform is itself an index".into(),
                    })
                }
            }
        }
    };

    // The config: which layers, in which order, and their diff IDs.
    let config_bytes = fetch_small_blob(
        &session,
        &image_manifest.config,
        manifest::MAX_CONFIG,
        &format!("{name}: config"),
    )
    .await?;
    let config: ConfigView =
        serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::Invalid {
            context: format!("{name}: image config {}", image_manifest.config.digest),
            message: e.to_string(),
        })?;
    if let Some(os) = config.os.as_deref().filter(|os| *os != "linux") {
        return Err(RegistryError::Invalid {
            context: format!("{name}: image config"),
            message: format!("the image is for {os}; berth runs Linux images only"),
        });
    }
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != image_manifest.layers.len() {
        return Err(RegistryError::Invalid {
            context: format!("{name}: manifest"),
            message: format!(
                "it lists {} layers but the config has {} diff IDs",
                image_manifest.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let layers = layer_records(&name, &image_manifest, &diff_ids)?;

    let lease = {
        let store = store.clone();
        blocking(move || {
            store.lease().map_err(|e| RegistryError::Invalid {
                context: "holding off garbage collection".into(),
                message: e.to_string(),
            })
        })
        .await?
    };
    fetch_layers(
        registry,
        &session,
        &store,
        &image_manifest.layers,
        &layers,
        progress,
    )
    .await?;

    // Everything verified and in place: store the small blobs, record, tag.
    let content = store.content();
    let id = image_manifest.config.digest.clone();
    put_verified(content, &id, &config_bytes)?;
    let (manifest_digest, manifest_bytes) = match &chosen {
        Some(child) => (child.digest.clone(), &child.bytes),
        None => (top.digest.clone(), &top.bytes),
    };
    put_verified(content, &manifest_digest, manifest_bytes)?;
    if chosen.is_some() {
        put_verified(content, &top.digest, &top.bytes)?;
    }
    let record = ImageRecord {
        id: id.clone(),
        manifest: manifest_digest,
        layers: layers.clone(),
    };
    // What the reference named before: a tag, or a digest reference of an earlier pull.
    let previous = store.tags()?.get(&reference.to_string()).cloned();
    store.record_image(&record)?;
    if reference.tag().is_some() {
        store.tag(&id, &reference)?;
    }
    let by_digest: Reference = format!("{}@{}", reference.name(), top.digest)
        .parse()
        .map_err(
            |e: berth_types::ReferenceError| RegistryError::InvalidReference {
                reference: reference.to_string(),
                message: e.to_string(),
            },
        )?;
    store.tag(&id, &by_digest)?;
    drop(lease);
    for layer in &layers {
        sources::remember(
            store.data_root(),
            &layer.digest,
            reference.domain(),
            reference.path(),
        );
    }
    tracing::info!(image = %name, id = %id, digest = %top.digest, "pulled");
    Ok(Pulled {
        updated: previous.as_ref() != Some(&id),
        id,
        digest: top.digest,
        reference,
    })
}

/// The store's records for the manifest's layers: chain IDs from the diff IDs.
fn layer_records(
    name: &str,
    manifest: &ImageManifest,
    diff_ids: &[Digest],
) -> Result<Vec<LayerRecord>> {
    let mut out: Vec<LayerRecord> = Vec::new();
    for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
        if manifest::layer_compression(&desc.media_type).is_none() {
            return Err(RegistryError::UnsupportedMediaType {
                reference: format!("{name}: layer {}", desc.digest),
                media_type: desc.media_type.clone(),
            });
        }
        out.push(LayerRecord {
            digest: desc.digest.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id(out.last().map(|l| &l.chain_id), diff_id),
            size: desc.size,
        });
    }
    Ok(out)
}

/// Bring every layer into the store: present ones are skipped, the others fetched with at
/// most `max_concurrent_downloads` at once. On the first failure the others stop and clean
/// up after themselves.
async fn fetch_layers(
    registry: &Registry,
    session: &Session,
    store: &Arc<ImageStore>,
    descriptors: &[Descriptor],
    layers: &[LayerRecord],
    progress: &ProgressSink,
) -> Result<()> {
    let limit = Arc::new(Semaphore::new(
        registry.config.max_concurrent_downloads.max(1),
    ));
    let attempts = registry.config.max_download_attempts.max(1);
    // Set on the first failure: the other layers stop, and are still awaited so that their
    // half-made snapshots and blobs are gone when the pull returns.
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    for layer in layers {
        progress.send(&layer.digest, Phase::Waiting);
    }
    let jobs = descriptors.iter().zip(layers).map(|(desc, layer)| {
        let limit = limit.clone();
        let mut cancel = cancel_rx.clone();
        let cancel_tx = &cancel_tx;
        async move {
            let result = async {
                let content = store.content();
                let have_snapshot = store.snapshot_dir(&layer.chain_id).is_dir();
                let have_blob = content.contains(&layer.digest);
                if have_snapshot && have_blob {
                    progress.send(&layer.digest, Phase::AlreadyExists);
                    return Ok::<(), RegistryError>(());
                }
                let _permit = limit
                    .acquire()
                    .await
                    .map_err(|_| RegistryError::Cancelled)?;
                if *cancel.borrow() {
                    return Err(RegistryError::Cancelled);
                }
                if have_blob {
                    // Downloaded before, never unpacked (or its snapshot was removed).
                    progress.send(
                        &layer.digest,
                        Phase::Extracting {
                            current: 0,
                            total: desc.size,
                        },
                    );
                    let (store, l) = (store.clone(), layer.clone());
                    blocking(move || store.ensure_snapshot(&l).map(|_| ()).map_err(Into::into))
                        .await?;
                } else {
                    download_layer(
                        session,
                        store,
                        layer,
                        !have_snapshot,
                        attempts,
                        progress,
                        &mut cancel,
                    )
                    .await?;
                }
                progress.send(&layer.digest, Phase::PullComplete);
                Ok(())
            }
            .await;
            if result.is_err() {
                let _ = cancel_tx.send(true);
            }
            result
        }
    });
    let results = futures_util::future::join_all(jobs).await;
    // The first real failure, not the cancellations it caused.
    let mut first = None;
    for r in results {
        match r {
            Ok(()) => {}
            Err(RegistryError::Cancelled) => {
                first.get_or_insert(RegistryError::Cancelled);
            }
            Err(e) => {
                if first
                    .as_ref()
                    .is_none_or(|f| matches!(f, RegistryError::Cancelled))
                {
                    first = Some(e);
                }
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Download one layer through the verify-and-unpack pipeline (or, when its snapshot exists
/// already, just into the content store).
async fn download_layer(
    session: &Session,
    store: &Arc<ImageStore>,
    layer: &LayerRecord,
    unpack: bool,
    attempts: u32,
    progress: &ProgressSink,
    cancel: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let downloaded = Arc::new(AtomicBool::new(false));
    let sink = {
        let store = store.clone();
        let layer = layer.clone();
        let progress = progress.clone();
        let downloaded = downloaded.clone();
        tokio::task::spawn_blocking(move || {
            write_layer(&store, &layer, rx, unpack, &progress, &downloaded)
        })
    };
    // Cancelling drops the fetch and with it the sender: the pipeline sees the stream end
    // short, fails its size check and removes what it made.
    let fetched = tokio::select! {
        fetched = fetch_blob_into(session, layer, tx, attempts, progress) => fetched,
        _ = cancel.wait_for(|c| *c) => Err(FetchError::Registry(RegistryError::Cancelled)),
    };
    if fetched.is_ok() {
        progress.send(&layer.digest, Phase::Verifying);
        progress.send(&layer.digest, Phase::DownloadComplete);
        downloaded.store(true, Ordering::Relaxed);
    }
    let written = sink.await.map_err(|e| RegistryError::Io {
        context: format!("writing layer {}", layer.digest),
        source: io::Error::other(e.to_string()),
    })?;
    match (fetched, written) {
        // The pipeline's own error explains why it stopped taking bytes.
        (Err(FetchError::SinkGone), Err(e)) => Err(e),
        (Err(FetchError::SinkGone), Ok(())) => Err(RegistryError::Cancelled),
        (Err(FetchError::Registry(e)), _) => Err(e),
        (Ok(()), written) => written,
    }
}

enum FetchError {
    /// The writing side stopped (it failed, and says why).
    SinkGone,
    Registry(RegistryError),
}

impl From<RegistryError> for FetchError {
    fn from(e: RegistryError) -> Self {
        FetchError::Registry(e)
    }
}

/// Stream the blob of `layer` into `tx`, resuming after transient failures where it broke
/// off. Dropping `tx` at the end tells the pipeline the stream is complete.
async fn fetch_blob_into(
    session: &Session,
    layer: &LayerRecord,
    tx: mpsc::Sender<Bytes>,
    attempts: u32,
    progress: &ProgressSink,
) -> Result<(), FetchError> {
    let mut offset = 0u64;
    let mut attempt = 1;
    loop {
        match fetch_from(session, layer, &tx, &mut offset, progress).await {
            Ok(()) => return Ok(()),
            Err(FetchError::Registry(e)) if e.is_transient() && attempt < attempts => {
                let delay = backoff(attempt);
                tracing::warn!(layer = %layer.digest, offset, attempt, error = %e, "download failed; retrying");
                progress.send(
                    &layer.digest,
                    Phase::Retrying {
                        attempt,
                        seconds: delay.as_secs(),
                    },
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One request for the blob from `offset` on; advances `offset` by what it delivered.
async fn fetch_from(
    session: &Session,
    layer: &LayerRecord,
    tx: &mpsc::Sender<Bytes>,
    offset: &mut u64,
    progress: &ProgressSink,
) -> Result<(), FetchError> {
    let path = format!("/v2/{}/blobs/{}", session.repository(), layer.digest);
    let mut request = session.request(Method::GET, &path);
    if *offset > 0 {
        request = request.header(RANGE, format!("bytes={offset}-"));
    }
    let mut resp = session.send(request).await?;
    let context = format!("fetching layer {}", layer.digest);
    // Bytes of this response that were delivered before (a registry that ignores Range).
    let mut skip = match resp.status() {
        StatusCode::OK => *offset,
        StatusCode::PARTIAL_CONTENT => {
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            match start {
                Some(s) if s == *offset => 0,
                _ => {
                    return Err(RegistryError::Invalid {
                        context,
                        message: format!(
                            "asked for bytes from {offset} on, the registry sent another range"
                        ),
                    }
                    .into())
                }
            }
        }
        StatusCode::NOT_FOUND => {
            return Err(RegistryError::NotFound {
                registry: session.registry().into(),
                reference: format!("{}: layer {}", session.repository(), layer.digest),
            }
            .into())
        }
        _ => return Err(http_error(session.registry(), &context, resp).await.into()),
    };
    let mut reported = *offset;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                return Err(RegistryError::Connect {
                    registry: session.registry().into(),
                    message: format!("{context}: {e}"),
                }
                .into())
            }
        };
        let chunk = if skip > 0 {
            let n = skip.min(chunk.len() as u64);
            skip -= n;
            chunk.slice(n as usize..)
        } else {
            chunk
        };
        if chunk.is_empty() {
            continue;
        }
        *offset += chunk.len() as u64;
        if *offset > layer.size {
            return Err(RegistryError::Invalid {
                context,
                message: format!(
                    "the registry sent more than the {} bytes the manifest announces",
                    layer.size
                ),
            }
            .into());
        }
        tx.send(chunk).await.map_err(|_| FetchError::SinkGone)?;
        if *offset - reported >= TICK || *offset == layer.size {
            reported = *offset;
            progress.send(
                &layer.digest,
                Phase::Downloading {
                    current: *offset,
                    total: layer.size,
                },
            );
        }
    }
    if *offset < layer.size {
        return Err(RegistryError::Connect {
            registry: session.registry().into(),
            message: format!(
                "{context}: the connection ended after {offset} of {} bytes",
                layer.size
            ),
        }
        .into());
    }
    Ok(())
}

/// The blocking end of a layer's pipeline: every byte goes through the content store's
/// writer (digest and size check, blob file) and, when `unpack`, on into the unpacker.
fn write_layer(
    store: &ImageStore,
    layer: &LayerRecord,
    rx: mpsc::Receiver<Bytes>,
    unpack: bool,
    progress: &ProgressSink,
    downloaded: &Arc<AtomicBool>,
) -> Result<()> {
    let writer = store
        .content()
        .writer(Some(&layer.digest), Some(layer.size))?;
    let tee = Tee(Arc::new(Mutex::new(TeeInner {
        rx,
        pending: Bytes::new(),
        writer: Some(writer),
        consumed: 0,
        reported: 0,
        total: layer.size,
        digest: layer.digest.clone(),
        progress: progress.clone(),
        downloaded: downloaded.clone(),
    })));
    let staging = unpack.then(|| store.staging_snapshot_dir(&layer.chain_id));
    if let Some(staging) = &staging {
        unpack_layer(tee.clone(), staging, Some(&layer.diff_id)).map_err(|source| {
            RegistryError::Unpack {
                layer: layer.digest.clone(),
                source,
            }
        })?;
    }
    let finish = || -> Result<()> {
        // Whatever the unpacker left unread (padding after the archive) still counts.
        let mut inner = tee.0.lock().map_err(|_| poisoned())?;
        inner.drain()?;
        let writer = inner.writer.take().ok_or_else(poisoned)?;
        writer.commit()?;
        Ok(())
    };
    let result = finish().and_then(|()| match &staging {
        Some(staging) => store
            .install_snapshot(staging, &layer.chain_id)
            .map(|_| ())
            .map_err(Into::into),
        None => Ok(()),
    });
    if result.is_err() {
        if let Some(staging) = &staging {
            let _ = std::fs::remove_dir_all(staging);
        }
    }
    result
}

fn poisoned() -> RegistryError {
    RegistryError::Io {
        context: "layer pipeline".into(),
        source: io::Error::other("a pipeline thread panicked"),
    }
}

/// The reader the unpacker pulls from: chunks from the network, each written to the blob
/// writer as it passes. Shared so the pipeline can drain and commit it after the unpacker.
#[derive(Clone)]
struct Tee(Arc<Mutex<TeeInner>>);

struct TeeInner {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
    writer: Option<BlobWriter>,
    consumed: u64,
    reported: u64,
    total: u64,
    digest: Digest,
    progress: ProgressSink,
    /// Set once the download finished: extraction progress is shown from then on (before,
    /// the download's own progress is).
    downloaded: Arc<AtomicBool>,
}

impl TeeInner {
    /// Take the next chunk into `pending`, through the blob writer; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        use std::io::Write as _;
        match self.rx.blocking_recv() {
            Some(chunk) => {
                if let Some(w) = self.writer.as_mut() {
                    w.write_all(&chunk)?;
                }
                self.pending = chunk;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn drain(&mut self) -> Result<()> {
        self.pending = Bytes::new();
        while self
            .refill()
            .map_err(crate::error::io_err("writing the layer blob"))?
        {
            self.pending = Bytes::new();
        }
        Ok(())
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut inner = self
            .0
            .lock()
            .map_err(|_| io::Error::other("layer pipeline poisoned"))?;
        if inner.pending.is_empty() && !inner.refill()? {
            return Ok(0);
        }
        let n = buf.len().min(inner.pending.len());
        buf[..n].copy_from_slice(&inner.pending[..n]);
        let rest = inner.pending.slice(n..);
        inner.pending = rest;
        inner.consumed += n as u64;
        inner.report();
        Ok(n)
    }
}

impl TeeInner {
    fn report(&mut self) {
        if self.consumed - self.reported < TICK && self.consumed != self.total {
            return;
        }
        self.reported = self.consumed;
        if self.downloaded.load(Ordering::Relaxed) {
            self.progress.send(
                &self.digest,
                Phase::Extracting {
                    current: self.consumed,
                    total: self.total,
                },
            );
        }
    }
}

/// A manifest as fetched: its bytes, their digest and the served media type.
struct Fetched {
    digest: Digest,
    bytes: Bytes,
    content_type: Option<String>,
}

fn parse_manifest(name: &str, fetched: &Fetched) -> Result<Manifest> {
    Manifest::parse(fetched.content_type.as_deref(), &fetched.bytes).map_err(|e| match e {
        ManifestError::Schema1 => RegistryError::Schema1 {
            reference: name.into(),
        },
        ManifestError::Unsupported(media_type) => RegistryError::UnsupportedMediaType {
            reference: name.into(),
            media_type,
        },
        ManifestError::Invalid(message) => RegistryError::Invalid {
            context: format!("{name}: manifest {}", fetched.digest),
            message,
        },
    })
}

/// GET a manifest by tag or digest; checks its digest when one is expected.
async fn fetch_manifest(
    session: &Session,
    name: &str,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<Fetched> {
    let path = format!("/v2/{}/manifests/{reference}", session.repository());
    let resp = session
        .send(
            session
                .request(Method::GET, &path)
                .header(ACCEPT, manifest::ACCEPT),
        )
        .await?;
    let context = format!("fetching the manifest of {name}");
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            return Err(RegistryError::NotFound {
                registry: session.registry().into(),
                reference: name.into(),
            })
        }
        _ => return Err(http_error(session.registry(), &context, resp).await),
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = read_limited(session, resp, manifest::MAX_MANIFEST, &context).await?;
    let digest = Digest::from_sha256(Sha256::digest(&bytes).into());
    if let Some(expected) = expected {
        if *expected != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("{name}: manifest"),
                expected: expected.clone(),
                actual: digest,
            });
        }
    }
    Ok(Fetched {
        digest,
        bytes,
        content_type,
    })
}

/// GET a small blob (a config) whole, checking size and digest.
async fn fetch_small_blob(
    session: &Session,
    desc: &Descriptor,
    limit: u64,
    what: &str,
) -> Result<Bytes> {
    if desc.size > limit {
        return Err(RegistryError::TooLarge {
            what: format!("{what} {}", desc.digest),
            limit,
        });
    }
    let path = format!("/v2/{}/blobs/{}", session.repository(), desc.digest);
    let resp = session.send(session.request(Method::GET, &path)).await?;
    let context = format!("fetching {what} {}", desc.digest);
    match resp.status() {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            return Err(RegistryError::NotFound {
                registry: session.registry().into(),
                reference: format!("{what} {}", desc.digest),
            })
        }
        _ => return Err(http_error(session.registry(), &context, resp).await),
    }
    let bytes = read_limited(session, resp, limit, &context).await?;
    let actual = Digest::from_sha256(Sha256::digest(&bytes).into());
    if actual != desc.digest {
        return Err(RegistryError::DigestMismatch {
            what: what.into(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// A response body, refused past `limit` bytes.
async fn read_limited(
    session: &Session,
    mut resp: reqwest::Response,
    limit: u64,
    context: &str,
) -> Result<Bytes> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() as u64 + chunk.len() as u64 > limit {
                    return Err(RegistryError::TooLarge {
                        what: context.into(),
                        limit,
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out.into()),
            Err(e) => {
                return Err(RegistryError::Connect {
                    registry: session.registry().into(),
                    message: format!("{context}: {e}"),
                })
            }
        }
    }
}

/// Store `bytes`, already checked to hash to `digest`.
fn put_verified(
    content: &berth_image::content::ContentStore,
    digest: &Digest,
    bytes: &[u8],
) -> Result<()> {
    if content.contains(digest) {
        return Ok(());
    }
    let mut w = content.writer(Some(digest), Some(bytes.len() as u64))?;
    std::io::Write::write_all(&mut w, bytes).map_err(crate::error::io_err("storing a blob"))?;
    w.commit()?;
    Ok(())
}
