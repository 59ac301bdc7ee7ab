//! Loading: Docker archives and OCI layouts read as blob sources, their manifests resolved to
//! images, and every image verified before any is recorded or tagged.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_types::{Digest, Reference};
use sha2::{Digest as _, Sha256};

use crate::content::VerifiedBlob;
/// The largest manifest, index or config read into memory (as the store's limit).
use crate::store::MAX_JSON;
use crate::store::{chain_id, ImageRecord, ImageStore, LayerRecord, StoreError};
use crate::unpack::decompressed;
use crate::unpack::{Compression, UnpackError};

use super::spool::Spool;
use super::{
    archive_path, blob_error, blob_path, familiar_tag, host_platform, io_err, parse_json,
    platform_matches, sha256, to_json, ArchiveError, ConfigView, Descriptor, DockerManifestItem,
    Index, LayoutFile, Manifest, Result, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, INDEX_JSON,
    MANIFEST_JSON, MAX_INDEX_ENTRIES, MEDIA_DOCKER_LIST, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR,
    MEDIA_LAYER_ZSTD, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, OCI_LAYOUT,
};

// ---- Loading: reading the archive ------------------------------------------------------

/// Load a `docker save` archive (any version), an archive skopeo wrote, or an OCI archive,
/// plain or gzip- or zstd-compressed, streamed from `input`. Returns each image's ID with
/// the tags it was given, in the archive's order.
pub fn load_docker_archive(
    store: &ImageStore,
    input: impl Read,
) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let _span = tracing::info_span!("load", format = "archive").entered();
    // Blobs land before the records that name them: keep garbage collection away.
    let _lease = store
        .lease()
        .map_err(|e| io_err("holding off garbage collection")(io::Error::other(e.to_string())))?;
    let (input, _) = decompressed(input).map_err(io_err("reading the archive"))?;
    let mut spool = Spool::read(store, input)?;
    let sources = if let Some(bytes) = spool.small_file(MANIFEST_JSON)? {
        let items: Option<Vec<DockerManifestItem>> = parse_json(&bytes, MANIFEST_JSON)?;
        // Docker's check: null is a writer's bug, an empty list a valid empty archive.
        let items = items.ok_or_else(|| ArchiveError::Malformed {
            file: MANIFEST_JSON.to_owned(),
            message: "the manifest is null; it must be a list of images".to_owned(),
        })?;
        docker_sources(&mut spool, &items)?
    } else if let Some(bytes) = spool.small_file(INDEX_JSON)? {
        oci_sources(&mut spool, &parse_json(&bytes, INDEX_JSON)?)?
    } else {
        return Err(ArchiveError::NoManifest);
    };
    commit_images(store, &sources)
}

/// Load the images of the OCI image layout in `dir`. Tags come from the full reference in
/// containerd's annotation, or from the OCI ref name when it is a whole reference
/// (`busybox:1.36`, as skopeo writes it); an image named only by a bare tag (`latest`) is
/// loaded untagged, since the layout does not say which repository it belongs to.
pub fn load_oci_layout(store: &ImageStore, dir: &Path) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let _span = tracing::info_span!("load", format = "oci-layout").entered();
    let _lease = store
        .lease()
        .map_err(|e| io_err("holding off garbage collection")(io::Error::other(e.to_string())))?;
    let layout_path = dir.join(OCI_LAYOUT);
    let layout = match read_bounded(&layout_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ArchiveError::NotALayout {
                path: dir.to_owned(),
            })
        }
        Err(e) => return Err(io_err(format!("reading {}", layout_path.display()))(e)),
    };
    let layout: LayoutFile = parse_json(&layout, &layout_path.display().to_string())?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(ArchiveError::Malformed {
            file: layout_path.display().to_string(),
            message: format!(
                "image layout version {} is not supported (1.x is)",
                layout.image_layout_version
            ),
        });
    }
    let index_path = dir.join(INDEX_JSON);
    let index =
        read_bounded(&index_path).map_err(io_err(format!("reading {}", index_path.display())))?;
    let index: Index = parse_json(&index, &index_path.display().to_string())?;
    let mut blobs = LayoutDir { store, dir };
    let sources = oci_sources(&mut blobs, &index)?;
    commit_images(store, &sources)
}

/// Read a small file whole, refusing one larger than [`MAX_JSON`].
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    read_all_bounded(open_regular(path)?)
}

/// Read an open file whole, refusing more than [`MAX_JSON`] bytes.
fn read_all_bounded(file: File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_JSON + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_JSON} bytes"),
        ));
    }
    Ok(bytes)
}

/// Open a file of a layout directory, which the user hands us: non-blocking, so a FIFO
/// planted there cannot hang the load, and only if it is a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Where an archive keeps its blobs, for the part of loading that follows an OCI index.
pub(super) trait BlobSource {
    /// The blob `digest` of `size` bytes, checked and in the content store. `what` names
    /// what refers to it, for the error when it is missing.
    fn blob(&mut self, digest: &Digest, size: u64, what: &str) -> Result<VerifiedBlob>;
    /// A manifest or index, checked against `digest`.
    fn document(&mut self, digest: &Digest, what: &str) -> Result<Vec<u8>>;
}

/// The blobs of an OCI image layout directory.
struct LayoutDir<'a> {
    store: &'a ImageStore,
    dir: &'a Path,
}

impl LayoutDir<'_> {
    fn open(&self, digest: &Digest, what: &str) -> Result<(File, PathBuf)> {
        let path = self.dir.join(blob_path(digest));
        match open_regular(&path) {
            Ok(file) => Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ArchiveError::Missing {
                what: what.to_owned(),
                path: path.display().to_string(),
            }),
            Err(e) => Err(io_err(format!("opening {}", path.display()))(e)),
        }
    }
}

impl BlobSource for LayoutDir<'_> {
    fn blob(&mut self, digest: &Digest, size: u64, what: &str) -> Result<VerifiedBlob> {
        let (file, path) = self.open(digest, what)?;
        self.store
            .content
            .put_reader(file, Some(digest), Some(size))
            .map_err(blob_error(&path.display().to_string()))
    }

    fn document(&mut self, digest: &Digest, what: &str) -> Result<Vec<u8>> {
        let (file, path) = self.open(digest, what)?;
        let bytes =
            read_all_bounded(file).map_err(io_err(format!("reading {}", path.display())))?;
        let actual = sha256(&bytes);
        if actual != *digest {
            return Err(ArchiveError::DigestMismatch {
                entry: path.display().to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

// ---- Loading: from the archive's manifests to images -----------------------------------

/// One image of an archive: its blobs in the content store, not yet verified as a whole.
struct ImageSource {
    /// How errors name the image: its first tag, or where the archive lists it.
    label: String,
    config: VerifiedBlob,
    /// Each layer with the name the archive gave it, for errors.
    layers: Vec<(VerifiedBlob, String)>,
    /// The archive's manifest for exactly these blobs, kept so the image keeps its digest.
    manifest: Option<VerifiedBlob>,
    tags: Vec<Reference>,
}

/// A manifest of an archive's `index.json`, matched with `manifest.json` entries by blobs.
struct Candidate {
    descriptor: Descriptor,
    config: Digest,
    layers: Vec<Digest>,
}

/// The images of Docker's `manifest.json`.
fn docker_sources(spool: &mut Spool<'_>, items: &[DockerManifestItem]) -> Result<Vec<ImageSource>> {
    let candidates = match spool.small_file(INDEX_JSON)? {
        Some(bytes) => manifest_candidates(spool, &parse_json(&bytes, INDEX_JSON)?),
        None => Vec::new(),
    };
    let mut sources = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let mut tags = Vec::new();
        for tag in item.repo_tags.iter().flatten() {
            // Docker's rule: a RepoTag names a repository and a tag, nothing else.
            let reference: Reference = tag
                .parse()
                .ok()
                .filter(|r: &Reference| r.tag().is_some() && r.digest().is_none())
                .ok_or_else(|| ArchiveError::Malformed {
                    file: MANIFEST_JSON.to_owned(),
                    message: format!("invalid tag {tag:?}: RepoTags holds name:tag references"),
                })?;
            tags.push(reference);
        }
        let label = tags
            .first()
            .and_then(familiar_tag)
            .unwrap_or_else(|| format!("{MANIFEST_JSON} entry {n}"));
        let config_path = archive_path("", &item.config, &item.config)?;
        let config = spool.ingest(&config_path, &format!("image {label}: config"))?;
        let mut layers = Vec::new();
        for (i, layer) in item.layers.iter().flatten().enumerate() {
            let path = archive_path("", layer, layer)?;
            let blob = spool.ingest(&path, &format!("image {label}: layer {i}"))?;
            layers.push((blob, path));
        }
        let matching = candidates.iter().find(|c| {
            c.config == *config.digest()
                && c.layers.iter().eq(layers.iter().map(|(b, _)| b.digest()))
        });
        let manifest = match matching {
            Some(c) => Some(spool.blob(&c.descriptor.digest, c.descriptor.size, &label)?),
            None => None,
        };
        sources.push(ImageSource {
            label,
            config,
            layers,
            manifest,
            tags,
        });
    }
    Ok(sources)
}

/// The image manifests an archive's `index.json` reaches (through nested indexes too) and
/// the archive holds. Missing or unreadable ones are skipped: `manifest.json` is what
/// describes a Docker archive, these only keep manifest digests.
fn manifest_candidates(spool: &mut Spool<'_>, index: &Index) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    let mut queue: Vec<Descriptor> = index.manifests.clone();
    let mut visited = 0;
    while let Some(descriptor) = queue.pop() {
        visited += 1;
        if visited > MAX_INDEX_ENTRIES {
            break;
        }
        let Ok(bytes) = spool.document(&descriptor.digest, INDEX_JSON) else {
            continue;
        };
        if is_index(&descriptor, &bytes) {
            if let Ok(nested) = serde_json::from_slice::<Index>(&bytes) {
                queue.extend(nested.manifests);
            }
        } else if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
            candidates.push(Candidate {
                config: manifest.config.digest,
                layers: manifest.layers.into_iter().map(|l| l.digest).collect(),
                descriptor,
            });
        }
    }
    candidates
}

/// Whether a descriptor points at an index rather than an image manifest. The media type
/// says so; without one, an index is what has `manifests`.
fn is_index(descriptor: &Descriptor, bytes: &[u8]) -> bool {
    match descriptor.media_type.as_deref() {
        Some(MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST) => true,
        Some(_) => false,
        None => serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("manifests").is_some()),
    }
}

/// Tags of an `index.json` entry: containerd's full reference, or an OCI ref name that is a
/// whole reference. A bare tag names no repository and gives no tag.
fn oci_tags(descriptor: &Descriptor) -> Result<Vec<Reference>> {
    let annotations = &descriptor.annotations;
    let name = match (
        annotations.get(ANNOTATION_IMAGE_NAME),
        annotations.get(ANNOTATION_REF_NAME),
    ) {
        (Some(full), _) => full,
        (None, Some(name)) if name.contains([':', '/', '@']) => name,
        (None, Some(tag)) => {
            tracing::debug!(%tag, digest = %descriptor.digest, "index.json names an image by a bare tag; loading it untagged");
            return Ok(Vec::new());
        }
        (None, None) => return Ok(Vec::new()),
    };
    let reference: Reference = name.parse().map_err(|e| ArchiveError::Malformed {
        file: INDEX_JSON.to_owned(),
        message: format!("image name {name:?}: {e}"),
    })?;
    let reference = reference.with_default_tag();
    Ok(if reference.tag().is_some() {
        vec![reference]
    } else {
        Vec::new()
    })
}

/// The images of an OCI `index.json`, one per manifest, with the tags of every entry that
/// names it. Entries for other platforms are skipped; a nested index gives its image for
/// this platform.
fn oci_sources(blobs: &mut dyn BlobSource, index: &Index) -> Result<Vec<ImageSource>> {
    let mut images: Vec<(Descriptor, Manifest, Vec<Reference>)> = Vec::new();
    for descriptor in &index.manifests {
        if !platform_matches(descriptor.platform.as_ref()) {
            continue;
        }
        let tags = oci_tags(descriptor)?;
        let what = tags
            .first()
            .and_then(familiar_tag)
            .unwrap_or_else(|| format!("{INDEX_JSON} entry {}", descriptor.digest));
        let bytes = blobs.document(&descriptor.digest, &what)?;
        let (descriptor, bytes) = if is_index(descriptor, &bytes) {
            let nested: Index = parse_json(&bytes, &format!("image index {}", descriptor.digest))?;
            let (os, architecture) = host_platform();
            let child = nested
                .manifests
                .iter()
                .find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| p.os == os && p.architecture == architecture)
                })
                .ok_or_else(|| ArchiveError::NoPlatform {
                    index: descriptor.digest.clone(),
                    platform: format!("{os}/{architecture}"),
                })?;
            let child_bytes = blobs.document(&child.digest, &what)?;
            (child.clone(), child_bytes)
        } else {
            (descriptor.clone(), bytes)
        };
        let manifest: Manifest = parse_json(&bytes, &format!("manifest {}", descriptor.digest))?;
        match images
            .iter_mut()
            .find(|(d, _, _)| d.digest == descriptor.digest)
        {
            Some((_, _, known)) => {
                for tag in tags {
                    if !known.contains(&tag) {
                        known.push(tag);
                    }
                }
            }
            None => images.push((descriptor, manifest, tags)),
        }
    }
    let mut sources = Vec::new();
    for (descriptor, manifest, tags) in images {
        let label = tags
            .first()
            .and_then(familiar_tag)
            .unwrap_or_else(|| format!("of manifest {}", descriptor.digest));
        let config = blobs.blob(
            &manifest.config.digest,
            manifest.config.size,
            &format!("image {label}: config"),
        )?;
        let mut layers = Vec::new();
        for (i, layer) in manifest.layers.iter().enumerate() {
            let blob = blobs.blob(
                &layer.digest,
                layer.size,
                &format!("image {label}: layer {i}"),
            )?;
            layers.push((blob, blob_path(&layer.digest)));
        }
        let manifest = blobs.blob(&descriptor.digest, descriptor.size, &label)?;
        sources.push(ImageSource {
            label,
            config,
            layers,
            manifest: Some(manifest),
            tags,
        });
    }
    Ok(sources)
}

// ---- Loading: verifying and recording ---------------------------------------------------

/// Verify every image, then record every image, then tag them: nothing of a bad archive is
/// recorded or tagged.
fn commit_images(
    store: &ImageStore,
    sources: &[ImageSource],
) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let records = sources
        .iter()
        .map(|source| verify_image(store, source))
        .collect::<Result<Vec<_>>>()?;
    for record in &records {
        // An image already in the store keeps its record (and so its manifest and blobs).
        if store.image(&record.id).is_err() {
            write_record(store, record)?;
        }
    }
    let mut loaded = Vec::new();
    for (record, source) in records.iter().zip(sources) {
        for tag in &source.tags {
            store.tag(&record.id, tag)?;
        }
        tracing::debug!(image.digest = %record.id, tags = source.tags.len(), "image loaded");
        loaded.push((record.id.clone(), source.tags.clone()));
    }
    Ok(loaded)
}

/// Check an image's layers against its config (unpacking each into its snapshot on the
/// way, as `docker load` registers layers) and return its record.
fn verify_image(store: &ImageStore, source: &ImageSource) -> Result<ImageRecord> {
    let label = &source.label;
    let id = source.config.digest().clone();
    let bytes = store.content.read_all(&id, MAX_JSON)?;
    let config: ConfigView = parse_json(&bytes, &format!("image {label}: config {id}"))?;
    if let Some(os) = config.os.filter(|os| os != "linux") {
        return Err(ArchiveError::WrongOs { os });
    }
    let diff_ids = config.rootfs.diff_ids.unwrap_or_default();
    if diff_ids.len() != source.layers.len() {
        return Err(ArchiveError::LayerCount {
            image: label.clone(),
            diff_ids: diff_ids.len(),
            layers: source.layers.len(),
        });
    }
    let mut layers: Vec<LayerRecord> = Vec::new();
    let mut media_types = Vec::new();
    for (index, ((blob, path), diff_id)) in source.layers.iter().zip(&diff_ids).enumerate() {
        let layer = LayerRecord {
            digest: blob.digest().clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id(layers.last().map(|l| &l.chain_id), diff_id),
            size: blob.size(),
        };
        let compression = verify_layer(store, &layer, |actual| ArchiveError::DiffIdMismatch {
            image: label.clone(),
            index,
            path: path.clone(),
            expected: diff_id.clone(),
            actual,
        })?;
        media_types.push(match compression {
            Compression::None => MEDIA_LAYER_TAR,
            Compression::Gzip => MEDIA_LAYER_GZIP,
            Compression::Zstd => MEDIA_LAYER_ZSTD,
        });
        layers.push(layer);
    }
    let manifest = match &source.manifest {
        Some(manifest) => manifest.digest().clone(),
        None => store_manifest(store, &source.config, &layers, &media_types)?,
    };
    Ok(ImageRecord {
        id,
        manifest,
        layers,
    })
}

/// Check a layer blob against its diff ID and make sure its snapshot exists; returns how
/// the blob is compressed. `mismatch` makes the error for content of another diff ID.
fn verify_layer(
    store: &ImageStore,
    layer: &LayerRecord,
    mismatch: impl FnOnce(Digest) -> ArchiveError,
) -> Result<Compression> {
    let blob = store.content.open_blob(&layer.digest)?;
    let (decoded, compression) =
        decompressed(blob).map_err(io_err(format!("reading layer {}", layer.digest)))?;
    // An uncompressed layer is its own diff ID, and the content store checked its digest.
    if compression == Compression::None && layer.digest != layer.diff_id {
        return Err(mismatch(layer.digest.clone()));
    }
    if store.snapshot_dir(&layer.chain_id).is_dir() {
        // The snapshot was built from another copy of this layer; this blob still has to
        // be checked, since the record will name it.
        if compression != Compression::None {
            let actual = diff_id_of(decoded)
                .map_err(io_err(format!("decompressing layer {}", layer.digest)))?;
            if actual != layer.diff_id {
                return Err(mismatch(actual));
            }
        }
        return Ok(compression);
    }
    drop(decoded);
    match store.ensure_snapshot(layer) {
        Ok(_) => Ok(compression),
        Err(StoreError::Unpack {
            source: UnpackError::DiffIdMismatch { actual, .. },
            ..
        }) => Err(mismatch(actual)),
        Err(e) => Err(e.into()),
    }
}

/// sha256 of everything `decoded` yields.
fn diff_id_of(mut decoded: impl Read) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match decoded.read(&mut buf) {
            Ok(0) => return Ok(Digest::from_sha256(hasher.finalize().into())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An OCI manifest for an image whose archive had none for its blobs (Docker archives of
/// before 25, skopeo's).
fn store_manifest(
    store: &ImageStore,
    config: &VerifiedBlob,
    layers: &[LayerRecord],
    media_types: &[&str],
) -> Result<Digest> {
    let descriptor = |media_type: &str, digest: &Digest, size: u64| Descriptor {
        media_type: Some(media_type.to_owned()),
        digest: digest.clone(),
        size,
        annotations: BTreeMap::new(),
        platform: None,
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.to_owned()),
        config: descriptor(MEDIA_OCI_CONFIG, config.digest(), config.size()),
        layers: layers
            .iter()
            .zip(media_types)
            .map(|(l, media_type)| descriptor(media_type, &l.digest, l.size))
            .collect(),
    };
    Ok(store
        .content
        .put_bytes(&to_json(&manifest, "the manifest")?)?)
}

/// Record an image (atomically and durably, as every store file).
fn write_record(store: &ImageStore, record: &ImageRecord) -> Result<()> {
    let path = store.record_path(&record.id);
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| io_err("encoding the image record")(io::Error::other(e)))?;
    crate::store::write_atomic(&path, &bytes).map_err(io_err(format!("writing {}", path.display())))
}
