//! Image references (`busybox`, `registry.example.com:5000/team/app:1.0@sha256:…`), parsed and
//! normalised the way Docker does it.
//!
//! This matches `ParseNormalizedNamed` from `github.com/distribution/reference`, the package the
//! Docker CLI and daemon use: the same grammar, the same rule for telling a registry host from
//! a Docker Hub namespace, the same `docker.io/library/` expansion, and Docker's wording for the
//! errors it names (the Engine API sends these to clients). This module only parses and
//! prints; resolving a reference against a registry or the image store happens elsewhere.
//!
//! Two deliberate differences from Docker, both refusing input Docker cannot pull anyway:
//! - a first component that Docker takes for a registry host but its grammar rejects as one
//!   (`my_registry.local/app`) parses in Docker as a reference with an empty host, which then
//!   fails at pull time; here it is refused at once as an invalid registry host;
//! - digests are berth's [`Digest`], so only `sha256` is accepted.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};

/// The registry Docker uses when a reference names none.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's old name, still accepted and rewritten to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The Docker Hub namespace of official images (`busybox` is `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the repository path (the registry host does not count).
const PATH_MAX: usize = 255;
/// Docker's limit on a tag.
const TAG_MAX: usize = 128;

/// Why an image reference was refused.
///
/// Each message starts with Docker's text for the case (`invalid reference format` for
/// anything its grammar refuses), so clients that recognise Docker's errors recognise these;
/// what follows names the offending part and what is allowed. The one exception: for a
/// well-formed digest that fails its own checks (unknown algorithm, wrong length) Docker
/// prints go-digest's text, and berth the `invalid reference format` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: the image reference is empty; name an image such as `busybox` or `registry.example.com/app:1.0`")]
    Empty,
    /// Docker refuses these as names because they look like image ids.
    #[error("invalid repository name ({reference}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier { reference: String },
    /// `name` is the repository part as Docker prints it: after the registry host (with
    /// `library/` added for official images) and up to the first `:`.
    #[error("invalid reference format: repository name ({name}) must be lowercase")]
    Uppercase { name: String },
    /// The reference is valid except for letter case outside the repository name Docker
    /// checks first (for example an underscore in an uppercase first component).
    #[error("repository name must be lowercase: {reference} is valid only when lowercased")]
    LowercaseOnly { reference: String },
    #[error("repository name must not be more than 255 characters: the repository path of {reference} has {length}")]
    NameTooLong { reference: String, length: usize },
    #[error("invalid reference format: registry host ({domain}) in {reference} must be a host name (letters, digits and inner `-`, in parts separated by `.`), an IPv4 address or a bracketed IPv6 address, with an optional `:port`")]
    InvalidDomain { reference: String, domain: String },
    #[error("invalid reference format: the repository name in {reference} has an empty component; check for a missing name or a doubled or trailing `/`")]
    EmptyPathComponent { reference: String },
    #[error("invalid reference format: repository name component ({component}) in {reference} must be lowercase letters and digits, separated by one `.`, one or two `_`, or dashes")]
    InvalidPathComponent {
        reference: String,
        component: String,
    },
    #[error("invalid reference format: empty tag after `:` in {reference}; remove the `:` or give a tag such as `latest`")]
    EmptyTag { reference: String },
    #[error("invalid reference format: tag ({tag}) must be letters, digits, `_`, `.` and `-`, starting with a letter, digit or `_`")]
    InvalidTag { reference: String, tag: String },
    #[error("invalid reference format: the tag in {reference} has {length} characters; the limit is 128")]
    TagTooLong { reference: String, length: usize },
    #[error("invalid reference format: bad digest after `@` in {reference}")]
    InvalidDigest {
        reference: String,
        #[source]
        source: DigestError,
    },
}

/// A normalised image reference: registry host, repository path, and an optional tag and
/// digest.
///
/// Only [`Reference::parse_normalized_named`] (and the `FromStr`, `TryFrom<String>` and serde
/// impls built on it) makes one, so the host is always present (`docker.io` when the input
/// named none) and every part has passed Docker's grammar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reference {
    /// `domain/path`; kept whole so that [`Reference::name`] and the familiar name, which
    /// are suffixes of it, can be borrowed.
    name: String,
    domain_len: usize,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference as the Docker CLI and API accept it (Docker's
    /// `ParseNormalizedNamed`): `busybox` becomes `docker.io/library/busybox`,
    /// `user/app:v1` becomes `docker.io/user/app:v1`, `index.docker.io/…` becomes
    /// `docker.io/…`; a first component that contains `.` or `:`, is `localhost`, or has an
    /// uppercase letter is a registry host. No default tag is added; see
    /// [`Reference::with_default_tag`].
    pub fn parse_normalized_named(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_hex_identifier(input) {
            return Err(ReferenceError::HexIdentifier {
                reference: input.to_owned(),
            });
        }
        let (domain, remainder) = split_docker_domain(input);
        // Docker checks case on everything up to the first `:`, which for a digest-only
        // reference includes `@sha256`; its message shows that text, so ours does too.
        let remote = remainder.split(':').next().unwrap_or_default();
        if go_to_lower(remote) != remote {
            return Err(ReferenceError::Uppercase {
                name: remote.to_owned(),
            });
        }
        let full = format!("{domain}/{remainder}");
        let parts = match match_reference(&full, input) {
            Ok(parts) => parts,
            Err(error) => {
                let lower = go_to_lower(&full);
                if lower != full && match_reference(&lower, input).is_ok() {
                    return Err(ReferenceError::LowercaseOnly {
                        reference: input.to_owned(),
                    });
                }
                return Err(error);
            }
        };
        let Some(domain) = parts.domain else {
            // The grammar read the whole name as a repository path because the first
            // component is not a valid host; Docker would go on with an empty host.
            let (first, _) = parts.name.split_once('/').unwrap_or((parts.name, ""));
            return Err(ReferenceError::InvalidDomain {
                reference: input.to_owned(),
                domain: first.to_owned(),
            });
        };
        let path_len = parts.name.len() - domain.len() - 1;
        if path_len > PATH_MAX {
            return Err(ReferenceError::NameTooLong {
                reference: input.to_owned(),
                length: path_len,
            });
        }
        let digest = parts
            .digest
            .map(Digest::from_str)
            .transpose()
            .map_err(|source| ReferenceError::InvalidDigest {
                reference: input.to_owned(),
                source,
            })?;
        Ok(Reference {
            name: parts.name.to_owned(),
            domain_len: domain.len(),
            tag: parts.tag.map(str::to_owned),
            digest,
        })
    }

    /// The registry host, with its port if any: `docker.io`, `localhost:5000`, `[::1]:5000`.
    pub fn domain(&self) -> &str {
        &self.name[..self.domain_len]
    }

    /// The repository path inside the registry: `library/busybox`, `user/app`.
    pub fn path(&self) -> &str {
        &self.name[self.domain_len + 1..]
    }

    /// `domain/path`, without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether the image lives on Docker Hub.
    pub fn is_docker_hub(&self) -> bool {
        self.domain() == DOCKER_HUB
    }

    /// The name as Docker shows it: `docker.io/` dropped, and `library/` dropped from
    /// official images (`busybox`, `user/app`, `localhost:5000/x`).
    pub fn familiar_name(&self) -> &str {
        if !self.is_docker_hub() {
            return &self.name;
        }
        let path = self.path();
        // Only a one-level `library/x` is an official image; Docker keeps `library/a/b` whole.
        match path.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(official) if !official.contains('/') => official,
            _ => path,
        }
    }

    /// The reference as Docker shows it: the familiar name with tag and digest
    /// (`busybox:latest`).
    pub fn familiar_string(&self) -> String {
        WithTagAndDigest {
            name: self.familiar_name(),
            reference: self,
        }
        .to_string()
    }

    /// The reference with the tag `latest` when it has neither tag nor digest, as Docker
    /// does before pulling or running.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse_normalized_named(s)
    }
}

impl TryFrom<String> for Reference {
    type Error = ReferenceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Reference> for String {
    fn from(reference: Reference) -> String {
        reference.to_string()
    }
}

/// The full normalised form: `docker.io/library/busybox:latest`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        WithTagAndDigest {
            name: &self.name,
            reference: self,
        }
        .fmt(f)
    }
}

/// A name (full or familiar) followed by a reference's `:tag` and `@digest`.
struct WithTagAndDigest<'a> {
    name: &'a str,
    reference: &'a Reference,
}

impl fmt::Display for WithTagAndDigest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if let Some(tag) = &self.reference.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.reference.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's `splitDockerDomain`: picks the registry host and returns it with the rest of the
/// input (tag and digest included), adding `library/` for one-component Docker Hub names.
fn split_docker_domain(input: &str) -> (&str, Cow<'_, str>) {
    let Some((first, rest)) = input.split_once('/') else {
        // A single component is always a Docker Hub name, even `localhost` or `example.com`.
        return (
            DOCKER_HUB,
            Cow::Owned(format!("{OFFICIAL_NAMESPACE}{input}")),
        );
    };
    let (domain, remote) = if first == "localhost" {
        (first, rest)
    } else if first == DOCKER_HUB_LEGACY {
        (DOCKER_HUB, rest)
    } else if first.contains(['.', ':']) || go_to_lower(first) != first {
        // Namespaces are lowercase, so an uppercase first component can only be a host.
        (first, rest)
    } else {
        (DOCKER_HUB, input)
    };
    if domain == DOCKER_HUB && !remote.contains('/') {
        (domain, Cow::Owned(format!("{OFFICIAL_NAMESPACE}{remote}")))
    } else {
        (domain, Cow::Borrowed(remote))
    }
}

/// Lowercases as Go's `strings.ToLower` does (one character for one), so that the case
/// checks refuse and accept what Docker's do. Rust's full mapping turns `İ` into two
/// characters where Go gives `i`.
fn go_to_lower(s: &str) -> String {
    let mut lower = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\u{130}' {
            lower.push('i');
        } else {
            lower.extend(c.to_lowercase());
        }
    }
    lower
}

/// Docker's `[a-f0-9]{64}`: a bare image id.
fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A reference split by the grammar, before the length and digest checks.
struct Parts<'a> {
    name: &'a str,
    /// `None` when the whole name had to be read as a repository path.
    domain: Option<&'a str>,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Matches `s` against Docker's reference grammar:
/// `[host[:port]/]path[:tag][@digest]`. Errors name `input`, what the user typed.
///
/// The split is unambiguous: `@` appears only before the digest, and a `:` with no `/` after
/// it can only start the tag, since the name holds `:` only in the host, before a `/`.
fn match_reference<'a>(s: &'a str, input: &str) -> Result<Parts<'a>, ReferenceError> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if !rest[colon..].contains('/') => (&rest[..colon], Some(&rest[colon + 1..])),
        _ => (rest, None),
    };
    let domain = split_name(name, input)?;
    if let Some(tag) = tag {
        check_tag(tag, input)?;
    }
    if let Some(digest) = digest {
        if !is_digest_syntax(digest) {
            return Err(ReferenceError::InvalidDigest {
                reference: input.to_owned(),
                source: DigestError::Malformed(digest.to_owned()),
            });
        }
    }
    Ok(Parts {
        name,
        domain,
        tag,
        digest,
    })
}

/// Finds the host in a name. As in Docker's grammar, the first component is the host when
/// it is a valid one; otherwise the whole name must be a repository path.
fn split_name<'a>(name: &'a str, input: &str) -> Result<Option<&'a str>, ReferenceError> {
    let Some((first, path)) = name.split_once('/') else {
        check_path(name, input)?;
        return Ok(None);
    };
    if is_domain_and_port(first) {
        check_path(path, input)?;
        return Ok(Some(first));
    }
    if check_path(name, input).is_ok() {
        return Ok(None);
    }
    Err(ReferenceError::InvalidDomain {
        reference: input.to_owned(),
        domain: first.to_owned(),
    })
}

/// `host[:port]`, where host is a domain name, an IPv4 address (which the domain-name rule
/// covers) or an IPv6 address in brackets without zone.
fn is_domain_and_port(s: &str) -> bool {
    let (host_ok, port) = if let Some(bracketed) = s.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return false;
        };
        let address_ok =
            !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !after.is_empty() && !after.starts_with(':') {
            return false;
        }
        (address_ok, after.strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((host, port)) => (is_domain_name(host), Some(port)),
            None => (is_domain_name(s), None),
        }
    };
    host_ok && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Dot-separated components of ASCII letters, digits and `-`, no component starting or
/// ending with `-`.
fn is_domain_name(s: &str) -> bool {
    s.split('.').all(|component| {
        let bytes = component.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            }
            _ => false,
        }
    })
}

/// `/`-separated components, each of lowercase letters and digits joined by one `.`, one or
/// two `_`, or any number of `-`.
fn check_path(path: &str, input: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err(ReferenceError::EmptyPathComponent {
                reference: input.to_owned(),
            });
        }
        if !is_path_component(component.as_bytes()) {
            return Err(ReferenceError::InvalidPathComponent {
                reference: input.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

fn is_path_component(bytes: &[u8]) -> bool {
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(is_alnum) || !bytes.last().is_some_and(is_alnum) {
        return false;
    }
    // Between runs of letters and digits, each run of other bytes must be one separator.
    bytes
        .split(is_alnum)
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|b| *b == b'-')
        })
}

/// Docker's tag rule, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str, input: &str) -> Result<(), ReferenceError> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(ReferenceError::EmptyTag {
            reference: input.to_owned(),
        });
    };
    if !word(first) || !bytes.iter().all(|b| word(b) || matches!(b, b'.' | b'-')) {
        return Err(ReferenceError::InvalidTag {
            reference: input.to_owned(),
            tag: tag.to_owned(),
        });
    }
    if tag.len() > TAG_MAX {
        return Err(ReferenceError::TagTooLong {
            reference: input.to_owned(),
            length: tag.len(),
        });
    }
    Ok(())
}

/// The digest shape Docker's grammar admits before it checks the algorithm:
/// `alg[(+|.|_|-)alg…]:<32 or more hex digits>`, each `alg` a letter then letters or digits.
fn is_digest_syntax(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    const BUSYBOX_DIGEST: &str =
        "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";

    /// What a table row expects: the parts of the parsed reference, or the error variant.
    enum Expect {
        Parsed {
            domain: String,
            path: String,
            tag: Option<String>,
            digest: Option<String>,
            familiar: String,
        },
        Refused(&'static str),
    }

    fn ok(
        domain: &str,
        path: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        familiar: &str,
    ) -> Expect {
        Expect::Parsed {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
            familiar: familiar.to_owned(),
        }
    }

    fn variant(error: &ReferenceError) -> &'static str {
        match error {
            ReferenceError::Empty => "Empty",
            ReferenceError::HexIdentifier { .. } => "HexIdentifier",
            ReferenceError::Uppercase { .. } => "Uppercase",
            ReferenceError::LowercaseOnly { .. } => "LowercaseOnly",
            ReferenceError::NameTooLong { .. } => "NameTooLong",
            ReferenceError::InvalidDomain { .. } => "InvalidDomain",
            ReferenceError::EmptyPathComponent { .. } => "EmptyPathComponent",
            ReferenceError::InvalidPathComponent { .. } => "InvalidPathComponent",
            ReferenceError::EmptyTag { .. } => "EmptyTag",
            ReferenceError::InvalidTag { .. } => "InvalidTag",
            ReferenceError::TagTooLong { .. } => "TagTooLong",
            ReferenceError::InvalidDigest { .. } => "InvalidDigest",
        }
    }

    /// Cases from distribution/reference's normalize_test.go and reference_test.go (the
    /// latter run through the normalising parser), plus the cases berth relies on.
    #[rustfmt::skip]
    fn table() -> Vec<(String, Expect)> {
        use Expect::Refused;
        let digest = format!("sha256:{HEX}");
        let digest = Some(digest.as_str());
        let hub = "docker.io";
        let a255 = "a".repeat(255);
        let deep = format!("{}a", "a/".repeat(127));
        let t128 = "t".repeat(128);
        // One expression, so the formatted inputs live until they are copied.
        vec![
            // Docker Hub normalisation.
            ("busybox", ok(hub, "library/busybox", None, None, "busybox")),
            ("busybox:1.36", ok(hub, "library/busybox", Some("1.36"), None, "busybox:1.36")),
            ("library/busybox", ok(hub, "library/busybox", None, None, "busybox")),
            ("docker.io/busybox", ok(hub, "library/busybox", None, None, "busybox")),
            ("docker.io/library/busybox:latest", ok(hub, "library/busybox", Some("latest"), None, "busybox:latest")),
            ("index.docker.io/busybox", ok(hub, "library/busybox", None, None, "busybox")),
            ("index.docker.io/library/ubuntu-12.04-base", ok(hub, "library/ubuntu-12.04-base", None, None, "ubuntu-12.04-base")),
            ("user/app:v1", ok(hub, "user/app", Some("v1"), None, "user/app:v1")),
            ("index.docker.io/fooo/bar", ok(hub, "fooo/bar", None, None, "fooo/bar")),
            ("other/library", ok(hub, "other/library", None, None, "other/library")),
            ("library/foo/bar", ok(hub, "library/foo/bar", None, None, "library/foo/bar")),
            ("docker.io/store/foo/bar", ok(hub, "store/foo/bar", None, None, "store/foo/bar")),
            ("test_com/foo", ok(hub, "test_com/foo", None, None, "test_com/foo")),
            ("dock__er/docker---rules", ok(hub, "dock__er/docker---rules", None, None, "dock__er/docker---rules")),
            ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", ok(hub, "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None, None, "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev")),
            ("docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", ok(hub, "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", None, None, "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a")),
            ("dbcc1", ok(hub, "library/dbcc1", None, None, "dbcc1")),
            (&format!("docker.io/dmcgowan/myapp@sha256:{HEX}"), ok(hub, "dmcgowan/myapp", None, digest, &format!("dmcgowan/myapp@sha256:{HEX}"))),
            (&format!("app:tag@sha256:{HEX}"), ok(hub, "library/app", Some("tag"), digest, &format!("app:tag@sha256:{HEX}"))),
            // One component is never a host, whatever it looks like.
            ("localhost", ok(hub, "library/localhost", None, None, "localhost")),
            ("test.com:5000", ok(hub, "library/test.com", Some("5000"), None, "test.com:5000")),
            ("192.168.1.1:tag", ok(hub, "library/192.168.1.1", Some("tag"), None, "192.168.1.1:tag")),
            ("foo_bar.com:8080", ok(hub, "library/foo_bar.com", Some("8080"), None, "foo_bar.com:8080")),
            ("foo/foo_bar.com:8080", ok(hub, "foo/foo_bar.com", Some("8080"), None, "foo/foo_bar.com:8080")),
            ("lowercase:Uppercase", ok(hub, "library/lowercase", Some("Uppercase"), None, "lowercase:Uppercase")),
            // Other registries.
            ("localhost/app", ok("localhost", "app", None, None, "localhost/app")),
            ("localhost:5000/ns/app:tag", ok("localhost:5000", "ns/app", Some("tag"), None, "localhost:5000/ns/app:tag")),
            ("gcr.io/library/busybox", ok("gcr.io", "library/busybox", None, None, "gcr.io/library/busybox")),
            ("127.0.0.1:8000/privatebase", ok("127.0.0.1:8000", "privatebase", None, None, "127.0.0.1:8000/privatebase")),
            ("test:5000/repo", ok("test:5000", "repo", None, None, "test:5000/repo")),
            ("b.gcr.io/test.example.com/my-app:test.example.com", ok("b.gcr.io", "test.example.com/my-app", Some("test.example.com"), None, "b.gcr.io/test.example.com/my-app:test.example.com")),
            ("xn--n3h.com:18080/foo", ok("xn--n3h.com:18080", "foo", None, None, "xn--n3h.com:18080/foo")),
            ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", ok("sub-dom1.foo.com", "bar/baz/quux", Some("some-long-tag"), None, "sub-dom1.foo.com/bar/baz/quux:some-long-tag")),
            (&format!("registry.example.com:5000/a/b/c@sha256:{HEX}"), ok("registry.example.com:5000", "a/b/c", None, digest, &format!("registry.example.com:5000/a/b/c@sha256:{HEX}"))),
            ("[::1]:5000/app", ok("[::1]:5000", "app", None, None, "[::1]:5000/app")),
            ("[2001:db8::1]/repo", ok("[2001:db8::1]", "repo", None, None, "[2001:db8::1]/repo")),
            ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", ok("[fc00:1:2:3:4:5:6:7]:5000", "library/debian", None, None, "[fc00:1:2:3:4:5:6:7]:5000/library/debian")),
            (&format!("[2001:db8::1]:5000/repo:tag@sha256:{HEX}"), ok("[2001:db8::1]:5000", "repo", Some("tag"), digest, &format!("[2001:db8::1]:5000/repo:tag@sha256:{HEX}"))),
            // An uppercase first component is a host; Docker allows uppercase there.
            ("LOCALDOMAIN/fooo/bar", ok("LOCALDOMAIN", "fooo/bar", None, None, "LOCALDOMAIN/fooo/bar")),
            ("Docker/docker", ok("Docker", "docker", None, None, "Docker/docker")),
            ("Registry.Example.COM:5000/app", ok("Registry.Example.COM:5000", "app", None, None, "Registry.Example.COM:5000/app")),
            // At the limits: a 255-character path, a 128-character tag.
            (&format!("example.com/{a255}:tag"), ok("example.com", &a255, Some("tag"), None, &format!("example.com/{a255}:tag"))),
            (&format!("{deep}:{t128}"), ok(hub, &deep, Some(&t128), None, &format!("{deep}:{t128}"))),
            // Refused.
            ("", Refused("Empty")),
            ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", Refused("HexIdentifier")),
            ("Busybox", Refused("Uppercase")),
            ("Uppercase:tag", Refused("Uppercase")),
            ("docker/Docker", Refused("Uppercase")),
            ("test:5000/Uppercase/lowercase:tag", Refused("Uppercase")),
            ("Foo_bar/x", Refused("LowercaseOnly")),
            ("a/..b", Refused("InvalidPathComponent")),
            ("-app", Refused("InvalidPathComponent")),
            ("-docker/docker", Refused("InvalidPathComponent")),
            ("docker-/docker", Refused("InvalidPathComponent")),
            ("____/____", Refused("InvalidPathComponent")),
            ("ns/dock_.er", Refused("InvalidPathComponent")),
            ("dock___er/docker", Refused("InvalidPathComponent")),
            ("aa/asdf$$^/aa", Refused("InvalidPathComponent")),
            ("[2001:db8::1]:5000", Refused("InvalidPathComponent")),
            ("[2001:db8::1]:tag", Refused("InvalidPathComponent")),
            ("docker///docker", Refused("EmptyPathComponent")),
            ("docker/", Refused("EmptyPathComponent")),
            (":justtag", Refused("EmptyPathComponent")),
            (&format!("@sha256:{HEX}"), Refused("EmptyPathComponent")),
            ("https://github.com/docker/docker", Refused("InvalidDomain")),
            ("-docker.io/docker/docker", Refused("InvalidDomain")),
            // Has a `.`, so Docker takes it for a host.
            ("dock_.er/docker", Refused("InvalidDomain")),
            ("fc00::1:5000/debian", Refused("InvalidDomain")),
            ("[fe80::1%eth0]:5000/debian", Refused("InvalidDomain")),
            ("[2001:db8:3:4::192.0.2.33]:5000/debian", Refused("InvalidDomain")),
            ("localhost:/app", Refused("InvalidDomain")),
            // Docker would take this for a host with an empty name; see the module docs.
            ("my_registry.local/app", Refused("InvalidDomain")),
            ("busybox:", Refused("EmptyTag")),
            ("busybox:-foo", Refused("InvalidTag")),
            ("busybox:.foo", Refused("InvalidTag")),
            ("busybox:a+b", Refused("InvalidTag")),
            (&format!("busybox:{t128}t"), Refused("TagTooLong")),
            (&format!("domain/{a255}a:tag"), Refused("NameTooLong")),
            (&format!("{}/a", "b".repeat(254)), Refused("NameTooLong")),
            ("this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker", Refused("NameTooLong")),
            ("repo@sha256:ffffffffffffffffffffffffffffffffff", Refused("InvalidDigest")),
            ("repo@sha256:fff", Refused("InvalidDigest")),
            (&format!("validname@invaliddigest:{HEX}"), Refused("InvalidDigest")),
            (&format!("validname@sha512:{HEX}{HEX}"), Refused("InvalidDigest")),
            (&format!("busybox@sha256:{}", HEX.to_uppercase()), Refused("InvalidDigest")),
            (&format!("busybox@sha256:{HEX}@sha256:{HEX}"), Refused("InvalidDigest")),
        ]
        .into_iter()
        .map(|(input, expect)| (input.to_owned(), expect))
        .collect()
    }

    #[test]
    fn parses_and_normalises_like_docker() {
        let rows = table();
        assert!(rows.len() >= 40);
        for (input, expect) in rows {
            let parsed = Reference::parse_normalized_named(&input);
            match (expect, parsed) {
                (
                    Expect::Parsed {
                        domain,
                        path,
                        tag,
                        digest,
                        familiar,
                    },
                    Ok(reference),
                ) => {
                    assert_eq!(reference.domain(), domain, "{input}");
                    assert_eq!(reference.path(), path, "{input}");
                    assert_eq!(reference.name(), format!("{domain}/{path}"), "{input}");
                    assert_eq!(reference.tag(), tag.as_deref(), "{input}");
                    assert_eq!(reference.digest().map(Digest::to_string), digest, "{input}");
                    assert_eq!(reference.familiar_string(), familiar, "{input}");
                    // The full form parses back to the same reference.
                    let full = reference.to_string();
                    assert_eq!(
                        full.parse::<Reference>().as_ref(),
                        Ok(&reference),
                        "{input}"
                    );
                    assert_eq!(full.parse::<Reference>().unwrap().to_string(), full);
                }
                (Expect::Refused(kind), Err(error)) => {
                    assert_eq!(variant(&error), kind, "{input}: {error}");
                }
                (Expect::Parsed { .. }, Err(error)) => panic!("{input}: refused: {error}"),
                (Expect::Refused(kind), Ok(reference)) => {
                    panic!("{input}: expected {kind}, parsed as {reference}")
                }
            }
        }
    }

    #[test]
    fn full_and_familiar_forms() {
        let busybox: Reference = "busybox".parse().unwrap();
        assert_eq!(busybox.to_string(), "docker.io/library/busybox");
        assert_eq!(busybox.familiar_name(), "busybox");
        assert!(busybox.is_docker_hub());
        let busybox = busybox.with_default_tag();
        assert_eq!(busybox.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(busybox.familiar_string(), "busybox:latest");

        let local: Reference = "localhost:5000/x".parse().unwrap();
        assert_eq!(local.familiar_name(), "localhost:5000/x");
        assert_eq!(local.name(), "localhost:5000/x");
        assert!(!local.is_docker_hub());

        let both: Reference = format!("busybox:latest@{BUSYBOX_DIGEST}").parse().unwrap();
        assert_eq!(
            both.to_string(),
            format!("docker.io/library/busybox:latest@{BUSYBOX_DIGEST}")
        );
        assert_eq!(
            both.familiar_string(),
            format!("busybox:latest@{BUSYBOX_DIGEST}")
        );
    }

    #[test]
    fn default_tag_only_without_tag_or_digest() {
        let tag = |s: &str| {
            s.parse::<Reference>()
                .unwrap()
                .with_default_tag()
                .to_string()
        };
        assert_eq!(tag("user/app"), "docker.io/user/app:latest");
        assert_eq!(tag("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            tag(&format!("user/app@{BUSYBOX_DIGEST}")),
            format!("docker.io/user/app@{BUSYBOX_DIGEST}")
        );
    }

    #[test]
    fn messages_use_docker_wording_and_name_the_input() {
        let message = |s: &str| s.parse::<Reference>().unwrap_err().to_string();
        assert_eq!(
            message("Busybox"),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        assert_eq!(
            message(hex),
            format!("invalid repository name ({hex}), cannot specify 64-byte hexadecimal strings")
        );
        assert!(message(&format!("x/{}", "a".repeat(300)))
            .starts_with("repository name must not be more than 255 characters"));
        for junk in [
            "a/..b",
            "busybox:",
            "busybox@sha256:00",
            "ftp:/x",
            "",
            "a//b",
        ] {
            let text = message(junk);
            assert!(text.starts_with("invalid reference format"), "{text}");
            assert!(text.contains(junk), "{text}");
        }
        let error = "app@sha256:abc".parse::<Reference>().unwrap_err();
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn serde_writes_the_full_form_and_parses_on_read() {
        let reference: Reference = serde_json::from_str("\"busybox:1.36\"").unwrap();
        assert_eq!(
            serde_json::to_string(&reference).unwrap(),
            "\"docker.io/library/busybox:1.36\""
        );
        assert!(serde_json::from_str::<Reference>("\"Busybox\"").is_err());
    }
}
