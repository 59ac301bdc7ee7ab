//! Identifiers shared by every berth crate: container ids, content digests, image references.
//!
//! Values from the outside world (CLI arguments, API paths, files on disk) are parsed into
//! these types at the edge, so the code inside never handles an unchecked string. This crate
//! does no I/O.
#![forbid(unsafe_code)]

mod digest;
mod reference;
pub mod time;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use digest::{Digest, DigestError};
pub use reference::{Reference, ReferenceError};

/// Why a container id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerIdError {
    #[error("container id must not be empty")]
    Empty,
    #[error("container id {0:?} is longer than 1024 characters")]
    TooLong(String),
    #[error(
        "invalid container id {0:?}: use only letters, digits and `_ + - .`, and do not start with `.`"
    )]
    InvalidCharacters(String),
}

/// The id of a container as the OCI runtime knows it.
///
/// The accepted alphabet is runc's (`[A-Za-z0-9_+.-]+`) without a leading dot, so no id can
/// name a path outside the state directory or collide with the runtime's own dot-files
/// (such as its seccomp cache).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = ContainerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ContainerIdError::Empty);
        }
        if s.len() > 1024 {
            return Err(ContainerIdError::TooLong(s.to_owned()));
        }
        let valid = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
        // A leading dot is refused: runtimes keep their own files (caches) as dot-entries
        // beside the containers' state directories.
        if !valid || s.starts_with('.') {
            return Err(ContainerIdError::InvalidCharacters(s.to_owned()));
        }
        Ok(ContainerId(s.to_owned()))
    }
}

impl TryFrom<String> for ContainerId {
    type Error = ContainerIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_alphabet() {
        for ok in ["a", "web-1", "x_y+z.1", "ABC"] {
            assert_eq!(ok.parse::<ContainerId>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_paths_and_empty() {
        assert_eq!("".parse::<ContainerId>(), Err(ContainerIdError::Empty));
        for bad in [".", "..", ".hidden", "a/b", "../x", "a b", "é"] {
            assert!(matches!(
                bad.parse::<ContainerId>(),
                Err(ContainerIdError::InvalidCharacters(_))
            ));
        }
        assert!(matches!(
            "a".repeat(1025).parse::<ContainerId>(),
            Err(ContainerIdError::TooLong(_))
        ));
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: ContainerId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
        assert!(serde_json::from_str::<ContainerId>("\"../etc\"").is_err());
    }
}
