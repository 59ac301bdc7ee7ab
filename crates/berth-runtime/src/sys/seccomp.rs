//! Installing a compiled seccomp filter in the calling thread.
//!
//! This runs in the container's process between `fork` and `execve`. When the parent has
//! other threads, the child of `fork` may only call async-signal-safe functions, because a
//! lock another thread held at the time of the fork (malloc's, for one) stays locked forever
//! in the child. So everything that allocates, libseccomp included, happens in the parent
//! ([`crate::seccomp::compile`]), and this file only passes the finished instructions to the kernel.

use std::io;

use crate::seccomp::SeccompProgram;

/// Installs `program` as a seccomp filter on the calling thread, or on all threads of the
/// process if the program carries `SECCOMP_FILTER_FLAG_TSYNC`.
///
/// The filter stays for the life of the thread, is inherited by its children and survives
/// `execve`. The kernel only accepts it from a thread that has set no_new_privs or holds
/// CAP_SYS_ADMIN in its user namespace (otherwise `EACCES`), so a caller that drops
/// capabilities without no_new_privs must load the filter first.
///
/// Async-signal-safe: it allocates nothing and takes no lock, so it may run in the child of
/// a multithreaded `fork`. Errors are plain OS errors, which do not allocate either.
pub fn load(program: &SeccompProgram) -> io::Result<()> {
    let instructions = program.instructions();
    // `compile` caps programs at BPF_MAXINSNS (4096), so the length always fits.
    let Ok(len) = u16::try_from(instructions.len()) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; the field is `*mut` because the C
        // struct is not const-qualified.
        filter: instructions.as_ptr().cast_mut(),
    };
    // SAFETY: seccomp(2) with SECCOMP_SET_MODE_FILTER reads a `struct sock_fprog` from the
    // third argument and `len` instructions from `filter`. `fprog` is a live local of the
    // right layout (libc's definition), and `filter` points into `program`'s instruction
    // vector, which has exactly `len` initialised elements and outlives the call. The kernel
    // copies the program before returning and keeps no pointer into our memory. No Rust
    // invariant depends on which syscalls the thread may make afterwards.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::c_ulong::from(libc::SECCOMP_SET_MODE_FILTER),
            libc::c_ulong::from(program.flags()),
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(()),
        -1 => Err(io::Error::last_os_error()),
        // With TSYNC, the kernel reports a thread it could not synchronise by returning that
        // thread's id instead of an error.
        _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// These tests load filters into forked children of the test binary and probe the kernel
/// from inside. They need root: only then may a process without no_new_privs load a filter,
/// and only then do the probed syscalls succeed when no filter stops them, so that a failure
/// can be told apart from the filter's answer.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::io;

    use nix::sys::signal::Signal;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    use oci_spec::runtime::{
        Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
        LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
    };

    use super::load;
    use crate::seccomp::{compile, docker_default, SeccompProgram};

    /// Docker's default capability set (moby's `caps.DefaultCapabilities`).
    const DOCKER_CAPABILITIES: [Capability; 14] = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ];

    /// The child's exit code when `load` itself failed.
    const LOAD_FAILED: i32 = 200;

    /// An errno no syscall returns by itself, for filters under test to answer with.
    const MARKER_ERRNO: u32 = 222;

    fn require_root() {
        // SAFETY: geteuid cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "seccomp kernel tests must run as root");
    }

    /// Forks; the child loads `program`, runs `probe` and exits with its result.
    fn run_filtered(program: &SeccompProgram, probe: impl Fn() -> i32) -> WaitStatus {
        // SAFETY: libtest runs tests on several threads, so from here on the child only calls
        // async-signal-safe code: `load`, which allocates nothing, the probes, which make raw
        // syscalls on stack memory, and `_exit`.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = match load(program) {
                    Ok(()) => probe(),
                    Err(_) => LOAD_FAILED,
                };
                // SAFETY: `_exit` ends the child without running destructors or atexit
                // handlers, which belong to the parent and must not run twice.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
        }
    }

    /// A named check that runs in the child.
    #[derive(Clone, Copy)]
    struct Check {
        name: &'static str,
        passes: fn() -> bool,
    }

    /// Runs `checks` in a child under `program` and fails with the name of the first check
    /// that did not pass.
    fn assert_checks(program: &SeccompProgram, checks: &[Check]) {
        let status = run_filtered(program, || {
            match checks.iter().position(|check| !(check.passes)()) {
                // Exit codes 1..=checks.len() name the failed check.
                Some(failed) => i32::try_from(failed + 1).unwrap_or(i32::MAX),
                None => 0,
            }
        });
        match status {
            WaitStatus::Exited(_, 0) => {}
            WaitStatus::Exited(_, LOAD_FAILED) => panic!("the child could not load the filter"),
            WaitStatus::Exited(_, failed) => {
                let name = usize::try_from(failed - 1)
                    .ok()
                    .and_then(|index| checks.get(index))
                    .map_or("an unknown check", |check| check.name);
                panic!("failed in the child: {name}");
            }
            other => panic!("the child ended unexpectedly: {other:?}"),
        }
    }

    /// The errno of the last failed call, read without allocating.
    fn errno() -> i32 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn result(rc: libc::c_long) -> Result<libc::c_long, i32> {
        if rc == -1 {
            Err(errno())
        } else {
            Ok(rc)
        }
    }

    fn getpid() -> Result<libc::c_long, i32> {
        // SAFETY: getpid takes no arguments and touches no memory.
        result(unsafe { libc::syscall(libc::SYS_getpid) })
    }

    /// getpgid with an explicit second register, so that filters on argument 1 see a known
    /// value; the kernel ignores it.
    fn getpgid(pid: libc::c_long, second: libc::c_long) -> Result<libc::c_long, i32> {
        // SAFETY: getpgid takes a pid by value and touches no memory.
        result(unsafe { libc::syscall(libc::SYS_getpgid, pid, second) })
    }

    fn close(fd: libc::c_int) {
        // SAFETY: closes a descriptor this child created and no longer uses.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }

    /// A pipe, one byte written and read back.
    fn pipe_round_trip() -> bool {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, a live local array of two.
        if result(unsafe { libc::syscall(libc::SYS_pipe2, fds.as_mut_ptr(), libc::O_CLOEXEC) })
            .is_err()
        {
            return false;
        }
        let sent = [42u8];
        let mut received = [0u8];
        // SAFETY: write reads one byte from `sent`, a live local of one byte.
        let wrote = result(unsafe { libc::syscall(libc::SYS_write, fds[1], sent.as_ptr(), 1) });
        // SAFETY: read writes at most one byte into `received`, a live local of one byte.
        let read =
            result(unsafe { libc::syscall(libc::SYS_read, fds[0], received.as_mut_ptr(), 1) });
        close(fds[0]);
        close(fds[1]);
        wrote == Ok(1) && read == Ok(1) && received == sent
    }

    /// Creates a process with the raw `syscall` (fork semantics: no new stack) and reaps it;
    /// the new process exits at once. `Err` carries the errno of the creating call.
    fn spawn_and_reap(create: impl Fn() -> libc::c_long) -> Result<(), i32> {
        let pid = result(create())?;
        if pid == 0 {
            // SAFETY: in the new process: leave at once, as `run_filtered`'s child does.
            unsafe { libc::_exit(0) }
        }
        let mut status: libc::c_int = -1;
        // SAFETY: wait4 writes the status into `status`, a live local; rusage may be null.
        let waited = result(unsafe {
            libc::syscall(libc::SYS_wait4, pid, &mut status as *mut libc::c_int, 0, 0)
        });
        match waited {
            Ok(_) if status == 0 => Ok(()),
            _ => Err(-1),
        }
    }

    fn clone_with(flags: libc::c_int) -> Result<(), i32> {
        spawn_and_reap(|| {
            let flags = libc::c_long::from(flags | libc::SIGCHLD);
            // SAFETY: clone without CLONE_VM or a new stack behaves like fork: the new
            // process gets a copy of this one's memory and returns 0 here; null tid
            // pointers and tls are ignored without the matching flags.
            unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) }
        })
    }

    fn fork_syscall() -> Result<(), i32> {
        // SAFETY: the fork syscall copies this process; the copy returns 0 here and leaves
        // through `spawn_and_reap`.
        spawn_and_reap(|| unsafe { libc::syscall(libc::SYS_fork) })
    }

    /// clone3 with no argument structure: the kernel rejects it with EINVAL, so ENOSYS can
    /// only come from the filter.
    fn clone3_null() -> Result<libc::c_long, i32> {
        // SAFETY: a null pointer with size 0 is rejected before the kernel reads anything.
        result(unsafe { libc::syscall(libc::SYS_clone3, 0, 0) })
    }

    fn unshare(flags: libc::c_int) -> Result<libc::c_long, i32> {
        // SAFETY: unshare takes flags by value and touches no memory of ours.
        result(unsafe { libc::syscall(libc::SYS_unshare, flags) })
    }

    /// Asks for the id of the session keyring, which exists for every root process.
    fn keyctl_session_keyring() -> Result<libc::c_long, i32> {
        const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
        const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
        // SAFETY: KEYCTL_GET_KEYRING_ID takes only integers and touches no memory of ours.
        result(unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_GET_KEYRING_ID,
                KEY_SPEC_SESSION_KEYRING,
                0,
            )
        })
    }

    /// kexec_load with flags the kernel does not define, so that even unfiltered it can only
    /// fail and never replaces or unloads the host's kexec image.
    fn kexec_load_invalid() -> Result<libc::c_long, i32> {
        // SAFETY: no segments are passed and the invalid flags are rejected before the
        // (null) segment pointer would be read.
        result(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0xffff_0000_u32) })
    }

    fn personality(persona: libc::c_ulong) -> Result<libc::c_long, i32> {
        // SAFETY: personality takes its argument by value.
        result(unsafe { libc::syscall(libc::SYS_personality, persona) })
    }

    fn socket(family: libc::c_int) -> Result<libc::c_long, i32> {
        // SAFETY: socket takes integers; a descriptor it returns is closed right away.
        let fd = result(unsafe {
            libc::syscall(
                libc::SYS_socket,
                family,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        close(libc::c_int::try_from(fd).unwrap_or(-1));
        Ok(fd)
    }

    /// A syscall number x86_64 does not have.
    fn missing_syscall() -> Result<libc::c_long, i32> {
        // SAFETY: an unassigned syscall number does nothing.
        result(unsafe { libc::syscall(999) })
    }

    /// What stays allowed under Docker's profile, whatever the capabilities.
    const ALLOWED: &[Check] = &[
        Check {
            name: "getpid is allowed",
            passes: || getpid().is_ok(),
        },
        Check {
            name: "pipe2, write and read are allowed",
            passes: pipe_round_trip,
        },
        Check {
            name: "the fork syscall is allowed",
            passes: || fork_syscall().is_ok(),
        },
        Check {
            name: "clone without namespace flags is allowed",
            passes: || clone_with(0).is_ok(),
        },
        Check {
            name: "personality may query the persona",
            passes: || personality(0xffff_ffff).is_ok(),
        },
        Check {
            name: "AF_UNIX sockets are allowed",
            passes: || socket(libc::AF_UNIX).is_ok(),
        },
    ];

    const DOCKER_DEFAULT_CHECKS: &[Check] = &[
        ALLOWED[0],
        ALLOWED[1],
        ALLOWED[2],
        ALLOWED[3],
        ALLOWED[4],
        ALLOWED[5],
        Check {
            name: "keyctl fails with EPERM",
            passes: || keyctl_session_keyring() == Err(libc::EPERM),
        },
        Check {
            name: "kexec_load fails with EPERM",
            passes: || kexec_load_invalid() == Err(libc::EPERM),
        },
        Check {
            name: "clone with CLONE_NEWNS fails with EPERM",
            passes: || clone_with(libc::CLONE_NEWNS) == Err(libc::EPERM),
        },
        Check {
            name: "clone3 fails with ENOSYS",
            passes: || clone3_null() == Err(libc::ENOSYS),
        },
        Check {
            name: "personality(ADDR_NO_RANDOMIZE) fails with EPERM",
            passes: || personality(0x0040000) == Err(libc::EPERM),
        },
        Check {
            name: "AF_VSOCK sockets fail with EPERM",
            passes: || socket(libc::AF_VSOCK) == Err(libc::EPERM),
        },
        Check {
            name: "a syscall missing from the profile fails with EPERM",
            passes: || missing_syscall() == Err(libc::EPERM),
        },
        // Last: if the filter let it through, the child would sit in a new user namespace.
        Check {
            name: "unshare(CLONE_NEWUSER) fails with EPERM",
            passes: || unshare(libc::CLONE_NEWUSER) == Err(libc::EPERM),
        },
    ];

    const SYS_ADMIN_CHECKS: &[Check] = &[
        Check {
            name: "keyctl still fails with EPERM",
            passes: || keyctl_session_keyring() == Err(libc::EPERM),
        },
        Check {
            name: "clone3 reaches the kernel, which rejects the null argument with EINVAL",
            passes: || clone3_null() == Err(libc::EINVAL),
        },
        Check {
            name: "clone with CLONE_NEWNS is allowed",
            passes: || clone_with(libc::CLONE_NEWNS).is_ok(),
        },
        Check {
            name: "unshare(CLONE_NEWUSER) is allowed",
            passes: || unshare(libc::CLONE_NEWUSER).is_ok(),
        },
    ];

    #[test]
    fn docker_default_profile_blocks_in_the_kernel_what_docker_blocks() {
        require_root();
        let program = compile(&docker_default(&DOCKER_CAPABILITIES)).expect("compile");
        assert_checks(&program, DOCKER_DEFAULT_CHECKS);
    }

    #[test]
    fn docker_default_profile_with_sys_admin_allows_namespaces() {
        require_root();
        let mut capabilities = DOCKER_CAPABILITIES.to_vec();
        capabilities.push(Capability::SysAdmin);
        let program = compile(&docker_default(&capabilities)).expect("compile");
        assert_checks(&program, SYS_ADMIN_CHECKS);
    }

    #[test]
    fn the_unfiltered_kernel_answers_the_probes_differently() {
        // Proves the probes above measure the filter: without one, every call that the
        // profile refuses either succeeds or fails with another errno.
        require_root();
        let allow_all = compile(&LinuxSeccomp::default()).expect("compile");
        assert_checks(
            &allow_all,
            &[
                Check {
                    name: "keyctl succeeds",
                    passes: || keyctl_session_keyring().is_ok(),
                },
                Check {
                    name: "clone3 fails with EINVAL",
                    passes: || clone3_null() == Err(libc::EINVAL),
                },
                Check {
                    name: "kexec_load fails with something other than EPERM",
                    passes: || kexec_load_invalid().is_err_and(|errno| errno != libc::EPERM),
                },
                Check {
                    name: "a missing syscall fails with ENOSYS",
                    passes: || missing_syscall() == Err(libc::ENOSYS),
                },
                Check {
                    name: "clone with CLONE_NEWNS succeeds",
                    passes: || clone_with(libc::CLONE_NEWNS).is_ok(),
                },
                Check {
                    name: "unshare(CLONE_NEWUSER) succeeds",
                    passes: || unshare(libc::CLONE_NEWUSER).is_ok(),
                },
            ],
        );
    }

    /// An argument check: index, operator, value, valueTwo.
    type ArgCheck = (usize, LinuxSeccompOperator, u64, u64);

    /// A filter that allows everything but answers `getpgid` with `action` when `args` match.
    fn getpgid_filter(
        action: LinuxSeccompAction,
        errno_ret: Option<u32>,
        args: &[ArgCheck],
    ) -> LinuxSeccomp {
        let mut rule = LinuxSyscall::default();
        rule.set_names(vec!["getpgid".to_owned()]);
        rule.set_action(action);
        rule.set_errno_ret(errno_ret);
        if !args.is_empty() {
            rule.set_args(Some(
                args.iter()
                    .map(|&(index, op, value, value_two)| {
                        LinuxSeccompArgBuilder::default()
                            .index(index)
                            .op(op)
                            .value(value)
                            .value_two(value_two)
                            .build()
                            .expect("every field has a default")
                    })
                    .collect(),
            ));
        }
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
        seccomp.set_syscalls(Some(vec![rule]));
        seccomp
    }

    /// Exits with 0 if getpgid(0) succeeds, with its errno otherwise.
    fn probe_getpgid() -> i32 {
        match getpgid(0, 0) {
            Ok(_) => 0,
            Err(errno) => errno,
        }
    }

    /// How a child probed by `probe_getpgid` should end.
    #[derive(Debug)]
    enum Outcome {
        Exit(i32),
        KilledBySigsys,
    }

    #[test]
    fn every_action_does_what_the_spec_says() {
        use LinuxSeccompAction::*;
        require_root();
        let cases = [
            (ScmpActAllow, None, Outcome::Exit(0)),
            (ScmpActLog, None, Outcome::Exit(0)),
            (ScmpActErrno, Some(MARKER_ERRNO), Outcome::Exit(222)),
            (ScmpActErrno, None, Outcome::Exit(libc::EPERM)),
            // Without a tracer attached, the kernel fails traced syscalls with ENOSYS.
            (ScmpActTrace, Some(7), Outcome::Exit(libc::ENOSYS)),
            (ScmpActTrap, None, Outcome::KilledBySigsys),
            (ScmpActKill, None, Outcome::KilledBySigsys),
            (ScmpActKillThread, None, Outcome::KilledBySigsys),
            (ScmpActKillProcess, None, Outcome::KilledBySigsys),
        ];
        for (action, errno_ret, expected) in cases {
            let program = compile(&getpgid_filter(action, errno_ret, &[])).expect("compile");
            let status = run_filtered(&program, probe_getpgid);
            let matches = match expected {
                Outcome::Exit(code) => matches!(status, WaitStatus::Exited(_, c) if c == code),
                Outcome::KilledBySigsys => {
                    matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _))
                }
            };
            assert!(
                matches,
                "{action}: expected {expected:?}, the child ended with {status:?}"
            );
        }
    }

    /// The pids the comparison probe passes to getpgid, one bit of its exit code each.
    const PROBED_ARGS: [libc::c_long; 5] = [3, 4, 5, 6, 7];

    /// Exits with a bit set for each probed argument that the filter refused.
    fn probe_comparisons() -> i32 {
        PROBED_ARGS
            .iter()
            .enumerate()
            .filter(|&(_, &pid)| getpgid(pid, 0) == Err(MARKER_ERRNO as i32))
            .fold(0, |bits, (bit, _)| bits | 1 << bit)
    }

    /// The bits `probe_comparisons` sets when exactly `refused` are refused.
    fn refused(refused: &[libc::c_long]) -> i32 {
        PROBED_ARGS
            .iter()
            .enumerate()
            .filter(|(_, pid)| refused.contains(pid))
            .fold(0, |bits, (bit, _)| bits | 1 << bit)
    }

    #[test]
    fn argument_comparisons_match_the_spec() {
        use LinuxSeccompOperator::*;
        require_root();
        let cases: &[(&[ArgCheck], &[libc::c_long])] = &[
            (&[(0, ScmpCmpNe, 5, 0)], &[3, 4, 6, 7]),
            (&[(0, ScmpCmpLt, 5, 0)], &[3, 4]),
            (&[(0, ScmpCmpLe, 5, 0)], &[3, 4, 5]),
            (&[(0, ScmpCmpEq, 5, 0)], &[5]),
            (&[(0, ScmpCmpGe, 5, 0)], &[5, 6, 7]),
            (&[(0, ScmpCmpGt, 5, 0)], &[6, 7]),
            // (pid & 0b110) == 0b100
            (&[(0, ScmpCmpMaskedEq, 0b110, 0b100)], &[4, 5]),
            // Checks on different arguments must all match.
            (&[(0, ScmpCmpGe, 5, 0), (1, ScmpCmpEq, 0, 0)], &[5, 6, 7]),
            (&[(0, ScmpCmpGe, 5, 0), (1, ScmpCmpEq, 1, 0)], &[]),
            // Checks on the same argument: any may match, as under runc.
            (&[(0, ScmpCmpEq, 3, 0), (0, ScmpCmpEq, 7, 0)], &[3, 7]),
        ];
        for &(args, expected) in cases {
            let filter = getpgid_filter(LinuxSeccompAction::ScmpActErrno, Some(MARKER_ERRNO), args);
            let program = compile(&filter).expect("compile");
            let status = run_filtered(&program, probe_comparisons);
            assert_eq!(
                status,
                WaitStatus::Exited(status_pid(status), refused(expected)),
                "args {args:?} should refuse exactly {expected:?}"
            );
        }
    }

    fn status_pid(status: WaitStatus) -> nix::unistd::Pid {
        status.pid().expect("a reaped child has a pid")
    }

    #[test]
    fn filters_with_every_supported_flag_load() {
        require_root();
        let mut seccomp = getpgid_filter(LinuxSeccompAction::ScmpActErrno, Some(MARKER_ERRNO), &[]);
        seccomp.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        ]));
        let program = compile(&seccomp).expect("compile");
        let status = run_filtered(&program, probe_getpgid);
        assert_eq!(status, WaitStatus::Exited(status_pid(status), 222));
    }
}
