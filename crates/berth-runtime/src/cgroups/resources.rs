//! Turning `linux.resources` into the values both backends write.
//!
//! The OCI spec speaks cgroup v1 (shares, memory+swap totals, blkio weights); v2 files take
//! other units. This module reads the spec once into [`ResourceRequest`], with unset fields and
//! the spec's "0 means unset, -1 means unlimited" rules resolved, checks every value, and holds
//! the v1→v2 conversions, so the backends only decide which file each value goes to.
//! Fields berth does not apply are refused here by name instead of being ignored: a limit the
//! user asked for and did not get is worse than an error.

use oci_spec::runtime::LinuxResources;

use super::error::{CgroupError, Result};

pub(crate) const MEMORY_LIMIT: &str = "linux.resources.memory.limit";
pub(crate) const MEMORY_RESERVATION: &str = "linux.resources.memory.reservation";
pub(crate) const MEMORY_SWAP: &str = "linux.resources.memory.swap";
pub(crate) const CPU_SHARES: &str = "linux.resources.cpu.shares";
pub(crate) const CPU_QUOTA: &str = "linux.resources.cpu.quota";
pub(crate) const CPU_PERIOD: &str = "linux.resources.cpu.period";
pub(crate) const CPU_CPUS: &str = "linux.resources.cpu.cpus";
pub(crate) const CPU_MEMS: &str = "linux.resources.cpu.mems";
pub(crate) const PIDS_LIMIT: &str = "linux.resources.pids.limit";
pub(crate) const BLKIO_WEIGHT: &str = "linux.resources.blockIO.weight";

/// A byte or count limit after the spec's sentinels are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `-1` in the spec (or a negative pids limit): no limit.
    Unlimited,
    Value(u64),
}

impl Limit {
    /// The v2 spelling: `max` or the number.
    pub(crate) fn v2(self) -> String {
        match self {
            Limit::Unlimited => "max".to_owned(),
            Limit::Value(value) => value.to_string(),
        }
    }

    /// The v1 spelling: `-1` or the number.
    pub(crate) fn v1(self) -> String {
        match self {
            Limit::Unlimited => "-1".to_owned(),
            Limit::Value(value) => value.to_string(),
        }
    }
}

/// Everything `apply` writes, validated; `None` leaves the kernel's current value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResourceRequest {
    pub memory_limit: Option<Limit>,
    pub memory_reservation: Option<Limit>,
    /// The spec's swap field: memory plus swap, v1's `memory.memsw.limit_in_bytes`.
    pub memory_swap: Option<Limit>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<Limit>,
    pub cpu_period: Option<u64>,
    pub cpu_cpus: Option<String>,
    pub cpu_mems: Option<String>,
    pub pids_limit: Option<Limit>,
    pub blkio_weight: Option<u16>,
}

impl ResourceRequest {
    /// Reads and checks `resources`, refusing fields berth does not apply.
    pub(crate) fn from_spec(resources: &LinuxResources) -> Result<Self> {
        refuse_unsupported(resources)?;
        let mut request = ResourceRequest::default();
        if let Some(memory) = resources.memory() {
            request.memory_limit = byte_limit(MEMORY_LIMIT, memory.limit())?;
            request.memory_reservation = byte_limit(MEMORY_RESERVATION, memory.reservation())?;
            request.memory_swap = byte_limit(MEMORY_SWAP, memory.swap())?;
            // v1 semantics, which runc and Docker keep: unlimited memory without an explicit
            // swap value lifts the memory+swap limit too, or the kernel would refuse the
            // memory limit above the old memsw limit.
            if request.memory_limit == Some(Limit::Unlimited) && request.memory_swap.is_none() {
                request.memory_swap = Some(Limit::Unlimited);
            }
            if let (Some(Limit::Value(memory)), Some(Limit::Value(swap))) =
                (request.memory_limit, request.memory_swap)
            {
                if swap < memory {
                    return Err(CgroupError::InvalidValue {
                        field: MEMORY_SWAP,
                        value: swap.to_string(),
                        reason: "it counts memory plus swap, so it must be at least \
                                 linux.resources.memory.limit",
                    });
                }
            }
        }
        if let Some(cpu) = resources.cpu() {
            request.cpu_shares = cpu.shares().filter(|shares| *shares != 0);
            request.cpu_quota = match cpu.quota() {
                None | Some(0) => None,
                Some(quota) if quota < 0 => Some(Limit::Unlimited),
                Some(quota) => Some(Limit::Value(quota.unsigned_abs())),
            };
            request.cpu_period = cpu.period().filter(|period| *period != 0);
            request.cpu_cpus = cpu.cpus().clone().filter(|cpus| !cpus.is_empty());
            request.cpu_mems = cpu.mems().clone().filter(|mems| !mems.is_empty());
        }
        if let Some(pids) = resources.pids() {
            request.pids_limit = match pids.limit() {
                0 => None,
                limit if limit < 0 => Some(Limit::Unlimited),
                limit => Some(Limit::Value(limit.unsigned_abs())),
            };
        }
        if let Some(weight) = resources.block_io().as_ref().and_then(|io| io.weight()) {
            if weight != 0 {
                if !(10..=1000).contains(&weight) {
                    return Err(CgroupError::InvalidValue {
                        field: BLKIO_WEIGHT,
                        value: weight.to_string(),
                        reason: "the weight must be between 10 and 1000",
                    });
                }
                request.blkio_weight = Some(weight);
            }
        }
        Ok(request)
    }

    /// The value for v2's `memory.swap.max`, which counts swap alone, from the spec's
    /// memory+swap total; `None` leaves it alone.
    pub(crate) fn v2_swap_max(&self) -> Result<Option<Limit>> {
        match (self.memory_swap, self.memory_limit) {
            (None, _) => Ok(None),
            (Some(Limit::Unlimited), _) => Ok(Some(Limit::Unlimited)),
            (Some(Limit::Value(swap)), Some(Limit::Value(memory))) => {
                // from_spec already refused swap < memory.
                Ok(Some(Limit::Value(swap.saturating_sub(memory))))
            }
            (Some(Limit::Value(swap)), _) => Err(CgroupError::InvalidValue {
                field: MEMORY_SWAP,
                value: swap.to_string(),
                reason: "cgroup v2 limits swap separately from memory, so a memory+swap total \
                         needs linux.resources.memory.limit too; set it or drop the swap limit",
            }),
        }
    }

    /// Whether the request asks for swap beyond the memory limit, which needs swap
    /// accounting: `swap == memory` (no swap) and `-1` (unlimited) do not.
    pub(crate) fn limits_swap(&self) -> bool {
        match (self.memory_swap, self.memory_limit) {
            (None | Some(Limit::Unlimited), _) => false,
            (Some(swap), memory) => Some(swap) != memory,
        }
    }
}

fn byte_limit(field: &'static str, value: Option<i64>) -> Result<Option<Limit>> {
    match value {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(Limit::Unlimited)),
        Some(bytes) if bytes < 0 => Err(CgroupError::InvalidValue {
            field,
            value: bytes.to_string(),
            reason: "use a positive number of bytes, or -1 for no limit",
        }),
        Some(bytes) => Ok(Some(Limit::Value(bytes.unsigned_abs()))),
    }
}

/// Fails on the first resource field that is set to something berth would not apply.
///
/// `devices` is deliberately not here: the device allowlist is enforced by the runtime's device
/// setup (on v2 it is an eBPF program, which needs `unsafe` syscalls this module does not
/// make), so this layer leaves it to that code rather than refusing every Docker-style spec.
fn refuse_unsupported(resources: &LinuxResources) -> Result<()> {
    let unsupported = |field| {
        Err(CgroupError::Unsupported {
            field,
            reason: "berth does not apply this cgroup setting yet",
        })
    };
    if let Some(memory) = resources.memory() {
        if memory.kernel().is_some() {
            return unsupported("linux.resources.memory.kernel");
        }
        if memory.kernel_tcp().is_some() {
            return unsupported("linux.resources.memory.kernelTCP");
        }
        if memory.swappiness().is_some() {
            return unsupported("linux.resources.memory.swappiness");
        }
        if memory.disable_oom_killer() == Some(true) {
            return unsupported("linux.resources.memory.disableOOMKiller");
        }
    }
    if let Some(cpu) = resources.cpu() {
        if cpu.realtime_runtime().is_some_and(|runtime| runtime != 0) {
            return unsupported("linux.resources.cpu.realtimeRuntime");
        }
        if cpu.realtime_period().is_some_and(|period| period != 0) {
            return unsupported("linux.resources.cpu.realtimePeriod");
        }
        if cpu.idle().is_some_and(|idle| idle != 0) {
            return unsupported("linux.resources.cpu.idle");
        }
        if cpu.burst().is_some() {
            return unsupported("linux.resources.cpu.burst");
        }
    }
    if let Some(io) = resources.block_io() {
        if io.leaf_weight().is_some() {
            return unsupported("linux.resources.blockIO.leafWeight");
        }
        let per_device = [
            (
                "linux.resources.blockIO.weightDevice",
                io.weight_device().as_ref().is_some_and(|d| !d.is_empty()),
            ),
            (
                "linux.resources.blockIO.throttleReadBpsDevice",
                io.throttle_read_bps_device()
                    .as_ref()
                    .is_some_and(|d| !d.is_empty()),
            ),
            (
                "linux.resources.blockIO.throttleWriteBpsDevice",
                io.throttle_write_bps_device()
                    .as_ref()
                    .is_some_and(|d| !d.is_empty()),
            ),
            (
                "linux.resources.blockIO.throttleReadIOPSDevice",
                io.throttle_read_iops_device()
                    .as_ref()
                    .is_some_and(|d| !d.is_empty()),
            ),
            (
                "linux.resources.blockIO.throttleWriteIOPSDevice",
                io.throttle_write_iops_device()
                    .as_ref()
                    .is_some_and(|d| !d.is_empty()),
            ),
        ];
        if let Some((field, _)) = per_device.into_iter().find(|(_, set)| *set) {
            return unsupported(field);
        }
    }
    if resources
        .hugepage_limits()
        .as_ref()
        .is_some_and(|limits| !limits.is_empty())
    {
        return unsupported("linux.resources.hugepageLimits");
    }
    if resources.network().is_some() {
        return unsupported("linux.resources.network");
    }
    if resources
        .rdma()
        .as_ref()
        .is_some_and(|rdma| !rdma.is_empty())
    {
        return unsupported("linux.resources.rdma");
    }
    if resources
        .unified()
        .as_ref()
        .is_some_and(|unified| !unified.is_empty())
    {
        return unsupported("linux.resources.unified");
    }
    Ok(())
}

/// v2 `cpu.weight` (1..=10000) from v1 shares (2..=262144), the mapping runc, crun and
/// systemd agree on, so a container gets the same share of CPU on either version.
pub(crate) fn cpu_weight_from_shares(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v2 `io.weight` (1..=10000) from a v1 blkio weight (10..=1000), the linear mapping runc uses.
pub(crate) fn io_weight_from_blkio(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

/// The line for v2's `cpu.max` (`"$QUOTA $PERIOD"`), or `None` when neither is requested.
/// `current` is the file's content: a period alone keeps the quota already in force.
pub(crate) fn cpu_max_value(
    quota: Option<Limit>,
    period: Option<u64>,
    current: &str,
) -> Option<String> {
    let quota = match quota {
        Some(quota) => quota.v2(),
        None => {
            period?;
            current
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_owned()
        }
    };
    Some(match period {
        Some(period) => format!("{quota} {period}"),
        None => quota,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    fn memory(limit: i64, swap: Option<i64>) -> LinuxResources {
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if let Some(swap) = swap {
            memory = memory.swap(swap);
        }
        LinuxResourcesBuilder::default()
            .memory(memory.build().expect("memory"))
            .build()
            .expect("resources")
    }

    #[test]
    fn limit_spellings() {
        assert_eq!(Limit::Unlimited.v2(), "max");
        assert_eq!(Limit::Unlimited.v1(), "-1");
        assert_eq!(Limit::Value(5).v2(), "5");
        assert_eq!(Limit::Value(5).v1(), "5");
    }

    #[test]
    fn cpu_weight_matches_the_reference_mapping() {
        assert_eq!(cpu_weight_from_shares(2), 1);
        assert_eq!(cpu_weight_from_shares(1024), 39);
        assert_eq!(cpu_weight_from_shares(262_144), 10_000);
        assert_eq!(cpu_weight_from_shares(1), 1, "below the v1 minimum clamps");
        assert_eq!(cpu_weight_from_shares(u64::MAX), 10_000);
    }

    #[test]
    fn io_weight_matches_the_reference_mapping() {
        assert_eq!(io_weight_from_blkio(10), 1);
        assert_eq!(io_weight_from_blkio(500), 4950);
        assert_eq!(io_weight_from_blkio(1000), 10_000);
    }

    #[test]
    fn cpu_max_combines_quota_and_period() {
        let current = "max 100000\n";
        assert_eq!(
            cpu_max_value(Some(Limit::Value(50_000)), Some(100_000), current).as_deref(),
            Some("50000 100000")
        );
        assert_eq!(
            cpu_max_value(Some(Limit::Unlimited), Some(20_000), current).as_deref(),
            Some("max 20000")
        );
        assert_eq!(
            cpu_max_value(Some(Limit::Value(7)), None, current).as_deref(),
            Some("7")
        );
        assert_eq!(
            cpu_max_value(None, Some(20_000), "30000 100000\n").as_deref(),
            Some("30000 20000"),
            "a period alone keeps the current quota"
        );
        assert_eq!(cpu_max_value(None, None, current), None);
    }

    #[test]
    fn swap_conversions_follow_the_v1_total() {
        let request = ResourceRequest::from_spec(&memory(64 << 20, Some(128 << 20))).expect("ok");
        assert_eq!(
            request.v2_swap_max().expect("ok"),
            Some(Limit::Value(64 << 20))
        );
        assert!(request.limits_swap());

        let request = ResourceRequest::from_spec(&memory(64 << 20, Some(64 << 20))).expect("ok");
        assert_eq!(request.v2_swap_max().expect("ok"), Some(Limit::Value(0)));
        assert!(!request.limits_swap(), "swap == memory means no swap");

        let request = ResourceRequest::from_spec(&memory(64 << 20, Some(-1))).expect("ok");
        assert_eq!(request.v2_swap_max().expect("ok"), Some(Limit::Unlimited));
        assert!(!request.limits_swap());

        let request = ResourceRequest::from_spec(&memory(-1, None)).expect("ok");
        assert_eq!(request.memory_swap, Some(Limit::Unlimited));

        let request = ResourceRequest::from_spec(&memory(64 << 20, None)).expect("ok");
        assert_eq!(request.v2_swap_max().expect("ok"), None);
        assert!(!request.limits_swap());
    }

    #[test]
    fn swap_below_memory_is_refused_by_field_name() {
        let error = ResourceRequest::from_spec(&memory(128 << 20, Some(64 << 20)))
            .expect_err("swap < memory");
        assert!(error.to_string().contains(MEMORY_SWAP), "{error}");
    }

    #[test]
    fn swap_without_memory_limit_cannot_be_converted_for_v2() {
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .swap(1 << 30)
                    .build()
                    .expect("memory"),
            )
            .build()
            .expect("resources");
        let request = ResourceRequest::from_spec(&resources).expect("fine for v1");
        let error = request.v2_swap_max().expect_err("no memory limit");
        assert!(error.to_string().contains(MEMORY_SWAP), "{error}");
    }

    #[test]
    fn zero_means_unset_and_negative_means_unlimited() {
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(0)
                    .build()
                    .expect("memory"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(0u64)
                    .quota(-1)
                    .period(0u64)
                    .cpus("")
                    .build()
                    .expect("cpu"),
            )
            .pids(LinuxPidsBuilder::default().limit(-1).build().expect("pids"))
            .build()
            .expect("resources");
        let request = ResourceRequest::from_spec(&resources).expect("valid");
        assert_eq!(
            request,
            ResourceRequest {
                cpu_quota: Some(Limit::Unlimited),
                pids_limit: Some(Limit::Unlimited),
                ..ResourceRequest::default()
            }
        );
    }

    #[test]
    fn invalid_values_name_their_field() {
        let error = ResourceRequest::from_spec(&memory(-5, None)).expect_err("negative");
        assert!(error.to_string().contains(MEMORY_LIMIT), "{error}");

        let resources = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(5u16)
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources");
        let error = ResourceRequest::from_spec(&resources).expect_err("weight < 10");
        assert!(error.to_string().contains(BLKIO_WEIGHT), "{error}");
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let throttle = LinuxThrottleDeviceBuilder::default()
            .major(8)
            .minor(0)
            .rate(1024u64)
            .build()
            .expect("throttle");
        let resources = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .throttle_read_bps_device(vec![throttle])
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources");
        let error = ResourceRequest::from_spec(&resources).expect_err("unsupported");
        assert!(
            error
                .to_string()
                .contains("linux.resources.blockIO.throttleReadBpsDevice"),
            "{error}"
        );

        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .disable_oom_killer(false)
                    .build()
                    .expect("memory"),
            )
            .build()
            .expect("resources");
        ResourceRequest::from_spec(&resources).expect("disableOOMKiller=false is the default");
    }
}
