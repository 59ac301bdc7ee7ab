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

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use berth_types::{Digest, Reference};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::content::ContentError;
use crate::store::StoreError;

mod load;
mod save;
mod spool;
#[cfg(test)]
mod tests;

pub use load::{load_docker_archive, load_oci_layout};
pub use save::{save_docker_archive, save_oci_layout};

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
