//! `linux.resources` and `linux.devices` from a `HostConfig`: Docker's validation rules
//! and messages, and its adjustments (swap defaulting to twice the memory, limits the host
//! cannot enforce dropped with a warning), so a request that dockerd accepts gets the same
//! limits here and one it refuses is refused with the same words.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_runtime::cgroups::CgroupMode;
use serde_json::{json, Map, Value};

use super::{parse_uint_list, HostInfo};
use crate::error::{EngineError, Result};
use crate::types::HostConfig;

/// Docker's floor for `Memory` and `MemoryReservation` (not a kernel limit: room for the
/// container's start-up).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// `linux.resources` except `devices`, or `None` when nothing is limited.
pub(crate) fn resources(host: &HostConfig, info: &HostInfo) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    if let Some(memory) = memory(host, info)? {
        out.insert("memory".into(), memory);
    }
    if let Some(cpu) = cpu(host, info)? {
        out.insert("cpu".into(), cpu);
    }
    if let Some(limit) = host.pids_limit {
        // The API takes 0 and negatives as "unlimited"; the runtime spells that -1.
        let limit = if limit <= 0 { -1 } else { limit };
        out.insert("pids".into(), json!({ "limit": limit }));
    }
    if host.blkio_weight != 0 {
        // Checked before the support test (Docker checks after): an out-of-range weight is
        // refused on every host instead of being dropped silently on some.
        if !(10..=1000).contains(&host.blkio_weight) {
            return Err(EngineError::invalid(
                "Range of blkio weight is from 10 to 1000",
            ));
        }
        if info.blkio_weight {
            out.insert("blockIO".into(), json!({ "weight": host.blkio_weight }));
        } else {
            tracing::warn!("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.");
        }
    }
    Ok(out)
}

fn memory(host: &HostConfig, info: &HostInfo) -> Result<Option<Value>> {
    let v2 = info.cgroup_mode == CgroupMode::V2;
    let memory = host.memory;
    let mut swap = host.memory_swap;
    let reservation = host.memory_reservation;
    if memory != 0 && memory < MIN_MEMORY {
        return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
    }
    // dockerd's adaptContainerSettings: swap defaults to as much again as the memory.
    if memory > 0 && swap == 0 {
        swap = memory.saturating_mul(2);
    }
    if memory > 0 && swap != -1 && !info.swap_accounting {
        tracing::warn!("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.");
        swap = -1;
    }
    if memory > 0 && swap > 0 && swap < memory {
        return Err(EngineError::invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if memory == 0 && swap > 0 {
        return Err(EngineError::invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    // -1 is the CLI's "unset".
    let swappiness = host.memory_swappiness.filter(|s| *s != -1);
    let swappiness = match swappiness {
        Some(_) if v2 => {
            tracing::warn!("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.");
            None
        }
        other => other,
    };
    if let Some(s) = swappiness {
        if !(0..=100).contains(&s) {
            return Err(EngineError::invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
        return Err(EngineError::invalid(
            "MemorySwappiness is not supported by berth yet: leave it unset (or -1)",
        ));
    }
    if reservation > 0 && reservation < MIN_MEMORY {
        return Err(EngineError::invalid(
            "Minimum memory reservation allowed is 6MB",
        ));
    }
    if memory > 0 && reservation > 0 && memory < reservation {
        return Err(EngineError::invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    let mut out = Map::new();
    if memory > 0 {
        out.insert("limit".into(), memory.into());
    }
    if reservation > 0 {
        out.insert("reservation".into(), reservation.into());
    }
    if swap > 0 {
        out.insert("swap".into(), swap.into());
    }
    // Docker defaults OomKillDisable to false, so on v1 the spec always says so; v2 has no
    // such switch and Docker drops it.
    match host.oom_kill_disable {
        Some(true) if v2 => {
            tracing::warn!(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
            );
        }
        Some(true) => {
            return Err(EngineError::invalid(
                "OomKillDisable is not supported by berth yet",
            ))
        }
        _ if !v2 => {
            out.insert("disableOOMKiller".into(), false.into());
        }
        _ => {}
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

fn cpu(host: &HostConfig, info: &HostInfo) -> Result<Option<Value>> {
    if host.nano_cpus > 0 && host.cpu_period > 0 {
        return Err(EngineError::invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if host.nano_cpus > 0 && host.cpu_quota > 0 {
        return Err(EngineError::invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    if host.nano_cpus != 0 {
        let n = i64::from(info.ncpus);
        if host.nano_cpus < 0 || host.nano_cpus > n.saturating_mul(1_000_000_000) {
            return Err(EngineError::invalid(format!(
                "range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )));
        }
    }
    if host.cpu_period != 0 && !(1000..=1_000_000).contains(&host.cpu_period) {
        return Err(EngineError::invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if host.cpu_quota > 0 && host.cpu_quota < 1000 {
        return Err(EngineError::invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    check_cpuset(&host.cpuset_cpus, &info.cpus, "cpus", "CPUs")?;
    check_cpuset(&host.cpuset_mems, &info.mems, "mems", "memory nodes")?;
    if host.cpu_shares < 0 {
        return Err(EngineError::invalid(format!(
            "invalid CPU shares ({}): value must be a positive integer",
            host.cpu_shares
        )));
    }
    if host.cpu_realtime_period != 0 || host.cpu_realtime_runtime != 0 {
        return Err(EngineError::invalid(
            "CpuRealtimePeriod and CpuRealtimeRuntime are not supported by berth yet",
        ));
    }
    let mut out = Map::new();
    if host.cpu_shares != 0 {
        out.insert("shares".into(), host.cpu_shares.into());
    }
    if !host.cpuset_cpus.is_empty() {
        out.insert("cpus".into(), host.cpuset_cpus.clone().into());
    }
    if !host.cpuset_mems.is_empty() {
        out.insert("mems".into(), host.cpuset_mems.clone().into());
    }
    if host.nano_cpus > 0 {
        // sched-bwc: a 100 ms period and the matching share of it as quota.
        let period: i64 = 100_000;
        out.insert("period".into(), period.into());
        out.insert(
            "quota".into(),
            (host.nano_cpus.saturating_mul(period) / 1_000_000_000).into(),
        );
    }
    if host.cpu_period != 0 {
        out.insert("period".into(), host.cpu_period.into());
    }
    if host.cpu_quota != 0 {
        out.insert("quota".into(), host.cpu_quota.into());
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// `CpusetCpus`/`CpusetMems`: a well-formed list naming only what the host has.
fn check_cpuset(requested: &str, available: &str, field: &str, what: &str) -> Result<()> {
    if requested.is_empty() {
        return Ok(());
    }
    let want = parse_uint_list(requested).map_err(|e| {
        EngineError::invalid(format!("Invalid value {requested} for cpuset {field}: {e}"))
    })?;
    let have = parse_uint_list(available).unwrap_or_default();
    if want.iter().any(|n| !have.contains(n)) {
        return Err(EngineError::invalid(format!(
            "Requested {what} are not available - requested {requested}, available: {available}"
        )));
    }
    Ok(())
}

/// Docker's device cgroup rules: deny everything, then allow the devices every container
/// has (the runtime appends mknod of anything and the pts/ptmx/full/console rules after
/// these, as runc does), and keep denying /dev/fuse.
pub(crate) fn default_device_rules() -> Vec<Value> {
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(
            json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"}),
        );
    }
    rules.push(json!({"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
    rules
}

/// `linux.devices` and the device cgroup rules.
pub(crate) fn devices(host: &HostConfig, privileged: bool) -> Result<(Vec<Value>, Vec<Value>)> {
    let mappings = host
        .devices
        .iter()
        .flatten()
        .map(parse_mapping)
        .collect::<Result<Vec<_>>>()?;
    let mut devs = Vec::new();
    if privileged {
        devs = host_devices()?;
        for m in mappings {
            // Already there: privileged containers get every host device at its own path.
            if m.on_host == m.in_container {
                continue;
            }
            let (d, _) = devices_from_path(&m.on_host, &m.in_container, "rwm")?;
            devs.extend(d);
        }
        return Ok((devs, vec![json!({"allow": true, "access": "rwm"})]));
    }
    let mut rules = default_device_rules();
    for m in mappings {
        let (d, r) = devices_from_path(&m.on_host, &m.in_container, &m.permissions)?;
        devs.extend(d);
        rules.extend(r);
    }
    for rule in host.device_cgroup_rules.iter().flatten() {
        rules.push(parse_device_cgroup_rule(rule)?);
    }
    Ok((devs, rules))
}

/// One `HostConfig.Devices` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceMapping {
    pub on_host: String,
    pub in_container: String,
    pub permissions: String,
}

/// `{"PathOnHost", "PathInContainer", "CgroupPermissions"}` (what the API documents), or
/// the CLI's `host[:container[:perms]]` string some clients send. The container path
/// defaults to the host path and the permissions to `rwm`, as the CLI fills them.
pub(crate) fn parse_mapping(v: &Value) -> Result<DeviceMapping> {
    let (on_host, in_container, permissions) = match v {
        Value::String(s) => {
            let mut parts = s.splitn(3, ':');
            let host = parts.next().unwrap_or_default().to_owned();
            let second = parts.next().map(str::to_owned);
            let third = parts.next().map(str::to_owned);
            // `/dev/x:rw` names permissions, not a container path.
            match (second, third) {
                (Some(p), None) if !p.starts_with('/') => (host, String::new(), p),
                (c, p) => (host, c.unwrap_or_default(), p.unwrap_or_default()),
            }
        }
        Value::Object(o) => {
            let field = |k: &str| -> Result<String> {
                match o.get(k) {
                    None | Some(Value::Null) => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(other) => Err(EngineError::invalid(format!(
                        "invalid device mapping: {k} must be a string, not {other}"
                    ))),
                }
            };
            (
                field("PathOnHost")?,
                field("PathInContainer")?,
                field("CgroupPermissions")?,
            )
        }
        other => {
            return Err(EngineError::invalid(format!(
                "invalid device mapping {other}: expected {{\"PathOnHost\", \"PathInContainer\", \"CgroupPermissions\"}}"
            )))
        }
    };
    if on_host.is_empty() {
        return Err(EngineError::invalid(
            "invalid device mapping: PathOnHost is empty",
        ));
    }
    let in_container = if in_container.is_empty() {
        on_host.clone()
    } else {
        in_container
    };
    if !in_container.starts_with("/dev/") {
        return Err(EngineError::invalid(format!(
            "invalid device mapping: PathInContainer {in_container:?} must be a path under /dev"
        )));
    }
    let permissions = if permissions.is_empty() {
        "rwm".to_owned()
    } else {
        permissions
    };
    if permissions.len() > 3 || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(EngineError::invalid(format!(
            "invalid device mapping: bad mode specified: {permissions} (use a combination of r, w and m)"
        )));
    }
    Ok(DeviceMapping {
        on_host,
        in_container,
        permissions,
    })
}

/// Go's spelling of an errno (`no such file or directory`), which Docker's messages carry.
fn go_errno(e: &std::io::Error) -> String {
    let s = match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

enum DeviceError {
    NotADevice,
    Io(String),
}

/// A device node's entry, without following a final symlink (as containerd's
/// `DeviceFromPath`). Fifos count as not-a-device: the cgroup device rules cannot name
/// them.
fn device_from_path(path: &Path) -> std::result::Result<Value, DeviceError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| DeviceError::Io(format!("lstat {}: {}", path.display(), go_errno(&e))))?;
    let ft = meta.file_type();
    let typ = if ft.is_block_device() {
        "b"
    } else if ft.is_char_device() {
        "c"
    } else {
        return Err(DeviceError::NotADevice);
    };
    let rdev = meta.rdev();
    Ok(json!({
        "path": path.to_string_lossy(),
        "type": typ,
        "major": nix::sys::stat::major(rdev),
        "minor": nix::sys::stat::minor(rdev),
        "fileMode": meta.mode() & 0o7777,
        "uid": meta.uid(),
        "gid": meta.gid(),
    }))
}

fn rule_for(dev: &Value, access: &str) -> Value {
    json!({
        "allow": true,
        "type": dev["type"],
        "major": dev["major"],
        "minor": dev["minor"],
        "access": access,
    })
}

/// moby's `DevicesFromPath`: a device node (a symlink to one is resolved first), or every
/// device under a directory, shown at `in_container`.
fn devices_from_path(
    on_host: &str,
    in_container: &str,
    access: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut resolved = PathBuf::from(on_host);
    if std::fs::symlink_metadata(on_host).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(p) = std::fs::canonicalize(on_host) {
            resolved = p;
        }
    }
    let err = match device_from_path(&resolved) {
        Ok(mut d) => {
            d["path"] = in_container.into();
            let rule = rule_for(&d, access);
            return Ok((vec![d], vec![rule]));
        }
        Err(e) => e,
    };
    let mut devs = Vec::new();
    if matches!(err, DeviceError::NotADevice) && resolved.is_dir() {
        let mut stack = vec![resolved.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                    stack.push(p);
                    continue;
                }
                if let Ok(mut d) = device_from_path(&p) {
                    let rel = p.strip_prefix(&resolved).unwrap_or(&p);
                    d["path"] = Path::new(in_container).join(rel).to_string_lossy().into();
                    devs.push(d);
                }
            }
        }
    }
    if !devs.is_empty() {
        let rules = devs.iter().map(|d| rule_for(d, access)).collect();
        return Ok((devs, rules));
    }
    let reason = match err {
        DeviceError::NotADevice => "not a device node".to_owned(),
        DeviceError::Io(s) => s,
    };
    Err(EngineError::invalid(format!(
        "error gathering device information while adding custom device \"{on_host}\": {reason}"
    )))
}

/// Every device node under the host's /dev, for privileged containers (containerd's
/// `HostDevices`: not pts, shm, fd, mqueue, the lxc/lxd/udev directories, nor the
/// console).
fn host_devices() -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            EngineError::io(format!("listing host devices in {}", dir.display()), e)
        })?;
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let path = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                if !matches!(
                    name.as_ref(),
                    "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
                ) {
                    stack.push(path);
                }
                continue;
            }
            if dir == Path::new("/dev") && name == "console" {
                continue;
            }
            if let Ok(d) = device_from_path(&path) {
                out.push(d);
            }
        }
    }
    Ok(out)
}

/// `DeviceCgroupRules` entries: `c 1:3 rwm`, `b *:* m`, `a 7:* r`.
pub(crate) fn parse_device_cgroup_rule(rule: &str) -> Result<Value> {
    let bad = || EngineError::invalid(format!("invalid device cgroup rule format: '{rule}'"));
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, numbers, access] = parts[..] else {
        return Err(bad());
    };
    if !matches!(typ, "a" | "b" | "c") {
        return Err(bad());
    }
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |s: &str| -> Result<i64> {
        if s == "*" {
            Ok(-1)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| {
                EngineError::invalid(format!(
                    "invalid major value in device cgroup rule format: '{rule}'"
                ))
            })
        } else {
            Err(bad())
        }
    };
    let (major, minor) = (number(major)?, number(minor)?);
    if access.is_empty()
        || access.len() > 3
        || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
    {
        return Err(bad());
    }
    Ok(json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}))
}
