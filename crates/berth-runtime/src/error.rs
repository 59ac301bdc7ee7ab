//! The runtime's error type.
//!
//! Errors say which part of the spec or which container they concern and what to do; the
//! message never repeats its `#[source]`, because the binaries print the whole chain.

use std::io;
use std::path::PathBuf;

use berth_types::ContainerId;

/// What went wrong in a runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec asks for something invalid or that this host cannot give.
    #[error("invalid spec: {field}: {reason}")]
    InvalidSpec { field: String, reason: String },

    #[error("container {0} does not exist")]
    NotFound(ContainerId),

    #[error("container {0} already exists; delete it first or choose another id")]
    AlreadyExists(ContainerId),

    /// The container's state does not allow the operation.
    #[error("container {id} is {status}: {hint}")]
    WrongState {
        id: ContainerId,
        status: String,
        hint: &'static str,
    },

    /// Setting the container up failed inside the child; `step` names what it was doing.
    #[error("container init failed: {step}: {message}")]
    Init { step: String, message: String },

    #[error("{hook} hook #{index} ({path}) failed: {reason}")]
    Hook {
        hook: &'static str,
        index: usize,
        path: PathBuf,
        reason: String,
    },

    #[error("cgroup")]
    Cgroup(#[from] crate::cgroups::CgroupError),

    #[error("seccomp")]
    Seccomp(#[from] crate::seccomp::SeccompError),

    /// A system call or file operation failed; `context` says what we were doing.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("state of container {id} at {path} is unreadable; delete it with --force")]
    CorruptState {
        id: ContainerId,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl RuntimeError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RuntimeError::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Attach "what we were doing" to I/O and nix errors.
pub(crate) trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, RuntimeError>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, RuntimeError> {
        self.map_err(|source| RuntimeError::Io {
            context: f(),
            source,
        })
    }
}

impl<T> IoContext<T> for Result<T, nix::Error> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T, RuntimeError> {
        self.map_err(|e| RuntimeError::Io {
            context: f(),
            source: e.into(),
        })
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
