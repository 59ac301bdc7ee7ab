//! Errors of the engine, classified the way the Engine API needs to answer them.

/// What kind of failure, which decides the HTTP status (400, 404, 409, 304, 500...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input: 400.
    InvalidArgument,
    /// No such container, image, volume, exec: 404.
    NotFound,
    /// Name in use, container running, volume in use: 409.
    Conflict,
    /// Nothing to do (start of a running container, stop of a stopped one): 304.
    NotModified,
    /// Registry refused the credentials: 401.
    Unauthorized,
    /// Registry denied access: 403.
    Forbidden,
    /// Not implemented by berth: 501.
    NotImplemented,
    /// Everything else: 500.
    Internal,
}

/// An engine error: a kind and a message written for the user (it ends up verbatim in
/// `{"message": ...}`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::Conflict, message)
    }
    pub fn net(e: berth_net::NetError) -> EngineError {
        use berth_net::NetError as N;
        let kind = match &e {
            N::NotFound(_) => ErrorKind::NotFound,
            N::Conflict(_) => ErrorKind::Conflict,
            N::Invalid(_) => ErrorKind::InvalidArgument,
            N::Forbidden(_) => ErrorKind::Forbidden,
            N::Io(_) => ErrorKind::Internal,
        };
        EngineError::new(kind, e.to_string())
    }
    pub fn internal(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::Internal, message)
    }
    /// An I/O failure while doing `what`.
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> EngineError {
        EngineError::internal(format!("{what}: {e}"))
    }
}
