//! Protection against CVE-2019-5736: a container overwriting the runtime's own binary.
//!
//! While the runtime prepares a container, the process joining the container still runs the
//! runtime's executable, and a malicious container can reach that file through
//! `/proc/<pid>/exe` (directly, or by making its entrypoint `#!/proc/self/exe`) and write to
//! it once the process is gone. runc first answered with a sealed in-memory copy of itself
//! (about 5 ms per start for a binary our size); we get the same guarantee for two
//! syscalls: `open_tree(OPEN_TREE_CLONE)` makes a detached mount of just our binary,
//! `mount_setattr` makes it read-only, and we re-execute through it. `/proc/<pid>/exe`
//! then names a read-only mount that belongs to no namespace: opening it for writing fails
//! with EROFS for everyone, root in the container included, and nobody can remount it.
//! Kernels before 5.12 lack `mount_setattr`; there we fall back to a read-only bind mount in
//! a private mount namespace (about 2 ms more, for copying the mount table).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Whether `/proc/self/exe` is on a read-only mount already (or a sealed memfd).
pub fn is_protected() -> bool {
    match nix::sys::statvfs::statvfs("/proc/self/exe") {
        Ok(st) => st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        Err(_) => false,
    }
}

/// Re-execute the current program through a read-only view of its binary, unless it runs
/// from one already. Must be called while the process is single-threaded, before anything
/// else (it replaces the process). Returns only when already protected or on error.
pub fn ensure_protected() -> io::Result<()> {
    if is_protected() {
        return Ok(());
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let to_c = |b: &[u8]| {
        CString::new(b)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"))
    };
    let path = to_c(exe.as_os_str().as_bytes())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| to_c(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend_from_slice(&v.into_encoded_bytes());
            to_c(&kv)
        })
        .collect::<io::Result<_>>()?;

    if let Ok(tree) = readonly_detached_mount(&path) {
        let Err(e) = nix::unistd::execveat(
            tree.as_fd(),
            c"",
            &args,
            &env,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        );
        return Err(e.into());
    }
    // Fallback for older kernels.
    unshare(CloneFlags::CLONE_NEWNS)?;
    // Our mounts must not propagate back to the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    mount(
        Some(&exe),
        &exe,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        &exe,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )?;
    match nix::unistd::execve(&path, &args, &env) {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}

/// A read-only, detached mount of the file at `path` (Linux 5.12+).
/// A descriptor for a detached, read-only mount of just the file `path` (kernel 5.12 or
/// later). A program executed through it (`/proc/self/fd/N` or `execveat`) is protected
/// as [`ensure_protected`] protects us, without re-executing: berthd starts every monitor
/// this way. The mount lives as long as the descriptor and the processes running from it.
pub fn readonly_view(path: &std::path::Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))?;
    readonly_detached_mount(&path)
}

fn readonly_detached_mount(path: &CString) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string the kernel only reads; on success the
    // returned descriptor is new and owned by nobody else.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above: a fresh descriptor returned by the kernel.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the empty path with AT_EMPTY_PATH names `tree` itself; `attr` is a live struct
    // whose exact size we pass, which the kernel only reads.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// `struct mount_attr` of <linux/mount.h>.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
