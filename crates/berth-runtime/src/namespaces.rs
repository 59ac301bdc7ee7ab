//! Which namespaces a container gets: created anew (a clone flag) or joined by path.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{IoContext, Result, RuntimeError};

/// The namespace plan of a container.
#[derive(Debug)]
pub(crate) struct NamespacePlan {
    /// Namespaces to create (without `CLONE_NEWUSER` and `CLONE_NEWTIME`, which the
    /// intermediate child handles with `unshare`).
    pub clone_flags: CloneFlags,
    pub new_user: bool,
    pub new_time: bool,
    /// Namespaces to join, opened in the runtime so a bad path fails before any fork; the
    /// user namespace (if any) first, the mount namespace last.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
}

impl NamespacePlan {
    /// Whether the container runs in a user namespace of its own (created or joined).
    pub fn in_user_ns(&self) -> bool {
        self.new_user
            || self
                .join
                .iter()
                .any(|(t, _)| *t == LinuxNamespaceType::User)
    }
}

impl Default for NamespacePlan {
    fn default() -> Self {
        NamespacePlan {
            clone_flags: CloneFlags::empty(),
            new_user: false,
            new_time: false,
            join: Vec::new(),
        }
    }
}

pub(crate) fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME has no bit in clone(2)'s legacy flags word; handled by unshare.
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

/// The order in which namespaces are joined: the user namespace first (it grants the
/// rights to join the others), the mount namespace last (joining it changes our root).
pub(crate) fn join_order(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 9,
        _ => 5,
    }
}

pub(crate) fn plan(spec: &Spec) -> Result<NamespacePlan> {
    let mut p = NamespacePlan::default();
    let Some(linux) = spec.linux() else {
        return Ok(p);
    };
    let mut seen = Vec::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let t = ns.typ();
        if seen.contains(&t) {
            return Err(RuntimeError::invalid(
                format!("linux.namespaces[{i}]"),
                format!("namespace {t} is listed twice"),
            ));
        }
        seen.push(t);
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => {
                let file = File::open(path).ctx(|| {
                    format!(
                        "linux.namespaces[{i}]: opening {t} namespace {}",
                        path.display()
                    )
                })?;
                p.join.push((t, file.into()));
            }
            _ => match t {
                LinuxNamespaceType::User => p.new_user = true,
                LinuxNamespaceType::Time => p.new_time = true,
                _ => p.clone_flags |= flag(t),
            },
        }
    }
    p.join.sort_by_key(|(t, _)| join_order(*t));
    if p.new_user {
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if !has_maps {
            return Err(RuntimeError::invalid(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
    } else if linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && !p.join.iter().any(|(t, _)| *t == LinuxNamespaceType::User)
    {
        return Err(RuntimeError::invalid(
            "linux.uidMappings",
            "mappings are given but there is no user namespace in linux.namespaces",
        ));
    }
    if !p.clone_flags.contains(CloneFlags::CLONE_NEWNS)
        && !p.join.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount)
    {
        return Err(RuntimeError::invalid(
            "linux.namespaces",
            "a mount namespace is required: add {\"type\": \"mount\"}",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !p.clone_flags.contains(CloneFlags::CLONE_NEWUTS)
    {
        return Err(RuntimeError::invalid(
            "hostname",
            "setting a hostname needs a new uts namespace",
        ));
    }
    Ok(p)
}

/// `/proc/<pid>/ns/<name>` of a running container, for exec and `container:` modes.
pub fn namespace_path(pid: i32, t: LinuxNamespaceType) -> PathBuf {
    let name = match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    };
    PathBuf::from(format!("/proc/{pid}/ns/{name}"))
}

/// Write the user namespace's id maps for `pid` (run by the runtime, which has the
/// privileges over the parent namespace that the child lacks).
pub(crate) fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), fmt(linux.uid_mappings()))
        .ctx(|| "linux.uidMappings: writing uid_map".to_string())?;
    std::fs::write(format!("/proc/{pid}/gid_map"), fmt(linux.gid_mappings()))
        .ctx(|| "linux.gidMappings: writing gid_map".to_string())?;
    Ok(())
}
