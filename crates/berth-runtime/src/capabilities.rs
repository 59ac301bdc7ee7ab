//! Linux capabilities: Docker's default set, translation from the spec, and applying the
//! five sets in the order the kernel requires.

use std::collections::HashSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{IoContext, Result, RuntimeError};

/// The capabilities Docker grants a container unless told otherwise.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The spec's capability sets for Docker's defaults, adjusted by `--cap-add`/`--cap-drop`
/// (`ALL` allowed in either, as Docker does) or for `--privileged` (every capability the
/// running kernel knows).
pub fn docker_capabilities(
    add: &[Capability],
    drop: &[Capability],
    add_all: bool,
    drop_all: bool,
    privileged: bool,
) -> LinuxCapabilities {
    let set: Capabilities = if privileged {
        all_known()
    } else {
        let mut set: Capabilities = if drop_all {
            HashSet::new()
        } else {
            DOCKER_DEFAULT.iter().copied().collect()
        };
        if add_all {
            set = all_known();
        }
        for c in drop {
            set.remove(c);
        }
        set.extend(add.iter().copied());
        set
    };
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(Some(HashSet::new()))
        .set_ambient(Some(HashSet::new()));
    caps
}

/// Every capability that both oci-spec and the running kernel know.
pub fn all_known() -> Capabilities {
    caps::runtime::procfs_all_supported(None)
        .unwrap_or_else(|_| caps::all())
        .into_iter()
        .filter_map(|c| from_kernel(c).ok())
        .collect()
}

/// oci-spec's capability to the `caps` crate's (both spell them `CAP_*`).
pub fn to_kernel(cap: Capability) -> Result<caps::Capability> {
    let name = serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    name.parse().map_err(|_| {
        RuntimeError::invalid("process.capabilities", format!("unknown capability {name}"))
    })
}

fn from_kernel(cap: caps::Capability) -> std::result::Result<Capability, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(cap.to_string()))
}

fn kernel_set(set: Option<&Capabilities>) -> Result<caps::CapsHashSet> {
    set.into_iter().flatten().map(|c| to_kernel(*c)).collect()
}

/// Reduce the bounding set. Runs while the process still has CAP_SETPCAP, before switching
/// user.
pub(crate) fn drop_bounding(spec: &LinuxCapabilities) -> Result<()> {
    let keep = kernel_set(spec.bounding().as_ref())?;
    let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    for cap in supported {
        if !keep.contains(&cap) {
            caps::drop(None, caps::CapSet::Bounding, cap)
                .map_err(std::io::Error::other)
                .ctx(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    Ok(())
}

/// Set effective, permitted, inheritable and ambient sets. Runs after the switch to the
/// container's user, which (with PR_SET_KEEPCAPS) kept the permitted set.
pub(crate) fn apply_sets(spec: &LinuxCapabilities) -> Result<()> {
    let effective = kernel_set(spec.effective().as_ref())?;
    let permitted = kernel_set(spec.permitted().as_ref())?;
    let inheritable = kernel_set(spec.inheritable().as_ref())?;
    let ambient = kernel_set(spec.ambient().as_ref())?;
    let set = |which: caps::CapSet, value: &caps::CapsHashSet, name: &str| {
        caps::set(None, which, value)
            .map_err(std::io::Error::other)
            .ctx(|| format!("setting the {name} capability set"))
    };
    // Each capset must keep effective within permitted: shrink effective first. Inheritable
    // must be set before ambient capabilities can be raised.
    set(caps::CapSet::Effective, &effective, "effective")?;
    set(caps::CapSet::Permitted, &permitted, "permitted")?;
    set(caps::CapSet::Inheritable, &inheritable, "inheritable")?;
    // The kernel only lets a capability into the ambient set if it is both permitted and
    // inheritable. runc's default spec lists ambient capabilities without making them
    // inheritable; like runc, skip those instead of failing the container.
    for cap in ambient
        .iter()
        .filter(|c| inheritable.contains(c) && permitted.contains(c))
    {
        caps::raise(None, caps::CapSet::Ambient, *cap)
            .map_err(std::io::Error::other)
            .ctx(|| format!("raising {cap} in the ambient set"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_capability_maps_to_the_kernel() {
        for cap in DOCKER_DEFAULT {
            to_kernel(cap).unwrap();
        }
        assert_eq!(
            to_kernel(Capability::NetBindService).unwrap(),
            caps::Capability::CAP_NET_BIND_SERVICE
        );
    }

    #[test]
    fn add_drop_and_privileged() {
        let caps = docker_capabilities(
            &[Capability::SysAdmin],
            &[Capability::NetRaw],
            false,
            false,
            false,
        );
        let eff = caps.effective().clone().unwrap();
        assert!(eff.contains(&Capability::SysAdmin));
        assert!(!eff.contains(&Capability::NetRaw));
        assert_eq!(eff.len(), 14);

        let none = docker_capabilities(&[Capability::Kill], &[], false, true, false);
        assert_eq!(none.bounding().clone().unwrap().len(), 1);

        let all = docker_capabilities(&[], &[], false, false, true);
        assert!(all.bounding().clone().unwrap().len() > 37);
    }
}
