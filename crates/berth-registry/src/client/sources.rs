//! Where each blob came from: the registries and repositories it was pulled from or pushed
//! to. A push to a repository that lacks a blob asks the registry to mount it from one of
//! these (a cross-repository mount), which costs no upload.
//!
//! A hint, not a record: one small JSON file per blob under `<data root>/distribution/
//! sources/`, written atomically; a lost or stale entry only costs an upload.

use std::path::{Path, PathBuf};

use berth_types::Digest;

/// How many sources are kept per blob (the newest).
const KEEP: usize = 8;

fn path(data_root: &Path, digest: &Digest) -> PathBuf {
    data_root
        .join("distribution/sources")
        .join(format!("{}.json", digest.hex()))
}

/// The `(registry, repository)` pairs `digest` is known to be in, newest first.
pub fn sources(data_root: &Path, digest: &Digest) -> Vec<(String, String)> {
    std::fs::read(path(data_root, digest))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<(String, String)>>(&b).ok())
        .unwrap_or_default()
}

/// Note that `digest` is in `repository` on `registry`. Failures are logged, not returned.
pub fn remember(data_root: &Path, digest: &Digest, registry: &str, repository: &str) {
    let mut list = sources(data_root, digest);
    let entry = (registry.to_owned(), repository.to_owned());
    if list.first() == Some(&entry) {
        return;
    }
    list.retain(|e| *e != entry);
    list.insert(0, entry);
    list.truncate(KEEP);
    let file = path(data_root, digest);
    let result = std::fs::create_dir_all(file.parent().expect("has a parent")).and_then(|()| {
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&list).unwrap_or_default())?;
        std::fs::rename(&tmp, &file)
    });
    if let Err(e) = result {
        tracing::debug!(blob = %digest, error = %e, "could not record where a blob came from");
    }
}
