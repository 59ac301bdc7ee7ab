//! File-descriptor hygiene and process handles: `close_range`, `pidfd_open`,
//! `pidfd_send_signal`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Mark every descriptor from `first` upwards close-on-exec, so nothing of the caller's
/// leaks into the container (the CVE-2024-21626 class): the descriptors stay usable until
/// the final `execve`, which drops them all.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes two integers and a flag; CLOSE_RANGE_CLOEXEC only sets the
    // flag on descriptors and never invalidates memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    // Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: walk /proc/self/fd instead.
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let fd: RawFd = match entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            Some(fd) => fd,
            None => continue,
        };
        if fd >= first {
            // The descriptor of the directory listing itself may already be gone; ignore.
            let _ = nix::fcntl::fcntl(
                // SAFETY: the fd number comes from /proc/self/fd; fcntl on a closed number
                // only returns EBADF.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
        }
    }
    Ok(())
}

/// A descriptor referring to a process (Linux 5.3+): signals sent through it can never hit
/// a recycled pid, and it becomes readable when the process exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; on success it returns a new descriptor that
    // we own exclusively.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Send `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo pointer is allowed and makes the kernel fill in the defaults.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Take ownership of a descriptor the kernel just handed us (from `SCM_RIGHTS`).
pub fn adopt(raw: RawFd) -> OwnedFd {
    // SAFETY: callers pass only descriptors freshly installed by the kernel for this
    // process, which nothing else owns yet.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// Receive one message into `buf` and the descriptor sent with it (`SCM_RIGHTS`), if
/// any; it arrives close-on-exec. Returns the message's length (0: the peer closed).
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fd = None;
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // Freshly installed by the kernel for us: ours alone.
                            fd = Some(adopt(raw));
                        }
                    }
                }
                return Ok((msg.bytes, fd));
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receive one descriptor sent with `SCM_RIGHTS` on `sock` (an OCI runtime's
/// `--console-socket` sends a terminal's master this way). It arrives close-on-exec.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    recv_with_fd(sock, &mut buf)?
        .1
        .ok_or_else(|| io::Error::other("no descriptor in the message"))
}
