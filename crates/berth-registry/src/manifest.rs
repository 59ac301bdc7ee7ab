//! The manifests a registry serves, read leniently enough for real registries and strictly
//! where it matters: the four current media types (Docker v2.2 manifest and manifest list,
//! OCI manifest and index), schema 1 recognised only to be refused by name, and platform
//! selection in an index as Docker does it (os, architecture, then the variant).
//!
//! The bytes are never re-encoded: a manifest's digest is the digest of the bytes the
//! registry sent, so pulled manifests are stored and pushed exactly as received.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use berth_types::Digest;
use serde::{Deserialize, Serialize};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The `Accept` header of a manifest request: every type berth reads, schema 1 last so a
/// registry that can convert prefers the others.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest berth reads (distribution refuses larger ones too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config berth reads.
pub const MAX_CONFIG: u64 = 16 << 20;

/// A content descriptor, as both manifest families write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// An image manifest (Docker v2.2 or OCI).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// A manifest list or OCI index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image {
        media_type: String,
        manifest: ImageManifest,
    },
    Index {
        media_type: String,
        index: Index,
    },
}

/// Why a document is not a manifest berth can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    Schema1,
    Unsupported(String),
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

impl Manifest {
    /// Read `body` served with `content_type` (the header may be missing or generic; the
    /// document's own `mediaType`, then its shape, decide then).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, ManifestError> {
        let probe: Probe =
            serde_json::from_slice(body).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
        let media_type = header.or(probe.media_type.clone()).unwrap_or_else(|| {
            match (&probe.manifests, &probe.config) {
                (Some(_), _) => OCI_INDEX.to_owned(),
                (None, Some(_)) => OCI_MANIFEST.to_owned(),
                _ => String::new(),
            }
        });
        if probe.schema_version == Some(1)
            || media_type == DOCKER_SCHEMA1
            || media_type == DOCKER_SCHEMA1_SIGNED
        {
            return Err(ManifestError::Schema1);
        }
        let invalid = |e: serde_json::Error| ManifestError::Invalid(e.to_string());
        match media_type.as_str() {
            DOCKER_MANIFEST | OCI_MANIFEST => Ok(Manifest::Image {
                manifest: serde_json::from_slice(body).map_err(invalid)?,
                media_type,
            }),
            DOCKER_MANIFEST_LIST | OCI_INDEX => Ok(Manifest::Index {
                index: serde_json::from_slice(body).map_err(invalid)?,
                media_type,
            }),
            "" => Err(ManifestError::Invalid(
                "the document has no media type and is neither a manifest nor an index".into(),
            )),
            other => Err(ManifestError::Unsupported(other.to_owned())),
        }
    }
}

/// How a layer blob is compressed, from its media type.
pub fn layer_compression(media_type: &str) -> Option<berth_image::unpack::Compression> {
    use berth_image::unpack::Compression;
    let base = media_type.replace(".nondistributable", "");
    match base.as_str() {
        DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN | OCI_LAYER_GZIP => Some(Compression::Gzip),
        OCI_LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        OCI_LAYER_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// A platform: `os/architecture[/variant]`, as `--platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine (linux/amd64 here), as Docker normalises it.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            os_version: None,
            variant: variant.map(str::to_owned),
        }
    }

    /// Architecture and variant as Docker normalises them (`aarch64` → `arm64`, `x86_64` →
    /// `amd64`; arm64's default variant is v8).
    fn normalized(&self) -> (String, Option<String>) {
        let arch = self.architecture.to_lowercase();
        let variant = self.variant.as_ref().map(|v| v.to_lowercase());
        match arch.as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant),
            "aarch64" | "arm64" => (
                "arm64".into(),
                match variant.as_deref() {
                    None | Some("8") | Some("v8") => Some("v8".into()),
                    _ => variant,
                },
            ),
            "armhf" => ("arm".into(), Some("v7".into())),
            "armel" => ("arm".into(), Some("v6".into())),
            "arm" => (
                "arm".into(),
                match variant.as_deref() {
                    None | Some("7") | Some("v7") => Some("v7".into()),
                    Some("6") => Some("v6".into()),
                    Some("5") => Some("v5".into()),
                    Some("8") => Some("v8".into()),
                    _ => variant,
                },
            ),
            "i386" => ("386".into(), variant),
            _ => (arch, variant),
        }
    }

    /// Whether an index entry for `candidate` can run where `self` is wanted: same os and
    /// architecture, and the variant either equal, or (for arm) an older one the wanted
    /// variant still runs, or absent in the entry.
    pub fn matches(&self, candidate: &Platform) -> bool {
        if !self.os.eq_ignore_ascii_case(&candidate.os) {
            return false;
        }
        let (want_arch, want_var) = self.normalized();
        let (have_arch, have_var) = candidate.normalized();
        if want_arch != have_arch {
            return false;
        }
        match (&want_var, &have_var) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(w), Some(h)) => w == h || (want_arch == "arm" && arm_level(h) <= arm_level(w)),
        }
    }

    /// How good a match `candidate` is (higher is better): an exact variant beats an older
    /// one, which beats an entry without a variant.
    fn score(&self, candidate: &Platform) -> u32 {
        let (_, want_var) = self.normalized();
        let (_, have_var) = candidate.normalized();
        match (&want_var, &have_var) {
            (Some(w), Some(h)) if w == h => 100,
            (_, Some(h)) => 10 + arm_level(h),
            (_, None) => 1,
        }
    }
}

fn arm_level(variant: &str) -> u32 {
    variant.trim_start_matches('v').parse().unwrap_or(0)
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = String;

    /// `os[/arch[/variant]]` or just `arch`, as Docker's `--platform`.
    fn from_str(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            format!("invalid platform {s:?}: expected os/architecture[/variant], as linux/amd64")
        };
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(bad());
        }
        let host = Platform::host();
        let p = match parts.as_slice() {
            [one] if *one == "linux" => host,
            [arch] => Platform {
                architecture: (*arch).into(),
                os: "linux".into(),
                ..Platform::default()
            },
            [os, arch] => Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                ..Platform::default()
            },
            [os, arch, variant] => Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*variant).into()),
                ..Platform::default()
            },
            _ => return Err(bad()),
        };
        let (architecture, variant) = p.normalized();
        Ok(Platform {
            architecture,
            variant,
            os: p.os.to_lowercase(),
            os_version: None,
        })
    }
}

/// The entry of `index` to pull for `wanted`, or the platforms the index has.
pub fn select_platform<'a>(index: &'a Index, wanted: &Platform) -> Result<&'a Descriptor, String> {
    index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
        .max_by_key(|d| wanted.score(d.platform.as_ref().expect("filtered")))
        .ok_or_else(|| {
            let mut have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(Platform::to_string)
                .collect();
            have.dedup();
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str, n: u8) -> Descriptor {
        let p: Platform = platform.parse().unwrap();
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::from_sha256([n; 32]),
            size: 1,
            urls: vec![],
            annotations: BTreeMap::new(),
            platform: Some(Platform {
                // Entries keep what the registry wrote: no normalisation of the variant.
                variant: platform.split('/').nth(2).map(str::to_owned),
                ..p
            }),
        }
    }

    fn index(entries: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: entries,
        }
    }

    #[test]
    fn platform_selection() {
        let idx = index(vec![
            entry("linux/arm/v6", 1),
            entry("linux/arm/v7", 2),
            entry("linux/arm64/v8", 3),
            entry("linux/amd64", 4),
            entry("windows/amd64", 5),
            entry("linux/386", 6),
        ]);
        let pick = |p: &str| select_platform(&idx, &p.parse().unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64").unwrap(), Digest::from_sha256([4; 32]));
        assert_eq!(pick("amd64").unwrap(), Digest::from_sha256([4; 32]));
        assert_eq!(pick("linux/arm64").unwrap(), Digest::from_sha256([3; 32]));
        assert_eq!(pick("linux/aarch64").unwrap(), Digest::from_sha256([3; 32]));
        assert_eq!(pick("linux/arm/v7").unwrap(), Digest::from_sha256([2; 32]));
        assert_eq!(pick("linux/arm").unwrap(), Digest::from_sha256([2; 32]));
        assert_eq!(pick("linux/arm/v6").unwrap(), Digest::from_sha256([1; 32]));
        assert_eq!(pick("windows/amd64").unwrap(), Digest::from_sha256([5; 32]));
        let err = pick("linux/s390x").unwrap_err();
        assert!(
            err.contains("linux/amd64") && err.contains("linux/arm/v7"),
            "{err}"
        );
        assert_eq!(Platform::host().to_string(), "linux/amd64");
        assert!("linux//amd64".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn media_types_and_schema1() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#;
        assert!(matches!(
            Manifest::parse(Some(DOCKER_MANIFEST), m),
            Ok(Manifest::Image { media_type, .. }) if media_type == DOCKER_MANIFEST
        ));
        // No header: the shape decides.
        assert!(matches!(
            Manifest::parse(None, m),
            Ok(Manifest::Image { media_type, .. }) if media_type == OCI_MANIFEST
        ));
        let s1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(
            Manifest::parse(Some(DOCKER_SCHEMA1_SIGNED), s1).unwrap_err(),
            ManifestError::Schema1
        );
        assert_eq!(
            Manifest::parse(Some("application/json"), s1).unwrap_err(),
            ManifestError::Schema1
        );
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            Manifest::parse(Some(DOCKER_MANIFEST_LIST), i),
            Ok(Manifest::Index { .. })
        ));
        assert!(matches!(
            Manifest::parse(Some("application/vnd.example+json"), i),
            Err(ManifestError::Unsupported(_))
        ));
        assert!(matches!(
            Manifest::parse(None, b"not json"),
            Err(ManifestError::Invalid(_))
        ));
        assert_eq!(
            layer_compression(OCI_LAYER_ZSTD),
            Some(berth_image::unpack::Compression::Zstd)
        );
        assert_eq!(layer_compression("application/x-foo"), None);
    }
}
