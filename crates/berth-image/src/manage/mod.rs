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

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_types::{Digest, Reference, ReferenceError};
use tracing::warn;

use crate::store::{ImageRecord, ImageStore, StoreError};

mod delete;
mod gc;
mod list;

pub use delete::DeleteResponse;
pub use gc::{GcLease, GcReport, PruneReport};
pub use list::{DiskUsage, HistoryItem, ImageInspect, ImageMetadata, ImageSummary, RootFs};

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

/// A container in the store and the image it uses.
struct ContainerUse {
    id: String,
    image: Digest,
    running: bool,
}

/// Docker's `stringid.TruncateID`: no algorithm prefix, at most 12 characters.
fn truncate_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    id.get(..12).unwrap_or(id)
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

impl ImageStore {
    fn resolve_image(&self, name: &str) -> Result<ImageRecord> {
        self.resolve(name).map_err(|e| match e {
            StoreError::ImageNotFound(_) => ManageError::ImageNotFound(not_found_name(name)),
            e => e.into(),
        })
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
}

#[cfg(test)]
mod tests;
