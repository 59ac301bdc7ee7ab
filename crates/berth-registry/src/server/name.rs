//! What a request's path names: the repository (checked against the distribution spec's
//! grammar), a tag or digest, an upload, and which endpoint the path is.
//!
//! Repository names contain slashes, so the router cannot split paths for us: the tail after
//! `/v2/` is matched here from its end, where the endpoint's fixed words are.

use std::fmt;

use berth_types::Digest;

use super::error::{ApiError, ErrorCode};

/// The longest repository name accepted, as distribution does.
pub const MAX_NAME_LEN: usize = 255;

/// A repository name matching the distribution spec's
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn parse(name: &str) -> Result<RepositoryName, ApiError> {
        let invalid = |why: &str| {
            ApiError::new(
                ErrorCode::NameInvalid,
                format!("invalid repository name {name:?}: {why}"),
            )
            .with_detail(serde_json::json!({ "name": name }))
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "it is longer than {MAX_NAME_LEN} characters"
            )));
        }
        if !name.split('/').all(valid_component) {
            return Err(invalid(
                "each /-separated part must be lowercase letters and digits, joined by \
                 '.', '_', '__' or dashes",
            ));
        }
        Ok(RepositoryName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: runs of lowercase alphanumerics, separated by one
/// `.`, one or two `_`, or any number of `-`.
fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false; // empty component, or a separator at its start or after another
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[sep_start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return false;
        }
    }
}

/// Whether `tag` matches the spec's `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The `<reference>` of a manifest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    /// A digest if it has the digest's `algorithm:` form, else a tag. A malformed one gets
    /// `code` (which differs between reading and writing).
    pub fn parse(reference: &str, code: ErrorCode) -> Result<ManifestRef, ApiError> {
        if reference.contains(':') {
            return parse_digest(reference).map(ManifestRef::Digest);
        }
        if valid_tag(reference) {
            Ok(ManifestRef::Tag(reference.to_owned()))
        } else {
            Err(ApiError::new(
                code,
                format!(
                    "invalid tag {reference:?}: a tag is up to 128 letters, digits, '_', '.' \
                     and '-', not starting with '.' or '-'"
                ),
            ))
        }
    }
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRef::Tag(tag) => f.write_str(tag),
            ManifestRef::Digest(digest) => digest.fmt(f),
        }
    }
}

/// A digest from a path or query, or DIGEST_INVALID naming it.
pub fn parse_digest(digest: &str) -> Result<Digest, ApiError> {
    digest.parse().map_err(|e| {
        ApiError::new(ErrorCode::DigestInvalid, format!("{e}"))
            .with_detail(serde_json::json!({ "digest": digest }))
    })
}

/// Which endpoint a path under `/v2/` addresses. Names are validated; references, digests
/// and upload ids are left to the handlers, which know which error each deserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, String),
}

impl Route {
    /// Matches the (percent-decoded) request path. `None` if it is no endpoint of the API.
    pub fn parse(path: &str) -> Result<Option<Route>, ApiError> {
        let Some(tail) = path.strip_prefix("/v2") else {
            return Ok(None);
        };
        if tail.is_empty() || tail == "/" {
            return Ok(Some(Route::Base));
        }
        let Some(tail) = tail.strip_prefix('/') else {
            return Ok(None);
        };
        if tail == "_catalog" {
            return Ok(Some(Route::Catalog));
        }
        let name = |prefix: &str| RepositoryName::parse(prefix);
        // Starting an upload: the only endpoint whose path may end in a slash.
        for suffix in ["/blobs/uploads/", "/blobs/uploads"] {
            if let Some(prefix) = tail.strip_suffix(suffix) {
                return name(prefix).map(|n| Some(Route::UploadStart(n)));
            }
        }
        let segments: Vec<&str> = tail.rsplitn(4, '/').collect();
        // segments = [last, second to last, third to last, rest]
        match segments.as_slice() {
            [id, "uploads", "blobs", prefix] => {
                Ok(Some(Route::Upload(name(prefix)?, (*id).to_owned())))
            }
            [digest, "blobs", rest @ ..] if !rest.is_empty() => Ok(Some(Route::Blob(
                name(&join_reversed(rest))?,
                (*digest).to_owned(),
            ))),
            [reference, "manifests", rest @ ..] if !rest.is_empty() => Ok(Some(Route::Manifest(
                name(&join_reversed(rest))?,
                (*reference).to_owned(),
            ))),
            ["list", "tags", rest @ ..] if !rest.is_empty() => {
                Ok(Some(Route::Tags(name(&join_reversed(rest))?)))
            }
            _ => Ok(None),
        }
    }
}

/// The segments before an endpoint's fixed words, which `rsplitn` gave back last-first.
fn join_reversed(segments: &[&str]) -> String {
    segments.iter().rev().copied().collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepositoryName {
        RepositoryName::parse(s).unwrap()
    }

    #[test]
    fn names_follow_the_spec_grammar() {
        for good in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "x/y/z/w",
            "0",
            "a-b",
        ] {
            assert!(RepositoryName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "", "Bad/Name", "a//b", "/a", "a/", "a..b", "a___b", "a._b", "-a", "a-", "a b", "a/_b",
            "ä",
        ] {
            let err = RepositoryName::parse(bad).unwrap_err();
            assert_eq!(err.code(), "NAME_INVALID", "{bad}");
        }
        assert!(RepositoryName::parse(&"a".repeat(255)).is_ok());
        assert!(RepositoryName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("_v1.2-rc"));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(!valid_tag(""));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("a/b"));
    }

    #[test]
    fn routes_are_matched_from_the_end() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Route::parse("/v2/").unwrap(), Some(Route::Base));
        assert_eq!(Route::parse("/v2").unwrap(), Some(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog").unwrap(), Some(Route::Catalog));
        assert_eq!(
            Route::parse("/v2/a/b/tags/list").unwrap(),
            Some(Route::Tags(name("a/b")))
        );
        assert_eq!(
            Route::parse("/v2/a/manifests/latest").unwrap(),
            Some(Route::Manifest(name("a"), "latest".into()))
        );
        assert_eq!(
            Route::parse(&format!("/v2/x/y/blobs/{d}")).unwrap(),
            Some(Route::Blob(name("x/y"), d.clone()))
        );
        assert_eq!(
            Route::parse("/v2/x/blobs/uploads/").unwrap(),
            Some(Route::UploadStart(name("x")))
        );
        assert_eq!(
            Route::parse("/v2/x/blobs/uploads/abc").unwrap(),
            Some(Route::Upload(name("x"), "abc".into()))
        );
        // A repository whose name holds the endpoint's words.
        assert_eq!(
            Route::parse(&format!("/v2/blobs/uploads/blobs/{d}")).unwrap(),
            Some(Route::Blob(name("blobs/uploads"), d))
        );
        assert_eq!(
            Route::parse("/v2/manifests/manifests/x").unwrap(),
            Some(Route::Manifest(name("manifests"), "x".into()))
        );
        for none in [
            "/",
            "/v3/",
            "/v2x",
            "/v2/a",
            "/v2/manifests/x",
            "/v2/tags/list",
        ] {
            assert_eq!(Route::parse(none).unwrap(), None, "{none}");
        }
        let err = Route::parse("/v2/Bad/Name/tags/list").unwrap_err();
        assert_eq!(err.code(), "NAME_INVALID");
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert_eq!(
            ManifestRef::parse("v1", ErrorCode::ManifestInvalid).unwrap(),
            ManifestRef::Tag("v1".into())
        );
        let err = ManifestRef::parse("sha512:abc", ErrorCode::ManifestInvalid).unwrap_err();
        assert_eq!(err.code(), "DIGEST_INVALID");
        let err = ManifestRef::parse("-x", ErrorCode::ManifestUnknown).unwrap_err();
        assert_eq!(err.code(), "MANIFEST_UNKNOWN");
    }
}
