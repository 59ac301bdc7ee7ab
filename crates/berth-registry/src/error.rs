//! What can go wrong between berth and a registry, worded for the person who typed the
//! command: each error names the registry, repository or layer concerned and says what to
//! do about it.

use berth_image::content::ContentError;
use berth_image::store::StoreError;
use berth_image::unpack::UnpackError;
use berth_types::Digest;
use serde::{Deserialize, Serialize};

/// One entry of a registry's error body (`{"errors":[{"code","message","detail"}]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The error body of the distribution API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorInfo>,
}

/// `code: message` of each entry, or the HTTP status when the body had none.
pub fn describe(status: u16, errors: &[ErrorInfo]) -> String {
    if errors.is_empty() {
        return format!("HTTP status {status}");
    }
    errors
        .iter()
        .map(|e| {
            let code = e.code.to_lowercase().replace('_', " ");
            if e.message.is_empty() || e.message.eq_ignore_ascii_case(&code) {
                code
            } else {
                format!("{code}: {}", e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid reference {reference:?}: {message}")]
    InvalidReference { reference: String, message: String },

    /// No connection could be made (refused, DNS, TLS handshake…).
    #[error("cannot reach registry {registry}: {message}")]
    Connect { registry: String, message: String },

    /// The registry wants credentials we lack, or refused those we sent.
    #[error("{registry}: {message}")]
    Unauthorized { registry: String, message: String },

    /// The registry answered with an error status.
    #[error("{registry}: {context}: {}", describe(*status, errors))]
    Http {
        registry: String,
        context: String,
        status: u16,
        errors: Vec<ErrorInfo>,
    },

    #[error("{reference}: not found in registry {registry}; check the name and tag, and `berth login` if the repository is private")]
    NotFound { registry: String, reference: String },

    #[error("{reference} is a Docker schema 1 image, which berth does not pull: it is deprecated and unsigned content; push it again with a current client (schema 2 / OCI)")]
    Schema1 { reference: String },

    #[error(
        "{reference}: no image for platform {platform} in the manifest list (it has: {available})"
    )]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },

    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },

    #[error("{what}: the registry sent content that hashes to {actual}, not {expected}; nothing was stored")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("{what} is larger than {limit} bytes; refusing to read it")]
    TooLarge { what: String, limit: u64 },

    /// The registry sent JSON we cannot use.
    #[error("{context}: {message}")]
    Invalid { context: String, message: String },

    #[error("TLS set-up for {registry}: {message}")]
    Tls { registry: String, message: String },

    /// HTTPS failed in a way that trying again cannot fix: an unknown CA, a certificate for
    /// another name, a plain-HTTP server, a client certificate the registry refused.
    #[error("cannot reach registry {registry} over HTTPS: {message}")]
    TlsHandshake { registry: String, message: String },

    #[error("credentials: {message}")]
    Credentials { message: String },

    /// `logout` found nothing stored for the server.
    #[error("not logged in to {server}")]
    NotLoggedIn { server: String },

    #[error("image store")]
    Store(#[from] StoreError),

    #[error("content store")]
    Content(#[from] ContentError),

    #[error("unpacking layer {layer}")]
    Unpack {
        layer: Digest,
        #[source]
        source: UnpackError,
    },

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The operation was cancelled (the progress receiver or caller went away).
    #[error("cancelled")]
    Cancelled,
}

impl RegistryError {
    /// Whether the same request could succeed later: the connection broke or timed out, or
    /// the registry is failing or overloaded for the moment (5xx, 429, 408). Refused
    /// credentials, missing content and TLS trust problems are not.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Http { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            _ => false,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
    let context = context.into();
    move |source| RegistryError::Io { context, source }
}
