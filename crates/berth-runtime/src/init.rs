//! The code that runs in the processes the runtime creates: the intermediate child, the
//! container's init, and an exec'd process.
//!
//! These run after `fork`: they report failures over the sync channel (naming the step)
//! and end with `execve` or `_exit`; they never return into the caller's code.

use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::error::{IoContext, Result, RuntimeError};
use crate::namespaces::{flag, NamespacePlan};
use crate::rootfs::{self, CgroupView, RootfsPlan};
use crate::seccomp::SeccompProgram;
use crate::sync::{Channel, Msg};
use crate::sys::process::{clone_fork_like, exit_now, Forked};

/// Report `err` to the runtime and leave.
fn fail(chan: &Channel, step: &str, err: RuntimeError) -> ! {
    let message = error_chain(&err);
    let _ = chan.send(&Msg::Error {
        step: step.to_owned(),
        message,
    });
    exit_now(1)
}

/// `err` and its sources on one line, for the message that crosses the channel.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Fork the intermediate child and connect it to us. In the child: run [`intermediate`],
/// then `then` in the new process it clones (init or an exec'd process), never returning
/// into the caller's code, not even by unwinding. Returns the intermediate's pid and our
/// end of the channel.
pub(crate) fn spawn(
    plan: &Intermediate<'_>,
    then: impl FnOnce(&Channel) -> std::convert::Infallible,
) -> Result<(nix::unistd::Pid, Channel)> {
    let (runtime_end, child_end) = Channel::pair().ctx(|| "creating the sync channel".into())?;
    match crate::sys::process::fork().ctx(|| "fork".into())? {
        Forked::Child => {
            drop(runtime_end);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                intermediate(&child_end, plan);
                then(&child_end)
            }));
            exit_now(1)
        }
        Forked::Parent(pid) => Ok((pid, runtime_end)),
    }
}

/// What the intermediate child needs.
pub(crate) struct Intermediate<'a> {
    pub ns: &'a NamespacePlan,
    pub spec: &'a Spec,
    /// Files to write `0` into to join the container's cgroup (see
    /// `Cgroup::self_join_files`).
    pub cgroup_files: &'a [std::path::PathBuf],
}

/// The intermediate child: enter or create the user namespace, join namespaces by path,
/// then clone the final process into the new namespaces. Returns in that final process;
/// the intermediate itself exits.
fn intermediate(chan: &Channel, plan: &Intermediate<'_>) {
    // If the runtime dies half-way, do not linger.
    let _ = crate::sys::process::set_parent_death_signal(libc::SIGKILL);
    let step = |name: &str, r: Result<()>| {
        if let Err(e) = r {
            fail(chan, name, e)
        }
    };
    // Join the cgroup first, while still fully privileged in the runtime's user namespace;
    // everything cloned from here on is born in it.
    step(
        "joining the cgroup",
        crate::cgroups::join_self(plan.cgroup_files).map_err(RuntimeError::from),
    );
    // Namespaces given by path are joined before a new user namespace is created: inside it
    // we would have no rights over namespaces the host owns. A user namespace given by path
    // comes first (it grants the rights to join the rest), the mount namespace last.
    for (t, fd) in &plan.ns.join {
        step(
            "joining namespaces",
            setns(fd.as_fd(), flag_for_setns(*t)).ctx(|| format!("joining the {t} namespace")),
        );
    }
    if plan.ns.new_user {
        step(
            "creating the user namespace",
            unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "unshare(CLONE_NEWUSER)".to_string()),
        );
        step(
            "waiting for id maps",
            chan.send(&Msg::MapIds).ctx(|| "sync".to_string()),
        );
    }
    step(
        "waiting for the runtime",
        chan.expect_continue().ctx(|| "sync".to_string()),
    );
    if plan.ns.new_user
        || plan
            .ns
            .join
            .iter()
            .any(|(t, _)| *t == LinuxNamespaceType::User)
    {
        // Become root of the user namespace (container uid 0 must be mapped).
        let r = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .and_then(|_| nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)))
            .ctx(|| "becoming root in the user namespace: map container id 0 in uidMappings and gidMappings".to_string());
        step("entering the user namespace", r);
    }
    if plan.ns.new_time {
        step(
            "creating the time namespace",
            unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
                .ctx(|| "unshare(CLONE_NEWTIME)".to_string()),
        );
        if let Some(offsets) = plan
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().clone())
        {
            let mut text = String::new();
            for (clock, off) in offsets {
                text.push_str(&format!(
                    "{clock} {} {}\n",
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0)
                ));
            }
            step(
                "linux.timeOffsets",
                std::fs::write("/proc/self/timens_offsets", text)
                    .ctx(|| "writing timens_offsets".to_string()),
            );
        }
    }
    match clone_fork_like(libc::CLONE_PARENT | plan.ns.clone_flags.bits()) {
        Ok(Forked::Parent(pid)) => {
            let _ = chan.send(&Msg::InitPid(pid.as_raw()));
            exit_now(0);
        }
        Ok(Forked::Child) => {}
        Err(e) => fail(
            chan,
            "creating the container process",
            RuntimeError::Io {
                context: "clone".into(),
                source: e,
            },
        ),
    }
}

fn flag_for_setns(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        other => flag(other),
    }
}

/// What the container's init needs.
pub(crate) struct InitPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub ns: &'a NamespacePlan,
    pub cgroups: &'a CgroupView,
    pub seccomp: Option<&'a SeccompProgram>,
    /// The container's state directory, where `exec.fifo` lives.
    pub state_dir: &'a OwnedFd,
    pub preserve_fds: i32,
    pub stdio: Option<&'a crate::container::Stdio>,
    pub id: &'a berth_types::ContainerId,
    pub bundle: &'a Path,
}

/// The container's init: set up the root filesystem and the process, report `Created`,
/// wait for `start`, then exec the user's program.
pub(crate) fn container_init(chan: &Channel, plan: &InitPlan<'_>) -> ! {
    match init_steps(chan, plan) {
        Ok(never) => match never {},
        Err((step, e)) => fail(chan, &step, e),
    }
}

/// Make the given descriptors this process's stdin, stdout and stderr.
fn use_stdio(stdio: Option<&crate::container::Stdio>) -> Result<()> {
    let Some(s) = stdio else { return Ok(()) };
    nix::unistd::dup2_stdin(&s.stdin)
        .and_then(|_| nix::unistd::dup2_stdout(&s.stdout))
        .and_then(|_| nix::unistd::dup2_stderr(&s.stderr))
        .ctx(|| "dup2 onto stdio".into())
}

type StepResult<T> = std::result::Result<T, (String, RuntimeError)>;

fn at<T>(step: &str, r: Result<T>) -> StepResult<T> {
    r.map_err(|e| (step.to_owned(), e))
}

fn init_steps(chan: &Channel, plan: &InitPlan<'_>) -> StepResult<Infallible> {
    let spec = plan.spec;
    let process = spec.process().as_ref().ok_or_else(|| {
        (
            "checking the spec".to_owned(),
            RuntimeError::invalid("process", "missing"),
        )
    })?;
    at("setting up stdio", use_stdio(plan.stdio))?;
    // Until it execs the program, this process runs the runtime's code and holds a
    // descriptor of the state directory: keep other container processes from ptrace or
    // /proc/<pid>/fd access (execve resets this).
    at(
        "PR_SET_DUMPABLE",
        nix::sys::prctl::set_dumpable(false).ctx(|| "prctl".into()),
    )?;
    let hooks = spec.hooks().as_ref();
    let has_runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    if has_runtime_hooks {
        at(
            "running createRuntime hooks",
            chan.send(&Msg::NamespacesReady).ctx(|| "sync".into()),
        )?;
        at(
            "running createRuntime hooks",
            chan.expect_continue().ctx(|| "sync".into()),
        )?;
    }
    at(
        "creating a session",
        nix::unistd::setsid().map(|_| ()).ctx(|| "setsid".into()),
    )?;
    if plan.ns.clone_flags.contains(CloneFlags::CLONE_NEWUTS) {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            at(
                "hostname",
                nix::unistd::sethostname(h).ctx(|| format!("setting hostname {h:?}")),
            )?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            at(
                "domainname",
                crate::sys::process::set_domainname(d).ctx(|| format!("setting domainname {d:?}")),
            )?;
        }
    }
    let rplan = RootfsPlan {
        spec,
        rootfs: plan.rootfs,
        cgroups: plan.cgroups,
        in_user_ns: plan.ns.in_user_ns(),
    };
    at("preparing the root filesystem", rootfs::prepare(&rplan))?;
    if let Some(h) = hooks {
        let state = hook_state(plan, "creating");
        at(
            "createContainer hooks",
            crate::hooks::run_hooks("createContainer", h.create_container().as_ref(), &state),
        )?;
    }
    at("pivot_root", rootfs::pivot(plan.rootfs))?;
    if process.terminal().unwrap_or(false) {
        at(
            "setting up the terminal",
            setup_terminal(chan, process, true),
        )?;
    }
    at("linux.sysctl", rootfs::apply_sysctl(spec))?;
    if let Some(linux) = spec.linux() {
        at(
            "linux.maskedPaths",
            rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or_default()),
        )?;
        at(
            "linux.readonlyPaths",
            rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default()),
        )?;
    }
    at(
        "linux.rootfsPropagation",
        rootfs::apply_root_propagation(spec),
    )?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        at("root.readonly", rootfs::readonly_root())?;
    }
    at("process.cwd", enter_cwd(process))?;
    let exe = at(
        "finding the program",
        crate::process::resolve_executable(process),
    )?;
    at("process limits", crate::process::apply_limits(process))?;
    at("personality", apply_personality(spec))?;

    // Tell the runtime we are ready, then wait for `start` on exec.fifo. The fifo is opened
    // relative to the state directory's descriptor: after pivot_root its path is gone.
    at(
        "reporting created",
        chan.send(&Msg::Created).ctx(|| "sync".into()),
    )?;
    let fifo = at(
        "waiting for start",
        nix::fcntl::openat(
            plan.state_dir.as_fd(),
            crate::state::EXEC_FIFO,
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| "opening exec.fifo".into()),
    )?;
    at(
        "waiting for start",
        nix::unistd::write(&fifo, b"0")
            .map(|_| ())
            .ctx(|| "writing exec.fifo".into()),
    )?;
    drop(fifo);

    if let Some(h) = hooks {
        let state = hook_state(plan, "created");
        at(
            "startContainer hooks",
            crate::hooks::run_hooks("startContainer", h.start_container().as_ref(), &state),
        )?;
    }
    at(
        "starting the program",
        crate::process::become_and_exec(process, &exe, plan.seccomp, plan.preserve_fds),
    )
}

/// `process.cwd`: enter it, creating it if the image lacks it (as Docker does for WORKDIR).
fn enter_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(RuntimeError::invalid(
            "process.cwd",
            format!("{} is not an absolute path", cwd.display()),
        ));
    }
    match nix::unistd::chdir(cwd) {
        Ok(()) => Ok(()),
        Err(nix::Error::ENOENT) => {
            std::fs::create_dir_all(cwd).ctx(|| format!("creating {}", cwd.display()))?;
            nix::unistd::chdir(cwd).ctx(|| format!("entering {}", cwd.display()))
        }
        Err(e) => Err(e).ctx(|| format!("entering {}", cwd.display())),
    }
}

fn apply_personality(spec: &Spec) -> Result<()> {
    let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().clone()) else {
        return Ok(());
    };
    let persona = match p.domain() {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    crate::sys::process::set_personality(persona).ctx(|| "linux.personality".into())
}

/// Give the process a pseudo-terminal from the container's own devpts: the master goes to
/// the runtime, the slave becomes stdio and the controlling terminal.
fn setup_terminal(chan: &Channel, process: &Process, is_init: bool) -> Result<()> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "opening /dev/ptmx (is /dev/pts mounted?)".into())?;
    nix::pty::grantpt(&master).ctx(|| "grantpt".into())?;
    nix::pty::unlockpt(&master).ctx(|| "unlockpt".into())?;
    let name = nix::pty::ptsname_r(&master).ctx(|| "ptsname".into())?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {name}"))?;
    if let Some(size) = process.console_size() {
        crate::sys::tty::set_window_size(slave.as_fd(), size.height() as u16, size.width() as u16)
            .ctx(|| "process.consoleSize".into())?;
    }
    if is_init {
        // /dev/console is the container's terminal, as on a real machine.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/dev/console");
        nix::mount::mount(
            Some(name.as_str()),
            "/dev/console",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| "binding the terminal to /dev/console".into())?;
    }
    chan.send_with_fd(&Msg::Terminal, Some(master.as_raw_fd()))
        .ctx(|| "sending the terminal".into())?;
    drop(master);
    nix::unistd::dup2_stdin(&slave)
        .and_then(|_| nix::unistd::dup2_stdout(&slave))
        .and_then(|_| nix::unistd::dup2_stderr(&slave))
        .ctx(|| "making the terminal stdio".into())?;
    crate::sys::tty::set_controlling_terminal(slave.as_fd())
        .ctx(|| "making the terminal the controlling terminal".into())?;
    Ok(())
}

/// The OCI state JSON given to hooks that run inside the container. The pid is init's as
/// seen from its own pid namespace (the runtime's view is not known in here).
fn hook_state(plan: &InitPlan<'_>, status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": plan.spec.version(),
        "id": plan.id,
        "status": status,
        "pid": nix::unistd::getpid().as_raw(),
        "bundle": plan.bundle,
        "annotations": plan.spec.annotations(),
    }))
    .unwrap_or_default()
}

/// What an exec'd process needs.
pub(crate) struct ExecPlan<'a> {
    pub process: &'a Process,
    pub seccomp: Option<&'a SeccompProgram>,
    pub preserve_fds: i32,
    pub stdio: Option<&'a crate::container::Stdio>,
}

/// An exec'd process, already in every namespace of the container: terminal, cwd, limits,
/// then the program.
pub(crate) fn exec_process(chan: &Channel, plan: &ExecPlan<'_>) -> ! {
    let r = (|| -> StepResult<Infallible> {
        let process = plan.process;
        at("setting up stdio", use_stdio(plan.stdio))?;
        at(
            "PR_SET_DUMPABLE",
            nix::sys::prctl::set_dumpable(false).ctx(|| "prctl".into()),
        )?;
        at(
            "creating a session",
            nix::unistd::setsid().map(|_| ()).ctx(|| "setsid".into()),
        )?;
        if process.terminal().unwrap_or(false) {
            at(
                "setting up the terminal",
                setup_terminal(chan, process, false),
            )?;
        }
        at("process.cwd", enter_cwd(process))?;
        let exe = at(
            "finding the program",
            crate::process::resolve_executable(process),
        )?;
        at("process limits", crate::process::apply_limits(process))?;
        at(
            "reporting ready",
            chan.send(&Msg::Created).ctx(|| "sync".into()),
        )?;
        at(
            "starting the program",
            crate::process::become_and_exec(process, &exe, plan.seccomp, plan.preserve_fds),
        )
    })();
    match r {
        Ok(never) => match never {},
        Err((step, e)) => fail(chan, &step, e),
    }
}
