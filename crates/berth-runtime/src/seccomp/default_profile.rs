//! Docker's default seccomp profile, rendered for one container.
//!
//! berth promises Docker's secure defaults (DESIGN principle 6), so a container started without
//! `--security-opt seccomp=...` must see exactly the syscalls it would see under dockerd. moby
//! keeps the profile as a list of rule groups, some of which only apply when the container holds
//! a capability, runs on a given architecture or on a recent enough kernel. dockerd resolves
//! those conditions while it writes the OCI spec, so the runtime only ever sees a plain
//! `linux.seccomp` section. [`docker_default`] does the same resolution from the table below,
//! which follows moby's profile (`github.com/moby/profiles/seccomp` v0.2.3, the version moby
//! vendors as of 2026).
//!
//! The table lists names that the installed libseccomp or kernel may not know (recent syscalls
//! such as `cachestat` or `mseal`, or 32-bit ones such as `chown32` on x86_64); the compiler in
//! [`super::compile`] skips those, as runc does, so the same table serves every host.

use std::fs;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Syscalls every container may make, whatever its capabilities.
#[rustfmt::skip]
const ALWAYS_ALLOWED: &[&str] = &[
    "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
    "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue",
    "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "get_robust_list",
    "get_thread_area", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "getrusage", "getsid",
    "getsockname", "getsockopt", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_setup", "io_submit", "ioctl", "ioprio_get", "ioprio_set", "ipc", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat",
    "llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename",
    "renameat", "renameat2", "restart_syscall", "riscv_hwprobe", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr",
    "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// The architecture berth itself was built for, named as moby names the daemon's architecture
/// in its conditions. Variants exist only for the names the table refers to or that select
/// extra architectures; everything else is `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostArch {
    Amd64,
    X86,
    Arm64,
    Arm,
    Ppc64le,
    S390x,
    Riscv64,
    Loong64,
    Other,
}

impl HostArch {
    const fn current() -> Self {
        if cfg!(target_arch = "x86_64") {
            Self::Amd64
        } else if cfg!(target_arch = "x86") {
            Self::X86
        } else if cfg!(target_arch = "aarch64") {
            Self::Arm64
        } else if cfg!(target_arch = "arm") {
            Self::Arm
        } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
            Self::Ppc64le
        } else if cfg!(target_arch = "s390x") {
            Self::S390x
        } else if cfg!(target_arch = "riscv64") {
            Self::Riscv64
        } else if cfg!(target_arch = "loongarch64") {
            Self::Loong64
        } else {
            Self::Other
        }
    }

    /// The ABIs a process on this host can issue syscalls through. A filter that lists only the
    /// native ABI would let a 64-bit process reach the 32-bit syscall table (`int 0x80` on
    /// x86_64) unchecked by our rules, so the profile names every ABI the CPU runs; libseccomp
    /// then kills callers using any ABI that is not listed. Hosts without an entry get none,
    /// which leaves the runtime with the native ABI only, as dockerd does.
    fn seccomp_architectures(self) -> &'static [Arch] {
        match self {
            Self::Amd64 => &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
            Self::Arm64 => &[Arch::ScmpArchAarch64, Arch::ScmpArchArm],
            Self::S390x => &[Arch::ScmpArchS390x, Arch::ScmpArchS390],
            Self::Riscv64 => &[Arch::ScmpArchRiscv64],
            Self::Loong64 => &[Arch::ScmpArchLoongarch64],
            Self::X86 | Self::Arm | Self::Ppc64le | Self::Other => &[],
        }
    }
}

/// A kernel release, compared on its first two numbers only (`6.8.12-foo` is 6.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KernelVersion {
    major: u32,
    minor: u32,
}

impl KernelVersion {
    fn parse(release: &str) -> Option<Self> {
        let mut numbers = release.split(|c: char| !c.is_ascii_digit());
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        Some(Self { major, minor })
    }

    /// The running kernel, or `None` when /proc does not tell. Rules that need a minimum
    /// kernel are then left out: the profile errs on the side of denying.
    fn running() -> Option<Self> {
        const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
        let release = fs::read_to_string(OSRELEASE)
            .map_err(|error| {
                tracing::debug!(path = OSRELEASE, %error, "cannot read the kernel release");
            })
            .ok()?;
        let version = Self::parse(release.trim());
        if version.is_none() {
            tracing::debug!(release = release.trim(), "cannot parse the kernel release");
        }
        version
    }
}

/// What a rule needs to apply: every listed capability, one of the listed architectures and
/// at least the given kernel. Empty lists and `None` impose nothing.
#[derive(Clone, Copy)]
struct Requirements {
    caps: &'static [Capability],
    arches: &'static [HostArch],
    min_kernel: Option<KernelVersion>,
}

/// What keeps a rule out: any one of the listed capabilities or architectures.
#[derive(Clone, Copy)]
struct Exclusions {
    caps: &'static [Capability],
    arches: &'static [HostArch],
}

/// One argument comparison, as it appears in the OCI spec.
#[derive(Clone, Copy)]
struct ArgCheck {
    index: usize,
    value: u64,
    value_two: u64,
    op: LinuxSeccompOperator,
}

#[derive(Clone, Copy)]
enum RuleAction {
    Allow,
    Errno(u32),
}

#[derive(Clone, Copy)]
struct Rule {
    names: &'static [&'static str],
    action: RuleAction,
    arg: Option<ArgCheck>,
    include: Requirements,
    exclude: Exclusions,
}

impl Rule {
    const fn allow(names: &'static [&'static str]) -> Self {
        Self {
            names,
            action: RuleAction::Allow,
            arg: None,
            include: Requirements {
                caps: &[],
                arches: &[],
                min_kernel: None,
            },
            exclude: Exclusions {
                caps: &[],
                arches: &[],
            },
        }
    }

    const fn fail(names: &'static [&'static str], errno: u32) -> Self {
        let mut rule = Self::allow(names);
        rule.action = RuleAction::Errno(errno);
        rule
    }

    const fn allow_if(
        names: &'static [&'static str],
        op: LinuxSeccompOperator,
        value: u64,
    ) -> Self {
        Self::allow(names).with_arg(0, op, value, 0)
    }

    const fn with_arg(
        mut self,
        index: usize,
        op: LinuxSeccompOperator,
        value: u64,
        value_two: u64,
    ) -> Self {
        self.arg = Some(ArgCheck {
            index,
            value,
            value_two,
            op,
        });
        self
    }

    const fn needs(mut self, caps: &'static [Capability]) -> Self {
        self.include.caps = caps;
        self
    }

    const fn on_arches(mut self, arches: &'static [HostArch]) -> Self {
        self.include.arches = arches;
        self
    }

    const fn since_kernel(mut self, major: u32, minor: u32) -> Self {
        self.include.min_kernel = Some(KernelVersion { major, minor });
        self
    }

    const fn unless_cap(mut self, caps: &'static [Capability]) -> Self {
        self.exclude.caps = caps;
        self
    }

    const fn unless_arch(mut self, arches: &'static [HostArch]) -> Self {
        self.exclude.arches = arches;
        self
    }

    /// Whether the rule belongs in the profile of a container with `caps` (its bounding set)
    /// on a host of architecture `arch` running kernel `kernel`.
    fn applies(&self, caps: &[Capability], arch: HostArch, kernel: Option<KernelVersion>) -> bool {
        let excluded = self.exclude.arches.contains(&arch)
            || self.exclude.caps.iter().any(|cap| caps.contains(cap));
        let included = (self.include.arches.is_empty() || self.include.arches.contains(&arch))
            && self.include.caps.iter().all(|cap| caps.contains(cap))
            && self
                .include
                .min_kernel
                .is_none_or(|min| kernel.is_some_and(|running| running >= min));
        included && !excluded
    }

    /// The rule as a spec entry. `None` only if oci-spec's builder refused the argument
    /// check, which it does only for fields without a default, and every field has one.
    /// Should that ever change, dropping the rule denies the syscalls rather than allowing
    /// them without their check.
    fn to_spec(self) -> Option<LinuxSyscall> {
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(self.names.iter().map(|name| (*name).to_owned()).collect());
        match self.action {
            RuleAction::Allow => {
                syscall.set_action(LinuxSeccompAction::ScmpActAllow);
            }
            RuleAction::Errno(errno) => {
                syscall.set_action(LinuxSeccompAction::ScmpActErrno);
                syscall.set_errno_ret(Some(errno));
            }
        }
        if let Some(check) = self.arg {
            let arg = LinuxSeccompArgBuilder::default()
                .index(check.index)
                .value(check.value)
                .value_two(check.value_two)
                .op(check.op)
                .build()
                .ok()?;
            syscall.set_args(Some(vec![arg]));
        }
        Some(syscall)
    }
}

/// The namespace flags an unprivileged `clone` may not carry: creating namespaces is what
/// CAP_SYS_ADMIN guards, and new user namespaces are a large kernel attack surface.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

// The socket rules below allow every family except AF_ALG (kernel crypto) and AF_VSOCK (host
// communication) with three comparisons, which is only right while exactly one family sits
// between the two.
const _: () = assert!(libc::AF_ALG == 38 && libc::AF_VSOCK == 40);

const ENOSYS: u32 = libc::ENOSYS as u32;
const EPERM: u32 = libc::EPERM as u32;

/// Accepted `personality(2)` personas: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff, which only queries the current persona.
const PERSONAS: [u64; 5] = [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

const RULES: &[Rule] = {
    use Capability as Cap;
    use HostArch as A;
    use LinuxSeccompOperator as Op;
    &[
        Rule::allow(ALWAYS_ALLOWED),
        // Before 4.8 ptrace could rewrite a syscall after seccomp had checked it.
        Rule::allow(&["process_vm_readv", "process_vm_writev", "ptrace"]).since_kernel(4, 8),
        Rule::allow_if(&["socket"], Op::ScmpCmpLt, libc::AF_ALG as u64),
        Rule::allow_if(&["socket"], Op::ScmpCmpEq, libc::AF_ALG as u64 + 1),
        Rule::allow_if(&["socket"], Op::ScmpCmpGt, libc::AF_VSOCK as u64),
        Rule::allow_if(&["personality"], Op::ScmpCmpEq, PERSONAS[0]),
        Rule::allow_if(&["personality"], Op::ScmpCmpEq, PERSONAS[1]),
        Rule::allow_if(&["personality"], Op::ScmpCmpEq, PERSONAS[2]),
        Rule::allow_if(&["personality"], Op::ScmpCmpEq, PERSONAS[3]),
        Rule::allow_if(&["personality"], Op::ScmpCmpEq, PERSONAS[4]),
        Rule::allow(&["sync_file_range2", "swapcontext"]).on_arches(&[A::Ppc64le]),
        Rule::allow(&[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ])
        .on_arches(&[A::Arm, A::Arm64]),
        Rule::allow(&["arch_prctl"]).on_arches(&[A::Amd64]),
        Rule::allow(&["modify_ldt"]).on_arches(&[A::Amd64, A::X86]),
        Rule::allow(&[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ])
        .on_arches(&[A::S390x]),
        Rule::allow(&["riscv_flush_icache"]).on_arches(&[A::Riscv64]),
        Rule::allow(&["open_by_handle_at"]).needs(&[Cap::DacReadSearch]),
        Rule::allow(&[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ])
        .needs(&[Cap::SysAdmin]),
        // Without CAP_SYS_ADMIN, clone may create threads and processes but no namespaces.
        Rule::allow(&["clone"])
            .with_arg(0, Op::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, 0)
            .unless_cap(&[Cap::SysAdmin])
            .unless_arch(&[A::S390x]),
        // s390 passes clone's flags as the second argument.
        Rule::allow(&["clone"])
            .with_arg(1, Op::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, 0)
            .on_arches(&[A::S390x])
            .unless_cap(&[Cap::SysAdmin]),
        // clone3 passes its flags in memory, where seccomp cannot look, so it cannot get the
        // rule clone has. ENOSYS rather than EPERM makes libc fall back to clone.
        Rule::fail(&["clone3"], ENOSYS).unless_cap(&[Cap::SysAdmin]),
        Rule::allow(&["reboot"]).needs(&[Cap::SysBoot]),
        Rule::allow(&["chroot"]).needs(&[Cap::SysChroot]),
        Rule::allow(&["delete_module", "init_module", "finit_module"]).needs(&[Cap::SysModule]),
        Rule::allow(&["acct"]).needs(&[Cap::SysPacct]),
        Rule::allow(&[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ])
        .needs(&[Cap::SysPtrace]),
        Rule::allow(&["iopl", "ioperm"]).needs(&[Cap::SysRawio]),
        Rule::allow(&["settimeofday", "stime", "clock_settime", "clock_settime64"])
            .needs(&[Cap::SysTime]),
        Rule::allow(&["vhangup"]).needs(&[Cap::SysTtyConfig]),
        Rule::allow(&[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ])
        .needs(&[Cap::SysNice]),
        Rule::allow(&["syslog"]).needs(&[Cap::Syslog]),
        Rule::allow(&["bpf"]).needs(&[Cap::Bpf]),
        Rule::allow(&["perf_event_open"]).needs(&[Cap::Perfmon]),
    ]
};

/// Docker's default seccomp profile for a container whose bounding capability set is
/// `capabilities`, as dockerd writes it into the OCI spec on this host: unlisted syscalls fail
/// with EPERM, and the rules that depend on capabilities, on the host architecture and on the
/// running kernel are already resolved.
pub fn docker_default(capabilities: &[Capability]) -> LinuxSeccomp {
    render(capabilities, HostArch::current(), KernelVersion::running())
}

fn render(
    capabilities: &[Capability],
    arch: HostArch,
    kernel: Option<KernelVersion>,
) -> LinuxSeccomp {
    let syscalls = RULES
        .iter()
        .filter(|rule| rule.applies(capabilities, arch, kernel))
        .filter_map(|rule| rule.to_spec())
        .collect();
    let architectures = arch.seccomp_architectures();

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    if !architectures.is_empty() {
        profile.set_architectures(Some(architectures.to_vec()));
    }
    profile.set_syscalls(Some(syscalls));
    profile
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSyscall};

    use super::*;

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

    const KERNEL_6_18: Option<KernelVersion> = Some(KernelVersion {
        major: 6,
        minor: 18,
    });

    fn with(extra: Capability) -> Vec<Capability> {
        let mut capabilities = DOCKER_CAPABILITIES.to_vec();
        capabilities.push(extra);
        capabilities
    }

    fn amd64(capabilities: &[Capability]) -> LinuxSeccomp {
        render(capabilities, HostArch::Amd64, KERNEL_6_18)
    }

    /// The rules of `profile` that name `syscall`.
    fn rules_for<'a>(profile: &'a LinuxSeccomp, syscall: &str) -> Vec<&'a LinuxSyscall> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| rule.names().iter().any(|name| name == syscall))
            .collect()
    }

    fn allows_unconditionally(profile: &LinuxSeccomp, syscall: &str) -> bool {
        rules_for(profile, syscall)
            .iter()
            .any(|rule| rule.action() == LinuxSeccompAction::ScmpActAllow && rule.args().is_none())
    }

    #[test]
    fn unlisted_syscalls_fail_with_eperm_on_every_x86_abi() {
        let profile = amd64(&DOCKER_CAPABILITIES);
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(1));
        assert_eq!(
            profile.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
    }

    #[test]
    fn renders_the_json_dockerd_writes_into_the_spec() {
        let json = serde_json::to_value(amd64(&DOCKER_CAPABILITIES)).expect("serialize");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn the_everyday_syscalls_are_allowed() {
        let profile = amd64(&DOCKER_CAPABILITIES);
        for syscall in [
            "read",
            "write",
            "openat",
            "execve",
            "fork",
            "vfork",
            "getpid",
            "mmap",
            "futex",
            "arch_prctl",
            "modify_ldt",
            "chroot",
            "ptrace",
            "socketcall",
        ] {
            assert!(allows_unconditionally(&profile, syscall), "{syscall}");
        }
    }

    #[test]
    fn privileged_syscalls_are_absent_with_dockers_default_capabilities() {
        let profile = amd64(&DOCKER_CAPABILITIES);
        for syscall in [
            "keyctl",
            "add_key",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "reboot",
            "init_module",
            "acct",
            "kcmp",
            "iopl",
            "settimeofday",
            "vhangup",
            "mbind",
            "syslog",
            "open_by_handle_at",
            "userfaultfd",
            "swapon",
            "pivot_root",
        ] {
            assert!(rules_for(&profile, syscall).is_empty(), "{syscall}");
        }
    }

    #[test]
    fn each_capability_unlocks_its_syscalls() {
        let cases = [
            (Capability::SysAdmin, "mount"),
            (Capability::SysAdmin, "unshare"),
            (Capability::SysAdmin, "setns"),
            (Capability::SysAdmin, "bpf"),
            (Capability::SysPtrace, "kcmp"),
            (Capability::SysPtrace, "pidfd_getfd"),
            (Capability::SysModule, "finit_module"),
            (Capability::SysBoot, "reboot"),
            (Capability::Syslog, "syslog"),
            (Capability::SysTime, "clock_settime"),
            (Capability::SysNice, "set_mempolicy"),
            (Capability::SysPacct, "acct"),
            (Capability::SysRawio, "iopl"),
            (Capability::SysTtyConfig, "vhangup"),
            (Capability::DacReadSearch, "open_by_handle_at"),
            (Capability::Bpf, "bpf"),
            (Capability::Perfmon, "perf_event_open"),
        ];
        for (capability, syscall) in cases {
            let profile = amd64(&with(capability));
            assert!(
                allows_unconditionally(&profile, syscall),
                "{capability} -> {syscall}"
            );
        }
        // Docker's profile has no CAP_SYS_RESOURCE group: the syscalls it guards (setrlimit,
        // prlimit64) are always allowed and the kernel checks the capability.
        assert_eq!(
            amd64(&with(Capability::SysResource)).syscalls(),
            amd64(&DOCKER_CAPABILITIES).syscalls()
        );
    }

    #[test]
    fn clone_may_not_create_namespaces_without_sys_admin() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
        let profile = amd64(&DOCKER_CAPABILITIES);
        let clone = rules_for(&profile, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0]
            .args()
            .as_deref()
            .expect("clone has an argument check");
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(args[0].value(), 0x7E02_0000);
        assert_eq!(args[0].value_two(), Some(0));
    }

    #[test]
    fn clone3_fails_with_enosys_without_sys_admin() {
        let profile = amd64(&DOCKER_CAPABILITIES);
        let clone3 = rules_for(&profile, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
    }

    #[test]
    fn sys_admin_allows_clone_and_clone3_unconditionally() {
        let profile = amd64(&with(Capability::SysAdmin));
        for syscall in ["clone", "clone3"] {
            let rules = rules_for(&profile, syscall);
            assert_eq!(rules.len(), 1, "{syscall}");
            assert!(allows_unconditionally(&profile, syscall), "{syscall}");
        }
    }

    #[test]
    fn s390x_checks_clone_flags_in_the_second_argument() {
        let profile = render(&DOCKER_CAPABILITIES, HostArch::S390x, KERNEL_6_18);
        let clone = rules_for(&profile, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0]
            .args()
            .as_deref()
            .expect("clone has an argument check");
        assert_eq!(args[0].index(), 1);
        assert_eq!(
            profile.architectures().as_deref(),
            Some(&[Arch::ScmpArchS390x, Arch::ScmpArchS390][..])
        );
        assert!(allows_unconditionally(&profile, "s390_runtime_instr"));
        assert!(rules_for(&profile, "arch_prctl").is_empty());
    }

    #[test]
    fn arm64_gets_its_own_syscalls_and_abis() {
        let profile = render(&DOCKER_CAPABILITIES, HostArch::Arm64, KERNEL_6_18);
        assert!(allows_unconditionally(&profile, "set_tls"));
        assert!(rules_for(&profile, "arch_prctl").is_empty());
        assert!(rules_for(&profile, "modify_ldt").is_empty());
        assert_eq!(
            profile.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
    }

    #[test]
    fn hosts_without_an_abi_list_leave_architectures_unset() {
        let profile = render(&DOCKER_CAPABILITIES, HostArch::Ppc64le, KERNEL_6_18);
        assert_eq!(profile.architectures(), &None);
        assert!(allows_unconditionally(&profile, "swapcontext"));
    }

    #[test]
    fn personality_allows_only_the_listed_personas() {
        let profile = amd64(&DOCKER_CAPABILITIES);
        let values: Vec<u64> = rules_for(&profile, "personality")
            .iter()
            .flat_map(|rule| rule.args().iter().flatten())
            .inspect(|arg| assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpEq))
            .map(|arg| arg.value())
            .collect();
        assert_eq!(values, [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn socket_allows_every_family_but_af_alg_and_af_vsock() {
        let profile = amd64(&DOCKER_CAPABILITIES);
        let checks: Vec<(LinuxSeccompOperator, u64)> = rules_for(&profile, "socket")
            .iter()
            .flat_map(|rule| rule.args().iter().flatten())
            .map(|arg| (arg.op(), arg.value()))
            .collect();
        assert_eq!(
            checks,
            [
                (LinuxSeccompOperator::ScmpCmpLt, 38),
                (LinuxSeccompOperator::ScmpCmpEq, 39),
                (LinuxSeccompOperator::ScmpCmpGt, 40),
            ]
        );
    }

    #[test]
    fn ptrace_needs_kernel_4_8_unless_the_container_has_sys_ptrace() {
        let old = Some(KernelVersion { major: 4, minor: 4 });
        for kernel in [old, None] {
            let profile = render(&DOCKER_CAPABILITIES, HostArch::Amd64, kernel);
            assert!(rules_for(&profile, "ptrace").is_empty(), "{kernel:?}");
            let traced = render(&with(Capability::SysPtrace), HostArch::Amd64, kernel);
            assert!(allows_unconditionally(&traced, "ptrace"), "{kernel:?}");
        }
        let exactly = Some(KernelVersion { major: 4, minor: 8 });
        let profile = render(&DOCKER_CAPABILITIES, HostArch::Amd64, exactly);
        assert!(allows_unconditionally(&profile, "ptrace"));
    }

    #[test]
    fn kernel_releases_parse_to_major_and_minor() {
        let parse = |release| KernelVersion::parse(release).map(|v| (v.major, v.minor));
        assert_eq!(parse("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse("3.12-1-amd64"), Some((3, 12)));
        assert_eq!(parse("5.4"), Some((5, 4)));
        assert_eq!(parse("linux"), None);
        assert_eq!(parse("6"), None);
        assert!(KernelVersion::running().is_some());
    }

    #[test]
    fn the_host_is_recognised() {
        if cfg!(target_arch = "x86_64") {
            assert_eq!(HostArch::current(), HostArch::Amd64);
        }
        assert_eq!(
            docker_default(&DOCKER_CAPABILITIES)
                .architectures()
                .as_deref(),
            Some(HostArch::current().seccomp_architectures()).filter(|arches| !arches.is_empty())
        );
    }
}
