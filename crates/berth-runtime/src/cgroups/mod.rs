//! Control groups for containers: one interface over cgroup v1 and v2.
//!
//! A container's limits (`linux.resources`), its statistics, pausing and the final cleanup all
//! go through a cgroup, but hosts differ in how cgroups are mounted:
//!
//! - **v2** (most current distributions): one hierarchy at `/sys/fs/cgroup`; a controller must
//!   be enabled in every ancestor's `cgroup.subtree_control` before its files appear.
//! - **v1**: a tmpfs at `/sys/fs/cgroup` with one mount per hierarchy (`memory`, `pids`,
//!   `cpu,cpuacct` co-mounted on some hosts); the mount table says where each one is.
//! - **hybrid**: v1 as above plus a cgroup2 mount at `/sys/fs/cgroup/unified` with no
//!   controllers in it. berth must run there without changing the host, so it uses the v1
//!   controllers and only creates a leaf in the unified hierarchy, best effort (no process
//!   joins it; it is removed with the others).
//!
//! [`detect_mode`] tells which one a host has and [`new_manager`] returns a [`Cgroup`] for one
//! container's `linux.cgroupsPath`. The container create path then calls
//! [`Cgroup::create`] and [`Cgroup::apply`], and the new process moves itself in with
//! [`join_self`] (see [`Cgroup::self_join_files`] for why not [`Cgroup::add_process`]);
//! later [`Cgroup::stats`], [`Cgroup::freeze`]/[`Cgroup::thaw`], [`Cgroup::pids`] and finally
//! [`Cgroup::destroy`]. A `Cgroup` is cheap and stateless apart from remembering which
//! directories its own `create` made, so `berth-runc delete` can open the same cgroup again
//! from the path alone and destroy its leaf; parents such as `/berth` stay, as Docker's
//! `/docker` does.
//!
//! `Cgroup` is an enum rather than a `CgroupManager` trait object: there are exactly two
//! backends, the host decides between them at run time, and an enum needs no boxing, stays
//! `Debug`, and makes each method's dispatch visible in one `match`. Tests fake the cgroup
//! *filesystem* (a temp dir laid out as the kernel would), not the manager, so no trait is
//! needed for them either.
//!
//! What this layer does not do: the device allowlist (`linux.resources.devices`) is enforced
//! by the runtime's device setup; the systemd cgroup driver is not implemented; named v1
//! hierarchies such as `name=systemd` are left to the init system.

#![forbid(unsafe_code)]

mod devices;
mod error;
mod fs;
mod mountinfo;
mod resources;
mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod real_kernel_tests;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use oci_spec::runtime::LinuxResources;
use serde::Serialize;

pub use error::{CgroupError, Result};
pub use stats::{CgroupStats, CpuStats, MemoryStats, PidsStats};
pub use v1::V1Cgroup;
pub use v2::V2Cgroup;

/// Where cgroup filesystems are mounted on every mainstream distribution.
pub const DEFAULT_MOUNT_ROOT: &str = "/sys/fs/cgroup";

/// How long `freeze` and `thaw` wait for the kernel before giving up.
const FREEZER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the freezer state is read while waiting.
const FREEZER_POLL: Duration = Duration::from_millis(10);

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// One unified v2 hierarchy.
    V2,
    /// v1 hierarchies plus a (controller-less) cgroup2 mount at `<root>/unified`.
    Hybrid,
}

/// Whether a cgroup's processes are running or paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze, and some processes are not frozen yet.
    Freezing,
    Frozen,
}

/// A directory holding the container's cgroup, for the caller to bind-mount into the
/// container at `/sys/fs/cgroup/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupPath {
    /// The hierarchy's name as v1 mounts it (`memory`, `cpu,cpuacct`; co-mounted names need
    /// symlinks for each controller inside the container), or `unified` for the v2 hierarchy.
    pub name: String,
    /// The container's cgroup directory on the host.
    pub dir: PathBuf,
}

/// Move the calling process, which must be single-threaded, into the cgroup whose
/// [`Cgroup::self_join_files`] are given.
///
/// This runs in a forked child of a possibly multi-threaded process, so it takes no lock:
/// no logging, just the writes.
pub fn join_self(files: &[PathBuf]) -> Result<()> {
    use std::io::Write;
    for file in files {
        let write = || -> std::io::Result<()> {
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)?
                .write_all(b"0")
        };
        write().map_err(|source| CgroupError::Write {
            path: file.clone(),
            value: "0".to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Tells how cgroups are mounted at `root` (normally [`DEFAULT_MOUNT_ROOT`]) from the
/// filesystem types: cgroup2 at the root is v2; a tmpfs is v1, or hybrid when
/// `<root>/unified` is cgroup2.
pub fn detect_mode(root: &Path) -> Result<CgroupMode> {
    let filesystem_type = |path: &Path| {
        statfs(path)
            .map(|stat| stat.filesystem_type())
            .map_err(|source| CgroupError::Statfs {
                path: path.to_path_buf(),
                source,
            })
    };
    let root_type = filesystem_type(root)?;
    let unified = root.join("unified");
    let unified_type = if root_type == TMPFS_MAGIC && unified.is_dir() {
        Some(filesystem_type(&unified)?)
    } else {
        None
    };
    mode_from_filesystems(root, root_type, unified_type)
}

fn mode_from_filesystems(
    root: &Path,
    root_type: FsType,
    unified_type: Option<FsType>,
) -> Result<CgroupMode> {
    if root_type == CGROUP2_SUPER_MAGIC {
        Ok(CgroupMode::V2)
    } else if root_type == TMPFS_MAGIC {
        if unified_type == Some(CGROUP2_SUPER_MAGIC) {
            Ok(CgroupMode::Hybrid)
        } else {
            Ok(CgroupMode::V1)
        }
    } else {
        Err(CgroupError::NotCgroupFs {
            path: root.to_path_buf(),
            magic: format!("{:#x}", root_type.0),
        })
    }
}

/// Opens the cgroup `cgroups_path` (the spec's `linux.cgroupsPath`, absolute from the
/// hierarchy root, e.g. `/berth/<id>`) under the cgroup filesystems at `mount_root`.
///
/// Nothing is created yet; see [`Cgroup::create`]. On v1 and hybrid hosts the hierarchies are
/// found in `/proc/self/mountinfo`.
pub fn new_manager(mode: CgroupMode, mount_root: &Path, cgroups_path: &Path) -> Result<Cgroup> {
    let mountinfo = match mode {
        CgroupMode::V2 => String::new(),
        CgroupMode::V1 | CgroupMode::Hybrid => {
            let path = Path::new("/proc/self/mountinfo");
            std::fs::read_to_string(path).map_err(|source| CgroupError::ReadMountinfo {
                path: path.to_path_buf(),
                source,
            })?
        }
    };
    new_manager_with_mountinfo(mode, mount_root, cgroups_path, &mountinfo)
}

/// [`new_manager`] with the mount table given as text (the format of `/proc/self/mountinfo`),
/// so tests can point v1 hierarchies into a temp dir. Ignored on v2.
pub fn new_manager_with_mountinfo(
    mode: CgroupMode,
    mount_root: &Path,
    cgroups_path: &Path,
    mountinfo: &str,
) -> Result<Cgroup> {
    let relative = relative_cgroup_path(cgroups_path)?;
    Ok(match mode {
        CgroupMode::V2 => Cgroup::V2(V2Cgroup::new(mount_root, &relative)),
        CgroupMode::V1 => Cgroup::V1(V1Cgroup::new(mount_root, &relative, mountinfo, false)?),
        CgroupMode::Hybrid => Cgroup::V1(V1Cgroup::new(mount_root, &relative, mountinfo, true)?),
    })
}

/// `linux.cgroupsPath` below the hierarchy root, as a relative path with only normal
/// components: `..` could climb out of the hierarchy, and the root itself belongs to the host.
fn relative_cgroup_path(cgroups_path: &Path) -> Result<PathBuf> {
    let invalid = |reason| CgroupError::InvalidCgroupsPath {
        path: cgroups_path.to_path_buf(),
        reason,
    };
    if !cgroups_path.is_absolute() {
        return Err(invalid(
            "it must be absolute (the systemd `slice:prefix:name` form is not supported)",
        ));
    }
    let mut relative = PathBuf::new();
    for component in cgroups_path.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => relative.push(name),
            Component::ParentDir | Component::CurDir | Component::Prefix(_) => {
                return Err(invalid("it must not contain `.` or `..`"))
            }
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(invalid(
            "it names the hierarchy root, which belongs to the host",
        ));
    }
    Ok(relative)
}

/// One container's cgroup, on whichever cgroup version the host runs.
#[derive(Debug)]
pub enum Cgroup {
    V1(V1Cgroup),
    V2(V2Cgroup),
}

impl Cgroup {
    /// The cgroup version this manager writes to (hybrid hosts report [`CgroupMode::Hybrid`]).
    pub fn mode(&self) -> CgroupMode {
        match self {
            Cgroup::V1(cgroup) => cgroup.mode(),
            Cgroup::V2(_) => CgroupMode::V2,
        }
    }

    /// Creates the cgroup directories (`mkdir -p`) and prepares them to take processes: on v1
    /// copies `cpuset.cpus`/`cpuset.mems` down into empty levels, on v2 enables berth's
    /// controllers in every ancestor's `cgroup.subtree_control`. Existing directories are kept.
    pub fn create(&self) -> Result<()> {
        match self {
            Cgroup::V1(cgroup) => cgroup.create(),
            Cgroup::V2(cgroup) => cgroup.create(),
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        match self {
            Cgroup::V1(cgroup) => cgroup.add_process(pid),
            Cgroup::V2(cgroup) => cgroup.add_process(pid),
        }
    }

    /// Enforce the device allowlist (`linux.resources.devices`). On v1 the rules go to the
    /// devices controller. v2 enforces devices only through an eBPF program, which berth does
    /// not load yet: there the rules are not applied, and a warning says so.
    pub fn apply_devices(&self, rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        match self {
            Cgroup::V1(cgroup) => cgroup.apply_devices(&devices::v1_lines(rules)?),
            Cgroup::V2(_) => {
                tracing::warn!("linux.resources.devices is not enforced on cgroup v2 hosts yet (needs an eBPF device program)");
                Ok(())
            }
        }
    }

    /// The files a single-threaded process writes `0` into to move itself into the cgroup
    /// (see [`join_self`]).
    ///
    /// Why not [`Cgroup::add_process`] from the parent: moving *another* process takes the
    /// kernel's global threadgroup lock, whose write side waits for an RCU grace period
    /// (about 10 ms, longer than all the rest of a container start). On v1, a thread
    /// moving itself through `tasks` skips that lock; for a single-threaded process that
    /// moves the whole process. v2 has no such file outside threaded mode, so there the
    /// process writes `cgroup.procs`. The unified leaf of a hybrid host holds no
    /// controller and is not joined.
    pub fn self_join_files(&self) -> Vec<PathBuf> {
        match self {
            Cgroup::V1(cgroup) => cgroup
                .paths()
                .into_iter()
                .filter(|p| p.name != "unified")
                .map(|p| p.dir.join("tasks"))
                .collect(),
            Cgroup::V2(cgroup) => cgroup
                .paths()
                .into_iter()
                .map(|p| p.dir.join("cgroup.procs"))
                .collect(),
        }
    }

    /// Writes the limits in `resources`: memory limit, reservation and swap; CPU shares,
    /// quota, period, cpus and mems; the pids limit; the block I/O weight. A field whose
    /// controller the host lacks, or that berth does not apply, fails naming the field.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        let request = resources::ResourceRequest::from_spec(resources)?;
        match self {
            Cgroup::V1(cgroup) => cgroup.apply(&request),
            Cgroup::V2(cgroup) => cgroup.apply(&request),
        }
    }

    /// Reads memory, CPU and pids usage.
    pub fn stats(&self) -> Result<CgroupStats> {
        match self {
            Cgroup::V1(cgroup) => cgroup.stats(),
            Cgroup::V2(cgroup) => cgroup.stats(),
        }
    }

    /// Freezes every process in the cgroup and waits until the kernel reports it frozen. On
    /// timeout the cgroup is thawed again, so it is never left half frozen.
    pub fn freeze(&self) -> Result<()> {
        match self {
            Cgroup::V1(cgroup) => cgroup.freeze(),
            Cgroup::V2(cgroup) => cgroup.freeze(),
        }
    }

    /// Thaws the cgroup and waits until the kernel reports it running.
    pub fn thaw(&self) -> Result<()> {
        match self {
            Cgroup::V1(cgroup) => cgroup.thaw(),
            Cgroup::V2(cgroup) => cgroup.thaw(),
        }
    }

    /// Whether the cgroup is frozen. A host that cannot freeze reports
    /// [`FreezerState::Thawed`], since nothing can have frozen it.
    pub fn freezer_state(&self) -> Result<FreezerState> {
        match self {
            Cgroup::V1(cgroup) => cgroup.freezer_state(),
            Cgroup::V2(cgroup) => cgroup.freezer_state(),
        }
    }

    /// Ids of the processes in the cgroup and in any cgroup the container created below it.
    pub fn pids(&self) -> Result<Vec<i32>> {
        match self {
            Cgroup::V1(cgroup) => cgroup.pids(),
            Cgroup::V2(cgroup) => cgroup.pids(),
        }
    }

    /// Removes the cgroup, any cgroup below it and the empty parents this manager's `create`
    /// made, deepest first, retrying briefly while the kernel reports one busy. The processes
    /// must be gone (killed and reaped) first. Removing a missing cgroup succeeds.
    pub fn destroy(&self) -> Result<()> {
        match self {
            Cgroup::V1(cgroup) => cgroup.destroy(),
            Cgroup::V2(cgroup) => cgroup.destroy(),
        }
    }

    /// The container's cgroup directories, one per hierarchy, for bind-mounting.
    pub fn paths(&self) -> Vec<CgroupPath> {
        match self {
            Cgroup::V1(cgroup) => cgroup.paths(),
            Cgroup::V2(cgroup) => cgroup.paths(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::statfs::EXT4_SUPER_MAGIC;

    #[test]
    fn mode_follows_the_filesystem_types() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            mode_from_filesystems(root, CGROUP2_SUPER_MAGIC, None).expect("v2"),
            CgroupMode::V2
        );
        assert_eq!(
            mode_from_filesystems(root, TMPFS_MAGIC, None).expect("v1"),
            CgroupMode::V1
        );
        assert_eq!(
            mode_from_filesystems(root, TMPFS_MAGIC, Some(TMPFS_MAGIC)).expect("v1"),
            CgroupMode::V1
        );
        assert_eq!(
            mode_from_filesystems(root, TMPFS_MAGIC, Some(CGROUP2_SUPER_MAGIC)).expect("hybrid"),
            CgroupMode::Hybrid
        );
        let error = mode_from_filesystems(root, EXT4_SUPER_MAGIC, None).expect_err("ext4");
        assert!(matches!(error, CgroupError::NotCgroupFs { .. }), "{error}");
    }

    #[test]
    fn detect_mode_reads_the_real_mount_root() {
        // Every Linux host berth runs on has one of the three layouts; which one depends on
        // the machine, so only success is checked here.
        let mode = detect_mode(Path::new(DEFAULT_MOUNT_ROOT)).expect("cgroups are mounted");
        eprintln!("host cgroup mode: {mode:?}");
    }

    #[test]
    fn detect_mode_names_a_missing_root() {
        let error = detect_mode(Path::new("/nonexistent/cgroup")).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/cgroup"), "{error}");
    }

    #[test]
    fn cgroups_path_must_be_absolute_and_below_the_root() {
        assert_eq!(
            relative_cgroup_path(Path::new("/berth/abc")).expect("valid"),
            Path::new("berth/abc")
        );
        for bad in [
            "berth/abc",
            "/berth/../../etc",
            "/",
            "system.slice:berth:abc",
        ] {
            let error = relative_cgroup_path(Path::new(bad)).expect_err(bad);
            assert!(
                error.to_string().contains("linux.cgroupsPath"),
                "{bad}: {error}"
            );
        }
    }
}
