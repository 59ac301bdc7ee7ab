//! What the spec builder needs to know about the host, read once.
//!
//! dockerd decides several parts of a container's spec from the machine it runs on: the
//! cgroup namespace default (private on a pure cgroup v2 host, the host's on v1 and hybrid
//! hosts), whether a swap or blkio-weight limit can be honoured at all (otherwise it is
//! dropped with a warning, not failed), the CPU count that bounds `NanoCpus`, the CPUs and
//! memory nodes `CpusetCpus`/`CpusetMems` may name, which default sysctls exist, whether
//! the kernel has time namespaces, and which per-CPU `thermal_throttle` directories to mask.
//! [`HostInfo::detect`] gathers all of it; [`super::build_with`] takes it as a parameter so
//! tests can build specs for a v2 host on a v1 machine (and the other way round).

use std::path::Path;
use std::sync::OnceLock;

use berth_runtime::cgroups::{self, CgroupMode};

/// Facts about the host that change what Docker puts in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// How cgroups are mounted (v1, v2 or hybrid).
    pub cgroup_mode: CgroupMode,
    /// CPUs this process may run on (Go's `runtime.NumCPU`, which `NanoCpus` is checked
    /// against).
    pub ncpus: u32,
    /// CPUs a cpuset may name, as a list (`0-3`).
    pub cpus: String,
    /// Memory nodes a cpuset may name, as a list (`0`).
    pub mems: String,
    /// The kernel accounts swap per cgroup (`memory.memsw.*` on v1, `memory.swap.max` on
    /// v2); without it Docker drops `MemorySwap` with a warning.
    pub swap_accounting: bool,
    /// The kernel can weigh block I/O (`blkio.weight` or `blkio.bfq.weight` on v1, the `io`
    /// controller on v2); without it Docker drops `BlkioWeight` with a warning.
    pub blkio_weight: bool,
    /// The kernel has time namespaces (5.6+); Docker 29.5+ gives each container its own.
    pub time_namespace: bool,
    /// The running kernel's version and major revision (`6.1` of `6.1.0-13-amd64`), for
    /// `minKernel` conditions of seccomp profiles.
    pub kernel: (u32, u32),
    /// `/sys/devices/system/cpu/cpuN/thermal_throttle` directories that exist, which Docker
    /// adds to the masked paths.
    pub thermal_throttle: Vec<String>,
    /// `net.ipv4.ping_group_range` exists (Docker sets it so ping works without
    /// CAP_NET_RAW).
    pub ping_group_range: bool,
    /// `net.ipv4.ip_unprivileged_port_start` exists (Docker sets it to 0 so any user may
    /// bind low ports).
    pub unprivileged_port_start: bool,
}

impl HostInfo {
    /// The facts of this host, detected on first use.
    pub fn get() -> &'static HostInfo {
        static INFO: OnceLock<HostInfo> = OnceLock::new();
        INFO.get_or_init(HostInfo::detect)
    }

    /// Read the facts from `/sys`, `/proc` and the scheduler.
    pub fn detect() -> HostInfo {
        let root = Path::new(cgroups::DEFAULT_MOUNT_ROOT);
        let cgroup_mode = cgroups::detect_mode(root).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot tell how cgroups are mounted; assuming v1");
            CgroupMode::V1
        });
        let v2 = cgroup_mode == CgroupMode::V2;
        let ncpus = affinity_cpus().unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        });
        let first = |paths: &[&str]| {
            paths
                .iter()
                .find_map(|p| {
                    std::fs::read_to_string(p)
                        .ok()
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_default()
        };
        let mut cpus = if v2 {
            first(&[
                "/sys/fs/cgroup/cpuset.cpus.effective",
                "/sys/devices/system/cpu/online",
            ])
        } else {
            first(&[
                "/sys/fs/cgroup/cpuset/cpuset.cpus",
                "/sys/devices/system/cpu/online",
            ])
        };
        if cpus.is_empty() {
            cpus = format!("0-{}", ncpus.saturating_sub(1));
        }
        let mut mems = if v2 {
            first(&[
                "/sys/fs/cgroup/cpuset.mems.effective",
                "/sys/devices/system/node/online",
            ])
        } else {
            first(&[
                "/sys/fs/cgroup/cpuset/cpuset.mems",
                "/sys/devices/system/node/online",
            ])
        };
        if mems.is_empty() {
            mems = "0".into();
        }
        let (swap_accounting, blkio_weight) = if v2 {
            let controllers =
                std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            let swap = std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join("memory.swap.max").exists());
            (swap, controllers.split_whitespace().any(|c| c == "io"))
        } else {
            (
                root.join("memory/memory.memsw.limit_in_bytes").exists(),
                root.join("blkio/blkio.weight").exists()
                    || root.join("blkio/blkio.bfq.weight").exists(),
            )
        };
        let possible = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| super::parse_uint_list(s.trim()).ok())
            .unwrap_or_default();
        let thermal_throttle = possible
            .into_iter()
            .map(|cpu| format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle"))
            .filter(|p| Path::new(p).exists())
            .collect();
        HostInfo {
            cgroup_mode,
            ncpus,
            cpus,
            mems,
            swap_accounting,
            blkio_weight,
            time_namespace: Path::new("/proc/self/ns/time").exists(),
            kernel: kernel_version(),
            thermal_throttle,
            ping_group_range: Path::new("/proc/sys/net/ipv4/ping_group_range").exists(),
            unprivileged_port_start: Path::new("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .exists(),
        }
    }
}

/// The number of CPUs in this process's affinity mask.
fn affinity_cpus() -> Option<u32> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let n = (0..CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .count() as u32;
    (n > 0).then_some(n)
}

/// `(version, major revision)` of the running kernel; `(0, 0)` if unreadable, which makes
/// every `minKernel` condition false.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_kernel_release(release.trim()).unwrap_or((0, 0))
}

/// `6.1.0-13-amd64` → `(6, 1)`; minor revisions and distribution suffixes are ignored, as
/// Docker's seccomp profile does.
pub(crate) fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
