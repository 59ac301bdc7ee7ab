//! The container's root filesystem: mounts from the spec, `/dev`, `pivot_root`, masked and
//! read-only paths, read-only root.
//!
//! Runs in the container's init, inside its new mount namespace. Every destination is
//! resolved with a lookup scoped to the root filesystem and mounted through
//! `/proc/self/fd/N`, so a symlink planted in an image can never redirect a mount onto the
//! host. The root is entered with `pivot_root` (never `chroot`), and the old root is
//! detached, so nothing of the host's mount table stays reachable.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::error::{IoContext, Result, RuntimeError};
use crate::sys::openat2::open_in_root;

/// A cgroup directory of the container to show at `/sys/fs/cgroup/<name>` on v1 hosts.
#[derive(Debug, Clone)]
pub struct CgroupMountSource {
    /// Directory name under /sys/fs/cgroup (`memory`, `cpu,cpuacct`, ...).
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
    /// Extra names to symlink to `name` (`cpu` and `cpuacct` for `cpu,cpuacct`).
    pub aliases: Vec<String>,
}

/// How the container sees cgroups.
#[derive(Debug, Clone)]
pub enum CgroupView {
    /// Pure cgroup v2: mount cgroup2 (the cgroup namespace roots it at the container).
    Unified {
        host_dir: PathBuf,
        has_cgroupns: bool,
    },
    /// v1 controllers (also on hybrid hosts): a tmpfs with one bind mount per controller.
    Legacy(Vec<CgroupMountSource>),
}

/// Mount flags and propagation parsed from a spec mount's `options`.
#[derive(Debug, Clone, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub bind: bool,
    pub recursive: bool,
    pub data: Vec<String>,
}

/// mount(8)-style options (`ro`, `nosuid`, `bind`, `rprivate`, ...) as flags; anything
/// else is filesystem data (`size=64m`, `mode=755`).
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: MsFlags::empty(),
        bind: false,
        recursive: false,
        data: Vec::new(),
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation |= propagation_flags(opt).unwrap_or(MsFlags::empty());
                continue;
            }
            // Docker's hint for tmpfs on a non-empty directory; we do not copy up.
            "tmpcopyup" | "notmpcopyup" => continue,
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
    }
    o
}

/// `rootfsPropagation` and mount options to flags.
pub(crate) fn propagation_flags(word: &str) -> Option<MsFlags> {
    Some(match word {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Check the parts of the spec this module relies on before any process is created, so
/// mistakes are reported with the field that holds them.
pub(crate) fn validate(spec: &Spec) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}].destination");
        if !m.destination().is_absolute() {
            return Err(RuntimeError::invalid(
                field,
                format!("{} is not an absolute path", m.destination().display()),
            ));
        }
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        if opts.bind && m.source().is_none() {
            return Err(RuntimeError::invalid(
                format!("mounts[{i}].source"),
                "a bind mount needs a source",
            ));
        }
        if opts.bind {
            if let Some(src) = m.source() {
                if !src.exists() {
                    return Err(RuntimeError::invalid(
                        format!("mounts[{i}].source"),
                        format!("bind source {} does not exist", src.display()),
                    ));
                }
            }
        }
    }
    if let Some(linux) = spec.linux() {
        if let Some(p) = linux.rootfs_propagation() {
            if propagation_flags(p).is_none() {
                return Err(RuntimeError::invalid(
                    "linux.rootfsPropagation",
                    format!("{p:?} is not one of private, rprivate, shared, rshared, slave, rslave, unbindable, runbindable"),
                ));
            }
        }
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            if !d.path().starts_with("/dev") {
                return Err(RuntimeError::invalid(
                    format!("linux.devices[{i}].path"),
                    "devices must be under /dev",
                ));
            }
        }
    }
    Ok(())
}

/// Everything `prepare` needs besides the spec.
pub(crate) struct RootfsPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub cgroups: &'a CgroupView,
    /// A new user namespace: device nodes cannot be created, bind the host's instead.
    pub in_user_ns: bool,
}

/// Mount everything under the root filesystem, before `pivot_root`.
pub(crate) fn prepare(plan: &RootfsPlan<'_>) -> Result<()> {
    let linux = plan.spec.linux().as_ref();
    // Stop our mounts from propagating back to the host (and vice versa for rslave).
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // A shared root would make pivot_root fail and leak our mounts to the host: start as a
    // slave and share after pivot_root if the spec asks for it.
    let initial = if prop.contains(MsFlags::MS_SHARED) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        prop | MsFlags::MS_REC
    };
    mount(None::<&str>, "/", None::<&str>, initial, None::<&str>)
        .ctx(|| "setting the propagation of /".to_string())?;
    // pivot_root needs the new root to be a mount point.
    mount(
        Some(plan.rootfs),
        plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| {
        format!(
            "bind-mounting root.path {} onto itself",
            plan.rootfs.display()
        )
    })?;

    let root = open_dir(plan.rootfs)?;
    for (i, m) in plan.spec.mounts().iter().flatten().enumerate() {
        mount_one(root.as_fd(), m, plan)
            .map_err(|e| step_error(format!("mounts[{i}] ({})", m.destination().display()), e))?;
    }
    create_devices(root.as_fd(), plan)?;
    Ok(())
}

fn step_error(step: String, e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::Io { context, source } => RuntimeError::Io {
            context: format!("{step}: {context}"),
            source,
        },
        other => other,
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening {}", path.display()))
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Create `path` (and its parents) inside `root` as a directory, or as an empty file when
/// `file` is set, and return an `O_PATH` descriptor of it. Every component is resolved in
/// the root, so symlinks cannot lead outside; a dangling symlink is followed inside the
/// root and its target created there, as if the root were `/`.
pub(crate) fn mkdir_all_in_root(root: BorrowedFd<'_>, path: &Path, file: bool) -> Result<OwnedFd> {
    use std::ffi::OsString;
    // Components still to walk, last one first.
    let mut pending: Vec<OsString> = normal_components(path).into_iter().rev().collect();
    let mut current = PathBuf::from("/");
    let mut fd = open_in_root(root, &current, libc::O_PATH | libc::O_DIRECTORY, 0)
        .ctx(|| "opening root filesystem".to_string())?;
    let mut links_followed = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            current.pop();
            fd = open_in_root(root, &current, libc::O_PATH | libc::O_DIRECTORY, 0)
                .ctx(|| format!("opening {}", current.display()))?;
            continue;
        }
        let next = current.join(&comp);
        match open_in_root(root, &next, libc::O_PATH, 0) {
            Ok(found) => {
                fd = found;
                current = next;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(|| format!("resolving {}", next.display())),
        }
        // Missing, or a symlink whose target is missing.
        if let Ok(target) = nix::fcntl::readlinkat(fd.as_fd(), comp.as_os_str()) {
            links_followed += 1;
            if links_followed > 40 {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP))
                    .ctx(|| format!("resolving {}", next.display()));
            }
            let target = PathBuf::from(target);
            if target.is_absolute() {
                current = PathBuf::from("/");
                fd = open_in_root(root, &current, libc::O_PATH | libc::O_DIRECTORY, 0)
                    .ctx(|| "opening root filesystem".to_string())?;
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => pending.push(n.to_owned()),
                    Component::ParentDir => pending.push(OsString::from("..")),
                    _ => {}
                }
            }
            continue;
        }
        let last = pending.is_empty();
        if last && file {
            let f = nix::fcntl::openat(
                fd.as_fd(),
                comp.as_os_str(),
                nix::fcntl::OFlag::O_CREAT
                    | nix::fcntl::OFlag::O_WRONLY
                    | nix::fcntl::OFlag::O_CLOEXEC
                    | nix::fcntl::OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )
            .ctx(|| format!("creating {}", next.display()))?;
            drop(f);
        } else {
            match nix::sys::stat::mkdirat(
                fd.as_fd(),
                comp.as_os_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(e).ctx(|| format!("creating directory {}", next.display())),
            }
        }
        fd = open_in_root(root, &next, libc::O_PATH, 0)
            .ctx(|| format!("opening {}", next.display()))?;
        current = next;
    }
    Ok(fd)
}

fn normal_components(path: &Path) -> Vec<std::ffi::OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect()
}

fn mount_one(root: BorrowedFd<'_>, m: &Mount, plan: &RootfsPlan<'_>) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "" });
    let dest = m.destination();
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroups(root, dest, &opts, plan.cgroups);
    }
    if opts.bind {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| RuntimeError::invalid("mounts.source", "a bind mount needs a source"))?;
        let is_file = !src.is_dir();
        let target = mkdir_all_in_root(root, dest, is_file)?;
        let tpath = fd_path(&target);
        let rec = if opts.recursive {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
        mount(
            Some(src.as_path()),
            tpath.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | rec,
            None::<&str>,
        )
        .ctx(|| format!("bind-mounting {}", src.display()))?;
        // Flags of a bind mount only take effect on a remount. Keep the flags the kernel
        // locked on the source (in a user namespace they cannot be cleared).
        let wanted = opts.flags & !(MsFlags::MS_REMOUNT);
        if !wanted.is_empty() {
            let reopened = mkdir_all_in_root(root, dest, is_file)?;
            let locked = locked_flags(&fd_path(&reopened));
            mount(
                None::<&str>,
                fd_path(&reopened).as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | rec | wanted | locked,
                None::<&str>,
            )
            .ctx(|| {
                format!(
                    "remounting {} with {:?}",
                    dest.display(),
                    m.options().as_deref().unwrap_or_default()
                )
            })?;
        }
        if !opts.propagation.is_empty() {
            let reopened = mkdir_all_in_root(root, dest, is_file)?;
            mount(
                None::<&str>,
                fd_path(&reopened).as_str(),
                None::<&str>,
                opts.propagation,
                None::<&str>,
            )
            .ctx(|| format!("setting propagation of {}", dest.display()))?;
        }
        return Ok(());
    }
    let target = mkdir_all_in_root(root, dest, false)?;
    let tpath = fd_path(&target);
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data);
    let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let result = mount(
        Some(src.as_path()),
        tpath.as_str(),
        Some(typ),
        opts.flags,
        data.as_deref(),
    );
    match result {
        Ok(()) => {}
        // A new user namespace that does not own the network namespace may not mount
        // sysfs: show the host's, read-only, as runc does.
        Err(nix::Error::EPERM) if typ == "sysfs" && plan.in_user_ns => {
            mount(
                Some("/sys"),
                tpath.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| "binding /sys".to_string())?;
            let _ = mount(
                None::<&str>,
                tpath.as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_REC,
                None::<&str>,
            );
        }
        Err(e) => {
            return Err(e).ctx(|| {
                format!(
                    "mounting {typ} with options {:?}",
                    m.options().as_deref().unwrap_or_default()
                )
            })
        }
    }
    if !opts.propagation.is_empty() {
        mount(
            None::<&str>,
            tpath.as_str(),
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .ctx(|| format!("setting propagation of {}", dest.display()))?;
    }
    Ok(())
}

/// Flags a remount must keep because the kernel locked them (mounts inherited into a user
/// namespace): clearing one gives EPERM.
fn locked_flags(path: &str) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn mount_cgroups(
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &MountOptions,
    view: &CgroupView,
) -> Result<()> {
    let target = mkdir_all_in_root(root, dest, false)?;
    let tpath = fd_path(&target);
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match view {
        CgroupView::Unified {
            host_dir,
            has_cgroupns,
        } => {
            let flags = base
                | if ro {
                    MsFlags::MS_RDONLY
                } else {
                    MsFlags::empty()
                };
            if *has_cgroupns {
                mount(
                    Some("cgroup2"),
                    tpath.as_str(),
                    Some("cgroup2"),
                    flags,
                    None::<&str>,
                )
                .ctx(|| "mounting cgroup2".to_string())?;
            } else {
                // Without a cgroup namespace, cgroup2 would show the whole host tree: show
                // only the container's directory.
                mount(
                    Some(host_dir.as_path()),
                    tpath.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .ctx(|| "binding the container's cgroup".to_string())?;
                let mounted = mkdir_all_in_root(root, dest, false)?;
                mount(
                    None::<&str>,
                    fd_path(&mounted).as_str(),
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
                    None::<&str>,
                )
                .ctx(|| "remounting the container's cgroup".to_string())?;
            }
        }
        CgroupView::Legacy(sources) => {
            mount(
                Some("tmpfs"),
                tpath.as_str(),
                Some("tmpfs"),
                base,
                Some("mode=755"),
            )
            .ctx(|| "mounting tmpfs for cgroups".to_string())?;
            for src in sources {
                let sub = dest.join(&src.name);
                let t = mkdir_all_in_root(root, &sub, false)?;
                let p = fd_path(&t);
                mount(
                    Some(src.host_dir.as_path()),
                    p.as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .ctx(|| format!("binding cgroup {}", src.host_dir.display()))?;
                // The descriptor opened before the mount points beneath it: reopen.
                let mounted = mkdir_all_in_root(root, &sub, false)?;
                let p = fd_path(&mounted);
                let flags = MsFlags::MS_REMOUNT
                    | MsFlags::MS_BIND
                    | base
                    | if ro {
                        MsFlags::MS_RDONLY
                    } else {
                        MsFlags::empty()
                    };
                mount(None::<&str>, p.as_str(), None::<&str>, flags, None::<&str>)
                    .ctx(|| format!("remounting cgroup {}", src.name))?;
                for alias in &src.aliases {
                    let dir = open_in_root(root, dest, libc::O_PATH | libc::O_DIRECTORY, 0)
                        .ctx(|| "opening cgroup tmpfs".to_string())?;
                    match nix::unistd::symlinkat(src.name.as_str(), dir.as_fd(), alias.as_str()) {
                        Ok(()) | Err(nix::Error::EEXIST) => {}
                        Err(e) => return Err(e).ctx(|| format!("linking cgroup {alias}")),
                    }
                }
            }
            if ro {
                let mounted = mkdir_all_in_root(root, dest, false)?;
                let tpath = fd_path(&mounted);
                mount(
                    None::<&str>,
                    tpath.as_str(),
                    None::<&str>,
                    MsFlags::MS_REMOUNT | base | MsFlags::MS_RDONLY,
                    Some("mode=755"),
                )
                .ctx(|| "making the cgroup tmpfs read-only".to_string())?;
            }
        }
    }
    Ok(())
}

/// (path, type, major, minor, mode) of the devices every container gets.
const DEFAULT_DEVICES: [(&str, LinuxDeviceType, i64, i64, u32); 6] = [
    ("/dev/null", LinuxDeviceType::C, 1, 3, 0o666),
    ("/dev/zero", LinuxDeviceType::C, 1, 5, 0o666),
    ("/dev/full", LinuxDeviceType::C, 1, 7, 0o666),
    ("/dev/random", LinuxDeviceType::C, 1, 8, 0o666),
    ("/dev/urandom", LinuxDeviceType::C, 1, 9, 0o666),
    ("/dev/tty", LinuxDeviceType::C, 5, 0, 0o666),
];

fn create_devices(root: BorrowedFd<'_>, plan: &RootfsPlan<'_>) -> Result<()> {
    let mut devices: Vec<LinuxDevice> = DEFAULT_DEVICES
        .iter()
        .map(|(path, typ, major, minor, mode)| {
            let mut d = LinuxDevice::default();
            d.set_path(PathBuf::from(path))
                .set_typ(*typ)
                .set_major(*major)
                .set_minor(*minor)
                .set_file_mode(Some(*mode));
            d.set_uid(Some(0)).set_gid(Some(0));
            d
        })
        .collect();
    if let Some(extra) = plan.spec.linux().as_ref().and_then(|l| l.devices().clone()) {
        for d in extra {
            devices.retain(|x| x.path() != d.path());
            devices.push(d);
        }
    }
    // umask would strip the modes we set.
    let old = nix::sys::stat::umask(Mode::empty());
    let result = devices
        .iter()
        .try_for_each(|d| create_device(root, d, plan.in_user_ns));
    nix::sys::stat::umask(old);
    result?;

    let dev = mkdir_all_in_root(root, Path::new("/dev"), false)?;
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ] {
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("creating /dev/{name}")),
        }
    }
    // /dev/ptmx must be the container's own devpts instance, not the host's.
    if open_in_root(root, Path::new("/dev/pts/ptmx"), libc::O_PATH, 0).is_ok() {
        let _ = nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat("pts/ptmx", dev.as_fd(), "ptmx")
            .ctx(|| "linking /dev/ptmx to pts/ptmx".to_string())?;
    }
    Ok(())
}

fn create_device(root: BorrowedFd<'_>, d: &LinuxDevice, in_user_ns: bool) -> Result<()> {
    let path = d.path();
    let parent = path.parent().unwrap_or(Path::new("/dev"));
    let name = path.file_name().ok_or_else(|| {
        RuntimeError::invalid(
            "linux.devices",
            format!("{} has no file name", path.display()),
        )
    })?;
    if in_user_ns {
        // mknod is not allowed in a user namespace: bind the host's node over a file.
        let target = mkdir_all_in_root(root, path, true)?;
        return mount(
            Some(path.as_path()),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("binding device {}", path.display()));
    }
    let dir = mkdir_all_in_root(root, parent, false)?;
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(RuntimeError::invalid(
                "linux.devices",
                format!(
                    "{}: type a is only valid in cgroup device rules",
                    path.display()
                ),
            ))
        }
    };
    let dev = nix::sys::stat::makedev(d.major() as u64, d.minor() as u64);
    let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
    let _ = nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    // mknodat is what we need; nix's mknod takes a path, so go through /proc/self/fd.
    let full = format!("{}/{}", fd_path(&dir), name.to_string_lossy());
    mknod(full.as_str(), kind, mode, dev).ctx(|| format!("creating device {}", path.display()))?;
    nix::unistd::chown(
        full.as_str(),
        Some(nix::unistd::Uid::from_raw(d.uid().unwrap_or(0))),
        Some(nix::unistd::Gid::from_raw(d.gid().unwrap_or(0))),
    )
    .ctx(|| format!("chown of device {}", path.display()))?;
    Ok(())
}

/// Enter the root filesystem with `pivot_root` and detach the old root.
pub(crate) fn pivot(rootfs: &Path) -> Result<()> {
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(&new_root).ctx(|| format!("entering {}", rootfs.display()))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
    // removes the old root without needing a directory for it inside the container.
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root into {}", rootfs.display()))?;
    // Make sure the unmount does not propagate to the host.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "making the old root a slave".to_string())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".to_string())?;
    nix::unistd::chdir("/").ctx(|| "chdir to /".to_string())?;
    Ok(())
}

/// After `pivot_root`: apply `rootfsPropagation` when it asks for sharing.
pub(crate) fn apply_root_propagation(spec: &Spec) -> Result<()> {
    if let Some(flags) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
    {
        if flags.contains(MsFlags::MS_SHARED) || flags.contains(MsFlags::MS_PRIVATE) {
            mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
                .ctx(|| "applying linux.rootfsPropagation".to_string())?;
        }
    }
    Ok(())
}

/// Hide `linux.maskedPaths`: `/dev/null` over files, an empty read-only tmpfs over
/// directories. Paths that do not exist are skipped.
pub(crate) fn mask_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx(|| format!("linux.maskedPaths: {p}")),
        };
        let r = if meta.is_dir() {
            mount(
                Some("tmpfs"),
                p.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                p.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        r.ctx(|| format!("linux.maskedPaths: masking {p}"))?;
    }
    Ok(())
}

/// Make `linux.readonlyPaths` read-only (bind onto themselves, then remount).
pub(crate) fn readonly_paths(paths: &[String]) -> Result<()> {
    for p in paths {
        match mount(
            Some(p.as_str()),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(nix::Error::ENOENT) => continue,
            Err(e) => return Err(e).ctx(|| format!("linux.readonlyPaths: binding {p}")),
        }
        let flags = MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_REC
            | MsFlags::MS_RDONLY
            | locked_flags(p);
        mount(None::<&str>, p.as_str(), None::<&str>, flags, None::<&str>)
            .ctx(|| format!("linux.readonlyPaths: remounting {p} read-only"))?;
    }
    Ok(())
}

/// `root.readonly`: remount `/` read-only, keeping the flags it has.
pub(crate) fn readonly_root() -> Result<()> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked_flags("/");
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .ctx(|| "root.readonly: remounting / read-only".to_string())
}

/// Write `linux.sysctl` into /proc/sys (only namespaced keys make sense; the kernel refuses
/// the others).
/// Check `linux.sysctl` before any fork: only keys that belong to a namespace the
/// container has of its own may be set. Anything else (`kernel.core_pattern`, say) would
/// change the host, since /proc/sys is still writable when sysctls are applied.
pub(crate) fn validate_sysctl(spec: &Spec, ns: &crate::namespaces::NamespacePlan) -> Result<()> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    let own = |t: T| {
        ns.clone_flags.contains(crate::namespaces::flag(t)) || ns.join.iter().any(|(j, _)| *j == t)
    };
    const IPC_KEYS: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    for key in map.keys() {
        let field = format!("linux.sysctl.{key}");
        let well_formed = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
            && !key.split('.').any(str::is_empty);
        if !well_formed {
            return Err(RuntimeError::invalid(field, "not a sysctl name"));
        }
        let (needed, name) = if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            (T::Ipc, "ipc")
        } else if key.starts_with("net.") {
            (T::Network, "network")
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            (T::Uts, "uts")
        } else {
            return Err(RuntimeError::invalid(
                field,
                "not a namespaced sysctl: setting it would change the host",
            ));
        };
        if !own(needed) {
            return Err(RuntimeError::invalid(
                field,
                format!("needs the container's own {name} namespace"),
            ));
        }
    }
    Ok(())
}

/// Write `linux.sysctl` (checked by [`validate_sysctl`]) into /proc/sys.
pub(crate) fn apply_sysctl(spec: &Spec) -> Result<()> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) else {
        return Ok(());
    };
    for (key, value) in map {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value.as_bytes()).ctx(|| format!("linux.sysctl: setting {key}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_to_flags_and_data() {
        let o = parse_options(&[
            "nosuid".into(),
            "noexec".into(),
            "size=65536k".into(),
            "mode=755".into(),
            "rbind".into(),
            "rprivate".into(),
            "ro".into(),
        ]);
        assert!(o
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY));
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, vec!["size=65536k", "mode=755"]);
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn mkdir_all_follows_relative_links_and_dotdot_within_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink("../../../../real/x", root.path().join("rel")).unwrap();
        let fd = std::fs::File::open(root.path()).unwrap();
        mkdir_all_in_root(fd.as_fd(), Path::new("/rel/y"), true).unwrap();
        assert!(root.path().join("real/x/y").is_file());
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();
        let e = mkdir_all_in_root(fd.as_fd(), Path::new("/loop/z"), false).unwrap_err();
        assert!(e.to_string().contains("/loop"), "{e}");
    }

    #[test]
    fn mkdir_all_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // A planted symlink pointing at a host directory.
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        let fd = std::fs::File::open(root.path()).unwrap();
        mkdir_all_in_root(fd.as_fd(), Path::new("/escape/sub/dir"), false).unwrap();
        assert!(
            !outside.path().join("sub").exists(),
            "created outside the root"
        );
        // The dangling link was followed as if root were `/`: the absolute host path, but
        // inside the root.
        let inside = root
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("sub/dir");
        assert!(inside.is_dir(), "{} missing", inside.display());
    }
}
