//! Usage numbers read back from a cgroup, the same shape on v1 and v2.
//!
//! Each group is `None` when the host does not account it for this cgroup (no such v1
//! hierarchy, or the v2 controller is not enabled), and single numbers are `None` when the
//! kernel is too old to provide them (`memory.peak` needs Linux 5.19, `oom_kill` 4.13), so a
//! caller never mistakes "not measured" for zero.

use serde::Serialize;

/// What [`super::Cgroup::stats`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupStats {
    pub memory: Option<MemoryStats>,
    pub cpu: Option<CpuStats>,
    pub pids: Option<PidsStats>,
}

/// Memory use of the cgroup and its descendants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Bytes charged now, page cache included (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub usage_bytes: u64,
    /// The hard limit; `None` means unlimited.
    pub limit_bytes: Option<u64>,
    /// Highest usage seen (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub max_usage_bytes: Option<u64>,
    /// Processes killed by the OOM killer inside this cgroup.
    pub oom_kills: Option<u64>,
}

/// CPU time consumed by the cgroup and its descendants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// User plus system time, in nanoseconds.
    pub usage_ns: u64,
}

/// Process count of the cgroup and its descendants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    pub current: u64,
    /// `None` means unlimited.
    pub limit: Option<u64>,
}
