//! Protection against CVE-2019-5736: a container overwriting the runtime's own binary.
//!
//! While the runtime prepares a container, the process joining the container still runs the
//! runtime's executable, and a malicious container can reach that file through
//! `/proc/<pid>/exe` (directly, or by making its entrypoint `#!/proc/self/exe`) and write to
//! it once the process is gone. runc first answered with a sealed in-memory copy of itself
//! (about 5 ms per start for a binary our size); we get the same guarantee for the price of
//! a mount: the runtime re-executes itself through a read-only bind mount of its binary,
//! made in a private mount namespace. `/proc/<pid>/exe` then names a read-only mount, and
//! opening it for writing fails with EROFS for everyone, root in the container included,
//! since only the host's mount namespace owner could remount it.

use std::ffi::CString;
use std::io;
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
    unshare(CloneFlags::CLONE_NEWNS)?;
    // Our mounts must not propagate back to the host's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>)?;
    mount(Some(&exe), &exe, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    mount(None::<&str>, &exe, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, None::<&str>)?;

    let to_c = |b: &[u8]| CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument"));
    let path = to_c(exe.as_os_str().as_bytes())?;
    let args: Vec<CString> = std::env::args_os().map(|a| to_c(a.as_bytes())).collect::<io::Result<_>>()?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend_from_slice(&v.into_encoded_bytes());
            to_c(&kv)
        })
        .collect::<io::Result<_>>()?;
    match nix::unistd::execve(&path, &args, &env) {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}
