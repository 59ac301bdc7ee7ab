//! `docker rmi`: untagging and deleting images with Docker's conflicts
//! ([`ImageStore::remove_image`]), and the parent pruning that follows a delete. The same
//! [`Deletion`] deletes each image of a prune.

use std::collections::HashSet;
use std::fs;
use std::io;

use berth_types::{Digest, Reference};
use nix::fcntl::FlockArg;
use serde::Serialize;
use tracing::debug;

use super::{io_err, remove_if_exists, DeleteConflict, ManageError, Result};
use crate::store::ImageStore;

/// One line of `docker rmi`'s answer: `{"Untagged": "busybox:latest"}` or
/// `{"Deleted": "sha256:…"}` (an image ID, or the chain ID of a layer whose snapshot went).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DeleteResponse {
    Untagged(String),
    Deleted(Digest),
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

/// Whether `name` is (a prefix of) the image ID rather than a reference, as Docker decides
/// between untagging and deleting.
fn is_id_prefix(id: &Digest, name: &str) -> bool {
    id.to_string().starts_with(name) || id.hex().starts_with(name)
}

/// Docker's `isSingleReference`: at most one tag, and any digest references belong to the
/// same repository as it. False for no references.
pub(super) fn is_single_reference(refs: &[Reference]) -> bool {
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

/// One `docker rmi` (or one image of a prune) in progress: the records it answers with and
/// the bytes its sweeps freed.
pub(super) struct Deletion<'a> {
    pub(super) store: &'a ImageStore,
    /// Whether this deletion may remove the deleted images' blobs and snapshots now; without
    /// the sweep lock they stay for the next collection.
    pub(super) sweep: bool,
    pub(super) records: Vec<DeleteResponse>,
    pub(super) freed: u64,
}

impl Deletion<'_> {
    /// Docker's `ImageDelete`.
    pub(super) fn remove(&mut self, name: &str, force: bool, prune_parents: bool) -> Result<()> {
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
    ///
    /// [`GcLease`]: super::GcLease
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

    /// Remove a reference (with `:latest` added if it has neither tag nor digest); removing
    /// one that does not exist is not an error, as in Docker.
    fn remove_reference(&self, reference: &Reference) -> Result<Reference> {
        let reference = reference.clone().with_default_tag();
        self.untag(&reference)?;
        Ok(reference)
    }

    fn is_dangling(&self, id: &Digest) -> Result<bool> {
        Ok(self.references(id)?.is_empty() && !self.parents()?.values().any(|p| p == id))
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
}
