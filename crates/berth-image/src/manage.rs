//! Image management with Docker's semantics, as a library the daemon calls: `docker rmi`
//! ([`ImageStore::remove_image`]), `docker image prune` ([`ImageStore::prune`]), garbage
//! collection of blobs and snapshots ([`ImageStore::gc`]), `docker images`
//! ([`ImageStore::summaries`]), `docker image inspect` ([`ImageStore::inspect`]),
//! `docker history` ([`ImageStore::history`]) and the image line of `docker system df`
//! ([`ImageStore::disk_usage`]).
//!
//! The rules are those of moby's graph-driver image service (`daemon/images/image_delete.go`,
//! `image_prune.go`, `image_list.go`, `image_history.go`): hard conflicts (child images, a
//! running container) stop a delete even when forced, soft ones (other references, a stopped
//! container) only without force; untagging the last reference deletes the image; sizes are
//! the uncompressed size of the layers, as Docker reports them. The response types serialize
//! to the Engine API's JSON (PascalCase, Docker's field order); adapting them to older API
//! versions (`<none>:<none>` before 1.43, `Containers: -1` before 1.51) is the API layer's job.
//!
//! This layer cannot see processes: a container whose root filesystem is mounted counts as
//! running, an unmounted one as stopped (Docker unmounts a container's root when it stops).
//!
//! What this module adds under `<data-root>/metadata/`:
//!
//! ```text
//! parents/<child hex>        the image a committed image was made from (Docker's Parent)
//! retained/<id hex>.json     the record of an image force-deleted while a stopped container
//!                            uses it: keeps its blobs and snapshots until that container goes
//! layer-sizes/<chain hex>    a snapshot's uncompressed size, measured once (snapshots are
//!                            immutable, and walking a large one takes tens of milliseconds)
//! gc.lock                    flock: collection holds it exclusively, writers share it
//! ```
//!
//! Collection is mark and sweep: everything an image record, a retained record, a digest
//! reference or a container names is kept; other blobs and snapshots go. Content written
//! before the record that references it (a pull, a commit) is unreachable until that record
//! exists, so writers hold a [`GcLease`] meanwhile: [`ImageStore::gc`] waits for leases, and
//! [`ImageStore::remove_image`] leaves the sweeping to a later collection instead of waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_types::{Digest, Reference, ReferenceError};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::store::{ImageRecord, ImageStore, StoreError};

/// The largest image config read into memory (as the store itself allows).
const MAX_CONFIG: u64 = 16 << 20;

/// Which HTTP status the Engine API answers an error with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 400.
    Invalid,
    /// 500.
    Internal,
}

/// Why an image cannot be deleted, in Docker's words. Only [`can_be_forced`] conflicts
/// give way to `force`.
///
/// [`can_be_forced`]: DeleteConflict::can_be_forced
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteConflict {
    /// Another image was made from this one (its parent record names it).
    DependentChildren,
    /// A container with a mounted root filesystem uses the image.
    RunningContainer(String),
    /// Tags or digests still name the image; by ID, Docker deletes only an image with at
    /// most one tag (plus digests of that repository) unless forced.
    MultipleReferences,
    /// A container without a mounted root filesystem uses the image.
    StoppedContainer(String),
}

impl DeleteConflict {
    pub fn can_be_forced(&self) -> bool {
        matches!(
            self,
            DeleteConflict::MultipleReferences | DeleteConflict::StoppedContainer(_)
        )
    }

    fn is_container_use(&self) -> bool {
        matches!(
            self,
            DeleteConflict::RunningContainer(_) | DeleteConflict::StoppedContainer(_)
        )
    }

    fn force_text(&self) -> &'static str {
        if self.can_be_forced() {
            "must be forced"
        } else {
            "cannot be forced"
        }
    }
}

impl fmt::Display for DeleteConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeleteConflict::DependentChildren => f.write_str("image has dependent child images"),
            DeleteConflict::RunningContainer(c) => write!(
                f,
                "image is being used by running container {}",
                truncate_id(c)
            ),
            DeleteConflict::MultipleReferences => {
                f.write_str("image is referenced in multiple repositories")
            }
            DeleteConflict::StoppedContainer(c) => write!(
                f,
                "image is being used by stopped container {}",
                truncate_id(c)
            ),
        }
    }
}

/// Why an image management operation failed. The messages that reach Engine API clients
/// are Docker's, word for word, because clients match on them; [`ManageError::kind`] gives
/// the status code.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("No such image: {0}")]
    ImageNotFound(String),

    #[error(
        "conflict: unable to delete {} ({}) - {reason}",
        .image.short(),
        .reason.force_text()
    )]
    Conflict {
        image: Digest,
        reason: DeleteConflict,
    },

    /// Untagging would leave the image a container uses without a name.
    #[error(
        "conflict: unable to remove repository reference {reference:?} (must force) - \
         container {} is using its referenced image {}",
        truncate_id(.container),
        .image.short()
    )]
    ReferenceInUse {
        reference: String,
        container: String,
        image: Digest,
    },

    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ManageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManageError::ImageNotFound(_) | ManageError::Store(StoreError::ImageNotFound(_)) => {
                ErrorKind::NotFound
            }
            ManageError::Conflict { .. } | ManageError::ReferenceInUse { .. } => {
                ErrorKind::Conflict
            }
            ManageError::InvalidReference(_) => ErrorKind::Invalid,
            ManageError::Store(_) | ManageError::Io { .. } => ErrorKind::Internal,
        }
    }
}

type Result<T, E = ManageError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ManageError {
    let context = context.into();
    move |source| ManageError::Io { context, source }
}

fn corrupt(image: &Digest, reason: String) -> ManageError {
    ManageError::Store(StoreError::Corrupt {
        image: image.to_string(),
        reason,
    })
}

/// One line of `docker rmi`'s answer: `{"Untagged": "busybox:latest"}` or
/// `{"Deleted": "sha256:…"}` (an image ID, or the chain ID of a layer whose snapshot went).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DeleteResponse {
    Untagged(String),
    Deleted(Digest),
}

/// `docker image prune`'s answer. `SpaceReclaimed` counts what left the disk: snapshots
/// (their uncompressed size) and blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PruneReport {
    pub images_deleted: Vec<DeleteResponse>,
    pub space_reclaimed: u64,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    /// Chain IDs of the removed snapshots.
    pub snapshots: Vec<Digest>,
    /// Blob sizes plus the uncompressed size of the snapshots.
    pub freed_bytes: u64,
}

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

/// Keeps garbage collection away while held: take one before writing the first blob or
/// snapshot of an image (pull, commit, import, load) and drop it once the image record is
/// written. Several leases coexist; collection waits for all of them.
#[derive(Debug)]
pub struct GcLease {
    _lock: Flock<File>,
}

/// Proof that the caller holds `gc.lock` exclusively and may sweep.
struct SweepLock {
    _lock: Flock<File>,
}

/// A container in the store and the image it uses.
struct ContainerUse {
    id: String,
    image: Digest,
    running: bool,
}

/// Which soft conflicts to look for; hard ones are always checked.
#[derive(Clone, Copy)]
struct SoftChecks {
    references: bool,
    stopped_containers: bool,
}

impl SoftChecks {
    const ALL: SoftChecks = SoftChecks {
        references: true,
        stopped_containers: true,
    };
    const NONE: SoftChecks = SoftChecks {
        references: false,
        stopped_containers: false,
    };
}

/// What garbage collection must keep.
struct Reachable {
    blobs: HashSet<Digest>,
    snapshots: HashSet<Digest>,
    /// False when a container uses an image the store has no record of: its snapshots are
    /// unknown, so no snapshot may go.
    snapshots_known: bool,
}

impl Reachable {
    fn keeps_snapshot(&self, chain: &Digest) -> bool {
        !self.snapshots_known || self.snapshots.contains(chain)
    }

    fn mark(&mut self, record: &ImageRecord) {
        self.blobs.insert(record.id.clone());
        self.blobs.insert(record.manifest.clone());
        for layer in &record.layers {
            self.blobs.insert(layer.digest.clone());
            self.snapshots.insert(layer.chain_id.clone());
        }
    }
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

/// Go's `time.RFC3339Nano`, as Docker prints `Created`: nanoseconds without trailing zeros.
fn rfc3339_nano(t: &chrono::DateTime<chrono::FixedOffset>) -> String {
    let full = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let Some(dot) = full.find('.') else {
        return full;
    };
    let digits_end = full[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(full.len(), |i| dot + 1 + i);
    let fraction = full[dot + 1..digits_end].trim_end_matches('0');
    let zone = &full[digits_end..];
    if fraction.is_empty() {
        format!("{}{zone}", &full[..dot])
    } else {
        format!("{}.{fraction}{zone}", &full[..dot])
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Docker's `stringid.TruncateID`: no algorithm prefix, at most 12 characters.
fn truncate_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    id.get(..12).unwrap_or(id)
}

/// Whether `name` is (a prefix of) the image ID rather than a reference, as Docker decides
/// between untagging and deleting.
fn is_id_prefix(id: &Digest, name: &str) -> bool {
    id.to_string().starts_with(name) || id.hex().starts_with(name)
}

/// Docker's `isSingleReference`: at most one tag, and any digest references belong to the
/// same repository as it. False for no references.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut tag: Option<&Reference> = None;
    let mut digest_repos = HashSet::new();
    for r in refs {
        if r.digest().is_some() {
            digest_repos.insert(r.name());
        } else if tag.is_none() {
            tag = Some(r);
        } else {
            return false;
        }
    }
    let single = tag.unwrap_or(&refs[0]);
    digest_repos.len() == 1 && digest_repos.contains(single.name())
}

/// The name Docker's "No such image" shows: a reference with its default tag, an ID as given.
fn not_found_name(name: &str) -> String {
    if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return format!("sha256:{name}");
    }
    match name.parse::<Reference>() {
        Ok(r) => r.with_default_tag().familiar_string(),
        Err(_) => name.to_owned(),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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

/// One `docker rmi` (or one image of a prune) in progress: the records it answers with and
/// the bytes its sweeps freed.
struct Deletion<'a> {
    store: &'a ImageStore,
    /// Whether this deletion may remove the deleted images' blobs and snapshots now; without
    /// the sweep lock they stay for the next collection.
    sweep: bool,
    records: Vec<DeleteResponse>,
    freed: u64,
}

impl Deletion<'_> {
    /// Docker's `ImageDelete`.
    fn remove(&mut self, name: &str, force: bool, prune_parents: bool) -> Result<()> {
        let image = self.store.resolve_image(name)?;
        let id = image.id;
        let mut refs = self.store.references(&id)?;
        let mut untagged_last = false;
        if !is_id_prefix(&id, name) {
            // A reference: untag it. If it is the image's only name and a container uses
            // the image, the image would be left nameless under that container: Docker asks
            // for force.
            if !force && is_single_reference(&refs) {
                if let Some(c) = self
                    .store
                    .container_uses()?
                    .into_iter()
                    .find(|c| c.image == id)
                {
                    return Err(ManageError::ReferenceInUse {
                        reference: name.to_owned(),
                        container: c.id,
                        image: id,
                    });
                }
            }
            let removed = self.store.remove_reference(&name.parse()?)?;
            self.records
                .push(DeleteResponse::Untagged(removed.familiar_string()));
            refs = self.store.references(&id)?;
            // The last tag of a repository takes that repository's digest references along.
            if removed.digest().is_none()
                && !refs
                    .iter()
                    .any(|r| r.digest().is_none() && r.name() == removed.name())
            {
                let (same_repo, others): (Vec<_>, Vec<_>) = refs
                    .into_iter()
                    .partition(|r| r.digest().is_some() && r.name() == removed.name());
                for r in same_repo {
                    let r = self.store.remove_reference(&r)?;
                    self.records
                        .push(DeleteResponse::Untagged(r.familiar_string()));
                }
                refs = others;
            }
            if !refs.is_empty() {
                return Ok(());
            }
            untagged_last = true;
        } else if is_single_reference(&refs) {
            // By ID, an image with one name loses it along with the image, but only if
            // nothing else stops the delete: check before untagging.
            let soft = SoftChecks {
                references: false,
                stopped_containers: !force,
            };
            if let Some(reason) = self.store.delete_conflict(&id, soft)? {
                return Err(ManageError::Conflict { image: id, reason });
            }
            for r in refs {
                let r = self.store.remove_reference(&r)?;
                self.records
                    .push(DeleteResponse::Untagged(r.familiar_string()));
            }
        }
        self.delete(&id, force, prune_parents, untagged_last)
    }

    /// Docker's `imageDeleteHelper`: delete the image unless a conflict stops it, then (with
    /// `prune_parents`) its parent if nothing holds that. `quiet` ignores conflicts unless
    /// they would leave an unused dangling image behind.
    fn delete(&mut self, id: &Digest, force: bool, prune_parents: bool, quiet: bool) -> Result<()> {
        let soft = if force {
            SoftChecks::NONE
        } else {
            SoftChecks::ALL
        };
        if let Some(reason) = self.store.delete_conflict(id, soft)? {
            if quiet && (!self.store.is_dangling(id)? || reason.is_container_use()) {
                return Ok(());
            }
            return Err(ManageError::Conflict {
                image: id.clone(),
                reason,
            });
        }
        let parent = self.store.parent(id)?;
        for r in self.store.references(id)? {
            let r = self.store.remove_reference(&r)?;
            self.records
                .push(DeleteResponse::Untagged(r.familiar_string()));
        }
        let record = self.store.image(id)?;
        if self.store.container_uses()?.iter().any(|c| c.image == *id) {
            // Forced past a stopped container: it still stacks this image's snapshots (and
            // a commit of it needs the config), so collection keeps them until it goes.
            let bytes = serde_json::to_vec(&record)
                .map_err(|e| io_err("encoding a retained record")(io::Error::other(e)))?;
            crate::store::write_atomic(&self.store.retained_path(id), &bytes)
                .map_err(io_err(format!("retaining the record of {id}")))?;
        }
        fs::remove_file(self.store.record_path(id))
            .map_err(io_err(format!("deleting image {id}")))?;
        remove_if_exists(&self.store.parent_path(id))
            .map_err(io_err(format!("deleting the parent record of {id}")))?;
        debug!(image.digest = %id, "image deleted");
        self.records.push(DeleteResponse::Deleted(id.clone()));
        if self.sweep {
            let (snapshots, freed) = self.store.sweep_image(&record)?;
            self.freed += freed;
            self.records
                .extend(snapshots.into_iter().map(DeleteResponse::Deleted));
        }
        match parent {
            Some(parent) if prune_parents && self.store.image(&parent).is_ok() => {
                // Untagged ancestors go too, quietly: a conflict just ends the pruning.
                self.delete(&parent, false, true, true)
            }
            _ => Ok(()),
        }
    }
}

impl ImageStore {
    /// `docker rmi [-f] [--no-prune]`: untag `name` if it is a reference (deleting the
    /// image once no reference is left), or delete the image if `name` is its ID or an ID
    /// prefix. `prune_parents` (Docker's default; `--no-prune` clears it) deletes untagged
    /// parents that nothing else uses.
    ///
    /// Layers no other image or container uses are removed at once (reported as `Deleted`
    /// chain IDs), unless a [`GcLease`] is held; then the next [`ImageStore::gc`] removes them.
    pub fn remove_image(
        &self,
        name: &str,
        force: bool,
        prune_parents: bool,
    ) -> Result<Vec<DeleteResponse>> {
        let _span = tracing::debug_span!("remove_image", image.name = name, force).entered();
        let lock = self.sweep_lock(FlockArg::LockExclusiveNonblock)?;
        if lock.is_none() {
            debug!("a lease is held: unused layers stay for the next garbage collection");
        }
        let mut deletion = Deletion {
            store: self,
            sweep: lock.is_some(),
            records: Vec::new(),
            freed: 0,
        };
        deletion.remove(name, force, prune_parents)?;
        Ok(deletion.records)
    }

    /// `docker image prune` (`dangling_only`) or `docker image prune -a`: delete the
    /// untagged images no container or child image holds, or with `-a` every image no
    /// container uses; then collect garbage. Waits for [`GcLease`]s.
    ///
    /// One difference from Docker: with `-a`, Docker untags all but the last tag of an image
    /// a container uses (each tag is tried in turn); berth leaves such images alone.
    pub fn prune(&self, dangling_only: bool) -> Result<PruneReport> {
        let _span = tracing::debug_span!("prune_images", dangling_only).entered();
        let lock = self
            .sweep_lock(FlockArg::LockExclusive)?
            .ok_or_else(|| io_err("locking gc.lock")(io::Error::from(io::ErrorKind::WouldBlock)))?;
        let images = self.list()?;
        let references = self.references_by_image()?;
        let parents = self.parents()?;
        let has_children = |id: &Digest| parents.values().any(|p| p == id);
        let used: HashSet<Digest> = self
            .container_uses()?
            .into_iter()
            .map(|c| c.image)
            .collect();
        let mut report = PruneReport::default();
        let mut freed = 0;
        for image in &images {
            let id = &image.id;
            let refs = references.get(id).map(Vec::as_slice).unwrap_or_default();
            // Dangling mode starts from the heads (images without children); untagged
            // images with children are never pruned directly, their children prune them.
            if (dangling_only || refs.is_empty()) && has_children(id) {
                continue;
            }
            if !dangling_only && used.contains(id) {
                continue;
            }
            let names: Vec<String> = if refs.is_empty() {
                vec![id.hex().to_owned()]
            } else if !dangling_only || refs.iter().all(|r| r.tag().is_none()) {
                refs.iter().map(Reference::to_string).collect()
            } else {
                continue;
            };
            for name in names {
                let mut deletion = Deletion {
                    store: self,
                    sweep: true,
                    records: Vec::new(),
                    freed: 0,
                };
                match deletion.remove(&name, false, true) {
                    Ok(()) => {
                        report.images_deleted.append(&mut deletion.records);
                        freed += deletion.freed;
                    }
                    // In use, or already pruned as another image's parent.
                    Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {
                        debug!(image.name = name, error = %e, "not pruned");
                    }
                    Err(e) => warn!(image.name = name, error = %e, "failed to prune image"),
                }
            }
        }
        let gc = self.gc_locked(&lock)?;
        report.space_reclaimed = freed + gc.freed_bytes;
        Ok(report)
    }

    /// Garbage collection: delete every blob (manifest, config, layer) and snapshot that no
    /// image record, retained record, digest reference or container uses. Waits for
    /// [`GcLease`]s, so content of a pull or commit in progress is never taken.
    pub fn gc(&self) -> Result<GcReport> {
        let _span = tracing::debug_span!("gc").entered();
        let lock = self
            .sweep_lock(FlockArg::LockExclusive)?
            .ok_or_else(|| io_err("locking gc.lock")(io::Error::from(io::ErrorKind::WouldBlock)))?;
        self.gc_locked(&lock)
    }

    /// Hold off garbage collection while writing content that no record references yet.
    pub fn lease(&self) -> Result<GcLease> {
        let lock = self
            .sweep_lock(FlockArg::LockShared)?
            .ok_or_else(|| io_err("locking gc.lock")(io::Error::from(io::ErrorKind::WouldBlock)))?;
        Ok(GcLease { _lock: lock._lock })
    }

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
                .map(|t| rfc3339_nano(&t))
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

    fn parent_path(&self, child: &Digest) -> PathBuf {
        self.root.join("metadata/parents").join(child.hex())
    }

    fn retained_path(&self, id: &Digest) -> PathBuf {
        self.root
            .join("metadata/retained")
            .join(format!("{}.json", id.hex()))
    }

    fn layer_size_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("metadata/layer-sizes").join(chain.hex())
    }

    fn resolve_image(&self, name: &str) -> Result<ImageRecord> {
        self.resolve(name).map_err(|e| match e {
            StoreError::ImageNotFound(_) => ManageError::ImageNotFound(not_found_name(name)),
            e => e.into(),
        })
    }

    fn config_blob(&self, id: &Digest) -> Result<ConfigBlob> {
        let bytes = self
            .content
            .read_all(id, MAX_CONFIG)
            .map_err(StoreError::from)?;
        serde_json::from_slice(&bytes).map_err(|e| corrupt(id, format!("config: {e}")))
    }

    /// Every image's references (tags and digest references), each list sorted. Entries of
    /// tags.json that no longer parse are skipped with a warning rather than failing every
    /// listing.
    fn references_by_image(&self) -> Result<HashMap<Digest, Vec<Reference>>> {
        let mut out: HashMap<Digest, Vec<Reference>> = HashMap::new();
        for (name, id) in self.tags()? {
            match name.parse::<Reference>() {
                Ok(r) => out.entry(id).or_default().push(r),
                Err(e) => warn!(reference = name, error = %e, "skipping a bad entry in tags.json"),
            }
        }
        for refs in out.values_mut() {
            refs.sort();
        }
        Ok(out)
    }

    fn references(&self, id: &Digest) -> Result<Vec<Reference>> {
        Ok(self.references_by_image()?.remove(id).unwrap_or_default())
    }

    /// Remove a reference (with `:latest` added if it has neither tag nor digest); removing
    /// one that does not exist is not an error, as in Docker.
    fn remove_reference(&self, reference: &Reference) -> Result<Reference> {
        let reference = reference.clone().with_default_tag();
        self.untag(&reference)?;
        Ok(reference)
    }

    /// child → parent, for children whose record exists.
    fn parents(&self) -> Result<HashMap<Digest, Digest>> {
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

    fn is_dangling(&self, id: &Digest) -> Result<bool> {
        Ok(self.references(id)?.is_empty() && !self.parents()?.values().any(|p| p == id))
    }

    fn container_uses(&self) -> Result<Vec<ContainerUse>> {
        Ok(self
            .containers()?
            .into_iter()
            .map(|(id, image)| {
                let base = self.root.join("containers").join(&id);
                // A mounted root is another filesystem than the directory holding it.
                let running = match (fs::metadata(&base), fs::metadata(base.join("merged"))) {
                    (Ok(b), Ok(m)) => b.dev() != m.dev(),
                    _ => false,
                };
                ContainerUse { id, image, running }
            })
            .collect())
    }

    /// Docker's `checkImageDeleteConflict`, in its order: children, running containers,
    /// then the soft checks asked for.
    fn delete_conflict(&self, id: &Digest, soft: SoftChecks) -> Result<Option<DeleteConflict>> {
        if self.parents()?.values().any(|p| p == id) {
            return Ok(Some(DeleteConflict::DependentChildren));
        }
        let uses = self.container_uses()?;
        if let Some(c) = uses.iter().find(|c| c.image == *id && c.running) {
            return Ok(Some(DeleteConflict::RunningContainer(c.id.clone())));
        }
        if soft.references && !self.references(id)?.is_empty() {
            return Ok(Some(DeleteConflict::MultipleReferences));
        }
        if soft.stopped_containers {
            if let Some(c) = uses.iter().find(|c| c.image == *id && !c.running) {
                return Ok(Some(DeleteConflict::StoppedContainer(c.id.clone())));
            }
        }
        Ok(None)
    }

    /// `gc.lock`, or `None` if a non-blocking request found it taken.
    fn sweep_lock(&self, mode: FlockArg) -> Result<Option<SweepLock>> {
        let path = self.root.join("metadata/gc.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        loop {
            match Flock::lock(file, mode) {
                Ok(lock) => return Ok(Some(SweepLock { _lock: lock })),
                Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(io_err(format!("locking {}", path.display()))(errno.into()))
                }
            }
        }
    }

    fn retained(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        match fs::read(self.retained_path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(id, format!("retained record: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading the retained record of {id}"))(e)),
        }
    }

    /// Mark: everything an image record, a retained record of an image a container still
    /// uses, or a digest reference names.
    fn reachable(&self) -> Result<Reachable> {
        let mut reach = Reachable {
            blobs: HashSet::new(),
            snapshots: HashSet::new(),
            snapshots_known: true,
        };
        let mut ids = HashSet::new();
        for record in self.list()? {
            reach.mark(&record);
            ids.insert(record.id);
        }
        // A digest reference may name a manifest or index that no record lists.
        for name in self.tags()?.keys() {
            if let Ok(r) = name.parse::<Reference>() {
                if let Some(d) = r.digest() {
                    reach.blobs.insert(d.clone());
                }
            }
        }
        for (container, image) in self.containers()? {
            if ids.contains(&image) {
                continue;
            }
            match self.retained(&image)? {
                Some(record) => reach.mark(&record),
                None => {
                    warn!(container.id = container, image.digest = %image,
                        "container uses an image the store has no record of; keeping every snapshot");
                    reach.snapshots_known = false;
                }
            }
        }
        Ok(reach)
    }

    /// Remove what only `record` (just deleted) used; returns the removed snapshots' chain
    /// IDs, top layer first as Docker lists them, and the bytes freed.
    fn sweep_image(&self, record: &ImageRecord) -> Result<(Vec<Digest>, u64)> {
        let reach = self.reachable()?;
        let mut removed = Vec::new();
        let mut freed = 0;
        for layer in record.layers.iter().rev() {
            if !reach.keeps_snapshot(&layer.chain_id) && self.snapshot_dir(&layer.chain_id).exists()
            {
                freed += self.remove_snapshot(&layer.chain_id)?;
                removed.push(layer.chain_id.clone());
            }
        }
        let blobs: BTreeSet<&Digest> = [&record.id, &record.manifest]
            .into_iter()
            .chain(record.layers.iter().map(|l| &l.digest))
            .collect();
        for blob in blobs {
            if !reach.blobs.contains(blob) {
                freed += self.remove_blob(blob)?;
            }
        }
        Ok((removed, freed))
    }

    /// Sweep under the exclusive lock.
    fn gc_locked(&self, _lock: &SweepLock) -> Result<GcReport> {
        let mut report = GcReport::default();
        let snapshots = self.root.join("snapshots");
        // Leftovers of a removal a crash interrupted.
        for entry in fs::read_dir(&snapshots).map_err(io_err("listing snapshots"))? {
            let entry = entry.map_err(io_err("listing snapshots"))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".removing-")
            {
                fs::remove_dir_all(entry.path())
                    .map_err(io_err(format!("removing {}", entry.path().display())))?;
            }
        }
        // Retained records live only as long as a container uses their image.
        let in_use: HashSet<Digest> = self.containers()?.into_iter().map(|(_, i)| i).collect();
        for hex in self.metadata_names("retained", ".json")? {
            if let Ok(id) = format!("sha256:{hex}").parse::<Digest>() {
                if !in_use.contains(&id) {
                    remove_if_exists(&self.retained_path(&id))
                        .map_err(io_err("removing a retained record"))?;
                }
            }
        }
        let reach = self.reachable()?;
        for (digest, _) in self.content.list().map_err(StoreError::from)? {
            if !reach.blobs.contains(&digest) {
                report.freed_bytes += self.remove_blob(&digest)?;
                report.blobs.push(digest);
            }
        }
        for entry in fs::read_dir(&snapshots).map_err(io_err("listing snapshots"))? {
            let entry = entry.map_err(io_err("listing snapshots"))?;
            // Only finished snapshots have a digest for a name; `.unpacking-*` ones belong
            // to an unpack in progress.
            let Some(Ok(chain)) = entry
                .file_name()
                .to_str()
                .map(|hex| format!("sha256:{hex}").parse::<Digest>())
            else {
                continue;
            };
            if !reach.keeps_snapshot(&chain) {
                report.freed_bytes += self.remove_snapshot(&chain)?;
                report.snapshots.push(chain);
            }
        }
        report.snapshots.sort();
        // Metadata about what no longer exists.
        for hex in self.metadata_names("layer-sizes", "")? {
            if !snapshots.join(&hex).exists() {
                remove_if_exists(&self.root.join("metadata/layer-sizes").join(&hex))
                    .map_err(io_err("removing a layer size"))?;
            }
        }
        for hex in self.metadata_names("parents", "")? {
            if let Ok(child) = format!("sha256:{hex}").parse::<Digest>() {
                if !self.record_path(&child).exists() {
                    remove_if_exists(&self.parent_path(&child))
                        .map_err(io_err("removing a parent record"))?;
                }
            }
        }
        debug!(
            blobs = report.blobs.len(),
            snapshots = report.snapshots.len(),
            freed_bytes = report.freed_bytes,
            "garbage collected"
        );
        Ok(report)
    }

    /// Names in `metadata/<dir>` ending in `suffix`, without it; temporary files skipped.
    fn metadata_names(&self, dir: &str, suffix: &str) -> Result<Vec<String>> {
        let dir = self.root.join("metadata").join(dir);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(format!("listing {}", dir.display())))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Some(stem) = name.strip_suffix(suffix) {
                    if !stem.starts_with('.') {
                        names.push(stem.to_owned());
                    }
                }
            }
        }
        Ok(names)
    }

    fn remove_blob(&self, digest: &Digest) -> Result<u64> {
        let size = match self.content.size(digest) {
            Ok(size) => size,
            Err(crate::content::ContentError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(StoreError::from(e).into()),
        };
        match self.content.delete(digest) {
            Ok(()) => {}
            Err(crate::content::ContentError::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(StoreError::from(e).into()),
        }
        debug!(blob = %digest, size, "blob deleted");
        Ok(size)
    }

    /// Remove a snapshot; returns its size. It is renamed out of the way first, so a crash
    /// mid-removal cannot leave a half-empty directory under a chain ID that
    /// [`ImageStore::ensure_snapshot`] would take for complete.
    fn remove_snapshot(&self, chain: &Digest) -> Result<u64> {
        let size = self.layer_size(chain)?;
        let snapshots = self.root.join("snapshots");
        let trash = snapshots.join(format!(".removing-{}", chain.hex()));
        match fs::remove_dir_all(&trash) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err(format!("removing {}", trash.display()))(e))
            }
            _ => {}
        }
        match fs::rename(self.snapshot_dir(chain), &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(format!("removing snapshot {chain}"))(e)),
        }
        File::open(&snapshots)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing the snapshots directory"))?;
        fs::remove_dir_all(&trash).map_err(io_err(format!("removing snapshot {chain}")))?;
        remove_if_exists(&self.layer_size_path(chain)).map_err(io_err("removing a layer size"))?;
        debug!(snapshot = %chain, size, "snapshot removed");
        Ok(size)
    }

    /// A snapshot's uncompressed size, measured once and kept in `metadata/layer-sizes`.
    /// A missing snapshot (removed after a crash, rebuilt on the next mount) counts 0.
    fn layer_size(&self, chain: &Digest) -> Result<u64> {
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

#[cfg(test)]
mod tests;
