//! The cgroup v2 backend: one directory in the unified hierarchy.
//!
//! v2 differs from v1 in ways that shape this file: a controller's files exist in a cgroup
//! only once every ancestor lists it in `cgroup.subtree_control`, so `create` enables
//! berth's controllers top-down; limits take v2 units (`cpu.weight`, `io.weight`, swap
//! counted apart from memory), converted in [`super::resources`]; and freezing is the
//! `cgroup.freeze` file, confirmed by `frozen 1` in `cgroup.events`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::error::{CgroupError, Result};
use super::fs::{
    self as cgfs, flat_keyed_value, read_limit, read_string, read_u64, write_field, write_value,
};
use super::resources::{self, ResourceRequest};
use super::stats::{CgroupStats, CpuStats, MemoryStats, PidsStats};
use super::{CgroupPath, FreezerState, FREEZER_POLL, FREEZER_TIMEOUT};

/// Controllers berth enables for its cgroups: those `apply` writes to and `stats` reads.
const MANAGED_CONTROLLERS: [&str; 5] = ["cpu", "cpuset", "io", "memory", "pids"];

/// A container's cgroup in the v2 hierarchy.
#[derive(Debug)]
pub struct V2Cgroup {
    mount_root: PathBuf,
    dir: PathBuf,
    /// Directories our `create` made, top-down, so `destroy` removes only those.
    created: Mutex<Vec<PathBuf>>,
    freezer_timeout: Duration,
}

impl V2Cgroup {
    pub(crate) fn new(mount_root: &Path, relative: &Path) -> Self {
        V2Cgroup {
            mount_root: mount_root.to_path_buf(),
            dir: mount_root.join(relative),
            created: Mutex::new(Vec::new()),
            freezer_timeout: FREEZER_TIMEOUT,
        }
    }

    /// The container's cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn create(&self) -> Result<()> {
        let created = cgfs::create_dirs_below(&self.mount_root, &self.dir)?;
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(created);
        self.enable_controllers()
    }

    /// Enables berth's controllers, where the host has them, in the root and every ancestor
    /// of the leaf, top-down: what a level can enable is what its parent enabled for it.
    /// The leaf's own `subtree_control` stays empty, or the kernel would refuse processes in
    /// it ("no internal processes").
    fn enable_controllers(&self) -> Result<()> {
        let mut level = self.mount_root.clone();
        let relative = self.dir.strip_prefix(&self.mount_root).unwrap_or(&self.dir);
        let mut components = relative.components().peekable();
        loop {
            let available = read_string(&level.join("cgroup.controllers"))?;
            let subtree_control = level.join("cgroup.subtree_control");
            let enabled = read_string(&subtree_control)?;
            let missing: Vec<String> = MANAGED_CONTROLLERS
                .iter()
                .filter(|name| available.split_whitespace().any(|c| c == **name))
                .filter(|name| !enabled.split_whitespace().any(|c| c == **name))
                .map(|name| format!("+{name}"))
                .collect();
            if !missing.is_empty() {
                write_value(&subtree_control, &missing.join(" "))?;
            }
            match components.next() {
                Some(component) if components.peek().is_some() => level.push(component),
                _ => return Ok(()),
            }
        }
    }

    pub(crate) fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(CgroupError::InvalidPid { pid });
        }
        write_value(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// The path of `file` in the leaf, or the error naming `field` if the controller that
    /// provides it is not enabled here.
    fn require(
        &self,
        file: &str,
        field: &'static str,
        controller: &'static str,
    ) -> Result<PathBuf> {
        let path = self.dir.join(file);
        if path.exists() {
            Ok(path)
        } else {
            Err(CgroupError::MissingController {
                field,
                controller,
                path,
            })
        }
    }

    pub(crate) fn apply(&self, request: &ResourceRequest) -> Result<()> {
        self.apply_memory(request)?;
        self.apply_cpu(request)?;
        if let Some(limit) = request.pids_limit {
            let path = self.require("pids.max", resources::PIDS_LIMIT, "pids")?;
            write_field(resources::PIDS_LIMIT, &path, &limit.v2())?;
        }
        if let Some(weight) = request.blkio_weight {
            // BFQ keeps v1's 10..1000 scale in its own file; io.weight (the cost model) takes
            // 1..10000.
            let bfq = self.dir.join("io.bfq.weight");
            if bfq.exists() {
                write_field(resources::BLKIO_WEIGHT, &bfq, &weight.to_string())?;
            } else {
                let path = self.require("io.weight", resources::BLKIO_WEIGHT, "io")?;
                let io_weight = resources::io_weight_from_blkio(weight).to_string();
                write_field(resources::BLKIO_WEIGHT, &path, &io_weight)?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, request: &ResourceRequest) -> Result<()> {
        if let Some(limit) = request.memory_limit {
            let path = self.require("memory.max", resources::MEMORY_LIMIT, "memory")?;
            write_field(resources::MEMORY_LIMIT, &path, &limit.v2())?;
        }
        if let Some(reservation) = request.memory_reservation {
            let path = self.require("memory.low", resources::MEMORY_RESERVATION, "memory")?;
            write_field(resources::MEMORY_RESERVATION, &path, &reservation.v2())?;
        }
        if let Some(swap_max) = request.v2_swap_max()? {
            let path = self.dir.join("memory.swap.max");
            if path.exists() {
                write_field(resources::MEMORY_SWAP, &path, &swap_max.v2())?;
            } else if request.limits_swap() {
                return Err(CgroupError::SwapAccountingUnavailable { path });
            }
            // Otherwise "no swap" or "unlimited" was asked on a host that does not account
            // swap: nothing to enforce, so nothing to refuse.
        }
        Ok(())
    }

    fn apply_cpu(&self, request: &ResourceRequest) -> Result<()> {
        if let Some(shares) = request.cpu_shares {
            let path = self.require("cpu.weight", resources::CPU_SHARES, "cpu")?;
            let weight = resources::cpu_weight_from_shares(shares).to_string();
            write_field(resources::CPU_SHARES, &path, &weight)?;
        }
        if request.cpu_quota.is_some() || request.cpu_period.is_some() {
            let field = match request.cpu_quota {
                Some(_) => resources::CPU_QUOTA,
                None => resources::CPU_PERIOD,
            };
            let path = self.require("cpu.max", field, "cpu")?;
            let current = read_string(&path)?;
            if let Some(value) =
                resources::cpu_max_value(request.cpu_quota, request.cpu_period, &current)
            {
                write_field(field, &path, &value)?;
            }
        }
        if let Some(cpus) = &request.cpu_cpus {
            let path = self.require("cpuset.cpus", resources::CPU_CPUS, "cpuset")?;
            write_field(resources::CPU_CPUS, &path, cpus)?;
        }
        if let Some(mems) = &request.cpu_mems {
            let path = self.require("cpuset.mems", resources::CPU_MEMS, "cpuset")?;
            write_field(resources::CPU_MEMS, &path, mems)?;
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> Result<CgroupStats> {
        Ok(CgroupStats {
            memory: self.memory_stats()?,
            cpu: self.cpu_stats()?,
            pids: self.pids_stats()?,
        })
    }

    fn memory_stats(&self) -> Result<Option<MemoryStats>> {
        let current = self.dir.join("memory.current");
        if !current.exists() {
            return Ok(None);
        }
        let peak = self.dir.join("memory.peak");
        let events = self.dir.join("memory.events");
        Ok(Some(MemoryStats {
            usage_bytes: read_u64(&current)?,
            limit_bytes: read_limit(&self.dir.join("memory.max"))?,
            max_usage_bytes: if peak.exists() {
                Some(read_u64(&peak)?)
            } else {
                None
            },
            oom_kills: if events.exists() {
                flat_keyed_value(&events, &read_string(&events)?, "oom_kill")?
            } else {
                None
            },
        }))
    }

    /// `cpu.stat` exists in every v2 cgroup, with or without the cpu controller.
    fn cpu_stats(&self) -> Result<Option<CpuStats>> {
        let path = self.dir.join("cpu.stat");
        if !path.exists() {
            return Ok(None);
        }
        let usage_usec = flat_keyed_value(&path, &read_string(&path)?, "usage_usec")?;
        Ok(usage_usec.map(|usec| CpuStats {
            usage_ns: usec.saturating_mul(1000),
        }))
    }

    fn pids_stats(&self) -> Result<Option<PidsStats>> {
        let current = self.dir.join("pids.current");
        if !current.exists() {
            return Ok(None);
        }
        Ok(Some(PidsStats {
            current: read_u64(&current)?,
            limit: read_limit(&self.dir.join("pids.max"))?,
        }))
    }

    fn freeze_file(&self, action: &'static str) -> Result<PathBuf> {
        let path = self.dir.join("cgroup.freeze");
        if path.exists() {
            Ok(path)
        } else {
            Err(CgroupError::FreezerUnavailable {
                action,
                path: self.dir.clone(),
                reason: "cgroup.freeze is missing; freezing a v2 cgroup needs Linux 5.2 or later",
            })
        }
    }

    /// Reads `frozen` from `cgroup.events`: the kernel's word that every process stopped.
    fn frozen(&self) -> Result<bool> {
        let events = self.dir.join("cgroup.events");
        let frozen = flat_keyed_value(&events, &read_string(&events)?, "frozen")?;
        Ok(frozen == Some(1))
    }

    pub(crate) fn freeze(&self) -> Result<()> {
        let path = self.freeze_file("freeze")?;
        write_value(&path, "1")?;
        let frozen = cgfs::poll_until(
            self.freezer_timeout,
            FREEZER_POLL,
            |_| Ok(()),
            || self.frozen(),
        )?;
        if frozen {
            return Ok(());
        }
        if let Err(error) = write_value(&path, "0") {
            tracing::warn!(path = %path.display(), %error, "could not thaw after a failed freeze");
        }
        Err(CgroupError::FreezerTimeout {
            path: self.dir.clone(),
            target: "frozen",
            timeout: self.freezer_timeout,
        })
    }

    pub(crate) fn thaw(&self) -> Result<()> {
        let path = self.freeze_file("thaw")?;
        write_value(&path, "0")?;
        let thawed = cgfs::poll_until(
            self.freezer_timeout,
            FREEZER_POLL,
            |_| Ok(()),
            || self.frozen().map(|frozen| !frozen),
        )?;
        if thawed {
            Ok(())
        } else {
            Err(CgroupError::FreezerTimeout {
                path: self.dir.clone(),
                target: "thawed",
                timeout: self.freezer_timeout,
            })
        }
    }

    pub(crate) fn freezer_state(&self) -> Result<FreezerState> {
        let path = self.dir.join("cgroup.freeze");
        if !path.exists() {
            return Ok(FreezerState::Thawed);
        }
        let requested = read_string(&path)?.trim() == "1";
        Ok(match (requested, self.frozen()?) {
            (false, _) => FreezerState::Thawed,
            (true, false) => FreezerState::Freezing,
            (true, true) => FreezerState::Frozen,
        })
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>> {
        cgfs::procs_recursive(&self.dir)
    }

    pub(crate) fn destroy(&self) -> Result<()> {
        cgfs::remove_cgroup_tree(&self.dir)?;
        let created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        cgfs::remove_created_ancestors(&created)
    }

    pub(crate) fn paths(&self) -> Vec<CgroupPath> {
        vec![CgroupPath {
            name: "unified".to_owned(),
            dir: self.dir.clone(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::{new_manager_with_mountinfo, Cgroup, CgroupMode};
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
        LinuxResourcesBuilder,
    };
    use std::fs;

    /// A temp dir laid out like a v2 mount with `cpu memory pids io cpuset` available at the
    /// root and a container leaf at `berth/c1` whose parent enabled them, as the kernel would
    /// after `create`: directories exist with their control files at kernel defaults.
    struct FakeV2 {
        root: tempfile::TempDir,
    }

    impl FakeV2 {
        fn new() -> Self {
            let root = tempfile::tempdir().expect("temp dir");
            let fake = FakeV2 { root };
            fake.write(
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma\n",
            );
            fake.write("cgroup.subtree_control", "\n");
            fake.mkdir("berth");
            fake.write("berth/cgroup.controllers", "");
            fake.write("berth/cgroup.subtree_control", "");
            fake.mkdir("berth/c1");
            for (file, content) in [
                ("cgroup.procs", ""),
                ("cgroup.freeze", "0\n"),
                ("cgroup.events", "populated 0\nfrozen 0\n"),
                ("cgroup.subtree_control", ""),
                ("cpu.max", "max 100000\n"),
                ("cpu.weight", "100\n"),
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
                ),
                ("cpuset.cpus", ""),
                ("cpuset.mems", ""),
                ("io.weight", "default 100\n"),
                ("memory.current", "4096\n"),
                ("memory.max", "max\n"),
                ("memory.low", "0\n"),
                ("memory.peak", "8192\n"),
                ("memory.swap.max", "max\n"),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n"),
                ("pids.current", "2\n"),
                ("pids.max", "max\n"),
            ] {
                fake.write(&format!("berth/c1/{file}"), content);
            }
            fake
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.root.path().join(relative)
        }

        fn mkdir(&self, relative: &str) {
            fs::create_dir_all(self.path(relative)).expect("mkdir in fake tree");
        }

        fn write(&self, relative: &str, content: &str) {
            fs::write(self.path(relative), content).expect("write fake file");
        }

        fn read(&self, relative: &str) -> String {
            fs::read_to_string(self.path(relative)).expect("read fake file")
        }

        fn remove(&self, relative: &str) {
            fs::remove_file(self.path(relative)).expect("remove fake file");
        }

        fn cgroup(&self) -> Cgroup {
            new_manager_with_mountinfo(CgroupMode::V2, self.root.path(), Path::new("/berth/c1"), "")
                .expect("manager")
        }

        fn v2(&self) -> V2Cgroup {
            let mut cgroup = V2Cgroup::new(self.root.path(), Path::new("berth/c1"));
            cgroup.freezer_timeout = Duration::from_millis(50);
            cgroup
        }
    }

    fn full_resources() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .reservation(32 << 20)
                    .swap(96 << 20)
                    .build()
                    .expect("memory"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .cpus("0-1")
                    .mems("0")
                    .build()
                    .expect("cpu"),
            )
            .pids(LinuxPidsBuilder::default().limit(64).build().expect("pids"))
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources")
    }

    #[test]
    fn create_enables_managed_controllers_in_ancestors_only() {
        let fake = FakeV2::new();
        fake.write("berth/cgroup.controllers", "cpuset cpu io memory pids\n");
        fake.cgroup().create().expect("create");
        assert_eq!(
            fake.read("cgroup.subtree_control"),
            "+cpu +cpuset +io +memory +pids",
            "hugetlb and rdma are not berth's to enable"
        );
        assert_eq!(
            fake.read("berth/cgroup.subtree_control"),
            "+cpu +cpuset +io +memory +pids"
        );
        assert_eq!(fake.read("berth/c1/cgroup.subtree_control"), "");
    }

    #[test]
    fn create_skips_controllers_already_enabled_or_unavailable() {
        let fake = FakeV2::new();
        fake.write("cgroup.controllers", "cpu memory\n");
        fake.write("cgroup.subtree_control", "memory\n");
        fake.write("berth/cgroup.controllers", "cpu memory\n");
        fake.write("berth/cgroup.subtree_control", "cpu memory\n");
        fake.cgroup().create().expect("create");
        assert_eq!(fake.read("cgroup.subtree_control"), "+cpu");
        assert_eq!(fake.read("berth/cgroup.subtree_control"), "cpu memory\n");
    }

    #[test]
    fn apply_writes_v2_files_with_converted_values() {
        let fake = FakeV2::new();
        fake.cgroup().apply(&full_resources()).expect("apply");
        assert_eq!(fake.read("berth/c1/memory.max"), (64u64 << 20).to_string());
        assert_eq!(fake.read("berth/c1/memory.low"), (32u64 << 20).to_string());
        assert_eq!(
            fake.read("berth/c1/memory.swap.max"),
            (32u64 << 20).to_string(),
            "swap.max counts swap alone: 96M total - 64M memory"
        );
        assert_eq!(fake.read("berth/c1/cpu.weight"), "20");
        assert_eq!(fake.read("berth/c1/cpu.max"), "50000 100000");
        assert_eq!(fake.read("berth/c1/cpuset.cpus"), "0-1");
        assert_eq!(fake.read("berth/c1/cpuset.mems"), "0");
        assert_eq!(fake.read("berth/c1/pids.max"), "64");
        assert_eq!(fake.read("berth/c1/io.weight"), "4950");
    }

    #[test]
    fn apply_writes_unlimited_as_max() {
        let fake = FakeV2::new();
        fake.write("berth/c1/pids.max", "10\n");
        fake.write("berth/c1/memory.max", "1000\n");
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(-1)
                    .build()
                    .expect("memory"),
            )
            .cpu(LinuxCpuBuilder::default().quota(-1).build().expect("cpu"))
            .pids(LinuxPidsBuilder::default().limit(-1).build().expect("pids"))
            .build()
            .expect("resources");
        fake.cgroup().apply(&resources).expect("apply");
        assert_eq!(fake.read("berth/c1/memory.max"), "max");
        assert_eq!(fake.read("berth/c1/memory.swap.max"), "max");
        assert_eq!(fake.read("berth/c1/cpu.max"), "max");
        assert_eq!(fake.read("berth/c1/pids.max"), "max");
    }

    #[test]
    fn apply_period_alone_keeps_the_quota() {
        let fake = FakeV2::new();
        fake.write("berth/c1/cpu.max", "25000 100000\n");
        let resources = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .period(50_000u64)
                    .build()
                    .expect("cpu"),
            )
            .build()
            .expect("resources");
        fake.cgroup().apply(&resources).expect("apply");
        assert_eq!(fake.read("berth/c1/cpu.max"), "25000 50000");
    }

    #[test]
    fn apply_prefers_bfq_weight_on_its_own_scale() {
        let fake = FakeV2::new();
        fake.write("berth/c1/io.bfq.weight", "default 100\n");
        let resources = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources");
        fake.cgroup().apply(&resources).expect("apply");
        assert_eq!(fake.read("berth/c1/io.bfq.weight"), "500");
        assert_eq!(fake.read("berth/c1/io.weight"), "default 100\n");
    }

    #[test]
    fn missing_controller_names_the_field() {
        let fake = FakeV2::new();
        fake.remove("berth/c1/pids.max");
        fake.remove("berth/c1/io.weight");
        let pids = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(64).build().expect("pids"))
            .build()
            .expect("resources");
        let error = fake.cgroup().apply(&pids).expect_err("no pids controller");
        assert!(
            matches!(
                error,
                CgroupError::MissingController {
                    field: "linux.resources.pids.limit",
                    controller: "pids",
                    ..
                }
            ),
            "{error}"
        );
        let io = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(100u16)
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources");
        let error = fake.cgroup().apply(&io).expect_err("no io controller");
        assert!(
            error.to_string().contains("linux.resources.blockIO.weight"),
            "{error}"
        );
    }

    #[test]
    fn swap_without_accounting_fails_only_when_swap_is_really_limited() {
        let fake = FakeV2::new();
        fake.remove("berth/c1/memory.swap.max");
        let with_swap = |swap| {
            LinuxResourcesBuilder::default()
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(64 << 20)
                        .swap(swap)
                        .build()
                        .expect("memory"),
                )
                .build()
                .expect("resources")
        };
        let error = fake
            .cgroup()
            .apply(&with_swap(128 << 20))
            .expect_err("swap limit without accounting");
        assert!(
            error.to_string().contains("linux.resources.memory.swap"),
            "{error}"
        );
        fake.cgroup()
            .apply(&with_swap(64 << 20))
            .expect("swap == memory needs no accounting");
        fake.cgroup()
            .apply(&with_swap(-1))
            .expect("unlimited swap needs no accounting");
        assert_eq!(fake.read("berth/c1/memory.max"), (64u64 << 20).to_string());
    }

    #[test]
    fn stats_read_every_group() {
        let fake = FakeV2::new();
        fake.write("berth/c1/memory.max", "67108864\n");
        fake.write("berth/c1/pids.max", "64\n");
        let stats = fake.cgroup().stats().expect("stats");
        assert_eq!(
            stats,
            CgroupStats {
                memory: Some(MemoryStats {
                    usage_bytes: 4096,
                    limit_bytes: Some(64 << 20),
                    max_usage_bytes: Some(8192),
                    oom_kills: Some(1),
                }),
                cpu: Some(CpuStats {
                    usage_ns: 1_500_000
                }),
                pids: Some(PidsStats {
                    current: 2,
                    limit: Some(64)
                }),
            }
        );
    }

    #[test]
    fn stats_leave_out_what_the_kernel_does_not_provide() {
        let fake = FakeV2::new();
        fake.remove("berth/c1/memory.peak");
        fake.remove("berth/c1/pids.current");
        let stats = fake.cgroup().stats().expect("stats");
        let memory = stats.memory.expect("memory is enabled");
        assert_eq!(memory.max_usage_bytes, None);
        assert_eq!(memory.limit_bytes, None, "max means unlimited");
        assert_eq!(stats.pids, None);
    }

    #[test]
    fn freeze_writes_cgroup_freeze_and_waits_for_events() {
        let fake = FakeV2::new();
        // The kernel would flip `frozen` once every task stopped; the fake says so up front.
        fake.write("berth/c1/cgroup.events", "populated 1\nfrozen 1\n");
        let cgroup = fake.v2();
        cgroup.freeze().expect("freeze");
        assert_eq!(fake.read("berth/c1/cgroup.freeze"), "1");
        assert_eq!(cgroup.freezer_state().expect("state"), FreezerState::Frozen);

        fake.write("berth/c1/cgroup.events", "populated 1\nfrozen 0\n");
        cgroup.thaw().expect("thaw");
        assert_eq!(fake.read("berth/c1/cgroup.freeze"), "0");
        assert_eq!(cgroup.freezer_state().expect("state"), FreezerState::Thawed);
    }

    #[test]
    fn freeze_timeout_thaws_again() {
        let fake = FakeV2::new();
        let error = fake.v2().freeze().expect_err("events never say frozen");
        assert!(
            matches!(error, CgroupError::FreezerTimeout { .. }),
            "{error}"
        );
        assert_eq!(fake.read("berth/c1/cgroup.freeze"), "0");
    }

    #[test]
    fn freeze_without_cgroup_freeze_explains_the_kernel_requirement() {
        let fake = FakeV2::new();
        fake.remove("berth/c1/cgroup.freeze");
        let cgroup = fake.cgroup();
        let error = cgroup.freeze().expect_err("old kernel");
        assert!(error.to_string().contains("Linux 5.2"), "{error}");
        assert_eq!(cgroup.freezer_state().expect("state"), FreezerState::Thawed);
    }

    #[test]
    fn add_process_and_pids() {
        let fake = FakeV2::new();
        let cgroup = fake.cgroup();
        cgroup.add_process(4242).expect("add");
        assert_eq!(fake.read("berth/c1/cgroup.procs"), "4242");
        assert_eq!(cgroup.pids().expect("pids"), vec![4242]);
        assert!(matches!(
            cgroup.add_process(0),
            Err(CgroupError::InvalidPid { pid: 0 })
        ));
    }

    #[test]
    fn destroy_removes_leaf_and_created_parents_only() {
        let fake = FakeV2::new();
        // A leaf two levels below the existing `berth` parent. `create` cannot run on a fake
        // tree here (the kernel would fill the new `pod` level with control files), so the
        // directories are made as it makes them and recorded as its own.
        let cgroup = V2Cgroup::new(fake.root.path(), Path::new("berth/pod/c2"));
        let created =
            cgfs::create_dirs_below(fake.root.path(), &fake.path("berth/pod/c2")).expect("mkdir");
        cgroup.created.lock().expect("lock").extend(created);
        fake.mkdir("berth/pod/c2/nested");
        cgroup.destroy().expect("destroy");
        assert!(!fake.path("berth/pod").exists(), "pod was created by us");
        assert!(fake.path("berth").is_dir(), "berth existed before");
        cgroup.destroy().expect("destroy is idempotent");
    }

    #[test]
    fn paths_name_the_unified_hierarchy() {
        let fake = FakeV2::new();
        assert_eq!(
            fake.cgroup().paths(),
            vec![CgroupPath {
                name: "unified".to_owned(),
                dir: fake.path("berth/c1"),
            }]
        );
        assert_eq!(fake.cgroup().mode(), CgroupMode::V2);
    }
}
