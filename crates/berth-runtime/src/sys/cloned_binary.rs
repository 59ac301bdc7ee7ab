//! Protection against CVE-2019-5736: a container overwriting the runtime's own binary.
//!
//! While the runtime prepares a container, the process joining the container still runs the
//! runtime's executable, and a malicious container can reach it through `/proc/<pid>/exe`
//! (directly, or by making its entrypoint `#!/proc/self/exe`) and write to the host's file
//! once the process has gone. We re-execute from a sealed, read-only copy in memory before
//! touching any container, so `/proc/<pid>/exe` only ever points at that copy.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{MFdFlags, memfd_create};

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// Whether this process runs from a sealed memory copy already.
pub fn is_cloned() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    match nix::fcntl::fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(seals) => SealFlag::from_bits_truncate(seals).contains(SEALS),
        Err(_) => false,
    }
}

/// Re-execute the current program from a sealed memfd copy, unless it already runs from one.
/// Returns only on error (or when already cloned).
pub fn ensure_cloned() -> io::Result<()> {
    if is_cloned() {
        return Ok(());
    }
    let mut exe = File::open("/proc/self/exe")?;
    let memfd = memfd_create(
        c"berth-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut copy = File::from(memfd);
    io::copy(&mut exe, &mut copy)?;
    nix::fcntl::fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(SEALS))?;

    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains NUL"))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend_from_slice(&v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    // fexecve through /proc/self/fd needs /proc; execveat(AT_EMPTY_PATH) does not.
    let fd = copy.as_raw_fd();
    let err = nix::unistd::execveat(
        copy.as_fd(),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    );
    let _ = fd;
    match err {
        Ok(never) => match never {},
        Err(e) => Err(e.into()),
    }
}
