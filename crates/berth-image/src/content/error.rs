//! The content store's error type.
//!
//! Every variant names the blob (and the file, where there is one) and says what to do; the
//! message never repeats its `#[source]`, because the binaries print the whole chain.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use berth_types::Digest;

/// What went wrong in a content store operation.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {digest} is not in the content store; pull the image again")]
    NotFound { digest: Digest },

    /// Written content hashed to something other than the digest it was announced as.
    #[error(
        "content announced as {expected} hashes to {actual}; the source sent other data \
         than the reference names: check the reference and the registry, then retry"
    )]
    DigestMismatch { expected: Digest, actual: Digest },

    /// Written content ended before or after the announced size.
    #[error(
        "{} is {actual} bytes, expected {expected}; the download was truncated or the \
         descriptor is wrong: retry the pull",
        BlobName(.digest.as_ref())
    )]
    SizeMismatch {
        digest: Option<Digest>,
        expected: u64,
        actual: u64,
    },

    /// The source sent more than the announced size; writing stopped there rather than
    /// fill the disk with whatever a registry sends.
    #[error(
        "{} is larger than the announced {expected} bytes; the descriptor is wrong or the \
         source sent other data: check the reference and retry",
        BlobName(.digest.as_ref())
    )]
    SizeExceeded {
        digest: Option<Digest>,
        expected: u64,
    },

    #[error(
        "blob {digest} is {size} bytes, more than the {max} accepted here; a manifest or \
         config this large is not valid, check the image"
    )]
    TooLarge { digest: Digest, size: u64, max: u64 },

    /// A stored blob no longer matches its name (disk damage or tampering).
    #[error(
        "blob {digest} at {path} is damaged (its content hashes to {actual}); delete it and \
         pull the image again"
    )]
    Corrupt {
        digest: Digest,
        path: PathBuf,
        actual: Digest,
    },

    /// Reading the content to store (a download, a build step's output) failed.
    #[error("cannot read the content for {}; retry", BlobName(.digest.as_ref()))]
    Source {
        digest: Option<Digest>,
        #[source]
        source: io::Error,
    },

    #[error(
        "content store: {ingest} and {blobs} are on different filesystems; keep the whole \
         data root on one filesystem"
    )]
    CrossDevice { ingest: PathBuf, blobs: PathBuf },

    /// A file operation in the store failed; `action` says which, `path` on what.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Results of content store operations.
pub type Result<T, E = ContentError> = std::result::Result<T, E>;

impl ContentError {
    /// For `map_err`: an I/O failure of `action` on `path`.
    pub(super) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| ContentError::Io {
            action,
            path,
            source,
        }
    }

    /// For `map_err` on the file of a blob: a missing file means a missing blob.
    pub(super) fn lookup(
        action: &'static str,
        digest: &Digest,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> Self {
        let digest = digest.clone();
        let path = path.to_owned();
        move |source| {
            if source.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound { digest }
            } else {
                ContentError::Io {
                    action,
                    path,
                    source,
                }
            }
        }
    }
}

/// "blob sha256:…", or a placeholder when the writer was not told what to expect.
struct BlobName<'a>(Option<&'a Digest>);

impl fmt::Display for BlobName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(digest) => write!(f, "blob {digest}"),
            None => f.write_str("blob of unannounced digest"),
        }
    }
}
