//! Process creation: `fork` for the intermediate child and `clone(CLONE_PARENT | CLONE_NEW*)`
//! for the container's init.
//!
//! Why two steps: the caller may be multi-threaded (the test harness, later a daemon), and
//! only glibc's `fork` makes the allocator usable in the child of a multi-threaded parent.
//! The intermediate child is single-threaded, so there a raw `clone` is safe, and it can join
//! namespaces by path and create a user namespace (which `unshare` refuses in a threaded
//! process) before the container's init is born already inside every namespace.
//! `CLONE_PARENT` makes that init a child of the caller, so the caller can `waitpid` it.

use std::io;

use nix::unistd::Pid;

/// Which side of a fork we are on.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// `fork(2)` through glibc, which resets the allocator's locks in the child.
///
/// The child must not take locks another thread of the parent might hold (stdout, tracing,
/// environment): it may allocate, make syscalls and must end with `exec` or `_exit`.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the callers uphold the post-fork rules documented above; the child never
    // returns into code that relies on other threads of the parent.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// `clone(2)` with the given flags, fork-like: the child continues on a copy of the stack.
///
/// Only call this from a single-threaded process (the intermediate child), since no
/// `atfork` handler runs.
pub fn clone_fork_like(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: with a null stack pointer the kernel gives the child a copy-on-write copy of
    // the caller's stack, exactly as fork does; no CLONE_VM, so nothing is shared. The
    // remaining pointer arguments (parent tid, child tid, tls) are unused for these flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0usize,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Leave the process at once, without running destructors or `atexit` handlers (which
/// belong to the parent's copy of the program).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Set the parent-death signal, so a child dies with the process that is setting it up.
pub fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and no pointers.
    let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Apply `personality(2)`.
pub fn set_personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: personality takes a plain integer.
    let ret = unsafe { libc::personality(persona) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set the NIS domain name of the current uts namespace.
pub fn set_domainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which the kernel only reads.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Give every signal its default action and unblock them all, right before `execve`: a
/// handler does not survive exec, but "ignored" does (Rust ignores SIGPIPE at start-up, and
/// whatever started us may have ignored others) and so does the blocked mask; the
/// container's program must start as from a clean `init`.
pub fn reset_signals() {
    /// The kernel's `struct sigaction` on x86_64 and aarch64 (not glibc's).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: the raw syscall (glibc's wrapper refuses its internal signals 32 and 33)
        // reads a live, correctly laid out kernel sigaction and writes nothing (null old
        // action); SIG_DFL needs no restorer. Errors (none expected) are ignored.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}
