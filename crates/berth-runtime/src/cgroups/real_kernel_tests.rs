//! The v1 backend against the real kernel, on v1 and hybrid hosts.
//!
//! A fake tree can check which files get written but not that the kernel accepts them, that
//! the cpuset copy-down really lets a process in, or that rmdir succeeds; these tests do, as
//! root, with a `sleep` child in a throwaway cgroup `/berth-test-<unique>/ctr`. On a v2 host
//! they print why they skip (v2 is covered by the fake tree in `v2.rs`); on a v1 host without
//! root they fail, because a silent pass would hide that nothing was checked. A guard kills
//! the child and removes the cgroups even when an assertion fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::*;

/// The host's mode when it is one these tests cover, `None` (after saying so) otherwise.
fn v1_host(test: &str) -> Option<CgroupMode> {
    let mode = detect_mode(Path::new(DEFAULT_MOUNT_ROOT)).expect("detect the host's cgroups");
    if mode == CgroupMode::V2 {
        eprintln!(
            "SKIPPED {test}: this host runs cgroup v2; the v1 backend needs a v1 or hybrid host"
        );
        return None;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test} needs root to create cgroups on this {mode:?} host; run the tests as root"
    );
    Some(mode)
}

/// A unique top-level test cgroup path, so parallel tests and earlier crashed runs never meet.
fn unique_cgroups_path() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!(
        "/berth-test-{}-{nanos:x}-{count}/ctr",
        std::process::id()
    ))
}

/// Owns the test cgroup and its child; on drop kills and reaps the child, then destroys the
/// cgroup, so a failed assertion leaves nothing behind.
struct CgroupGuard {
    cgroup: Cgroup,
    child: Option<Child>,
}

impl CgroupGuard {
    fn create(mode: CgroupMode) -> Self {
        let cgroup = new_manager(mode, Path::new(DEFAULT_MOUNT_ROOT), &unique_cgroups_path())
            .expect("manager for the host's hierarchies");
        let guard = CgroupGuard {
            cgroup,
            child: None,
        };
        guard.cgroup.create().expect("create the test cgroup");
        guard
    }

    /// Starts `sleep` and moves it into the cgroup; returns its pid.
    fn add_sleeper(&mut self) -> i32 {
        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        self.child = Some(child);
        self.cgroup.add_process(pid).expect("add the child");
        pid
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The child may be frozen by a failed test; a frozen task still dies on SIGKILL
            // only once thawed on v1, so thaw first (ignoring errors: there may be no freezer).
            let _ = self.cgroup.thaw();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn dir(&self, hierarchy: &str) -> PathBuf {
        self.cgroup
            .paths()
            .into_iter()
            .find(|path| path.name.split(',').any(|name| name == hierarchy))
            .map(|path| path.dir)
            .unwrap_or_else(|| panic!("no {hierarchy} hierarchy on this host"))
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        self.kill_child();
        if let Err(error) = self.cgroup.destroy() {
            eprintln!("cleanup of the test cgroup failed: {error}");
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
        .trim()
        .to_owned()
}

fn pids_and_memory(pids: i64, memory: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .expect("pids"),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory)
                .build()
                .expect("memory"),
        )
        .build()
        .expect("resources")
}

#[test]
fn real_v1_lifecycle_create_apply_stats_freeze_destroy() {
    let Some(mode) = v1_host("real_v1_lifecycle_create_apply_stats_freeze_destroy") else {
        return;
    };
    let mut guard = CgroupGuard::create(mode);
    let pid = guard.add_sleeper();
    guard
        .cgroup
        .apply(&pids_and_memory(64, 64 << 20))
        .expect("apply pids and memory limits");

    assert_eq!(read(&guard.dir("pids").join("pids.max")), "64");
    assert_eq!(
        read(&guard.dir("memory").join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(guard.cgroup.pids().expect("pids"), vec![pid]);

    let stats = guard.cgroup.stats().expect("stats");
    let pids = stats.pids.expect("pids are accounted");
    assert_eq!((pids.current, pids.limit), (1, Some(64)));
    let memory = stats.memory.expect("memory is accounted");
    assert_eq!(memory.limit_bytes, Some(64 << 20));
    assert!(memory.usage_bytes <= 64 << 20, "{memory:?}");
    assert!(stats.cpu.is_some(), "cpuacct is mounted");

    guard.cgroup.freeze().expect("freeze");
    assert_eq!(
        guard.cgroup.freezer_state().expect("state"),
        FreezerState::Frozen
    );
    guard.cgroup.thaw().expect("thaw");
    assert_eq!(
        guard.cgroup.freezer_state().expect("state"),
        FreezerState::Thawed
    );

    if mode == CgroupMode::Hybrid {
        assert!(
            guard
                .cgroup
                .paths()
                .iter()
                .any(|path| path.name == "unified"),
            "the hybrid host's unified hierarchy takes a leaf"
        );
    }

    let dirs: Vec<PathBuf> = guard
        .cgroup
        .paths()
        .into_iter()
        .map(|path| path.dir)
        .collect();
    guard.kill_child();
    guard.cgroup.destroy().expect("destroy");
    for dir in &dirs {
        assert!(!dir.exists(), "{} is left behind", dir.display());
        let parent = dir.parent().expect("the leaf has a parent");
        assert!(!parent.exists(), "{} is left behind", parent.display());
    }
    guard.cgroup.destroy().expect("destroy is idempotent");
}

#[test]
fn real_v1_destroy_refuses_a_cgroup_with_live_processes() {
    let Some(mode) = v1_host("real_v1_destroy_refuses_a_cgroup_with_live_processes") else {
        return;
    };
    let mut guard = CgroupGuard::create(mode);
    guard.add_sleeper();
    let error = guard
        .cgroup
        .destroy()
        .expect_err("a cgroup with a live process cannot be removed");
    assert!(matches!(error, CgroupError::RemoveDir { .. }), "{error}");
    assert!(error.to_string().contains("cgroup.procs"), "{error}");
    guard.kill_child();
    guard
        .cgroup
        .destroy()
        .expect("destroy once the child is gone");
}

#[test]
fn real_v1_cpu_and_cpuset_limits() {
    let Some(mode) = v1_host("real_v1_cpu_and_cpuset_limits") else {
        return;
    };
    let mut guard = CgroupGuard::create(mode);
    guard.add_sleeper();
    let resources = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .expect("cpu"),
        )
        .build()
        .expect("resources");
    guard.cgroup.apply(&resources).expect("apply cpu limits");
    let cpu = guard.dir("cpu");
    assert_eq!(read(&cpu.join("cpu.shares")), "512");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&guard.dir("cpuset").join("cpuset.cpus")), "0");
}

#[test]
fn real_v1_swap_limit_is_applied_or_refused_by_field() {
    let Some(mode) = v1_host("real_v1_swap_limit_is_applied_or_refused_by_field") else {
        return;
    };
    let guard = CgroupGuard::create(mode);
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(128 << 20)
                .build()
                .expect("memory"),
        )
        .build()
        .expect("resources");
    let memsw = guard.dir("memory").join("memory.memsw.limit_in_bytes");
    match guard.cgroup.apply(&resources) {
        Ok(()) => assert_eq!(read(&memsw), (128u64 << 20).to_string()),
        Err(CgroupError::SwapAccountingUnavailable { path }) => {
            assert!(
                !memsw.exists(),
                "refused although {} exists",
                path.display()
            );
        }
        Err(error) => panic!("unexpected error: {error}"),
    }
}

#[test]
fn real_v1_kernel_refusal_names_the_spec_field() {
    let Some(mode) = v1_host("real_v1_kernel_refusal_names_the_spec_field") else {
        return;
    };
    let guard = CgroupGuard::create(mode);
    let resources = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .cpus("4095")
                .build()
                .expect("cpu"),
        )
        .build()
        .expect("resources");
    let error = guard
        .cgroup
        .apply(&resources)
        .expect_err("no host has cpu 4095 online");
    assert!(
        matches!(
            error,
            CgroupError::Rejected {
                field: "linux.resources.cpu.cpus",
                ..
            }
        ),
        "{error}"
    );
}
