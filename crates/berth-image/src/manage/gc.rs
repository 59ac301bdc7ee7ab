//! Garbage collection and what guards it: [`GcLease`]s and `gc.lock`, mark and sweep of
//! blobs and snapshots ([`ImageStore::gc`]), retained records, and `docker image prune`
//! ([`ImageStore::prune`]).

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;

use berth_types::{Digest, Reference};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use tracing::{debug, warn};

use super::delete::{DeleteResponse, Deletion};
use super::{corrupt, io_err, remove_if_exists, ErrorKind, Result};
use crate::store::{ImageRecord, ImageStore, StoreError};

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

/// Keeps garbage collection away while held: take one before writing the first blob or
/// snapshot of an image (pull, commit, import, load) and drop it once the image record is
/// written. Several leases coexist; collection waits for all of them.
#[derive(Debug)]
pub struct GcLease {
    _lock: Flock<File>,
}

/// Proof that the caller holds `gc.lock` exclusively and may sweep.
pub(super) struct SweepLock {
    _lock: Flock<File>,
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

impl ImageStore {
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

    pub(super) fn retained_path(&self, id: &Digest) -> PathBuf {
        self.root
            .join("metadata/retained")
            .join(format!("{}.json", id.hex()))
    }

    /// `gc.lock`, or `None` if a non-blocking request found it taken.
    pub(super) fn sweep_lock(&self, mode: FlockArg) -> Result<Option<SweepLock>> {
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
        self.mark_registry_roots(&mut reach)?;
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

    /// The registry server (`berth registry serve`, berth-registry) serves this content
    /// store too: every manifest and blob one of its repositories holds is kept. Its records
    /// are `registry/repositories/<name>` JSON files with `manifests` (digest → entry) and
    /// `blobs` (digests); one that cannot be read stops the collection rather than risk
    /// deleting what it names.
    fn mark_registry_roots(&self, reach: &mut Reachable) -> Result<()> {
        #[derive(serde::Deserialize)]
        struct RepositoryRoots {
            #[serde(default)]
            manifests: std::collections::BTreeMap<Digest, serde_json::Value>,
            #[serde(default)]
            blobs: Vec<Digest>,
        }
        let dir = self.root.join("registry/repositories");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
        };
        for entry in entries {
            let path = entry
                .map_err(io_err(format!("listing {}", dir.display())))?
                .path();
            let bytes =
                std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            let roots: RepositoryRoots =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    image: path.display().to_string(),
                    reason: format!(
                        "{e}; garbage collection stops rather than delete what this \
                             registry repository may hold"
                    ),
                })?;
            reach.blobs.extend(roots.manifests.into_keys());
            reach.blobs.extend(roots.blobs);
        }
        Ok(())
    }

    /// Remove what only `record` (just deleted) used; returns the removed snapshots' chain
    /// IDs, top layer first as Docker lists them, and the bytes freed.
    pub(super) fn sweep_image(&self, record: &ImageRecord) -> Result<(Vec<Digest>, u64)> {
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
}
