//! The cgroup v1 backend: one directory per mounted hierarchy.
//!
//! A v1 container cgroup is the same relative path created in every hierarchy (`memory`,
//! `pids`, `cpu,cpuacct`, ...), with the process added to each. The quirks handled here:
//! a new cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses processes
//! until they are filled, so `create` copies them down from the parent; the spec's swap is
//! v1's own memory+swap total, but `memory.memsw.*` exists only with swap accounting, and the
//! memory and memsw limits must be written in the order that keeps memsw >= memory at every
//! step; freezing is `freezer.state`, which may linger in `FREEZING`.
//!
//! On hybrid hosts the same relative path is also created in the controller-less unified
//! hierarchy, best effort: systemd and tools inside the container look there, but berth must
//! not fail on a host that does not let it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::error::{CgroupError, Result};
use super::fs::{
    self as cgfs, flat_keyed_value, read_limit, read_string, read_u64, write_field, write_value,
};
use super::mountinfo::v1_mounts;
use super::resources::{self, Limit, ResourceRequest};
use super::stats::{CgroupStats, CpuStats, MemoryStats, PidsStats};
use super::{CgroupMode, CgroupPath, FreezerState, FREEZER_POLL, FREEZER_TIMEOUT};

/// v1 reports "no memory limit" as the largest page-aligned `i64`
/// (`9223372036854771712` with 4 KiB pages); anything from here up means unlimited, whatever
/// the page size.
const V1_UNLIMITED_FLOOR: u64 = 0x7FFF_FFFF_FFFF_0000;

/// Polls between two rewrites of `FROZEN`: writing it again makes the kernel retry tasks that
/// were not freezable at the first attempt (e.g. in the middle of `vfork`).
const FREEZE_REWRITE_EVERY: u32 = 50;

/// One hierarchy's share of the container's cgroup.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// Controllers joined as v1 names the mount, e.g. `cpu,cpuacct`.
    name: String,
    controllers: Vec<String>,
    mount_point: PathBuf,
    /// The container's directory in this hierarchy.
    dir: PathBuf,
}

/// A container's cgroup across the v1 hierarchies (and the unified leaf on hybrid hosts).
#[derive(Debug)]
pub struct V1Cgroup {
    mount_root: PathBuf,
    hierarchies: Vec<Hierarchy>,
    /// On hybrid hosts: the unified mount point and the container's directory there.
    unified: Option<(PathBuf, PathBuf)>,
    /// Directories our `create` made, top-down, so `destroy` removes only those.
    created: Mutex<Vec<PathBuf>>,
    freezer_timeout: Duration,
}

impl V1Cgroup {
    pub(crate) fn new(
        mount_root: &Path,
        relative: &Path,
        mountinfo: &str,
        hybrid: bool,
    ) -> Result<Self> {
        let hierarchies: Vec<Hierarchy> = v1_mounts(mountinfo, mount_root)
            .into_iter()
            .map(|mount| Hierarchy {
                name: mount.controllers.join(","),
                dir: mount.mount_point.join(relative),
                controllers: mount.controllers,
                mount_point: mount.mount_point,
            })
            .collect();
        if hierarchies.is_empty() {
            return Err(CgroupError::NoV1Hierarchy {
                mount_root: mount_root.to_path_buf(),
            });
        }
        let unified = hybrid.then(|| {
            let mount_point = mount_root.join("unified");
            let dir = mount_point.join(relative);
            (mount_point, dir)
        });
        Ok(V1Cgroup {
            mount_root: mount_root.to_path_buf(),
            hierarchies,
            unified,
            created: Mutex::new(Vec::new()),
            freezer_timeout: FREEZER_TIMEOUT,
        })
    }

    pub(crate) fn mode(&self) -> CgroupMode {
        if self.unified.is_some() {
            CgroupMode::Hybrid
        } else {
            CgroupMode::V1
        }
    }

    fn hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|hierarchy| hierarchy.controllers.iter().any(|c| c == controller))
    }

    /// The container's directory for `controller`, or the error naming `field` if the host
    /// has no such hierarchy.
    fn require_dir(&self, controller: &'static str, field: &'static str) -> Result<&Path> {
        self.hierarchy(controller)
            .map(|hierarchy| hierarchy.dir.as_path())
            .ok_or_else(|| CgroupError::MissingController {
                field,
                controller,
                path: self.mount_root.join(controller),
            })
    }

    /// The path of `file` in `controller`'s directory, or the error naming `field` if the
    /// hierarchy or the file (a kernel built without that feature) is missing.
    fn require(
        &self,
        controller: &'static str,
        file: &str,
        field: &'static str,
    ) -> Result<PathBuf> {
        let path = self.require_dir(controller, field)?.join(file);
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

    fn record_created(&self, dirs: Vec<PathBuf>) {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(dirs);
    }

    pub(crate) fn create(&self) -> Result<()> {
        for hierarchy in &self.hierarchies {
            let created = cgfs::create_dirs_below(&hierarchy.mount_point, &hierarchy.dir)?;
            self.record_created(created);
            if hierarchy.controllers.iter().any(|c| c == "cpuset") {
                copy_cpuset_down(&hierarchy.mount_point, &hierarchy.dir)?;
            }
        }
        if let Some((mount_point, dir)) = &self.unified {
            match cgfs::create_dirs_below(mount_point, dir) {
                Ok(created) => self.record_created(created),
                Err(error) => tracing::warn!(
                    %error,
                    "skipping the unified hierarchy of this hybrid host; the container's \
                     cgroup v1 limits are unaffected"
                ),
            }
        }
        Ok(())
    }

    pub(crate) fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(CgroupError::InvalidPid { pid });
        }
        let pid = pid.to_string();
        for hierarchy in &self.hierarchies {
            write_value(&hierarchy.dir.join("cgroup.procs"), &pid)?;
        }
        if let Some((_, dir)) = &self.unified {
            if dir.is_dir() {
                if let Err(error) = write_value(&dir.join("cgroup.procs"), &pid) {
                    tracing::warn!(%error, "could not join the unified hierarchy; continuing");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn apply(&self, request: &ResourceRequest) -> Result<()> {
        self.apply_memory(request)?;
        self.apply_cpu(request)?;
        if let Some(limit) = request.pids_limit {
            let path = self.require("pids", "pids.max", resources::PIDS_LIMIT)?;
            write_field(resources::PIDS_LIMIT, &path, &limit.v2())?;
        }
        if let Some(weight) = request.blkio_weight {
            // Kernels with CFQ have blkio.weight; since 5.0 only BFQ offers a weight, with
            // the same 10..1000 scale.
            let dir = self.require_dir("blkio", resources::BLKIO_WEIGHT)?;
            let path = ["blkio.weight", "blkio.bfq.weight"]
                .iter()
                .map(|file| dir.join(file))
                .find(|path| path.exists())
                .ok_or_else(|| CgroupError::MissingController {
                    field: resources::BLKIO_WEIGHT,
                    controller: "blkio",
                    path: dir.join("blkio.weight"),
                })?;
            write_field(resources::BLKIO_WEIGHT, &path, &weight.to_string())?;
        }
        Ok(())
    }

    /// Write device rules, in order, to `devices.allow` / `devices.deny`.
    pub(crate) fn apply_devices(&self, lines: &[super::devices::DeviceLine]) -> Result<()> {
        const FIELD: &str = "linux.resources.devices";
        let allow = self.require("devices", "devices.allow", FIELD)?;
        let deny = self.require("devices", "devices.deny", FIELD)?;
        for (is_allow, line) in lines {
            write_field(FIELD, if *is_allow { &allow } else { &deny }, line)?;
        }
        Ok(())
    }

    fn apply_memory(&self, request: &ResourceRequest) -> Result<()> {
        if let Some(reservation) = request.memory_reservation {
            let path = self.require(
                "memory",
                "memory.soft_limit_in_bytes",
                resources::MEMORY_RESERVATION,
            )?;
            write_field(resources::MEMORY_RESERVATION, &path, &reservation.v1())?;
        }
        let limit = request
            .memory_limit
            .map(|limit| {
                self.require("memory", "memory.limit_in_bytes", resources::MEMORY_LIMIT)
                    .map(|path| (path, limit))
            })
            .transpose()?;
        let swap = match request.memory_swap {
            None => None,
            Some(swap) => {
                let dir = self.require_dir("memory", resources::MEMORY_SWAP)?;
                let path = dir.join("memory.memsw.limit_in_bytes");
                if path.exists() {
                    Some((path, swap))
                } else if request.limits_swap() {
                    return Err(CgroupError::SwapAccountingUnavailable { path });
                } else {
                    // "No swap" or "unlimited" on a host without swap accounting: there is
                    // nothing to enforce, so nothing to refuse.
                    None
                }
            }
        };
        match (limit, swap) {
            (Some((limit_path, limit)), Some((swap_path, swap))) => {
                // The kernel keeps memsw >= memory at every write. Raising memsw first is safe
                // when the new total is above the memory limit in force; otherwise lower (or
                // set) memory first.
                let current = read_u64(&limit_path)?;
                let swap_first = match swap {
                    Limit::Unlimited => true,
                    Limit::Value(total) => current < total,
                };
                if swap_first {
                    write_field(resources::MEMORY_SWAP, &swap_path, &swap.v1())?;
                    write_field(resources::MEMORY_LIMIT, &limit_path, &limit.v1())?;
                } else {
                    write_field(resources::MEMORY_LIMIT, &limit_path, &limit.v1())?;
                    write_field(resources::MEMORY_SWAP, &swap_path, &swap.v1())?;
                }
            }
            (Some((path, limit)), None) => {
                write_field(resources::MEMORY_LIMIT, &path, &limit.v1())?
            }
            (None, Some((path, swap))) => write_field(resources::MEMORY_SWAP, &path, &swap.v1())?,
            (None, None) => {}
        }
        Ok(())
    }

    fn apply_cpu(&self, request: &ResourceRequest) -> Result<()> {
        if let Some(shares) = request.cpu_shares {
            let path = self.require("cpu", "cpu.shares", resources::CPU_SHARES)?;
            write_field(resources::CPU_SHARES, &path, &shares.to_string())?;
        }
        // Period before quota: a quota is checked against the period in force.
        if let Some(period) = request.cpu_period {
            let path = self.require("cpu", "cpu.cfs_period_us", resources::CPU_PERIOD)?;
            write_field(resources::CPU_PERIOD, &path, &period.to_string())?;
        }
        if let Some(quota) = request.cpu_quota {
            let path = self.require("cpu", "cpu.cfs_quota_us", resources::CPU_QUOTA)?;
            write_field(resources::CPU_QUOTA, &path, &quota.v1())?;
        }
        if let Some(cpus) = &request.cpu_cpus {
            let path = self.require("cpuset", "cpuset.cpus", resources::CPU_CPUS)?;
            write_field(resources::CPU_CPUS, &path, cpus)?;
        }
        if let Some(mems) = &request.cpu_mems {
            let path = self.require("cpuset", "cpuset.mems", resources::CPU_MEMS)?;
            write_field(resources::CPU_MEMS, &path, mems)?;
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> Result<CgroupStats> {
        let memory = match self.hierarchy("memory") {
            Some(hierarchy) => Some(memory_stats(&hierarchy.dir)?),
            None => None,
        };
        let cpu = match self.hierarchy("cpuacct") {
            Some(hierarchy) => Some(CpuStats {
                usage_ns: read_u64(&hierarchy.dir.join("cpuacct.usage"))?,
            }),
            None => None,
        };
        let pids = match self.hierarchy("pids") {
            Some(hierarchy) => Some(PidsStats {
                current: read_u64(&hierarchy.dir.join("pids.current"))?,
                limit: read_limit(&hierarchy.dir.join("pids.max"))?,
            }),
            None => None,
        };
        Ok(CgroupStats { memory, cpu, pids })
    }

    fn freezer_dir(&self, action: &'static str) -> Result<&Path> {
        self.hierarchy("freezer")
            .map(|hierarchy| hierarchy.dir.as_path())
            .ok_or_else(|| CgroupError::FreezerUnavailable {
                action,
                path: self.mount_root.join("freezer"),
                reason: "the freezer controller is not mounted on this host",
            })
    }

    pub(crate) fn freeze(&self) -> Result<()> {
        let state = self.freezer_dir("freeze")?.join("freezer.state");
        write_value(&state, "FROZEN")?;
        let frozen = cgfs::poll_until(
            self.freezer_timeout,
            FREEZER_POLL,
            |polls| {
                if polls > 0 && polls % FREEZE_REWRITE_EVERY == 0 {
                    write_value(&state, "FROZEN")?;
                }
                Ok(())
            },
            || Ok(read_freezer_state(&state)? == FreezerState::Frozen),
        )?;
        if frozen {
            return Ok(());
        }
        if let Err(error) = write_value(&state, "THAWED") {
            tracing::warn!(path = %state.display(), %error, "could not thaw after a failed freeze");
        }
        Err(CgroupError::FreezerTimeout {
            path: state,
            target: "frozen",
            timeout: self.freezer_timeout,
        })
    }

    pub(crate) fn thaw(&self) -> Result<()> {
        let state = self.freezer_dir("thaw")?.join("freezer.state");
        write_value(&state, "THAWED")?;
        let thawed = cgfs::poll_until(
            self.freezer_timeout,
            FREEZER_POLL,
            |_| Ok(()),
            || Ok(read_freezer_state(&state)? == FreezerState::Thawed),
        )?;
        if thawed {
            Ok(())
        } else {
            Err(CgroupError::FreezerTimeout {
                path: state,
                target: "thawed",
                timeout: self.freezer_timeout,
            })
        }
    }

    pub(crate) fn freezer_state(&self) -> Result<FreezerState> {
        match self.hierarchy("freezer") {
            Some(hierarchy) => read_freezer_state(&hierarchy.dir.join("freezer.state")),
            None => Ok(FreezerState::Thawed),
        }
    }

    /// Every hierarchy holds the same processes once the container joined; `pids` (or else
    /// `freezer`) is preferred because those are the ones used to stop them.
    pub(crate) fn pids(&self) -> Result<Vec<i32>> {
        let hierarchy = ["pids", "freezer"]
            .iter()
            .find_map(|controller| self.hierarchy(controller))
            .or_else(|| self.hierarchies.first());
        match hierarchy {
            Some(hierarchy) => cgfs::procs_recursive(&hierarchy.dir),
            None => Ok(Vec::new()),
        }
    }

    /// Removes the leaf in every hierarchy even when one fails, then reports the first error.
    pub(crate) fn destroy(&self) -> Result<()> {
        let unified_dir = self.unified.as_ref().map(|(_, dir)| dir);
        let dirs = self
            .hierarchies
            .iter()
            .map(|hierarchy| &hierarchy.dir)
            .chain(unified_dir);
        let mut first_error = None;
        for dir in dirs {
            if let Err(error) = cgfs::remove_cgroup_tree(dir) {
                first_error.get_or_insert(error);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        cgfs::remove_created_ancestors(&created)
    }

    pub(crate) fn paths(&self) -> Vec<CgroupPath> {
        let mut paths: Vec<CgroupPath> = self
            .hierarchies
            .iter()
            .map(|hierarchy| CgroupPath {
                name: hierarchy.name.clone(),
                dir: hierarchy.dir.clone(),
            })
            .collect();
        if let Some((_, dir)) = &self.unified {
            if dir.is_dir() {
                paths.push(CgroupPath {
                    name: "unified".to_owned(),
                    dir: dir.clone(),
                });
            }
        }
        paths
    }
}

/// Fills empty `cpuset.cpus` and `cpuset.mems` from the parent, top-down from the mount point
/// to `leaf`: the kernel refuses to add a process to a cpuset cgroup with either empty.
fn copy_cpuset_down(mount_point: &Path, leaf: &Path) -> Result<()> {
    let relative = leaf.strip_prefix(mount_point).unwrap_or(leaf);
    let mut parent = mount_point.to_path_buf();
    for component in relative.components() {
        let child = parent.join(component);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let child_file = child.join(file);
            if read_string(&child_file)?.trim().is_empty() {
                let inherited = read_string(&parent.join(file))?;
                write_value(&child_file, inherited.trim())?;
            }
        }
        parent = child;
    }
    Ok(())
}

fn memory_stats(dir: &Path) -> Result<MemoryStats> {
    let limit = read_u64(&dir.join("memory.limit_in_bytes"))?;
    let oom_control = dir.join("memory.oom_control");
    Ok(MemoryStats {
        usage_bytes: read_u64(&dir.join("memory.usage_in_bytes"))?,
        limit_bytes: (limit < V1_UNLIMITED_FLOOR).then_some(limit),
        max_usage_bytes: Some(read_u64(&dir.join("memory.max_usage_in_bytes"))?),
        // `oom_kill` joined `memory.oom_control` in Linux 4.13.
        oom_kills: flat_keyed_value(&oom_control, &read_string(&oom_control)?, "oom_kill")?,
    })
}

fn read_freezer_state(path: &Path) -> Result<FreezerState> {
    let content = read_string(path)?;
    match content.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => Err(CgroupError::Parse {
            path: path.to_path_buf(),
            content: other.to_owned(),
            expected: "THAWED, FREEZING or FROZEN",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::{new_manager_with_mountinfo, Cgroup};
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
        LinuxResourcesBuilder,
    };
    use std::fs;

    /// Files the kernel puts in every cgroup of each fake hierarchy, with their defaults.
    const HIERARCHY_FILES: &[(&str, &[(&str, &str)])] = &[
        (
            "cpu,cpuacct",
            &[
                ("cpu.shares", "1024\n"),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpuacct.usage", "123456789\n"),
            ],
        ),
        ("cpuset", &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")]),
        (
            "memory",
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "1048576\n"),
                ("memory.max_usage_in_bytes", "2097152\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
                ),
            ],
        ),
        ("pids", &[("pids.max", "max\n"), ("pids.current", "1\n")]),
        ("blkio", &[("blkio.weight", "500\n")]),
        ("freezer", &[("freezer.state", "THAWED\n")]),
    ];

    /// A temp dir laid out like a v1 host with co-mounted `cpu,cpuacct`, a matching mount
    /// table, and the leaf `berth/c1` already populated as the kernel does on `mkdir`.
    struct FakeV1 {
        root: tempfile::TempDir,
        mountinfo: String,
    }

    impl FakeV1 {
        fn new() -> Self {
            let root = tempfile::tempdir().expect("temp dir");
            let mut mountinfo = String::new();
            for (index, (name, files)) in HIERARCHY_FILES.iter().enumerate() {
                for level in ["", "berth", "berth/c1"] {
                    let dir = root.path().join(name).join(level);
                    fs::create_dir_all(&dir).expect("mkdir");
                    fs::write(dir.join("cgroup.procs"), "").expect("procs");
                    for (file, content) in *files {
                        fs::write(dir.join(file), content).expect("file");
                    }
                }
                mountinfo.push_str(&format!(
                    "{id} 31 0:{id} / {mount} rw,relatime - cgroup cgroup rw,{name}\n",
                    id = 40 + index,
                    mount = root.path().join(name).display(),
                ));
            }
            mountinfo.push_str(&format!(
                "60 31 0:60 / {} rw,relatime - cgroup cgroup rw,name=systemd\n",
                root.path().join("systemd").display()
            ));
            // The root cpuset is the one level the kernel fills in.
            fs::write(root.path().join("cpuset/cpuset.cpus"), "0-3\n").expect("cpus");
            fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").expect("mems");
            FakeV1 { root, mountinfo }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.root.path().join(relative)
        }

        fn read(&self, relative: &str) -> String {
            fs::read_to_string(self.path(relative)).expect("read fake file")
        }

        fn write(&self, relative: &str, content: &str) {
            fs::write(self.path(relative), content).expect("write fake file");
        }

        fn remove(&self, relative: &str) {
            fs::remove_file(self.path(relative)).expect("remove fake file");
        }

        fn cgroup(&self) -> Cgroup {
            new_manager_with_mountinfo(
                CgroupMode::V1,
                self.root.path(),
                Path::new("/berth/c1"),
                &self.mountinfo,
            )
            .expect("manager")
        }

        fn v1(&self) -> V1Cgroup {
            let mut cgroup = V1Cgroup::new(
                self.root.path(),
                Path::new("berth/c1"),
                &self.mountinfo,
                false,
            )
            .expect("manager");
            cgroup.freezer_timeout = Duration::from_millis(50);
            cgroup
        }
    }

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
    fn create_copies_cpuset_down_every_empty_level() {
        let fake = FakeV1::new();
        fake.write("cpuset/berth/cpuset.mems", "0\n");
        fake.cgroup().create().expect("create");
        assert_eq!(fake.read("cpuset/berth/cpuset.cpus"), "0-3");
        assert_eq!(fake.read("cpuset/berth/cpuset.mems"), "0\n", "kept as set");
        assert_eq!(fake.read("cpuset/berth/c1/cpuset.cpus"), "0-3");
        assert_eq!(fake.read("cpuset/berth/c1/cpuset.mems"), "0");
    }

    #[test]
    fn add_process_joins_every_hierarchy() {
        let fake = FakeV1::new();
        let cgroup = fake.cgroup();
        cgroup.add_process(77).expect("add");
        for (name, _) in HIERARCHY_FILES {
            assert_eq!(fake.read(&format!("{name}/berth/c1/cgroup.procs")), "77");
        }
        assert_eq!(cgroup.pids().expect("pids"), vec![77]);
        assert!(
            !fake.path("systemd").exists(),
            "named hierarchies are skipped"
        );
    }

    #[test]
    fn apply_writes_v1_files() {
        let fake = FakeV1::new();
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .reservation(32 << 20)
                    .swap(128 << 20)
                    .build()
                    .expect("memory"),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .cpus("1")
                    .mems("0")
                    .build()
                    .expect("cpu"),
            )
            .pids(LinuxPidsBuilder::default().limit(64).build().expect("pids"))
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources");
        fake.cgroup().apply(&resources).expect("apply");
        let leaf = |file: &str| {
            let controller = file.split('.').next().unwrap_or_default();
            let hierarchy = match controller {
                "cpu" | "cpuacct" => "cpu,cpuacct",
                other => other,
            };
            fake.read(&format!("{hierarchy}/berth/c1/{file}"))
        };
        assert_eq!(leaf("memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(
            leaf("memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        assert_eq!(
            leaf("memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
        assert_eq!(leaf("cpu.shares"), "512");
        assert_eq!(leaf("cpu.cfs_period_us"), "100000");
        assert_eq!(leaf("cpu.cfs_quota_us"), "50000");
        assert_eq!(leaf("cpuset.cpus"), "1");
        assert_eq!(leaf("cpuset.mems"), "0");
        assert_eq!(leaf("pids.max"), "64");
        assert_eq!(leaf("blkio.weight"), "300");
    }

    #[test]
    fn unlimited_memory_lifts_memsw_too() {
        let fake = FakeV1::new();
        fake.write("memory/berth/c1/memory.limit_in_bytes", "1000\n");
        fake.write("memory/berth/c1/memory.memsw.limit_in_bytes", "2000\n");
        fake.cgroup().apply(&memory(-1, None)).expect("apply");
        assert_eq!(fake.read("memory/berth/c1/memory.limit_in_bytes"), "-1");
        assert_eq!(
            fake.read("memory/berth/c1/memory.memsw.limit_in_bytes"),
            "-1"
        );
    }

    #[test]
    fn swap_without_accounting_fails_only_when_swap_is_really_limited() {
        let fake = FakeV1::new();
        fake.remove("memory/berth/c1/memory.memsw.limit_in_bytes");
        let error = fake
            .cgroup()
            .apply(&memory(64 << 20, Some(128 << 20)))
            .expect_err("no swap accounting");
        assert!(
            matches!(error, CgroupError::SwapAccountingUnavailable { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("linux.resources.memory.swap"),
            "{error}"
        );
        fake.cgroup()
            .apply(&memory(64 << 20, Some(64 << 20)))
            .expect("swap == memory");
        fake.cgroup()
            .apply(&memory(64 << 20, Some(-1)))
            .expect("unlimited swap");
        assert_eq!(
            fake.read("memory/berth/c1/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
    }

    #[test]
    fn missing_hierarchy_names_the_field() {
        let fake = FakeV1::new();
        let mountinfo: String = fake
            .mountinfo
            .lines()
            .filter(|line| !line.ends_with("rw,pids"))
            .map(|line| format!("{line}\n"))
            .collect();
        let cgroup = new_manager_with_mountinfo(
            CgroupMode::V1,
            fake.root.path(),
            Path::new("/berth/c1"),
            &mountinfo,
        )
        .expect("manager");
        let resources = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(64).build().expect("pids"))
            .build()
            .expect("resources");
        let error = cgroup.apply(&resources).expect_err("no pids hierarchy");
        let message = error.to_string();
        assert!(message.contains("linux.resources.pids.limit"), "{message}");
        assert!(message.contains("pids cgroup controller"), "{message}");
        assert_eq!(cgroup.stats().expect("stats").pids, None);
    }

    #[test]
    fn blkio_weight_falls_back_to_bfq_and_else_names_the_field() {
        let fake = FakeV1::new();
        fake.remove("blkio/berth/c1/blkio.weight");
        let resources = LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .build()
                    .expect("io"),
            )
            .build()
            .expect("resources");
        let error = fake.cgroup().apply(&resources).expect_err("no weight file");
        assert!(
            error.to_string().contains("linux.resources.blockIO.weight"),
            "{error}"
        );
        fake.write("blkio/berth/c1/blkio.bfq.weight", "100\n");
        fake.cgroup().apply(&resources).expect("bfq");
        assert_eq!(fake.read("blkio/berth/c1/blkio.bfq.weight"), "300");
    }

    #[test]
    fn stats_read_v1_files() {
        let fake = FakeV1::new();
        fake.write("pids/berth/c1/pids.max", "64\n");
        let stats = fake.cgroup().stats().expect("stats");
        assert_eq!(
            stats,
            CgroupStats {
                memory: Some(MemoryStats {
                    usage_bytes: 1 << 20,
                    limit_bytes: None,
                    max_usage_bytes: Some(2 << 20),
                    oom_kills: Some(3),
                }),
                cpu: Some(CpuStats {
                    usage_ns: 123_456_789
                }),
                pids: Some(PidsStats {
                    current: 1,
                    limit: Some(64)
                }),
            }
        );
    }

    #[test]
    fn freeze_and_thaw_use_freezer_state() {
        let fake = FakeV1::new();
        let cgroup = fake.v1();
        cgroup
            .freeze()
            .expect("a fake freezer reads back what was written");
        assert_eq!(fake.read("freezer/berth/c1/freezer.state"), "FROZEN");
        assert_eq!(cgroup.freezer_state().expect("state"), FreezerState::Frozen);
        cgroup.thaw().expect("thaw");
        assert_eq!(cgroup.freezer_state().expect("state"), FreezerState::Thawed);
        fake.write("freezer/berth/c1/freezer.state", "FREEZING\n");
        assert_eq!(
            cgroup.freezer_state().expect("state"),
            FreezerState::Freezing
        );
        fake.write("freezer/berth/c1/freezer.state", "SLUSHY\n");
        assert!(matches!(
            cgroup.freezer_state(),
            Err(CgroupError::Parse { .. })
        ));
    }

    #[test]
    fn paths_list_one_directory_per_hierarchy() {
        let fake = FakeV1::new();
        let names: Vec<String> = fake
            .cgroup()
            .paths()
            .into_iter()
            .map(|path| path.name)
            .collect();
        assert_eq!(
            names,
            [
                "cpu,cpuacct",
                "cpuset",
                "memory",
                "pids",
                "blkio",
                "freezer"
            ]
        );
        assert_eq!(fake.cgroup().mode(), CgroupMode::V1);
    }

    #[test]
    fn hybrid_creates_a_unified_leaf_best_effort() {
        let fake = FakeV1::new();
        let hybrid = |root: &Path| {
            new_manager_with_mountinfo(
                CgroupMode::Hybrid,
                root,
                Path::new("/berth/c1"),
                &fake.mountinfo,
            )
            .expect("manager")
        };
        // No unified mount in this fake: creating there fails, which must not fail `create`.
        let cgroup = hybrid(fake.root.path());
        assert_eq!(cgroup.mode(), CgroupMode::Hybrid);
        cgroup.create().expect("unified hierarchy is optional");
        assert!(cgroup.paths().iter().all(|path| path.name != "unified"));

        fs::create_dir(fake.path("unified")).expect("unified mount");
        cgroup.create().expect("create");
        assert!(fake.path("unified/berth/c1").is_dir());
        assert!(cgroup.paths().iter().any(|path| path.name == "unified"));
    }

    #[test]
    fn no_v1_hierarchy_is_a_clear_error() {
        let root = tempfile::tempdir().expect("temp dir");
        let error =
            new_manager_with_mountinfo(CgroupMode::V1, root.path(), Path::new("/berth/c1"), "")
                .expect_err("nothing mounted");
        assert!(
            matches!(error, CgroupError::NoV1Hierarchy { .. }),
            "{error}"
        );
    }
}
