//! `--security-opt seccomp=<profile>`: Docker's seccomp profile format turned into the
//! spec's `linux.seccomp`.
//!
//! The docker CLI reads the profile file and sends its JSON text in `SecurityOpt`, so the
//! daemon receives the profile itself, not a path. The format extends the OCI one with
//! conditions that dockerd resolves for the host and the container before the spec is
//! written: `archMap` (the native architecture and its sub-architectures), and per-rule
//! `includes`/`excludes` on the container's bounding capabilities, the host architecture
//! and a minimum kernel version. Resolving them here the way moby's `profiles/seccomp`
//! does keeps a profile meaning the same thing under berth as under Docker.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{Map, Value};

use super::HostInfo;
use crate::error::{EngineError, Result};

fn decoding(e: impl std::fmt::Display) -> EngineError {
    EngineError::invalid(format!("Decoding seccomp profile failed: {e}"))
}

/// libseccomp's name of the host architecture (Docker matches `arches` against it) and the
/// spec's name for it.
fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86" => ("x86", "SCMP_ARCH_X86"),
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "loongarch64" => ("loongarch64", "SCMP_ARCH_LOONGARCH64"),
        "mips64" => ("mips64", "SCMP_ARCH_MIPS64"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        other => (other, ""),
    }
}

/// `"5.8"` → `(5, 8)`, as Docker's `KernelVersion` reads it.
fn parse_min_kernel(v: &Value) -> Result<Option<(u32, u32)>> {
    let s = v.as_str().ok_or_else(|| {
        decoding(format!(
            "invalid kernel version: {v}, expected \"<kernel>.<major>\""
        ))
    })?;
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || {
        decoding(format!(
            "invalid kernel version: \"{s}\", expected \"<kernel>.<major>\""
        ))
    };
    let (a, b) = s.split_once('.').ok_or_else(bad)?;
    let a: u8 = a.parse().map_err(|_| bad())?;
    let b: u8 = b.parse().map_err(|_| bad())?;
    if a == 0 && b == 0 {
        return Err(bad());
    }
    Ok(Some((a.into(), b.into())))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a rule's `includes` (`want = true`) or `excludes` (`want = false`) filter lets
/// the rule into the profile.
fn filter_passes(
    filter: Option<&Value>,
    want: bool,
    bounding: &[String],
    info: &HostInfo,
) -> Result<bool> {
    let Some(filter) = filter.filter(|f| !f.is_null()) else {
        return Ok(true);
    };
    let arch = native_arch().0;
    let arches = strings(filter.get("arches"));
    let caps = strings(filter.get("caps"));
    let min_kernel = match filter.get("minKernel") {
        Some(v) if !v.is_null() => parse_min_kernel(v)?,
        _ => None,
    };
    let kernel_ok = |k: (u32, u32)| info.kernel >= k;
    if want {
        if !arches.is_empty() && !arches.iter().any(|a| a == arch) {
            return Ok(false);
        }
        if caps.iter().any(|c| !bounding.contains(c)) {
            return Ok(false);
        }
        if let Some(k) = min_kernel {
            if !kernel_ok(k) {
                return Ok(false);
            }
        }
    } else {
        if arches.iter().any(|a| a == arch) {
            return Ok(false);
        }
        if caps.iter().any(|c| bounding.contains(c)) {
            return Ok(false);
        }
        if let Some(k) = min_kernel {
            if kernel_ok(k) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Resolve a Docker seccomp profile (JSON text) for a container whose bounding set is
/// `bounding` (`CAP_*` names). `None`: the profile disables seccomp (no default action and
/// no rules), as in Docker.
pub(crate) fn load_profile(
    body: &str,
    bounding: &[String],
    info: &HostInfo,
) -> Result<Option<LinuxSeccomp>> {
    let value: Value = serde_json::from_str(body).map_err(decoding)?;
    let Value::Object(mut obj) = value else {
        return Err(decoding("the profile is not a JSON object"));
    };
    let syscalls = match obj.remove("syscalls") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(decoding("\"syscalls\" is not a list")),
    };
    let default_action = obj
        .get("defaultAction")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if default_action.is_empty() && syscalls.is_empty() {
        return Ok(None);
    }
    let arch_map = obj.remove("archMap");
    let has_arch_map = arch_map
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let has_architectures = obj
        .get("architectures")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_arch_map && has_architectures {
        return Err(EngineError::invalid(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'",
        ));
    }
    if has_arch_map {
        let native = native_arch().1;
        let mut arches = Vec::new();
        for entry in arch_map.iter().flat_map(|m| m.as_array()).flatten() {
            if entry.get("architecture").and_then(Value::as_str) == Some(native) {
                arches.push(Value::String(native.to_owned()));
                arches.extend(
                    strings(entry.get("subArchitectures"))
                        .into_iter()
                        .map(Value::String),
                );
                break;
            }
        }
        if !arches.is_empty() {
            obj.insert("architectures".into(), Value::Array(arches));
        }
    }
    let mut rules = Vec::new();
    for call in syscalls {
        let Value::Object(mut call) = call else {
            return Err(decoding("a syscalls entry is not an object"));
        };
        let name = call.remove("name");
        if let Some(name) = name
            .as_ref()
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            if call
                .get("names")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
            {
                return Err(EngineError::invalid(
                    "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'",
                ));
            }
            call.insert(
                "names".into(),
                Value::Array(vec![Value::String(name.into())]),
            );
        }
        call.remove("comment");
        let includes = call.remove("includes");
        let excludes = call.remove("excludes");
        if !filter_passes(excludes.as_ref(), false, bounding, info)?
            || !filter_passes(includes.as_ref(), true, bounding, info)?
        {
            continue;
        }
        rules.push(Value::Object(call));
    }
    obj.insert("syscalls".into(), Value::Array(rules));
    let out: LinuxSeccomp =
        serde_json::from_value(Value::Object(strip_nulls(obj))).map_err(decoding)?;
    Ok(Some(out))
}

/// Go's decoder treats `null` as absent; serde's `Option` does too, but not for every
/// field type, so drop them.
fn strip_nulls(obj: Map<String, Value>) -> Map<String, Value> {
    obj.into_iter().filter(|(_, v)| !v.is_null()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> HostInfo {
        let mut i = super::super::tests::v1_host();
        i.kernel = (5, 4);
        i
    }

    #[test]
    fn conditions_are_resolved_for_the_host_and_capabilities() {
        let arch = native_arch();
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_NOPE", "subArchitectures": ["SCMP_ARCH_X"]},
                {"architecture": arch.1, "subArchitectures": ["SCMP_ARCH_X86"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
                {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_KILL"]}},
                {"names": ["new_thing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "5.8"}},
                {"names": ["old_thing"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["arch_thing"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": [arch.0]}},
                {"names": ["other_arch"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["s390"]}}
            ]
        })
        .to_string();
        let s = load_profile(&profile, &["CAP_KILL".into()], &info())
            .unwrap()
            .unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["architectures"],
            serde_json::json!([arch.1, "SCMP_ARCH_X86"])
        );
        let names: Vec<String> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| strings(r.get("names")))
            .collect();
        assert_eq!(names, ["read", "write", "old_thing", "arch_thing"]);
        assert_eq!(v["defaultErrnoRet"], 1);
    }

    #[test]
    fn empty_profile_disables_and_bad_ones_are_invalid() {
        assert!(load_profile("{}", &[], &info()).unwrap().is_none());
        let e = load_profile("not json", &[], &info()).unwrap_err();
        assert!(
            e.message.starts_with("Decoding seccomp profile failed"),
            "{e}"
        );
        let both = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86"}]}"#;
        assert!(load_profile(both, &[], &info())
            .unwrap_err()
            .message
            .contains("both 'architectures' and 'archMap'"));
        let bad_action = r#"{"defaultAction":"SCMP_ACT_NOPE"}"#;
        assert!(load_profile(bad_action, &[], &info()).is_err());
        let bad_kernel = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"five"}}]}"#;
        assert!(load_profile(bad_kernel, &[], &info()).is_err());
    }
}
