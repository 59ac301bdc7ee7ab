//! `docker save` and `docker load`, and OCI image layouts: images leave and enter the store
//! as archives and directories that Docker, skopeo and containerd read and write.
//!
//! Saving writes what Docker 25 and later write: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) with Docker's `manifest.json` and `repositories` beside
//! it, so one archive serves `docker load` (every version since 1.10), `skopeo …
//! docker-archive:` and `oci-archive:`. Layers go out as stored (gzip), as Docker with the
//! containerd image store writes them: every loader decompresses, and the image's manifest
//! digest survives the round trip. [`save_oci_layout`] writes the same layout as a directory.
//!
//! Loading reads the archive once, as a stream, without unpacking it anywhere: each entry
//! goes into the content store as it arrives (small files wait in memory, so the legacy
//! metadata of old archives never reaches the store), and `manifest.json` — or `index.json`
//! for an OCI archive — is resolved at the end. Accepted: what Docker before 25 wrote
//! (`<id>/layer.tar`, `<config>.json`), Docker 25+ and berth (`blobs/sha256/…`), skopeo
//! (`<diff-id>.tar` with `<id>/layer.tar` symlinks), OCI archives, and any of these gzip- or
//! zstd-compressed. Layers are kept as the archive has them (uncompressed ones too, as
//! containerd does), so the archive's manifest can be kept and saving again reproduces it.
//!
//! Archives are untrusted input. Entry names and link targets may not leave the archive,
//! blobs named by a digest must hash to it, and every layer must match the diff ID its config
//! lists. An image is recorded only when all of its layers were verified, and no image of an
//! archive is recorded or tagged unless every image in it was: a bad archive leaves nothing
//! behind but unreferenced blobs and snapshots, which garbage collection removes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_types::{Digest, Reference};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::content::{ContentError, VerifiedBlob};
use crate::store::{chain_id, ImageRecord, ImageStore, LayerRecord, StoreError};
use crate::unpack::{Compression, UnpackError};

#[cfg(test)]
mod tests;

/// Why saving or loading images failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Docker's wording, extended with the OCI case and what to do.
    #[error(
        "invalid archive: does not contain a manifest.json (nor an OCI index.json); load an \
         archive written by `docker save`, `berth save` or `skopeo copy`"
    )]
    NoManifest,

    #[error("{path}: not an OCI image layout (no oci-layout file); name the directory that holds oci-layout and index.json")]
    NotALayout { path: PathBuf },

    /// An entry name, link target or manifest path that would leave the archive.
    #[error(
        "archive entry {name:?}: {reason}; the archive is damaged or crafted, refusing to load it"
    )]
    UnsafePath { name: String, reason: &'static str },

    #[error("{file}: {message}")]
    Malformed { file: String, message: String },

    #[error(
        "{what}: {path} is not in the archive; the archive is incomplete, save the image again"
    )]
    Missing { what: String, path: String },

    #[error(
        "{entry} hashes to {actual}, not to its digest {expected}; the archive is damaged, \
         save the image again"
    )]
    DigestMismatch {
        entry: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("{entry} is not the {expected} bytes its descriptor says; the archive is damaged, save the image again")]
    SizeMismatch { entry: String, expected: u64 },

    #[error(
        "image {image}: layer {index} ({path}) has diff ID {actual}, but the image config \
         lists {expected}; the archive is damaged or its layers are out of order"
    )]
    DiffIdMismatch {
        image: String,
        index: usize,
        path: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("image {image}: the config lists {diff_ids} layers, the manifest {layers}; the archive is damaged")]
    LayerCount {
        image: String,
        diff_ids: usize,
        layers: usize,
    },

    /// Docker's wording.
    #[error("cannot load {os} image on linux")]
    WrongOs { os: String },

    #[error("image index {index} has no image for {platform}; save the image for this platform")]
    NoPlatform { index: Digest, platform: String },

    #[error("{path} exists and is not an empty directory; save into a new directory")]
    OutputNotEmpty { path: PathBuf },

    #[error("image store")]
    Store(#[from] StoreError),

    #[error("content store")]
    Content(#[from] ContentError),

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Io { context, source }
}

/// The largest manifest, index or config read into memory (as the store's limit).
use crate::store::MAX_JSON;
/// Entries up to this size wait in memory until something refers to them.
const SMALL_FILE: u64 = 1 << 20;
/// How much of an archive may wait in memory in all; later small files go to the store.
const MEMORY_BUDGET: u64 = 32 << 20;
/// Index entries followed when matching manifests: real archives have a handful; this
/// bounds the work a crafted index that lists its children over and over can cause.
const MAX_INDEX_ENTRIES: usize = 1024;
/// Symlinks followed to resolve one name: skopeo and Docker write one, loops are refused.
const MAX_LINK_HOPS: usize = 8;

const MANIFEST_JSON: &str = "manifest.json";
const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";
const REPOSITORIES: &str = "repositories";
/// Read into memory whatever their size (up to [`MAX_JSON`]): the loader needs them.
const METADATA_FILES: [&str; 4] = [MANIFEST_JSON, INDEX_JSON, OCI_LAYOUT, REPOSITORIES];
const LAYOUT_VERSION: &str = "1.0.0";

const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The tag, in the OCI spec's annotation; Docker and containerd write only the tag here.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The full reference, as Docker and containerd write it beside the tag.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

// ---- The formats ----------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

/// An OCI image manifest or a Docker schema 2 manifest (the same shape).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// An OCI image index or a Docker manifest list.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// One image in Docker's `manifest.json`. Docker writes `null` for an empty list.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Option<Vec<String>>,
}

/// What loading needs of an image config.
#[derive(Debug, Deserialize)]
struct ConfigView {
    #[serde(default)]
    os: Option<String>,
    rootfs: RootFsView,
}

#[derive(Debug, Deserialize)]
struct RootFsView {
    #[serde(default)]
    diff_ids: Option<Vec<Digest>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutFile {
    image_layout_version: String,
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8], file: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ArchiveError::Malformed {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

fn to_json(value: &impl Serialize, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| io_err(format!("encoding {what}"))(io::Error::other(e)))
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256(Sha256::digest(bytes).into())
}

/// `name:tag` with Docker's short name (`busybox:latest`), as `RepoTags` has it.
fn familiar_tag(reference: &Reference) -> Option<String> {
    Some(format!(
        "{}:{}",
        reference.familiar_name(),
        reference.tag()?
    ))
}

/// `reference` as the `name:tag` an archive names images by: `latest` added to a bare name,
/// a digest dropped; `None` for a digest-only reference, which names no tag.
fn name_and_tag(reference: &Reference) -> Option<Reference> {
    let reference = reference.clone().with_default_tag();
    format!("{}:{}", reference.name(), reference.tag()?)
        .parse()
        .ok()
}

/// The platform images are loaded for, in OCI's words.
fn host_platform() -> (&'static str, &'static str) {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", architecture)
}

fn platform_matches(platform: Option<&Platform>) -> bool {
    let (os, architecture) = host_platform();
    platform.is_none_or(|p| p.os == os && p.architecture == architecture)
}

/// Wrap `input` in the decompressor its first bytes call for.
fn decompressed<'a>(mut input: impl Read + 'a) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let compression = Compression::detect(&head[..got]);
    let stream = io::Cursor::new(head[..got].to_vec()).chain(input);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(
            stream,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
    };
    Ok((reader, compression))
}

/// `rel` taken from directory `base` inside the archive, as a clean archive path. `..` may
/// climb only as far as the archive's root; absolute names are refused (Docker, skopeo and
/// berth never write them).
fn archive_path(base: &str, rel: &str, name: &str) -> Result<String> {
    let unsafe_path = |reason| ArchiveError::UnsafePath {
        name: name.to_owned(),
        reason,
    };
    if rel.starts_with('/') {
        return Err(unsafe_path("absolute paths are not allowed"));
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(unsafe_path("`..` leads outside the archive"));
                }
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// The directory of an archive path (`""` at the root).
fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `blobs/sha256/<hex>`: where layouts keep blobs.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm(), digest.hex())
}

/// The digest an archive path claims by its name, if it is `blobs/sha256/<hex>`.
fn claimed_digest(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .and_then(|hex| format!("sha256:{hex}").parse().ok())
}

/// Map the content store's verdict on a blob to one that names the archive entry.
fn blob_error(entry: &str) -> impl FnOnce(ContentError) -> ArchiveError + '_ {
    move |e| match e {
        ContentError::DigestMismatch { expected, actual } => ArchiveError::DigestMismatch {
            entry: entry.to_owned(),
            expected,
            actual,
        },
        ContentError::SizeMismatch { expected, .. }
        | ContentError::SizeExceeded { expected, .. } => ArchiveError::SizeMismatch {
            entry: entry.to_owned(),
            expected,
        },
        other => ArchiveError::Content(other),
    }
}

// ---- Saving -----------------------------------------------------------------------------

/// Write `images` with their tags as a `docker save` archive to `out`. The archive is an
/// OCI image layout too, so `skopeo … oci-archive:FILE:TAG` reads it. Tags without a tag
/// part get `latest`; digest-only references are left out, as `docker save` does.
pub fn save_docker_archive(
    store: &ImageStore,
    images: &[(ImageRecord, Vec<Reference>)],
    out: impl Write,
) -> Result<()> {
    let _span = tracing::info_span!("save", format = "docker-archive").entered();
    let plan = SavePlan::new(store, images)?;
    let mut sink = TarSink::new(out).map_err(io_err("writing the archive"))?;
    plan.write(store, &mut sink, true)?;
    sink.finish().map_err(io_err("writing the archive"))
}

/// Write `images` with their tags as an OCI image layout in `out_dir`, which must not exist
/// or be empty. `index.json` is written last, so a layout cut short has none.
pub fn save_oci_layout(
    store: &ImageStore,
    images: &[(ImageRecord, Vec<Reference>)],
    out_dir: &Path,
) -> Result<()> {
    let _span = tracing::info_span!("save", format = "oci-layout").entered();
    let plan = SavePlan::new(store, images)?;
    let mut sink = DirSink::create(out_dir)?;
    plan.write(store, &mut sink, false)?;
    sink.finish()
        .map_err(io_err(format!("writing {}", out_dir.display())))
}

/// One image as it will be written.
struct SavedImage {
    id: Digest,
    manifest: Descriptor,
    layers: Vec<Digest>,
    /// Docker's `repositories` file names an image by its top layer's diff ID.
    top_diff_id: Option<Digest>,
    tags: Vec<Reference>,
}

/// What an archive or layout will hold: its images, and every blob once.
struct SavePlan {
    images: Vec<SavedImage>,
    blobs: Vec<(Digest, u64)>,
}

impl SavePlan {
    fn new(store: &ImageStore, images: &[(ImageRecord, Vec<Reference>)]) -> Result<SavePlan> {
        let mut plan = SavePlan {
            images: Vec::new(),
            blobs: Vec::new(),
        };
        let mut seen_blobs = std::collections::HashSet::new();
        for (record, references) in images {
            // The same image named twice is written once, with the tags of both.
            let known = plan.images.iter().position(|i| i.id == record.id);
            let mut tags =
                known.map_or_else(Vec::new, |i| std::mem::take(&mut plan.images[i].tags));
            for tag in references.iter().filter_map(name_and_tag) {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            if let Some(i) = known {
                plan.images[i].tags = tags;
                continue;
            }
            let manifest_bytes = store.content.read_all(&record.manifest, MAX_JSON)?;
            let manifest: Manifest =
                parse_json(&manifest_bytes, &format!("manifest {}", record.manifest))?;
            let layers: Vec<Digest> = record.layers.iter().map(|l| l.digest.clone()).collect();
            let stored: Vec<&Digest> = manifest.layers.iter().map(|d| &d.digest).collect();
            if manifest.config.digest != record.id || stored != layers.iter().collect::<Vec<_>>() {
                return Err(StoreError::Corrupt {
                    image: record.id.to_string(),
                    reason: format!(
                        "its manifest {} names other blobs than its record; remove the image and pull or load it again",
                        record.manifest
                    ),
                }
                .into());
            }
            let mut blobs = vec![record.id.clone()];
            blobs.extend(layers.iter().cloned());
            blobs.push(record.manifest.clone());
            for digest in blobs {
                if seen_blobs.insert(digest.clone()) {
                    let size = store.content.size(&digest)?;
                    plan.blobs.push((digest, size));
                }
            }
            plan.images.push(SavedImage {
                id: record.id.clone(),
                manifest: Descriptor {
                    media_type: Some(
                        manifest
                            .media_type
                            .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_owned()),
                    ),
                    digest: record.manifest.clone(),
                    size: manifest_bytes.len() as u64,
                    annotations: BTreeMap::new(),
                    platform: None,
                },
                layers,
                top_diff_id: record.layers.last().map(|l| l.diff_id.clone()),
                tags,
            });
        }
        Ok(plan)
    }

    /// `index.json`: one entry per tag, named as Docker names them (the tag in the OCI
    /// annotation, the full reference in containerd's), or one unnamed entry.
    fn index(&self) -> Index {
        let mut manifests = Vec::new();
        for image in &self.images {
            if image.tags.is_empty() {
                manifests.push(image.manifest.clone());
            }
            for tag in &image.tags {
                let mut descriptor = image.manifest.clone();
                descriptor
                    .annotations
                    .insert(ANNOTATION_IMAGE_NAME.to_owned(), tag.to_string());
                descriptor.annotations.insert(
                    ANNOTATION_REF_NAME.to_owned(),
                    tag.tag().unwrap_or_default().to_owned(),
                );
                manifests.push(descriptor);
            }
        }
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.to_owned()),
            manifests,
        }
    }

    /// Docker's `manifest.json`.
    fn docker_manifest(&self) -> Vec<DockerManifestItem> {
        self.images
            .iter()
            .map(|image| DockerManifestItem {
                config: blob_path(&image.id),
                repo_tags: Some(image.tags.iter().filter_map(familiar_tag).collect()),
                layers: Some(image.layers.iter().map(blob_path).collect()),
            })
            .collect()
    }

    /// Docker's `repositories`: familiar name → tag → top layer. Only pre-1.10 loaders read
    /// it; Docker still writes it.
    fn repositories(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for image in &self.images {
            let Some(top) = &image.top_diff_id else {
                continue;
            };
            for tag in &image.tags {
                repositories
                    .entry(tag.familiar_name().to_owned())
                    .or_default()
                    .insert(
                        tag.tag().unwrap_or_default().to_owned(),
                        top.hex().to_owned(),
                    );
            }
        }
        repositories
    }

    fn write(&self, store: &ImageStore, sink: &mut dyn LayoutSink, docker: bool) -> Result<()> {
        for (digest, size) in &self.blobs {
            let file = store.content.open_blob(digest)?;
            let mut blob = CheckedBlob {
                file: file.take(*size),
                hasher: Sha256::new(),
                expected: digest,
                size: *size,
                read: 0,
            };
            sink.blob(digest, *size, &mut blob)
                .map_err(io_err(format!("writing blob {digest}")))?;
        }
        let files = [
            (
                OCI_LAYOUT,
                format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#).into_bytes(),
                true,
            ),
            (
                MANIFEST_JSON,
                to_json(&self.docker_manifest(), MANIFEST_JSON)?,
                docker,
            ),
            (
                REPOSITORIES,
                to_json(&self.repositories(), REPOSITORIES)?,
                docker,
            ),
            (INDEX_JSON, to_json(&self.index(), INDEX_JSON)?, true),
        ];
        for (name, bytes, wanted) in files {
            if wanted {
                sink.file(name, &bytes)
                    .map_err(io_err(format!("writing {name}")))?;
            }
        }
        Ok(())
    }
}

/// A stored blob read for saving, checked as it goes: disk damage fails the save instead of
/// reaching the archive.
struct CheckedBlob<'a> {
    file: io::Take<File>,
    hasher: Sha256,
    expected: &'a Digest,
    size: u64,
    read: u64,
}

impl Read for CheckedBlob<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if self.read != self.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} ended after {} of {} bytes",
                        self.expected, self.read, self.size
                    ),
                ));
            }
            let actual = Digest::from_sha256(self.hasher.clone().finalize().into());
            if actual != *self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is damaged (its content hashes to {actual}); delete it and pull the image again",
                        self.expected
                    ),
                ));
            }
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Where a layout is written: a tar stream or a directory.
trait LayoutSink {
    /// `blobs/sha256/<hex>`, exactly `size` bytes read from `content`.
    fn blob(&mut self, digest: &Digest, size: u64, content: &mut dyn Read) -> io::Result<()>;
    /// A file at the layout's top.
    fn file(&mut self, name: &str, content: &[u8]) -> io::Result<()>;
}

struct TarSink<W: Write> {
    tar: tar::Builder<W>,
}

/// A header that carries nothing of this host: owner root, time 0, as Docker writes them.
fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

impl<W: Write> TarSink<W> {
    fn new(out: W) -> io::Result<TarSink<W>> {
        let mut tar = tar::Builder::new(out);
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut header, dir, io::empty())?;
        }
        Ok(TarSink { tar })
    }

    fn finish(self) -> io::Result<()> {
        self.tar.into_inner()?.flush()
    }
}

impl<W: Write> LayoutSink for TarSink<W> {
    fn blob(&mut self, digest: &Digest, size: u64, content: &mut dyn Read) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, size);
        self.tar
            .append_data(&mut header, blob_path(digest), content)
    }

    fn file(&mut self, name: &str, content: &[u8]) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, content.len() as u64);
        self.tar.append_data(&mut header, name, content)
    }
}

struct DirSink {
    dir: PathBuf,
    blobs: PathBuf,
}

impl DirSink {
    fn create(dir: &Path) -> Result<DirSink> {
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ArchiveError::OutputNotEmpty {
                        path: dir.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(ArchiveError::OutputNotEmpty {
                    path: dir.to_owned(),
                })
            }
            Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
        }
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(format!("creating {}", blobs.display())))?;
        Ok(DirSink {
            dir: dir.to_owned(),
            blobs,
        })
    }

    /// Write `path` through a temporary name, so it exists only complete.
    fn write_file(path: &Path, content: &mut dyn Read) -> io::Result<()> {
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".partial");
        let tmp = path.with_file_name(tmp_name);
        let mut file = File::create(&tmp)?;
        io::copy(content, &mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    }

    fn finish(self) -> io::Result<()> {
        File::open(&self.blobs)?.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }
}

impl LayoutSink for DirSink {
    fn blob(&mut self, digest: &Digest, _size: u64, content: &mut dyn Read) -> io::Result<()> {
        DirSink::write_file(&self.blobs.join(digest.hex()), content)
    }

    fn file(&mut self, name: &str, mut content: &[u8]) -> io::Result<()> {
        DirSink::write_file(&self.dir.join(name), &mut content)
    }
}

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
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_JSON + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_JSON} bytes"),
        ));
    }
    Ok(bytes)
}

/// Where an archive keeps its blobs, for the part of loading that follows an OCI index.
trait BlobSource {
    /// The blob `digest` of `size` bytes, checked and in the content store. `what` names
    /// what refers to it, for the error when it is missing.
    fn blob(&mut self, digest: &Digest, size: u64, what: &str) -> Result<VerifiedBlob>;
    /// A manifest or index, checked against `digest`.
    fn document(&mut self, digest: &Digest, what: &str) -> Result<Vec<u8>>;
}

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
struct Spool<'a> {
    store: &'a ImageStore,
    files: HashMap<String, SpooledFile>,
    /// Symbolic and hard links, to the clean archive path they point to.
    links: HashMap<String, String>,
}

impl<'a> Spool<'a> {
    fn read(store: &'a ImageStore, input: impl Read) -> Result<Spool<'a>> {
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
    fn small_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
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
    fn ingest(&mut self, path: &str, what: &str) -> Result<VerifiedBlob> {
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

/// The blobs of an OCI image layout directory.
struct LayoutDir<'a> {
    store: &'a ImageStore,
    dir: &'a Path,
}

impl LayoutDir<'_> {
    fn open(&self, digest: &Digest, what: &str) -> Result<(File, PathBuf)> {
        let path = self.dir.join(blob_path(digest));
        match File::open(&path) {
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
        let (_, path) = self.open(digest, what)?;
        let bytes = read_bounded(&path).map_err(io_err(format!("reading {}", path.display())))?;
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
