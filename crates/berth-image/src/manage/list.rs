//! Reading images the way `docker images`, `docker image inspect`, `docker history` and
//! `docker system df` show them, with what they rest on: image configs, layer sizes
//! (measured once, kept in `metadata/layer-sizes`) and parent records.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_types::{Digest, Reference};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::debug;

use super::{corrupt, io_err, ManageError, Result};
use crate::store::{ImageStore, StoreError};

/// The largest image config read into memory (as the store itself allows).
const MAX_CONFIG: u64 = 16 << 20;

/// One image in `GET /images/json` (`docker images`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// Containers using the image, stopped or running.
    pub containers: i64,
    /// Unix seconds, from the image config.
    pub created: i64,
    #[serde(rename = "Id")]
    pub id: Digest,
    pub labels: BTreeMap<String, String>,
    /// Empty unless the image was committed from another one.
    #[serde(rename = "ParentId")]
    pub parent_id: String,
    pub repo_digests: Vec<String>,
    /// Familiar form (`busybox:latest`); empty for a dangling image.
    pub repo_tags: Vec<String>,
    /// Uncompressed size of the layers this image shares with at least one other image.
    pub shared_size: i64,
    /// Uncompressed size of all the image's layers.
    pub size: i64,
}

/// `GET /images/{name}/json` (`docker image inspect`), in the shape of API 1.51 and older:
/// `Parent`, `Comment` and `Author` are always present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    #[serde(rename = "Id")]
    pub id: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    /// RFC 3339 with nanoseconds, trailing zeros dropped (Go's `RFC3339Nano`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub created: String,
    pub author: String,
    /// The image config's `config` object as stored, so Docker's own fields (Healthcheck,
    /// OnBuild, Shell) that the OCI config lacks survive.
    pub config: Map<String, Value>,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    pub size: i64,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    pub metadata: ImageMetadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    /// Diff IDs, bottom layer first.
    pub layers: Vec<String>,
}

/// Daemon-local facts about an image. berth does not record tag times yet, and Docker omits
/// `LastTagTime` when it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_tag_time: Option<String>,
}

/// One line of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryItem {
    pub comment: String,
    /// Unix seconds.
    pub created: i64,
    pub created_by: String,
    /// The image this step produced, or `<missing>` where no local image is known (Docker
    /// walks the parent chain, one history entry per image).
    #[serde(rename = "Id")]
    pub id: String,
    /// Uncompressed size of the step's layer; 0 for steps that only changed the config.
    pub size: i64,
    /// `null`, as in Docker, when no tag names the image.
    pub tags: Option<Vec<String>>,
}

/// The image part of `GET /system/df` (Docker's `ImagesDiskUsage`); Docker omits zeros and
/// an empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiskUsage {
    /// Images with at least one container.
    #[serde(skip_serializing_if = "is_zero")]
    pub active_count: i64,
    /// The summaries the counts come from; the API sends them only when asked (`-v`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ImageSummary>,
    /// Sum of `Size - SharedSize` of the images no container uses.
    #[serde(skip_serializing_if = "is_zero")]
    pub reclaimable: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total_count: i64,
    /// Uncompressed size of every layer of every image, each layer counted once.
    #[serde(skip_serializing_if = "is_zero")]
    pub total_size: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The parts of an image config that management reads. Parsed here rather than through
/// `oci_spec`'s type so that Docker's fields the OCI config lacks (`comment`; Healthcheck
/// and friends inside `config`) reach inspect unchanged.
#[derive(Debug, Default, Deserialize)]
struct ConfigBlob {
    created: Option<String>,
    author: Option<String>,
    /// Docker writes the commit or import message here as well as in the history.
    comment: Option<String>,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    variant: Option<String>,
    #[serde(rename = "os.version")]
    os_version: Option<String>,
    config: Option<Map<String, Value>>,
    rootfs: Option<RootFsBlob>,
    history: Option<Vec<HistoryBlob>>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFsBlob {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct HistoryBlob {
    created: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

impl ConfigBlob {
    fn created(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        parse_time(self.created.as_deref())
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let Some(Value::Object(labels)) = self.config.as_ref().and_then(|c| c.get("Labels")) else {
            return BTreeMap::new();
        };
        labels
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect()
    }
}

fn parse_time(text: Option<&str>) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text?).ok()
}

fn unix_seconds(text: Option<&str>) -> i64 {
    parse_time(text).map_or(0, |t| t.timestamp())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Bytes of a snapshot as Docker counts a layer's size: the apparent size of everything
/// but directories, each hard-linked file once.
fn apparent_size(root: &Path) -> io::Result<u64> {
    fs::symlink_metadata(root)?;
    let mut total = 0u64;
    let mut seen = HashSet::new();
    // Iterative: image trees can be deeper than a thread's stack would like.
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            if meta.len() == 0 || (meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino()))) {
                continue;
            }
            total += meta.len();
        }
    }
    Ok(total)
}

impl ImageStore {
    /// Record that `child` was made from `parent` (`docker commit`, a build step), which is
    /// what makes `parent` undeletable while `child` exists and lets `docker history` name
    /// the images below `child`. Pulled and loaded images have no parent.
    pub fn set_parent(&self, child: &Digest, parent: &Digest) -> Result<()> {
        self.image(child)?;
        self.image(parent)?;
        // A cycle would make history and parent pruning loop.
        let mut ancestor = Some(parent.clone());
        while let Some(a) = ancestor {
            if a == *child {
                return Err(ManageError::Store(StoreError::Invalid {
                    context: format!("making {parent} the parent of {child}"),
                    message: "an image cannot descend from itself".into(),
                }));
            }
            ancestor = self.parent(&a)?;
        }
        crate::store::write_atomic(&self.parent_path(child), parent.to_string().as_bytes())
            .map_err(io_err(format!("recording the parent of {child}")))
    }

    /// The image `id` was made from, if it was committed from one.
    pub fn parent(&self, id: &Digest) -> Result<Option<Digest>> {
        match fs::read_to_string(self.parent_path(id)) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| corrupt(id, format!("parent record: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading the parent of {id}"))(e)),
        }
    }

    /// `docker images` (`all`: `docker images -a`, which also lists untagged images that
    /// have children), newest first. Every field is computed, including `SharedSize` and
    /// `Containers`, which Docker fills only when asked.
    pub fn summaries(&self, all: bool) -> Result<Vec<ImageSummary>> {
        let images = self.list()?;
        let references = self.references_by_image()?;
        let parents = self.parents()?;
        let containers = self.container_uses()?;
        let mut layer_users: HashMap<&Digest, usize> = HashMap::new();
        for image in &images {
            for layer in &image.layers {
                *layer_users.entry(&layer.chain_id).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for image in &images {
            let refs = references
                .get(&image.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let has_children = parents.values().any(|p| *p == image.id);
            if refs.is_empty() && has_children && !all {
                continue;
            }
            let config = self.config_blob(&image.id)?;
            let (mut size, mut shared) = (0, 0);
            for layer in &image.layers {
                let layer_size = self.layer_size(&layer.chain_id)?;
                size += layer_size;
                if layer_users.get(&layer.chain_id).copied().unwrap_or(0) > 1 {
                    shared += layer_size;
                }
            }
            out.push(ImageSummary {
                containers: to_i64(
                    containers.iter().filter(|c| c.image == image.id).count() as u64,
                ),
                created: config.created().map_or(0, |t| t.timestamp()),
                id: image.id.clone(),
                labels: config.labels(),
                parent_id: parents
                    .get(&image.id)
                    .map(Digest::to_string)
                    .unwrap_or_default(),
                repo_digests: refs
                    .iter()
                    .filter(|r| r.digest().is_some())
                    .map(Reference::familiar_string)
                    .collect(),
                repo_tags: refs
                    .iter()
                    .filter(|r| r.tag().is_some())
                    .map(Reference::familiar_string)
                    .collect(),
                shared_size: to_i64(shared),
                size: to_i64(size),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `docker image inspect`.
    pub fn inspect(&self, name: &str) -> Result<ImageInspect> {
        let image = self.resolve_image(name)?;
        let config = self.config_blob(&image.id)?;
        let refs = self.references(&image.id)?;
        let mut size = 0;
        for layer in &image.layers {
            size += self.layer_size(&layer.chain_id)?;
        }
        let history = config.history.as_deref().unwrap_or_default();
        let comment = config
            .comment
            .clone()
            .filter(|c| !c.is_empty())
            .or_else(|| history.last().and_then(|h| h.comment.clone()))
            .unwrap_or_default();
        let rootfs = config.rootfs.unwrap_or_default();
        Ok(ImageInspect {
            repo_tags: refs
                .iter()
                .filter(|r| r.tag().is_some())
                .map(Reference::familiar_string)
                .collect(),
            repo_digests: refs
                .iter()
                .filter(|r| r.tag().is_none() && r.digest().is_some())
                .map(Reference::familiar_string)
                .collect(),
            parent: self
                .parent(&image.id)?
                .map(|p| p.to_string())
                .unwrap_or_default(),
            comment,
            created: parse_time(config.created.as_deref())
                .map(|t| berth_types::time::rfc3339_nano(&t))
                .unwrap_or_default(),
            author: config.author.unwrap_or_default(),
            config: config.config.unwrap_or_default(),
            architecture: config.architecture,
            variant: config.variant,
            os: config.os,
            os_version: config.os_version,
            size: to_i64(size),
            root_fs: RootFs {
                kind: rootfs.kind,
                layers: rootfs.diff_ids,
            },
            metadata: ImageMetadata::default(),
            id: image.id,
        })
    }

    /// `docker history`: one entry per history step of the config, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        let image = self.resolve_image(name)?;
        let config = self.config_blob(&image.id)?;
        let mut items = Vec::new();
        let mut layers = image.layers.iter();
        for step in config.history.as_deref().unwrap_or_default() {
            let size = if step.empty_layer {
                0
            } else {
                let layer = layers.next().ok_or_else(|| {
                    corrupt(
                        &image.id,
                        "too many non-empty layers in History section".into(),
                    )
                })?;
                self.layer_size(&layer.chain_id)?
            };
            items.push(HistoryItem {
                comment: step.comment.clone().unwrap_or_default(),
                created: unix_seconds(step.created.as_deref()),
                created_by: step.created_by.clone().unwrap_or_default(),
                id: "<missing>".into(),
                size: to_i64(size),
                tags: None,
            });
        }
        items.reverse();
        // Docker names the steps by walking the parent chain: the newest step is the image
        // itself, the one below it its parent, and so on while parents are known.
        let mut current = Some(image.id);
        let mut seen = HashSet::new();
        for item in &mut items {
            let Some(id) = current.take().filter(|id| seen.insert(id.clone())) else {
                break;
            };
            let tags: Vec<String> = self
                .references(&id)?
                .iter()
                .filter(|r| r.tag().is_some())
                .map(Reference::familiar_string)
                .collect();
            item.tags = (!tags.is_empty()).then_some(tags);
            item.id = id.to_string();
            current = self.parent(&id)?.filter(|p| self.image(p).is_ok());
        }
        Ok(items)
    }

    /// The image line of `docker system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let items = self.summaries(false)?;
        let references = self.references_by_image()?;
        let parents = self.parents()?;
        // Every layer of every image but intermediate ones, whose layers their children
        // include anyway; each layer once.
        let mut chains = BTreeSet::new();
        for image in self.list()? {
            if references.get(&image.id).is_none_or(Vec::is_empty)
                && parents.values().any(|p| *p == image.id)
            {
                continue;
            }
            chains.extend(image.layers.into_iter().map(|l| l.chain_id));
        }
        let mut total_size = 0;
        for chain in &chains {
            total_size += self.layer_size(chain)?;
        }
        Ok(DiskUsage {
            active_count: to_i64(items.iter().filter(|i| i.containers > 0).count() as u64),
            reclaimable: items
                .iter()
                .filter(|i| i.containers == 0)
                .map(|i| i.size - i.shared_size)
                .sum(),
            total_count: to_i64(items.len() as u64),
            total_size: to_i64(total_size),
            items,
        })
    }

    pub(super) fn parent_path(&self, child: &Digest) -> PathBuf {
        self.root.join("metadata/parents").join(child.hex())
    }

    pub(super) fn layer_size_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("metadata/layer-sizes").join(chain.hex())
    }

    fn config_blob(&self, id: &Digest) -> Result<ConfigBlob> {
        let bytes = self
            .content
            .read_all(id, MAX_CONFIG)
            .map_err(StoreError::from)?;
        serde_json::from_slice(&bytes).map_err(|e| corrupt(id, format!("config: {e}")))
    }

    /// child → parent, for children whose record exists.
    pub(super) fn parents(&self) -> Result<HashMap<Digest, Digest>> {
        let dir = self.root.join("metadata/parents");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(io_err("listing parent records")(e)),
        };
        let mut out = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing parent records"))?;
            let Some(Ok(child)) = entry
                .file_name()
                .to_str()
                .map(|hex| format!("sha256:{hex}").parse::<Digest>())
            else {
                continue;
            };
            if !self.record_path(&child).exists() {
                continue;
            }
            if let Some(parent) = self.parent(&child)? {
                out.insert(child, parent);
            }
        }
        Ok(out)
    }

    /// A snapshot's uncompressed size, measured once and kept in `metadata/layer-sizes`.
    /// A missing snapshot (removed after a crash, rebuilt on the next mount) counts 0.
    pub(super) fn layer_size(&self, chain: &Digest) -> Result<u64> {
        let cache = self.layer_size_path(chain);
        if let Some(size) = fs::read_to_string(&cache)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Ok(size);
        }
        let size = match apparent_size(&self.snapshot_dir(chain)) {
            Ok(size) => size,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(format!("measuring snapshot {chain}"))(e)),
        };
        // Only a cache: a failed write costs a later walk, nothing else.
        if let Err(e) = crate::store::write_atomic(&cache, size.to_string().as_bytes()) {
            debug!(snapshot = %chain, error = %e, "could not cache the layer size");
        }
        Ok(size)
    }
}
