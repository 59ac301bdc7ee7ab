//! Content digests (`sha256:<64 hex>`), as OCI and Docker write them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Malformed(String),
    #[error("unsupported digest algorithm {algorithm:?} in {digest:?}: only sha256 is supported")]
    UnsupportedAlgorithm { algorithm: String, digest: String },
}

/// A sha256 content digest. Parsing accepts only the canonical form (lowercase hex), so two
/// `Digest`s are equal exactly when they name the same content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of a finished sha256 hash.
    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Digest { hex }
    }

    /// `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 hex digits, without the algorithm (what file names in a store use).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as Docker shows short ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_owned()));
        };
        if algorithm != "sha256" {
            let known = !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            return Err(if known {
                DigestError::UnsupportedAlgorithm {
                    algorithm: algorithm.to_owned(),
                    digest: s.to_owned(),
                }
            } else {
                DigestError::Malformed(s.to_owned())
            });
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_canonical_form() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        let mut bytes = [0u8; 32];
        bytes[0] = 0xe3;
        bytes[31] = 0x55;
        assert!(Digest::from_sha256(bytes)
            .to_string()
            .starts_with("sha256:e3"));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            &EMPTY.to_uppercase(),
            &format!("{EMPTY}0"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
    }
}
