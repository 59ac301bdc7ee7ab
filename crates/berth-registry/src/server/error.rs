//! The server's two kinds of failure: [`ApiError`], the answer a client gets for one request
//! (status, the spec's error JSON, and sometimes headers such as `Range`), and
//! [`ServerError`], why the server could not start or keep serving.
//!
//! Clients match on the `code` of the error JSON, never on the message, so codes follow the
//! distribution spec exactly and messages are free to say what to do next.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_image::content::ContentError;
use tracing::error;

use crate::error::{ErrorBody, ErrorInfo};

/// The error codes of the OCI distribution spec, plus distribution's `UNKNOWN` for failures
/// on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not the client's fault: a disk or metadata failure, logged on the server.
    Unknown,
}

impl ErrorCode {
    /// The code as it appears in the error JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The status distribution answers with this code, unless the endpoint says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request's failure, as the client will see it. Boxed: it travels through every
/// `Result` of the request path, and most of those results succeed.
#[derive(Debug)]
pub struct ApiError(Box<ErrorParts>);

#[derive(Debug)]
struct ErrorParts {
    status: StatusCode,
    errors: Vec<ErrorInfo>,
    headers: HeaderMap,
}

impl ApiError {
    /// An error with the code's usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ErrorParts {
            status: code.status(),
            errors: vec![ErrorInfo {
                code: code.as_str().to_owned(),
                message: message.into(),
                detail: None,
            }],
            headers: HeaderMap::new(),
        }))
    }

    /// Several errors in one answer (a manifest naming several missing blobs).
    pub fn many(
        status: StatusCode,
        errors: impl IntoIterator<Item = (ErrorCode, String, serde_json::Value)>,
    ) -> ApiError {
        ApiError(Box::new(ErrorParts {
            status,
            errors: errors
                .into_iter()
                .map(|(code, message, detail)| ErrorInfo {
                    code: code.as_str().to_owned(),
                    message,
                    detail: Some(detail),
                })
                .collect(),
            headers: HeaderMap::new(),
        }))
    }

    /// A failure on the server's side. The cause is logged with its context; the client
    /// gets the context only, since paths and OS errors are the operator's business.
    pub fn internal(context: impl Into<String>, cause: impl fmt::Display) -> ApiError {
        let context = context.into();
        error!(%cause, "{context}");
        ApiError::new(
            ErrorCode::Unknown,
            format!("{context}; the registry's log has the cause"),
        )
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.0.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        if let Some(first) = self.0.errors.first_mut() {
            first.detail = Some(detail);
        }
        self
    }

    /// Adds a response header; values that are not valid header text are dropped, as they
    /// can only come from our own formatting.
    pub fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> ApiError {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.0.headers.insert(name, value);
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The code of the first error, which decides how a caller reacts.
    pub fn code(&self) -> &str {
        self.0.errors.first().map_or("", |e| e.code.as_str())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            crate::error::describe(self.0.status.as_u16(), &self.0.errors)
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ErrorParts {
            status,
            errors,
            headers,
        } = *self.0;
        let body = ErrorBody { errors };
        // Serialising strings and JSON values cannot fail; the fallback keeps the promise
        // never to panic on a request.
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut response = (status, json).into_response();
        response.headers_mut().extend(headers);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// Why the registry server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the content store under {data_root}")]
    Content {
        data_root: PathBuf,
        #[source]
        source: ContentError,
    },

    /// A file operation on the registry's metadata failed; `action` says which.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "another registry server already serves {data_root}; stop it, or give this one \
         another --data-root"
    )]
    DataRootInUse { data_root: PathBuf },

    #[error("cannot listen on {addr}; is the port in use? choose another --addr")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("htpasswd file {path}, line {line}: {message}")]
    Htpasswd {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("TLS: {path}: {message}")]
    Tls { path: PathBuf, message: String },

    #[error("TLS needs both a certificate and its key: give --tls-cert and --tls-key together")]
    TlsIncomplete,

    #[error("serving the registry on {addr}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

impl ServerError {
    /// For `map_err`: an I/O failure of `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> ServerError {
        let path = path.into();
        move |source| ServerError::Io {
            action,
            path,
            source,
        }
    }
}
